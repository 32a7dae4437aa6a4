//! Losses that belong with training recipes: softmax cross-entropy with label smoothing.

use candle_core::{D, DType, Tensor};

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
