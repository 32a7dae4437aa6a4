//! Dense layer `y = act(x Wᵀ + b)` (PyTorch's `F.linear`, then an optional
//! ReLU) as one graph node, with a backward pass that writes every gradient
//! contiguously.
//!
//! Composed, `x.matmul(&w.t())` differentiates into `xᵀ·dy` laid out as
//! `(in, out)`, which candle then transposes back and adds into a zero
//! gradient through its strided (element-by-element) path: for a
//! 784-512-512-10 MLP at batch 32 that addition costs more than all the
//! matrix products. A separate bias and ReLU are two more nodes, each with
//! its own pass over the activations forward and a zeroed gradient plus an
//! addition backward. Here:
//!
//! ```text
//! y = act(x · Wᵀ + b)   (N × out): the rows start as b, gemm adds x · Wᵀ,
//!                       the activation runs on each block while it is in cache
//! dz = dy · act'(y)     (ReLU: dy where y > 0, else 0)
//! ∂L/∂x = dz · W        (N × in)   = (N × out)(out × in)
//! ∂L/∂W = dzᵀ · x       (out × in) = (out × N)(N × in)
//! ∂L/∂b = Σ_n dz[n]
//! ```
//!
//! each product one `gemm` call per thread ([`super::matmul::matmul_split`]).

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, WithDType};

use super::matmul::{Mat, matmul_split, matmul_split_new};
use super::relu::Activation;
use super::{bias_operand, contiguous, on_cpu_kernels};
use crate::{Error, Result};

/// `act(x Wᵀ + b)` for `x` `(N, in)`, `weight` `(out, in)` and an optional
/// `bias` `(out)`: `(N, out)`, one graph node. Differentiable in all three.
///
/// ```
/// use bigbatch_models::ops::{Activation, linear};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let x = Tensor::new(&[[1f32, 2.]], &Device::Cpu)?;
/// let w = Tensor::new(&[[1f32, 0.], [1., 1.], [0., -2.]], &Device::Cpu)?;
/// let b = Tensor::new(&[0f32, 1., 0.], &Device::Cpu)?;
/// assert_eq!(linear(&x, &w, None, Activation::Identity)?.to_vec2::<f32>()?, [[1., 3., -4.]]);
/// assert_eq!(linear(&x, &w, Some(&b), Activation::Relu)?.to_vec2::<f32>()?, [[1., 4., 0.]]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InputShape`] unless `x` is `(N, in)`, `weight` `(out, in)` and
/// `bias` `(out)`; a candle error.
pub fn linear(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
) -> Result<Tensor> {
    let (&[_, i], &[o, wi]) = (x.dims(), weight.dims()) else {
        return Err(shape_error(x, weight));
    };
    if i != wi || bias.is_some_and(|b| b.dims() != [o]) {
        return Err(shape_error(x, weight));
    }
    if !on_cpu_kernels(x, [weight].into_iter().chain(bias)) {
        return linear_composed(x, weight, bias, act);
    }
    let bias = bias_operand(bias, o, x)?;
    Ok(x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias, Dense(act))?)
}

/// [`linear`] from candle's ops: `x.matmul(&w.t())`, `broadcast_add`, `relu`
/// (any device and dtype, candle's autodiff; its ReLU has derivative 1 at 0).
///
/// # Errors
/// As [`linear`].
pub fn linear_composed(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    act: Activation,
) -> Result<Tensor> {
    if x.rank() != 2 || weight.rank() != 2 {
        return Err(shape_error(x, weight));
    }
    let y = x.matmul(&weight.t()?)?;
    let y = match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    Ok(match act {
        Activation::Identity => y,
        Activation::Relu => y.relu()?,
    })
}

fn shape_error(x: &Tensor, weight: &Tensor) -> Error {
    Error::InputShape {
        model: "linear",
        expected: format!(
            "(N, in) against a weight of shape {:?} and a bias of its rows",
            weight.dims()
        ),
        found: x.dims().to_vec(),
    }
}

/// The fused forward over `(x, weight, bias)`.
#[derive(Clone, Copy, Debug)]
struct Dense(Activation);

impl Dense {
    fn run<T: WithDType>(self, x: &[T], w: &[T], b: &[T], (m, k): (usize, usize)) -> Vec<T> {
        let n = b.len();
        // The rows start as the bias (written once, no zeroing pass first).
        let mut y = Vec::with_capacity(m * n);
        for _ in 0..m {
            y.extend_from_slice(b);
        }
        let relu = self.0 == Activation::Relu;
        matmul_split(
            [m, n, k],
            &mut y,
            Mat::rows(x, k),
            Mat::transposed(w, k),
            true,
            |row| {
                if relu {
                    super::simd(
                        #[inline(always)]
                        || row.iter_mut().for_each(|v| *v = super::relu::positive(*v)),
                    )
                }
            },
        );
        y
    }
}

impl CustomOp3 for Dense {
    fn name(&self) -> &'static str {
        "bigbatch-linear"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (m, k) = l1.shape().dims2()?;
        let (n, kw) = l2.shape().dims2()?;
        if k != kw || l3.shape().dims() != [n] {
            candle_core::bail!(
                "linear: input {:?}, weight {:?}, bias {:?}",
                l1.shape(),
                l2.shape(),
                l3.shape()
            );
        }
        let y = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                CpuStorage::F32(self.run(
                    contiguous("linear", x, l1)?,
                    contiguous("linear", w, l2)?,
                    contiguous("linear", b, l3)?,
                    (m, k),
                ))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => {
                CpuStorage::F64(self.run(
                    contiguous("linear", x, l1)?,
                    contiguous("linear", w, l2)?,
                    contiguous("linear", b, l3)?,
                    (m, k),
                ))
            }
            _ => candle_core::bail!("linear: only f32 and f64 of one dtype"),
        };
        Ok((y, Shape::from((m, n))))
    }

    /// Only the forward is differentiated; the backward products and sums
    /// are applied without a graph, and only for operands the graph tracks
    /// (a first layer's input is data; a missing bias is a constant).
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let dz = match self.0 {
            Activation::Identity => dy.contiguous()?,
            Activation::Relu => super::relu::relu_backward(dy, y)?,
        };
        let dx = x.track_op().then(|| {
            dz.apply_op2_no_bwd(
                weight,
                &Product {
                    ta: false,
                    tb: false,
                },
            )
        });
        let dw = weight.track_op().then(|| {
            dz.apply_op2_no_bwd(
                x,
                &Product {
                    ta: true,
                    tb: false,
                },
            )
        });
        let db = bias.track_op().then(|| super::bias::channel_sum(&dz));
        Ok((dx.transpose()?, dw.transpose()?, db.transpose()?))
    }
}

/// `op(a) · op(b)` for contiguous row-major matrices, `op` the identity or
/// the transpose: the backward products.
#[derive(Clone, Copy, Debug)]
struct Product {
    ta: bool,
    tb: bool,
}

impl Product {
    /// `(m, k)` of `op(a)` from the stored `(rows, cols)`.
    fn op_dims(rows: usize, cols: usize, t: bool) -> (usize, usize) {
        if t { (cols, rows) } else { (rows, cols) }
    }

    fn run<T: WithDType>(
        &self,
        a: &[T],
        (ar, ac): (usize, usize),
        b: &[T],
        (br, bc): (usize, usize),
    ) -> Vec<T> {
        let (m, k) = Self::op_dims(ar, ac, self.ta);
        let (_, n) = Self::op_dims(br, bc, self.tb);
        let operand = |data, cols, t| {
            if t {
                Mat::transposed(data, cols)
            } else {
                Mat::rows(data, cols)
            }
        };
        matmul_split_new([m, n, k], operand(a, ac, self.ta), operand(b, bc, self.tb))
    }
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "bigbatch-linear-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (ar, ac) = l1.shape().dims2()?;
        let (br, bc) = l2.shape().dims2()?;
        let (m, k) = Self::op_dims(ar, ac, self.ta);
        let (kb, n) = Self::op_dims(br, bc, self.tb);
        if k != kb {
            candle_core::bail!("linear: inner dimensions {k} and {kb} differ");
        }
        let out = match (s1, s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(self.run(
                contiguous("linear", a, l1)?,
                (ar, ac),
                contiguous("linear", b, l2)?,
                (br, bc),
            )),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(self.run(
                contiguous("linear", a, l1)?,
                (ar, ac),
                contiguous("linear", b, l2)?,
                (br, bc),
            )),
            _ => candle_core::bail!("linear: only f32 and f64 of one dtype"),
        };
        Ok((out, Shape::from((m, n))))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};

    use super::*;
    use crate::testing::central_difference;

    fn ramp(shape: (usize, usize), seed: f64) -> Result<Tensor> {
        let v: Vec<f64> = (0..shape.0 * shape.1)
            .map(|i| ((i as f64 + seed) * 0.61).sin())
            .collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    /// Values and the gradients of `x`, `W` and `b` through `Σ r·f(x, W, b)`.
    fn run(
        f: fn(&Tensor, &Tensor, Option<&Tensor>, Activation) -> Result<Tensor>,
        [x, w, b]: [&Var; 3],
        with_bias: bool,
        act: Activation,
        r: &Tensor,
    ) -> Result<Vec<Tensor>> {
        let bias = with_bias.then(|| b.as_tensor());
        let y = f(x.as_tensor(), w.as_tensor(), bias, act)?;
        let g = (&y * r)?.sum_all()?.backward()?;
        let mut out = vec![y.detach()];
        for v in [x, w, b] {
            if let Some(d) = g.get(v.as_tensor()) {
                out.push(d.clone());
            }
        }
        Ok(out)
    }

    #[test]
    fn kernel_equals_composed_ops_in_values_and_gradients() -> Result<()> {
        // Batch 1, odd sizes, and shapes large enough to split over threads
        // by rows (64 × 300 → 200) and by columns (40 × 300 → 250).
        for (n, i, o) in [
            (1, 1, 1),
            (1, 7, 3),
            (5, 4, 9),
            (33, 17, 10),
            (64, 300, 200),
            (40, 300, 250),
        ] {
            for dtype in [DType::F64, DType::F32] {
                let tol = if dtype == DType::F64 { 1e-11 } else { 1e-3 };
                // No pre-activation exactly 0, where candle's ReLU takes
                // derivative 1 and PyTorch's (and ours) 0.
                let x = Var::from_tensor(&ramp((n, i), 0.5)?.to_dtype(dtype)?)?;
                let w = Var::from_tensor(&ramp((o, i), 5.0)?.to_dtype(dtype)?)?;
                let b = Var::from_tensor(&ramp((1, o), 3.0)?.flatten_all()?.to_dtype(dtype)?)?;
                let r = ramp((n, o), 2.0)?.to_dtype(dtype)?;
                for act in [Activation::Identity, Activation::Relu] {
                    for with_bias in [false, true] {
                        let fast = run(linear, [&x, &w, &b], with_bias, act, &r)?;
                        let composed = run(linear_composed, [&x, &w, &b], with_bias, act, &r)?;
                        // y, dx, dW, and db only when the bias is used.
                        assert_eq!(fast.len(), 3 + usize::from(with_bias));
                        assert_eq!(fast.len(), composed.len());
                        for (a, b) in fast.iter().zip(&composed) {
                            let d = (a - b)?.abs()?.flatten_all()?.max(0)?;
                            let d = d.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                            let case = format!("({n}, {i}) x ({o}, {i}) {dtype:?} {act:?}");
                            assert!(d < tol, "{case} bias {with_bias}: {d}");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let (x, w, r) = (ramp((3, 4), 1.0)?, ramp((2, 4), 4.0)?, ramp((3, 2), 8.0)?);
        let b = Tensor::new(&[0.3f64, -0.2], &Device::Cpu)?;
        for act in [Activation::Identity, Activation::Relu] {
            let (xv, wv, bv) = (
                Var::from_tensor(&x)?,
                Var::from_tensor(&w)?,
                Var::from_tensor(&b)?,
            );
            let y = linear(xv.as_tensor(), wv.as_tensor(), Some(bv.as_tensor()), act)?;
            let g = (y * &r)?.sum_all()?.backward()?;
            let loss = |t: [&Tensor; 3]| -> Result<f64> {
                let y = linear(t[0], t[1], Some(t[2]), act)?;
                Ok((y * &r)?.sum_all()?.to_scalar::<f64>()?)
            };
            for (which, v) in [&xv, &wv, &bv].into_iter().enumerate() {
                let grad = g.get(v.as_tensor()).expect("grad");
                let grad = grad.flatten_all()?.to_vec1::<f64>()?;
                let t = v.as_tensor();
                for (j, &g_j) in grad.iter().enumerate() {
                    let fd = central_difference(t, j, 1e-6, |t2| {
                        let mut args = [&x, &w, &b];
                        args[which] = t2;
                        loss(args)
                    })?;
                    assert!(
                        (fd - g_j).abs() < 1e-7,
                        "{act:?} operand {which}[{j}]: {fd} vs {g_j}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn relu_follows_pytorch_at_the_kink_and_lets_nan_through() -> Result<()> {
        // x·Wᵀ + b = [0, −1, NaN, 2]: derivative 0 at 0, NaN stays NaN.
        let x = Tensor::new(&[[1f64]], &Device::Cpu)?;
        let w = Var::from_tensor(&Tensor::new(
            &[[0f64], [-1.], [f64::NAN], [2.]],
            &Device::Cpu,
        )?)?;
        let y = linear(&x, w.as_tensor(), None, Activation::Relu)?;
        let got = y.flatten_all()?.to_vec1::<f64>()?;
        assert_eq!(got[..2], [0.0, 0.0]);
        assert!(got[2].is_nan());
        assert_eq!(got[3], 2.0);
        let g = y.sum_all()?.backward()?;
        let dw = g
            .get(w.as_tensor())
            .expect("dw")
            .flatten_all()?
            .to_vec1::<f64>()?;
        assert_eq!([dw[0], dw[1], dw[3]], [0.0, 0.0, 1.0]);
        Ok(())
    }

    #[test]
    fn untracked_operands_get_no_gradient_and_change_nothing_else() -> Result<()> {
        let (x, w, r) = (ramp((5, 4), 1.0)?, ramp((3, 4), 4.0)?, ramp((5, 3), 8.0)?);
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let both = (linear(xv.as_tensor(), wv.as_tensor(), None, Activation::Identity)? * &r)?
            .sum_all()?
            .backward()?;
        // Data in, as in a first layer: only the weight's gradient.
        let data_in = (linear(&x, wv.as_tensor(), None, Activation::Identity)? * &r)?
            .sum_all()?
            .backward()?;
        assert!(data_in.get(&x).is_none());
        let (a, b) = (data_in.get(wv.as_tensor()), both.get(wv.as_tensor()));
        let d = (a.expect("dw") - b.expect("dw"))?
            .abs()?
            .max_keepdim(0)?
            .max(1)?;
        assert_eq!(d.to_vec1::<f64>()?, [0.0]);
        // A frozen weight: only the input's gradient.
        let frozen = (linear(xv.as_tensor(), &w, None, Activation::Identity)? * &r)?
            .sum_all()?
            .backward()?;
        assert!(frozen.get(&w).is_none() && frozen.get(xv.as_tensor()).is_some());
        Ok(())
    }

    #[test]
    fn rejects_mismatched_shapes() -> Result<()> {
        let x = ramp((2, 3), 0.0)?;
        let id = Activation::Identity;
        assert!(matches!(
            linear(&x, &ramp((4, 2), 0.0)?, None, id),
            Err(Error::InputShape { .. })
        ));
        assert!(matches!(
            linear(&x.flatten_all()?, &ramp((4, 3), 0.0)?, None, id),
            Err(Error::InputShape { .. })
        ));
        let b = ramp((1, 3), 0.0)?.flatten_all()?;
        assert!(matches!(
            linear(&x, &ramp((4, 3), 0.0)?, Some(&b), id),
            Err(Error::InputShape { .. })
        ));
        Ok(())
    }
}
