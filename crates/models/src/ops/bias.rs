//! Per-channel bias `y[n, c, …] = x[n, c, …] + b[c]` with a one-pass backward.
//!
//! Composed, `x.broadcast_add(b.reshape((1, C, 1, 1)))` differentiates into
//! `sum_keepdim` over dimensions 0, 2 and 3, a reduction over non-contiguous
//! dimensions that candle 0.11 runs element by element with index arithmetic;
//! for a convolution with bias it costs as much as the convolution's own
//! weight gradient. The kernel here sums each contiguous channel plane.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType};

use super::{contiguous, on_cpu_kernels};
use crate::{Error, Result};

/// `x + b` broadcast along dimension 1 of `x` `(N, C, ...)`, `b` `(C)`.
///
/// ```
/// use bigbatch_models::ops::add_channel_bias;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let x = Tensor::zeros((1, 2, 1, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let b = Tensor::new(&[1f32, 2.], &Device::Cpu)?;
/// let y = add_channel_bias(&x, &b)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [1., 1., 2., 2.]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InputShape`] unless `x` has at least two dimensions and `b` is a
/// vector of length `C`; a candle error.
pub fn add_channel_bias(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    if dims.len() < 2 || b.dims() != [dims[1]] {
        return Err(Error::InputShape {
            model: "add_channel_bias",
            expected: format!("(N, C, ...) with a bias of shape {:?}", b.dims()),
            found: dims.to_vec(),
        });
    }
    if on_cpu_kernels(x, [b]) {
        Ok(x.contiguous()?
            .apply_op2(&b.contiguous()?, AddChannelBias)?)
    } else {
        add_channel_bias_composed(x, b)
    }
}

/// [`add_channel_bias`] as a candle broadcast add (any device, autodiff backward).
///
/// # Errors
/// As [`add_channel_bias`].
pub fn add_channel_bias_composed(x: &Tensor, b: &Tensor) -> Result<Tensor> {
    let mut shape = vec![1; x.rank()];
    if shape.len() < 2 {
        return Err(Error::InputShape {
            model: "add_channel_bias",
            expected: "(N, C, ...)".into(),
            found: x.dims().to_vec(),
        });
    }
    shape[1] = b.elem_count();
    Ok(x.broadcast_add(&b.reshape(shape)?)?)
}

/// `(planes per image · images, channels, plane size)` of a `(N, C, ...)` shape.
fn planes(shape: &Shape) -> (usize, usize, usize) {
    let dims = shape.dims();
    let c = dims.get(1).copied().unwrap_or(1);
    (dims[0], c, dims.iter().skip(2).product())
}

fn add<T: WithDType>(x: &[T], b: &[T], s: usize) -> Vec<T> {
    let mut y = x.to_vec();
    for img in y.chunks_exact_mut(b.len() * s) {
        for (plane, &bc) in img.chunks_exact_mut(s).zip(b) {
            for v in plane {
                *v += bc;
            }
        }
    }
    y
}

fn sum_planes<T: WithDType>(d: &[T], c: usize, s: usize) -> Vec<T> {
    let mut acc = vec![0f64; c];
    if s == 1 {
        // `(N, C)` rows (a dense layer's output): add whole rows.
        for row in d.chunks_exact(c) {
            for (a, v) in acc.iter_mut().zip(row) {
                *a += v.to_f64();
            }
        }
    } else {
        for img in d.chunks_exact(c * s) {
            for (plane, a) in img.chunks_exact(s).zip(acc.iter_mut()) {
                *a += plane.iter().map(|v| v.to_f64()).sum::<f64>();
            }
        }
    }
    acc.into_iter().map(T::from_f64).collect()
}

/// `Σ_{n, …} d[n, c, …]` of a `(N, C, ...)` CPU tensor (f32/f64), without a
/// graph: the gradient of a per-channel bias.
pub(super) fn channel_sum(d: &Tensor) -> candle_core::Result<Tensor> {
    d.contiguous()?.apply_op1_no_bwd(&ChannelSum)
}

/// The forward kernel; backward is the identity for `x` and [`ChannelSum`] for `b`.
struct AddChannelBias;

impl CustomOp2 for AddChannelBias {
    fn name(&self) -> &'static str {
        "bigbatch-add-channel-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, _, s) = planes(l1.shape());
        let y = match (s1, s2) {
            (CpuStorage::F32(x), CpuStorage::F32(b)) => CpuStorage::F32(add(
                contiguous("channel bias", x, l1)?,
                contiguous("channel bias", b, l2)?,
                s,
            )),
            (CpuStorage::F64(x), CpuStorage::F64(b)) => CpuStorage::F64(add(
                contiguous("channel bias", x, l1)?,
                contiguous("channel bias", b, l2)?,
                s,
            )),
            _ => candle_core::bail!("channel bias: only f32 and f64 of one dtype"),
        };
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let db = channel_sum(grad)?;
        Ok((Some(grad.clone()), Some(db)))
    }
}

/// The kernel of [`channel_sum`].
struct ChannelSum;

impl CustomOp1 for ChannelSum {
    fn name(&self) -> &'static str {
        "bigbatch-channel-sum"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (_, c, p) = planes(l.shape());
        let out = match s {
            CpuStorage::F32(d) => {
                CpuStorage::F32(sum_planes(contiguous("channel bias", d, l)?, c, p))
            }
            CpuStorage::F64(d) => {
                CpuStorage::F64(sum_planes(contiguous("channel bias", d, l)?, c, p))
            }
            _ => candle_core::bail!("channel sum: only f32 and f64"),
        };
        Ok((out, Shape::from(c)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;

    fn ramp(shape: &[usize], seed: f64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|i| ((i as f64 + seed) * 0.37).sin()).collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    #[test]
    fn kernel_equals_broadcast_add_in_values_and_gradients() -> Result<()> {
        for shape in [&[1, 3, 4, 5][..], &[7, 2, 1, 1], &[5, 4], &[2, 3, 3]] {
            let x = Var::from_tensor(&ramp(shape, 0.0)?)?;
            let b = Var::from_tensor(&ramp(&[shape[1]], 3.0)?)?;
            let r = ramp(shape, 9.0)?;
            let mut out = Vec::new();
            for f in [add_channel_bias, add_channel_bias_composed] {
                let y = f(x.as_tensor(), b.as_tensor())?;
                let g = (&y * &r)?.sum_all()?.backward()?;
                out.push([
                    y.detach(),
                    g.get(x.as_tensor()).expect("dx").clone(),
                    g.get(b.as_tensor()).expect("db").clone(),
                ]);
            }
            for (a, b) in out[0].iter().zip(&out[1]) {
                let d = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
                assert!(d < 1e-12, "{shape:?}: {d}");
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_a_bias_of_the_wrong_length() -> Result<()> {
        let x = ramp(&[2, 3, 2, 2], 0.0)?;
        let b = ramp(&[2], 0.0)?;
        assert!(matches!(
            add_channel_bias(&x, &b),
            Err(Error::InputShape { .. })
        ));
        Ok(())
    }
}
