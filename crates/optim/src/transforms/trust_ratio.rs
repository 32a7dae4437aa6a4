//! Layer-wise trust ratios: LARS (You et al. 2017) and LAMB (You et al. 2020).

use crate::error::{ensure, ensure_non_negative};
use crate::fuse::{FuseVisitor, Reduction, per_parameter};
use crate::num::Num;
use crate::{Plan, Result, Transform, Tree};

/// Which trust ratio [`scale_by_trust_ratio`] computes, per parameter tensor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum TrustRatio {
    /// LAMB's ratio `‖w‖ / ‖u‖` of the weight norm to the update norm
    /// (You et al. 2020, Algorithm 2; optax's `scale_by_trust_ratio`).
    Lamb,
    /// LARS's local learning rate `η·‖w‖ / (‖g‖ + λ‖w‖)` (You et al. 2017, eq. 6;
    /// the MLPerf ResNet-50 reference). The incoming update must be `u = g + λw`
    /// from [`crate::add_decayed_weights`]`(λ)`; `‖g‖` is recovered as `‖u − λw‖`.
    Lars {
        /// The trust coefficient `η` (0.001 in You et al. 2017).
        eta: f64,
        /// The weight decay `λ` that was added to the gradient before.
        weight_decay: f64,
    },
}

/// Hyperparameters of [`scale_by_trust_ratio`]: the form, an `ε` in the
/// denominator and optional bounds on the ratio.
///
/// ```
/// use bigbatch_optim::{TrustRatio, TrustRatioConfig};
/// let bounded = TrustRatioConfig::lamb().with_bounds(Some(0.0), Some(10.0));
/// assert_eq!(bounded.form, TrustRatio::Lamb);
/// assert_eq!(bounded.max_ratio, Some(10.0));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TrustRatioConfig {
    /// LARS or LAMB form.
    pub form: TrustRatio,
    /// Added to the denominator (0, as in both papers; optax's `eps`).
    pub eps: f64,
    /// Lower bound on the ratio, if any.
    pub min_ratio: Option<f64>,
    /// Upper bound on the ratio, if any.
    pub max_ratio: Option<f64>,
}

impl TrustRatioConfig {
    /// LAMB's unbounded `‖w‖ / ‖u‖`.
    pub fn lamb() -> Self {
        Self {
            form: TrustRatio::Lamb,
            eps: 0.0,
            min_ratio: None,
            max_ratio: None,
        }
    }

    /// LARS's unbounded `η‖w‖ / (‖g‖ + λ‖w‖)`.
    pub fn lars(eta: f64, weight_decay: f64) -> Self {
        Self {
            form: TrustRatio::Lars { eta, weight_decay },
            ..Self::lamb()
        }
    }

    /// The same ratio, clipped to `[min_ratio, max_ratio]` (either side optional).
    pub fn with_bounds(self, min_ratio: Option<f64>, max_ratio: Option<f64>) -> Self {
        Self {
            min_ratio,
            max_ratio,
            ..self
        }
    }

    fn validate(&self) -> Result<()> {
        ensure_non_negative("eps", self.eps)?;
        if let TrustRatio::Lars { eta, weight_decay } = self.form {
            ensure(
                eta.is_finite() && eta > 0.0,
                "eta",
                eta,
                "must be finite and > 0",
            )?;
            ensure_non_negative("weight_decay", weight_decay)?;
        }
        if let Some(lo) = self.min_ratio {
            ensure_non_negative("min_ratio", lo)?;
        }
        if let Some(hi) = self.max_ratio {
            ensure(
                hi.is_finite() && hi > 0.0,
                "max_ratio",
                hi,
                "must be finite and > 0",
            )?;
            let lo = self.min_ratio.unwrap_or(0.0);
            ensure(hi >= lo, "max_ratio", hi, "must be >= min_ratio")?;
        }
        Ok(())
    }

    /// The ratio from the norms, with the zero-norm fallback and the bounds.
    pub(crate) fn ratio(&self, w_norm: f64, u_norm: f64) -> f64 {
        let (num, den, other) = match self.form {
            TrustRatio::Lamb => (w_norm, u_norm + self.eps, u_norm),
            TrustRatio::Lars { eta, weight_decay } => (
                eta * w_norm,
                u_norm + weight_decay * w_norm + self.eps,
                u_norm,
            ),
        };
        if !(w_norm > 0.0 && other > 0.0 && den > 0.0) {
            return 1.0;
        }
        let mut r = num / den;
        if let Some(lo) = self.min_ratio {
            r = r.max(lo);
        }
        if let Some(hi) = self.max_ratio {
            r = r.min(hi);
        }
        r
    }
}

/// Rescales each parameter's update by a layer-wise trust ratio; see [`scale_by_trust_ratio`].
#[derive(Clone, Copy, Debug)]
pub struct ScaleByTrustRatio {
    cfg: TrustRatioConfig,
}

/// Layer-wise adaptation: `u_l ↦ r_l · u_l` for each parameter tensor `l`, with
///
/// ```text
/// LAMB: r = ‖w‖ / (‖u‖ + ε)                 (You et al. 2020, Algorithm 2)
/// LARS: r = η‖w‖ / (‖g‖ + λ‖w‖ + ε)          (You et al. 2017, eq. 6), g = u − λw
/// r ← clip(r, min_ratio, max_ratio)          (when bounds are given)
/// r = 1                       if ‖w‖ = 0 or ‖u‖ (LARS: ‖g‖) = 0
/// ```
///
/// The zero-norm fallback (exempt from the bounds) keeps freshly zero-initialised parameters (biases,
/// batch-norm shifts) moving, as in optax and the MLPerf reference. Norms are
/// taken per tensor on the device, then read back in one transfer; fused, they
/// are summed in f64 in a pass of their own before the update's pass.
///
/// # Errors
/// `init` returns [`crate::Error::InvalidHyperparameter`] if `ε < 0`, `η ≤ 0`,
/// `λ < 0`, or the bounds are negative or reversed.
///
/// ```
/// use bigbatch_optim::{scale_by_trust_ratio, TrustRatioConfig, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut w = Tree::new();
/// w.insert("w", Tensor::new(&[3f64, 4.], &Device::Cpu)?); // ‖w‖ = 5
/// let mut u = Tree::new();
/// u.insert("w", Tensor::new(&[0f64, 0.5], &Device::Cpu)?); // ‖u‖ = 0.5
/// let tx = scale_by_trust_ratio(TrustRatioConfig::lamb());
/// let (out, _) = tx.update(u.clone(), tx.init(&w)?, &w)?;
/// assert_eq!(out.get("w").unwrap().to_vec1::<f64>()?, [0., 5.]); // r = 10
/// let tx = scale_by_trust_ratio(TrustRatioConfig::lamb().with_bounds(None, Some(2.)));
/// let (out, _) = tx.update(u, tx.init(&w)?, &w)?;
/// assert_eq!(out.get("w").unwrap().to_vec1::<f64>()?, [0., 1.]);
/// # Ok(()) }
/// ```
pub fn scale_by_trust_ratio(cfg: TrustRatioConfig) -> ScaleByTrustRatio {
    ScaleByTrustRatio { cfg }
}

impl Transform for ScaleByTrustRatio {
    type State = ();

    fn init(&self, _: &Tree) -> Result<()> {
        self.cfg.validate()
    }

    fn update(&self, updates: Tree, state: (), params: &Tree) -> Result<(Tree, ())> {
        Ok((per_parameter(self, updates, params)?, state))
    }

    fn fusable(&self) -> bool {
        true
    }

    fn fuse_kernel<V: FuseVisitor>(
        &self,
        state: (),
        plan: &mut Plan,
        v: V,
    ) -> Result<((), V::Out)> {
        let kernel = plan.reduce(*self);
        Ok((state, v.visit(plan, kernel)?))
    }
}

impl Reduction for ScaleByTrustRatio {
    fn reads_weight(&self) -> bool {
        true
    }

    /// LAMB: `u`; LARS: `g = u − λw`.
    #[inline(always)]
    fn measure<T: Num>(&self, u: &T, w: &T) -> Result<T, T::Error> {
        match self.cfg.form {
            TrustRatio::Lars { weight_decay, .. } if weight_decay > 0.0 => {
                u.sub(&w.affine(weight_decay, 0.)?)
            }
            _ => Ok(u.clone()),
        }
    }

    fn factor(&self, w_sq: f64, u_sq: f64) -> f64 {
        self.cfg.ratio(w_sq.sqrt(), u_sq.sqrt())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use candle_core::{Device, Tensor};

    fn one(name: &str, v: &[f64]) -> Tree {
        let mut t = Tree::new();
        t.insert(name, Tensor::new(v, &Device::Cpu).unwrap());
        t
    }

    #[test]
    fn ratio_forms_fallbacks_and_bounds() {
        let lamb = TrustRatioConfig::lamb();
        assert_eq!(lamb.ratio(5.0, 0.5), 10.0);
        assert_eq!(lamb.ratio(0.0, 0.5), 1.0);
        assert_eq!(lamb.ratio(5.0, 0.0), 1.0);
        assert_eq!(lamb.with_bounds(Some(20.0), None).ratio(5.0, 0.5), 20.0);
        assert_eq!(lamb.with_bounds(Some(0.1), Some(0.5)).ratio(0.0, 0.0), 1.0);
        let lars = TrustRatioConfig::lars(0.001, 0.5);
        // η‖w‖/(‖g‖ + λ‖w‖) = 0.001·4/(1 + 2)
        assert!((lars.ratio(4.0, 1.0) - 0.004 / 3.0).abs() < 1e-15);
        assert_eq!(lars.ratio(4.0, 0.0), 1.0);
    }

    #[test]
    fn lars_recovers_the_gradient_norm() -> Result<()> {
        // w = (3, 4), g = (0, 1), λ = 0.5: u = g + λw = (1.5, 3),
        // r = 0.1·5 / (1 + 2.5) = 1/7.
        let w = one("w", &[3.0, 4.0]);
        let u = one("w", &[1.5, 3.0]);
        let tx = scale_by_trust_ratio(TrustRatioConfig::lars(0.1, 0.5));
        let (out, ()) = tx.update(u, tx.init(&w)?, &w)?;
        let out = out.get("w").unwrap().to_vec1::<f64>()?;
        assert!((out[0] - 1.5 / 7.0).abs() < 1e-15 && (out[1] - 3.0 / 7.0).abs() < 1e-15);
        Ok(())
    }

    #[test]
    fn invalid_configs_are_rejected() {
        let w = one("w", &[1.0]);
        let init = |c: TrustRatioConfig| scale_by_trust_ratio(c).init(&w);
        assert!(matches!(
            init(TrustRatioConfig::lars(0.0, 0.0)),
            Err(Error::InvalidHyperparameter { name: "eta", .. })
        ));
        assert!(matches!(
            init(TrustRatioConfig::lamb().with_bounds(Some(2.0), Some(1.0))),
            Err(Error::InvalidHyperparameter {
                name: "max_ratio",
                ..
            })
        ));
        assert!(matches!(
            init(TrustRatioConfig::lamb().with_bounds(Some(-1.0), None)),
            Err(Error::InvalidHyperparameter {
                name: "min_ratio",
                ..
            })
        ));
    }
}
