//! `max(x, 0)` and the residual `max(a + b, 0)` with one-pass backwards.
//!
//! Composed, candle 0.11 differentiates `x.relu()` into `x ≥ 0` (a `u8`
//! mask), a cast back to the float type and a multiply: three more passes and
//! three more buffers per activation than the single `dy · [y > 0]` here, and
//! a residual block's `(a + b).relu()` adds a fourth node. These run on every
//! hidden layer of every model, so they are worth a kernel of their own.
//!
//! As in PyTorch, the derivative at 0 is 0 (`threshold_backward`) and NaN
//! passes through; candle's composed `relu` uses 1 at 0 and maps NaN to 0.
//! The two agree everywhere else.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::{contiguous, on_cpu_kernels};
use crate::{Error, Result};

/// Elements per parallel task: large enough that a hand-off (a few
/// microseconds) is small against the pass over it.
const CHUNK: usize = 1 << 15;

/// What a fused layer (dense, batch norm) applies to its output.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// Nothing: the layer's affine map alone.
    #[default]
    Identity,
    /// `max(·, 0)`, with PyTorch's derivative 0 at 0; NaN passes through.
    Relu,
}

/// `max(x, 0)` elementwise; backward `dx = dy · [y > 0]` in one pass.
///
/// ```
/// use bigbatch_models::ops::relu;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let x = Tensor::new(&[-1f32, 0., 2.], &Device::Cpu)?;
/// assert_eq!(relu(&x)?.to_vec1::<f32>()?, [0., 0., 2.]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// A candle error (e.g. an unsupported dtype on another device).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if on_cpu_kernels(x, []) {
        Ok(x.contiguous()?.apply_op1(Relu)?)
    } else {
        relu_composed(x)
    }
}

/// [`relu`] as candle's `Tensor::relu` (any device; derivative 1 at 0).
///
/// # Errors
/// A candle error.
pub fn relu_composed(x: &Tensor) -> Result<Tensor> {
    Ok(x.relu()?)
}

/// `max(a + b, 0)`, the end of a residual block, in one pass; backward
/// `da = db = dy · [y > 0]`.
///
/// ```
/// use bigbatch_models::ops::add_relu;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let a = Tensor::new(&[-1f32, 1., 2.], &Device::Cpu)?;
/// let b = Tensor::new(&[0.5f32, -3., 1.], &Device::Cpu)?;
/// assert_eq!(add_relu(&a, &b)?.to_vec1::<f32>()?, [0., 0., 3.]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InputShape`] if `a` and `b` differ in shape; a candle error.
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if a.dims() != b.dims() {
        return Err(Error::InputShape {
            model: "add_relu",
            expected: format!("a second operand of shape {:?}", a.dims()),
            found: b.dims().to_vec(),
        });
    }
    if on_cpu_kernels(a, [b]) {
        Ok(a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)?)
    } else {
        add_relu_composed(a, b)
    }
}

/// [`add_relu`] as candle's `(a + b).relu()`.
///
/// # Errors
/// A candle error (e.g. mismatched shapes).
pub fn add_relu_composed(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok((a + b)?.relu()?)
}

/// `out[i] = f(a[i], b[i])` for operands of one length, in parallel
/// chunks, written once into uninitialised memory (no zeroing pass first).
fn zip_map<T: WithDType>(
    a: &[T],
    b: &[T],
    f: impl Fn(T, T) -> T + Sync,
) -> candle_core::Result<Vec<T>> {
    if a.len() != b.len() {
        candle_core::bail!("relu: operands of {} and {} elements", a.len(), b.len());
    }
    let mut out = Vec::with_capacity(a.len());
    out.spare_capacity_mut()[..a.len()]
        .par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(out, (a, b))| {
            super::simd(
                #[inline(always)]
                || {
                    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
                        o.write(f(a, b));
                    }
                },
            )
        });
    // SAFETY: the three chunk sequences have equal lengths (checked above),
    // so the chunks cover `out[..a.len()]` and every element was written.
    unsafe { out.set_len(a.len()) };
    Ok(out)
}

/// `max(x, 0)` of every element.
fn map<T: WithDType>(x: &[T]) -> candle_core::Result<Vec<T>> {
    zip_map(
        x,
        x,
        #[inline(always)]
        |x, _| positive(x),
    )
}

/// `max(v, 0)`, NaN staying NaN (so a diverging run still shows in the loss).
#[inline(always)]
pub(super) fn positive<T: WithDType>(v: T) -> T {
    if v < T::zero() { T::zero() } else { v }
}

/// 0 where `y ≤ 0`, else `dy` (PyTorch's `threshold_backward`).
#[inline(always)]
fn masked<T: WithDType>(dy: T, y: T) -> T {
    if y <= T::zero() { T::zero() } else { dy }
}

/// `f` over two CPU storages of one shape and float type (`f32`/`f64`),
/// elementwise: the result and its shape, or an error naming `$what`.
macro_rules! zip2 {
    ($what:literal, $s1:expr, $l1:expr, $s2:expr, $l2:expr, $f:expr) => {{
        if $l1.shape() != $l2.shape() {
            candle_core::bail!(
                concat!($what, ": shapes {:?} and {:?}"),
                $l1.shape(),
                $l2.shape()
            );
        }
        let out = match ($s1, $s2) {
            (CpuStorage::F32(a), CpuStorage::F32(b)) => CpuStorage::F32(zip_map(
                contiguous("relu", a, $l1)?,
                contiguous("relu", b, $l2)?,
                $f,
            )?),
            (CpuStorage::F64(a), CpuStorage::F64(b)) => CpuStorage::F64(zip_map(
                contiguous("relu", a, $l1)?,
                contiguous("relu", b, $l2)?,
                $f,
            )?),
            _ => candle_core::bail!(concat!($what, ": only f32 and f64 of one dtype")),
        };
        Ok((out, $l1.shape().clone()))
    }};
}

/// Forward of [`relu`]; backward is [`ReluBackward`].
struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "bigbatch-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let y = match s {
            CpuStorage::F32(x) => CpuStorage::F32(map(contiguous("relu", x, l)?)?),
            CpuStorage::F64(x) => CpuStorage::F64(map(contiguous("relu", x, l)?)?),
            _ => candle_core::bail!("relu: only f32 and f64"),
        };
        Ok((y, l.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(relu_backward(dy, y)?))
    }
}

/// Forward of [`add_relu`]; backward is [`ReluBackward`] for both operands.
struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "bigbatch-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        zip2!(
            "add_relu",
            s1,
            l1,
            s2,
            l2,
            #[inline(always)]
            |a, b| positive(a + b)
        )
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let d = relu_backward(dy, y)?;
        Ok((Some(d.clone()), Some(d)))
    }
}

/// `dy · [y > 0]` from the upstream gradient and a ReLU's output `y` (CPU,
/// f32/f64), without a graph: the backward of every op that ends in a ReLU.
pub(super) fn relu_backward(dy: &Tensor, y: &Tensor) -> candle_core::Result<Tensor> {
    dy.contiguous()?
        .apply_op2_no_bwd(&y.contiguous()?, &ReluBackward)
}

/// The kernel of [`relu_backward`].
struct ReluBackward;

impl CustomOp2 for ReluBackward {
    fn name(&self) -> &'static str {
        "bigbatch-relu-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        zip2!("relu backward", s1, l1, s2, l2, masked)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::testing::central_difference;

    /// Values in `±[0.05, 1]`: away from the kink, where the two conventions
    /// for the derivative at 0 agree and central differences are exact.
    fn random(shape: &[usize], seed: u64) -> Result<Tensor> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|_| {
                let m: f64 = rng.random_range(0.05..1.0);
                if rng.random_bool(0.5) { m } else { -m }
            })
            .collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    fn shapes() -> Vec<Vec<usize>> {
        // Scalars, odd sizes, and one larger than a parallel chunk.
        vec![
            vec![1],
            vec![7],
            vec![3, 5],
            vec![2, 3, 4, 5],
            vec![2, CHUNK + 3],
        ]
    }

    /// `(y, dx)` of `Σ y ⊙ r` for a one-input function.
    fn grad1(f: fn(&Tensor) -> Result<Tensor>, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let xv = Var::from_tensor(x)?;
        let y = f(xv.as_tensor())?;
        let r = random(y.dims(), 7)?.to_dtype(y.dtype())?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        Ok((y.detach(), grads.get(xv.as_tensor()).expect("dx").clone()))
    }

    fn diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?.abs()?;
        Ok(d.flatten_all()?.max(0)?.to_scalar::<f64>()?)
    }

    #[test]
    fn relu_matches_candle_in_values_and_gradients() -> Result<()> {
        for (i, shape) in shapes().iter().enumerate() {
            for dtype in [DType::F32, DType::F64] {
                let x = random(shape, i as u64)?.to_dtype(dtype)?;
                let (y, dx) = grad1(relu, &x)?;
                let (y0, dx0) = grad1(relu_composed, &x)?;
                assert_eq!(diff(&y, &y0)?, 0.0, "{shape:?} {dtype:?}");
                assert_eq!(diff(&dx, &dx0)?, 0.0, "{shape:?} {dtype:?}");
            }
        }
        Ok(())
    }

    #[test]
    fn add_relu_matches_candle_in_values_and_gradients() -> Result<()> {
        for (i, shape) in shapes().iter().enumerate() {
            for dtype in [DType::F32, DType::F64] {
                let a = random(shape, i as u64)?.to_dtype(dtype)?;
                // b = a/3 + noise keeps a + b away from 0 as well.
                let b = ((&a / 3.0)? * random(shape, 100 + i as u64)?.abs()?.to_dtype(dtype)?)?;
                let (av, bv) = (Var::from_tensor(&a)?, Var::from_tensor(&b)?);
                let r = random(shape, 9)?.to_dtype(dtype)?;
                let mut out = Vec::new();
                for f in [add_relu, add_relu_composed] {
                    let y = f(av.as_tensor(), bv.as_tensor())?;
                    let g = (&y * &r)?.sum_all()?.backward()?;
                    let da = g.get(av.as_tensor()).expect("da").clone();
                    let db = g.get(bv.as_tensor()).expect("db").clone();
                    out.push([y.detach(), da, db]);
                }
                for (p, q) in out[0].iter().zip(&out[1]) {
                    assert_eq!(diff(p, q)?, 0.0, "{shape:?} {dtype:?}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn gradients_match_central_differences() -> Result<()> {
        let x = random(&[3, 4], 11)?;
        let r = random(&[3, 4], 12)?;
        let loss =
            |x: &Tensor| -> Result<f64> { Ok((relu(x)? * &r)?.sum_all()?.to_scalar::<f64>()?) };
        let xv = Var::from_tensor(&x)?;
        let analytic = (relu(xv.as_tensor())? * &r)?.sum_all()?.backward()?;
        let analytic = analytic.get(xv.as_tensor()).expect("dx").clone();
        let analytic = analytic.flatten_all()?.to_vec1::<f64>()?;
        for (j, a) in analytic.iter().enumerate() {
            let numeric = central_difference(&x, j, 1e-6, loss)?;
            assert!((a - numeric).abs() < 1e-8, "element {j}: {a} vs {numeric}");
        }
        Ok(())
    }

    #[test]
    fn derivative_at_zero_is_zero_as_in_pytorch() -> Result<()> {
        let x = Var::from_tensor(&Tensor::new(&[-1f32, 0., 1.], &Device::Cpu)?)?;
        let g = relu(x.as_tensor())?.sum_all()?.backward()?;
        let dx = g.get(x.as_tensor()).expect("dx").to_vec1::<f32>()?;
        assert_eq!(dx, [0., 0., 1.]);
        let a = Var::from_tensor(&Tensor::new(&[1f32, -2., 3.], &Device::Cpu)?)?;
        let b = Tensor::new(&[-1f32, 1., 1.], &Device::Cpu)?;
        let g = add_relu(a.as_tensor(), &b)?.sum_all()?.backward()?;
        assert_eq!(
            g.get(a.as_tensor()).expect("da").to_vec1::<f32>()?,
            [0., 0., 1.]
        );
        Ok(())
    }

    #[test]
    fn nan_passes_through_so_divergence_stays_visible() -> Result<()> {
        let x = Tensor::new(&[f32::NAN, -1.], &Device::Cpu)?;
        let y = relu(&x)?.to_vec1::<f32>()?;
        assert!(y[0].is_nan() && y[1] == 0.0);
        let y = add_relu(&x, &Tensor::new(&[1f32, 0.], &Device::Cpu)?)?;
        assert!(y.to_vec1::<f32>()?[0].is_nan());
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_a_typed_error() -> Result<()> {
        let a = Tensor::zeros((2, 3), DType::F32, &Device::Cpu)?;
        let b = Tensor::zeros((3, 2), DType::F32, &Device::Cpu)?;
        assert!(matches!(add_relu(&a, &b), Err(Error::InputShape { .. })));
        Ok(())
    }
}
