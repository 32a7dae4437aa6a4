//! Dense layer product `y = x Wᵀ` (PyTorch's `F.linear` without bias) with a
//! backward pass that writes both gradients contiguously.
//!
//! Composed, `x.matmul(&w.t())` differentiates into `xᵀ·dy` laid out as
//! `(in, out)`, which candle then transposes back and adds into a zero
//! gradient through its strided (element-by-element) path: for a
//! 784-512-512-10 MLP at batch 32 that addition costs more than all the
//! matrix products. Here:
//!
//! ```text
//! y = x · Wᵀ        (N × out) = (N × in)(in × out)
//! ∂L/∂x = dy · W    (N × in)  = (N × out)(out × in)
//! ∂L/∂W = dyᵀ · x   (out × in) = (out × N)(N × in)
//! ```
//!
//! each one `gemm` call (threaded by `gemm` itself above a size threshold).

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor, WithDType};
use gemm::{Parallelism, gemm};

use super::contiguous;
use crate::{Error, Result};

/// `x Wᵀ` for `x` `(N, in)` and `weight` `(out, in)`: `(N, out)`.
/// Differentiable in both arguments.
///
/// ```
/// use bigbatch_models::ops::linear;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let x = Tensor::new(&[[1f32, 2.]], &Device::Cpu)?;
/// let w = Tensor::new(&[[1f32, 0.], [1., 1.], [0., 2.]], &Device::Cpu)?;
/// assert_eq!(linear(&x, &w)?.to_vec2::<f32>()?, [[1., 3., 4.]]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InputShape`] unless `x` is `(N, in)` and `weight` `(out, in)`;
/// a candle error.
pub fn linear(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    let (&[_, i], &[_, wi]) = (x.dims(), weight.dims()) else {
        return Err(shape_error(x, weight));
    };
    if i != wi {
        return Err(shape_error(x, weight));
    }
    let fast = x.device().is_cpu()
        && matches!(x.dtype(), DType::F32 | DType::F64)
        && weight.dtype() == x.dtype();
    if fast {
        Ok(x.contiguous()?
            .apply_op2(&weight.contiguous()?, Product::FORWARD)?)
    } else {
        linear_composed(x, weight)
    }
}

/// [`linear`] as `x.matmul(&w.t())` (any device and dtype, candle's autodiff).
///
/// # Errors
/// As [`linear`].
pub fn linear_composed(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    if x.rank() != 2 || weight.rank() != 2 {
        return Err(shape_error(x, weight));
    }
    Ok(x.matmul(&weight.t()?)?)
}

fn shape_error(x: &Tensor, weight: &Tensor) -> Error {
    Error::InputShape {
        model: "linear",
        expected: format!("(N, in) against a weight of shape {:?}", weight.dims()),
        found: x.dims().to_vec(),
    }
}

/// `op(a) · op(b)` for contiguous row-major matrices, `op` the identity or
/// the transpose.
#[derive(Clone, Copy, Debug)]
struct Product {
    ta: bool,
    tb: bool,
}

impl Product {
    const FORWARD: Self = Self {
        ta: false,
        tb: true,
    };

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
        let mut dst = vec![T::zero(); m * n];
        // Row and column strides of op(a) and op(b).
        let (a_rs, a_cs) = if self.ta { (1, ac) } else { (ac, 1) };
        let (b_rs, b_cs) = if self.tb { (1, bc) } else { (bc, 1) };
        let threads = candle_core::utils::get_num_threads();
        let par = if threads > 1 && m * n * k >= 1 << 21 {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        };
        // SAFETY: `a` holds ar·ac = m·k and `b` br·bc = k·n elements (checked
        // by `cpu_fwd`), read with in-bounds strides; `dst` holds m·n and is a
        // fresh buffer that aliases neither operand.
        unsafe {
            gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                a_cs as isize,
                a_rs as isize,
                b.as_ptr(),
                b_cs as isize,
                b_rs as isize,
                T::zero(),
                T::one(),
                false,
                false,
                false,
                par,
            );
        }
        dst
    }
}

impl CustomOp2 for Product {
    fn name(&self) -> &'static str {
        "bigbatch-linear"
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

    /// Only the forward product `x Wᵀ` is differentiated; the backward
    /// products are applied without a graph.
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        if self.ta || !self.tb {
            candle_core::bail!("linear: only the forward product has a backward pass");
        }
        let grad = grad.contiguous()?;
        // Only what the graph tracks: a first layer's input is data.
        let dx = x.track_op().then(|| {
            let op = Product {
                ta: false,
                tb: false,
            };
            grad.apply_op2_no_bwd(weight, &op)
        });
        let dw = weight.track_op().then(|| {
            let op = Product {
                ta: true,
                tb: false,
            };
            grad.apply_op2_no_bwd(x, &op)
        });
        Ok((dx.transpose()?, dw.transpose()?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::testing::central_difference;

    fn ramp(shape: (usize, usize), seed: f64) -> Result<Tensor> {
        let v: Vec<f64> = (0..shape.0 * shape.1)
            .map(|i| ((i as f64 + seed) * 0.61).sin())
            .collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    #[test]
    fn kernel_equals_matmul_in_values_and_gradients() -> Result<()> {
        // Batch 1, odd sizes, and one large enough for gemm's own threads.
        for (n, i, o) in [
            (1, 1, 1),
            (1, 7, 3),
            (5, 4, 9),
            (33, 17, 10),
            (64, 300, 200),
        ] {
            for dtype in [DType::F64, DType::F32] {
                let tol = if dtype == DType::F64 { 1e-11 } else { 1e-3 };
                let x = Var::from_tensor(&ramp((n, i), 0.0)?.to_dtype(dtype)?)?;
                let w = Var::from_tensor(&ramp((o, i), 5.0)?.to_dtype(dtype)?)?;
                let r = ramp((n, o), 2.0)?.to_dtype(dtype)?;
                let mut out = Vec::new();
                for f in [linear, linear_composed] {
                    let y = f(x.as_tensor(), w.as_tensor())?;
                    let g = (&y * &r)?.sum_all()?.backward()?;
                    out.push([
                        y.detach(),
                        g.get(x.as_tensor()).expect("dx").clone(),
                        g.get(w.as_tensor()).expect("dw").clone(),
                    ]);
                }
                for (a, b) in out[0].iter().zip(&out[1]) {
                    let d = (a - b)?.abs()?.flatten_all()?.max(0)?;
                    let d = d.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                    assert!(d < tol, "({n}, {i}) x ({o}, {i}) {dtype:?}: {d}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let (x, w, r) = (ramp((3, 4), 1.0)?, ramp((2, 4), 4.0)?, ramp((3, 2), 8.0)?);
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let g = (linear(xv.as_tensor(), wv.as_tensor())? * &r)?
            .sum_all()?
            .backward()?;
        let loss = |x: &Tensor, w: &Tensor| -> Result<f64> {
            Ok((linear(x, w)? * &r)?.sum_all()?.to_scalar::<f64>()?)
        };
        for (which, t, grad) in [
            ("x", &x, g.get(xv.as_tensor())),
            ("w", &w, g.get(wv.as_tensor())),
        ] {
            let grad = grad.expect("grad").flatten_all()?.to_vec1::<f64>()?;
            for (j, &g_j) in grad.iter().enumerate() {
                let fd = central_difference(t, j, 1e-6, |t2| {
                    if which == "x" {
                        loss(t2, &w)
                    } else {
                        loss(&x, t2)
                    }
                })?;
                assert!((fd - g_j).abs() < 1e-7, "{which}[{j}]: {fd} vs {g_j}");
            }
        }
        Ok(())
    }

    #[test]
    fn untracked_operands_get_no_gradient_and_change_nothing_else() -> Result<()> {
        let (x, w, r) = (ramp((5, 4), 1.0)?, ramp((3, 4), 4.0)?, ramp((5, 3), 8.0)?);
        let (xv, wv) = (Var::from_tensor(&x)?, Var::from_tensor(&w)?);
        let both = (linear(xv.as_tensor(), wv.as_tensor())? * &r)?
            .sum_all()?
            .backward()?;
        // Data in, as in a first layer: only the weight's gradient.
        let data_in = (linear(&x, wv.as_tensor())? * &r)?.sum_all()?.backward()?;
        assert!(data_in.get(&x).is_none());
        let (a, b) = (data_in.get(wv.as_tensor()), both.get(wv.as_tensor()));
        let d = (a.expect("dw") - b.expect("dw"))?
            .abs()?
            .max_keepdim(0)?
            .max(1)?;
        assert_eq!(d.to_vec1::<f64>()?, [0.0]);
        // A frozen weight: only the input's gradient.
        let frozen = (linear(xv.as_tensor(), &w)? * &r)?.sum_all()?.backward()?;
        assert!(frozen.get(&w).is_none() && frozen.get(xv.as_tensor()).is_some());
        Ok(())
    }

    #[test]
    fn rejects_mismatched_shapes() -> Result<()> {
        let x = ramp((2, 3), 0.0)?;
        assert!(matches!(
            linear(&x, &ramp((4, 2), 0.0)?),
            Err(Error::InputShape { .. })
        ));
        assert!(matches!(
            linear(&x.flatten_all()?, &ramp((4, 3), 0.0)?),
            Err(Error::InputShape { .. })
        ));
        Ok(())
    }
}
