//! Losses that belong with training recipes: softmax cross-entropy with label smoothing.
//!
//! On the CPU (`f32`, `f64`) the loss is one fused kernel (a [`CustomOp2`]
//! over logits and labels: a max, an exp-sum and a pick per row, and the
//! gradient `(softmax − q)/N` in one pass); elsewhere, and as its reference,
//! it is composed from candle ops ([`softmax_cross_entropy_composed`]).

use candle_core::{CpuStorage, CustomOp2, D, DType, Layout, Shape, Tensor, WithDType};

use crate::error::ensure;
use crate::{Error, Result};

/// Mean softmax cross-entropy of `logits` `(N, C)` against integer `labels`
/// `(N)` (`u32`), with label smoothing `ε` (Szegedy et al. 2016, §7):
///
/// ```text
/// q = (1 − ε)·onehot(y) + ε/C
/// loss = −(1/N) Σ_n Σ_c q_nc · log softmax(z_n)_c
///      = (1/N) Σ_n [ −(1 − ε)·log p_n,y_n − (ε/C)·Σ_c log p_n,c ]
/// ```
///
/// This is PyTorch's `CrossEntropyLoss(label_smoothing=ε)` and optax's
/// `softmax_cross_entropy` with smoothed one-hot targets. The log-softmax is
/// shifted by the (detached) row maximum, so large logits do not overflow.
/// The result is a scalar tensor, differentiable through candle's autodiff.
///
/// # Errors
/// [`Error::BadInput`] if `logits` is not `(N, C)` with `N, C ≥ 1`, or `labels`
/// is not a `u32` vector of length `N`; [`Error::InvalidHyperparameter`] unless
/// `ε ∈ [0, 1]`; a candle error for a label `≥ C`.
///
/// ```
/// use bigbatch_optim::softmax_cross_entropy;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let logits = Tensor::new(&[[0f32, 0.], [0., 0.]], &Device::Cpu)?;
/// let labels = Tensor::new(&[0u32, 1], &Device::Cpu)?;
/// let loss = softmax_cross_entropy(&logits, &labels, 0.1)?.to_scalar::<f32>()?;
/// assert!((loss - 2f32.ln()).abs() < 1e-6); // uniform prediction: ln C
/// # Ok(()) }
/// ```
pub fn softmax_cross_entropy(
    logits: &Tensor,
    labels: &Tensor,
    label_smoothing: f64,
) -> Result<Tensor> {
    let classes = check(logits, labels, label_smoothing)?;
    let fused = logits.device().is_cpu() && matches!(logits.dtype(), DType::F32 | DType::F64);
    if !fused {
        return softmax_cross_entropy_composed(logits, labels, label_smoothing);
    }
    let op = SoftmaxCrossEntropy {
        eps: label_smoothing,
        classes,
    };
    Ok(logits.contiguous()?.apply_op2(&labels.contiguous()?, op)?)
}

/// [`softmax_cross_entropy`] composed from candle ops (any device and dtype,
/// autodiff backward): the reference the fused kernel is tested against.
///
/// # Errors
/// As [`softmax_cross_entropy`].
pub fn softmax_cross_entropy_composed(
    logits: &Tensor,
    labels: &Tensor,
    label_smoothing: f64,
) -> Result<Tensor> {
    let c = check(logits, labels, label_smoothing)?;
    let shifted = logits.broadcast_sub(&logits.max_keepdim(D::Minus1)?.detach())?;
    let log_norm = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    let log_p = shifted.broadcast_sub(&log_norm)?;
    let picked = log_p.gather(&labels.unsqueeze(1)?, 1)?.squeeze(1)?;
    let per_example = if label_smoothing == 0.0 {
        picked.neg()?
    } else {
        let uniform = log_p.sum(D::Minus1)?;
        (picked.affine(-(1.0 - label_smoothing), 0.)?
            + uniform.affine(-label_smoothing / c as f64, 0.)?)?
    };
    Ok(per_example.mean_all()?)
}

/// Validates the arguments; returns the number of classes.
fn check(logits: &Tensor, labels: &Tensor, label_smoothing: f64) -> Result<usize> {
    ensure(
        (0.0..=1.0).contains(&label_smoothing),
        "label_smoothing",
        label_smoothing,
        "must be in [0, 1]",
    )?;
    let (n, c) = match logits.dims() {
        &[n, c] if n > 0 && c > 0 => (n, c),
        found => {
            return Err(Error::BadInput {
                name: "logits",
                expected: "a (N, C) matrix with N, C >= 1",
                found: found.to_vec(),
            });
        }
    };
    if labels.dims() != [n] || labels.dtype() != DType::U32 {
        return Err(Error::BadInput {
            name: "labels",
            expected: "a u32 vector with one label per row of logits",
            found: labels.dims().to_vec(),
        });
    }
    Ok(c)
}

/// Per row: `m = max z`, `lse = m + log Σ exp(z − m)`, and the loss
/// `lse − (1 − ε) z_y − (ε/C) Σ z` (= `−Σ q log softmax(z)`).
/// Calls `grad(row, softmax − q)` when given. A label `≥ C` is an error.
fn rows<T: WithDType>(
    z: &[T],
    labels: &[u32],
    c: usize,
    eps: f64,
    mut grad: Option<&mut [T]>,
) -> candle_core::Result<f64> {
    let n = labels.len();
    let mut total = 0.0;
    let mut p = vec![0f64; c];
    for (i, (row, &y)) in z.chunks_exact(c).zip(labels).enumerate() {
        let y = y as usize;
        if y >= c {
            candle_core::bail!("softmax cross-entropy: label {y} is not below {c} classes");
        }
        let m = row.iter().fold(f64::NEG_INFINITY, |m, v| m.max(v.to_f64()));
        let mut sum = 0.0;
        let mut sum_z = 0.0;
        for (pj, v) in p.iter_mut().zip(row) {
            let v = v.to_f64();
            *pj = (v - m).exp();
            sum += *pj;
            sum_z += v;
        }
        let lse = m + sum.ln();
        total += lse - (1.0 - eps) * row[y].to_f64() - eps / c as f64 * sum_z;
        if let Some(g) = grad.as_deref_mut() {
            let dst = &mut g[i * c..][..c];
            for (j, (d, pj)) in dst.iter_mut().zip(&p).enumerate() {
                let q = eps / c as f64 + if j == y { 1.0 - eps } else { 0.0 };
                *d = T::from_f64((pj / sum - q) / n as f64);
            }
        }
    }
    Ok(total / n as f64)
}

fn contiguous<'a, T>(data: &'a [T], layout: &Layout) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("softmax cross-entropy: operands must be contiguous"),
    }
}

/// The fused loss over `(logits, labels)`; its backward is [`SoftmaxCrossEntropyGrad`].
struct SoftmaxCrossEntropy {
    eps: f64,
    classes: usize,
}

impl CustomOp2 for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "bigbatch-softmax-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::U32(labels) = s2 else {
            candle_core::bail!("softmax cross-entropy: labels must be u32");
        };
        let labels = contiguous(labels, l2)?;
        let (c, eps) = (self.classes, self.eps);
        let out = match s1 {
            CpuStorage::F32(z) => {
                CpuStorage::F32(vec![rows(contiguous(z, l1)?, labels, c, eps, None)? as f32])
            }
            CpuStorage::F64(z) => {
                CpuStorage::F64(vec![rows(contiguous(z, l1)?, labels, c, eps, None)?])
            }
            _ => candle_core::bail!("softmax cross-entropy: logits must be f32 or f64"),
        };
        Ok((out, Shape::from(())))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        labels: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let op = SoftmaxCrossEntropyGrad {
            eps: self.eps,
            classes: self.classes,
        };
        let dz = logits.apply_op2_no_bwd(labels, &op)?;
        Ok((Some(dz.broadcast_mul(grad)?), None))
    }
}

/// `∂loss/∂z = (softmax(z) − q)/N`.
struct SoftmaxCrossEntropyGrad {
    eps: f64,
    classes: usize,
}

impl CustomOp2 for SoftmaxCrossEntropyGrad {
    fn name(&self) -> &'static str {
        "bigbatch-softmax-cross-entropy-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let CpuStorage::U32(labels) = s2 else {
            candle_core::bail!("softmax cross-entropy: labels must be u32");
        };
        let labels = contiguous(labels, l2)?;
        let (c, eps) = (self.classes, self.eps);
        let out = match s1 {
            CpuStorage::F32(z) => {
                let mut g = vec![0f32; labels.len() * c];
                rows(contiguous(z, l1)?, labels, c, eps, Some(&mut g))?;
                CpuStorage::F32(g)
            }
            CpuStorage::F64(z) => {
                let mut g = vec![0f64; labels.len() * c];
                rows(contiguous(z, l1)?, labels, c, eps, Some(&mut g))?;
                CpuStorage::F64(g)
            }
            _ => candle_core::bail!("softmax cross-entropy: logits must be f32 or f64"),
        };
        Ok((out, l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// Golden values from numpy (float64), independent of candle:
    ///
    /// ```python
    /// import numpy as np
    /// z = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]]); y = np.array([0, 2]); eps = 0.2
    /// logp = z - z.max(1, keepdims=True); logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    /// q = (1 - eps) * np.eye(3)[y] + eps / 3
    /// print(-(q * logp).sum(1).mean())            # 0.5154563805893112
    /// p = np.exp(logp); print(((p - q) / 2).tolist())  # d loss / d z
    /// # [[-0.04053481603869541, -0.013777046697989608, 0.054311862736685],
    /// #  [-0.008677669754195087, -0.006084610979812808, 0.014762280734007815]]
    /// ```
    #[test]
    fn smoothed_loss_and_gradient_match_numpy() -> Result<()> {
        let d = Device::Cpu;
        let z = Var::new(&[[2f64, -1.0, 0.5], [0.1, 0.2, 3.0]], &d)?;
        let y = Tensor::new(&[0u32, 2], &d)?;
        let loss = softmax_cross_entropy(z.as_tensor(), &y, 0.2)?;
        assert!((loss.to_scalar::<f64>()? - 0.5154563805893112).abs() < 1e-12);
        let grad = loss
            .backward()?
            .get(z.as_tensor())
            .expect("grad")
            .to_vec2::<f64>()?;
        let want = [
            [
                -0.04053481603869541,
                -0.013777046697989608,
                0.054311862736685,
            ],
            [
                -0.008677669754195087,
                -0.006084610979812808,
                0.014762280734007815,
            ],
        ];
        for (g, w) in grad.iter().flatten().zip(want.iter().flatten()) {
            assert!((g - w).abs() < 1e-12, "{g} vs {w}");
        }
        Ok(())
    }

    fn logits(n: usize, c: usize, seed: usize) -> Vec<f64> {
        (0..n * c)
            .map(|i| (((i + seed) * 7919 % 1013) as f64 / 1013.0 - 0.5) * 8.0)
            .collect()
    }

    #[test]
    fn fused_kernel_equals_the_composed_loss_and_finite_differences() -> Result<()> {
        let d = Device::Cpu;
        for (n, c) in [(1, 1), (1, 10), (5, 3), (32, 10), (7, 1000)] {
            let labels: Vec<u32> = (0..n).map(|i| ((i * 5 + 1) % c) as u32).collect();
            let y = Tensor::new(labels.as_slice(), &d)?;
            for eps in [0.0, 0.1, 1.0] {
                for dtype in [DType::F64, DType::F32] {
                    let tol = if dtype == DType::F64 { 1e-12 } else { 1e-5 };
                    let z = Tensor::from_vec(logits(n, c, n + c), (n, c), &d)?.to_dtype(dtype)?;
                    let z = Var::from_tensor(&z)?;
                    let mut out = Vec::new();
                    for f in [softmax_cross_entropy, softmax_cross_entropy_composed] {
                        let loss = f(z.as_tensor(), &y, eps)?;
                        let g = loss.backward()?.get(z.as_tensor()).expect("grad").clone();
                        out.push((loss.to_dtype(DType::F64)?.to_scalar::<f64>()?, g));
                    }
                    let what = format!("n={n} c={c} eps={eps} {dtype:?}");
                    assert!(
                        (out[0].0 - out[1].0).abs() < tol * (1.0 + out[1].0.abs()),
                        "{what}"
                    );
                    let dg = (&out[0].1 - &out[1].1)?.abs()?.flatten_all()?.max(0)?;
                    assert!(dg.to_dtype(DType::F64)?.to_scalar::<f64>()? < tol, "{what}");
                    if dtype == DType::F64 && n * c <= 40 {
                        let g = out[0].1.flatten_all()?.to_vec1::<f64>()?;
                        let flat = z.as_tensor().flatten_all()?.to_vec1::<f64>()?;
                        for j in 0..flat.len() {
                            let at = |h: f64| -> Result<f64> {
                                let mut v = flat.clone();
                                v[j] += h;
                                let z = Tensor::from_vec(v, (n, c), &d)?;
                                Ok(softmax_cross_entropy(&z, &y, eps)?.to_scalar::<f64>()?)
                            };
                            let fd = (at(1e-6)? - at(-1e-6)?) / 2e-6;
                            assert!((fd - g[j]).abs() < 1e-7, "{what} [{j}]: {fd} vs {}", g[j]);
                        }
                    }
                }
            }
        }
        // Out-of-range labels are an error on both paths.
        let z = Tensor::zeros((2, 3), DType::F32, &d)?;
        let bad = Tensor::new(&[0u32, 3], &d)?;
        assert!(softmax_cross_entropy(&z, &bad, 0.0).is_err());
        Ok(())
    }

    #[test]
    fn bad_inputs_are_rejected() -> Result<()> {
        let d = Device::Cpu;
        let z = Tensor::zeros((2, 3), DType::F32, &d)?;
        let y = Tensor::new(&[0u32, 1], &d)?;
        assert!(matches!(
            softmax_cross_entropy(&z, &y, 1.5),
            Err(Error::InvalidHyperparameter {
                name: "label_smoothing",
                ..
            })
        ));
        assert!(matches!(
            softmax_cross_entropy(&z.flatten_all()?, &y, 0.0),
            Err(Error::BadInput { name: "logits", .. })
        ));
        assert!(matches!(
            softmax_cross_entropy(&z, &Tensor::new(&[0i64, 1], &d)?, 0.0),
            Err(Error::BadInput { name: "labels", .. })
        ));
        Ok(())
    }
}
