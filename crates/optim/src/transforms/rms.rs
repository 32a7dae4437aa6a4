//! RMSprop's running average of squared gradients (Tieleman & Hinton 2012).

use crate::error::{ensure_non_negative, ensure_unit};
use crate::fuse::{Elementwise, FuseVisitor, apply, state_of};
use crate::num::Num;
use crate::state::key;
use crate::{OptState, Plan, Result, Transform, Tree};

/// Hyperparameters of [`scale_by_rms`]; the defaults are PyTorch's `RMSprop`.
///
/// ```
/// use bigbatch_optim::RmsConfig;
/// let cfg = RmsConfig { centered: true, ..RmsConfig::default() };
/// assert_eq!((cfg.decay, cfg.eps), (0.99, 1e-8));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsConfig {
    /// Decay of the squared-gradient average, PyTorch's `alpha` (0.99).
    pub decay: f64,
    /// Added to the denominator, `ε` (1e-8).
    pub eps: f64,
    /// Divide by the standard deviation instead of the RMS (Graves 2013).
    pub centered: bool,
    /// Put `ε` inside the square root, as optax's `scale_by_rms` does (`false`:
    /// outside, as PyTorch does).
    pub eps_in_sqrt: bool,
    /// The initial value of the squared-gradient average (0; optax's `initial_scale`).
    pub initial_scale: f64,
}

impl Default for RmsConfig {
    fn default() -> Self {
        Self {
            decay: 0.99,
            eps: 1e-8,
            centered: false,
            eps_in_sqrt: false,
            initial_scale: 0.0,
        }
    }
}

/// Rescales updates by a running RMS of past gradients; see [`scale_by_rms`].
#[derive(Clone, Copy, Debug)]
pub struct ScaleByRms {
    cfg: RmsConfig,
}

/// The state of [`ScaleByRms`].
#[derive(Clone, Debug)]
pub struct RmsState {
    /// Running average of `g²`, per parameter.
    pub nu: Tree,
    /// Running average of `g` (centered form only; empty otherwise).
    pub mu: Tree,
}

/// RMSprop's preconditioner (Tieleman & Hinton 2012; centered: Graves 2013):
///
/// ```text
/// v ← α·v + (1 − α)·g²
/// m ← α·m + (1 − α)·g                      (centered only)
/// u = g / (√(v − m²) + ε)                   (centered; √v without centering)
/// ```
///
/// This is PyTorch's `RMSprop` (ε outside the root). optax's `scale_by_rms`
/// puts ε inside, `g / √(v + ε)`, and starts `v` at `initial_scale`; set
/// [`RmsConfig::eps_in_sqrt`] and [`RmsConfig::initial_scale`] to match it.
///
/// # Errors
/// `init` returns [`crate::Error::InvalidHyperparameter`] unless `α ∈ [0, 1)`
/// and `ε, initial_scale ≥ 0`.
///
/// ```
/// use bigbatch_optim::{scale_by_rms, RmsConfig, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[2f64], &Device::Cpu)?);
/// let tx = scale_by_rms(RmsConfig { decay: 0.75, eps: 0.0, ..RmsConfig::default() });
/// let (u, _) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// // v = 0.25·4 = 1, so u = g / 1
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [2.]);
/// # Ok(()) }
/// ```
pub fn scale_by_rms(cfg: RmsConfig) -> ScaleByRms {
    ScaleByRms { cfg }
}

impl Transform for ScaleByRms {
    type State = RmsState;

    fn init(&self, params: &Tree) -> Result<RmsState> {
        ensure_unit("decay", self.cfg.decay)?;
        ensure_non_negative("eps", self.cfg.eps)?;
        ensure_non_negative("initial_scale", self.cfg.initial_scale)?;
        let init = self.cfg.initial_scale;
        Ok(RmsState {
            nu: params.map(|_, p| Ok(p.zeros_like()?.affine(1.0, init)?))?,
            mu: if self.cfg.centered {
                params.zeros_like()?
            } else {
                Tree::new()
            },
        })
    }

    fn update(&self, updates: Tree, state: RmsState, params: &Tree) -> Result<(Tree, RmsState)> {
        let step = RmsStep(self.cfg);
        if self.cfg.centered {
            let (updates, [nu, mu]) = apply(&step, &updates, params, [&state.nu, &state.mu])?;
            Ok((updates, RmsState { nu, mu }))
        } else {
            let (updates, [nu]) = apply(&step, &updates, params, [&state.nu])?;
            Ok((updates, RmsState { nu, mu: state.mu }))
        }
    }

    fn fusable(&self) -> bool {
        true
    }

    fn fuse_kernel<V: FuseVisitor>(
        &self,
        state: RmsState,
        plan: &mut Plan,
        v: V,
    ) -> Result<(RmsState, V::Out)> {
        let step = RmsStep(self.cfg);
        let out = if self.cfg.centered {
            let averages = [&state.nu, &state.mu];
            let kernel = plan.stateful::<_, 2>(step, true, |name| state_of(&averages, name))?;
            v.visit(plan, kernel)?
        } else {
            let kernel = plan.stateful::<_, 1>(step, true, |name| state_of(&[&state.nu], name))?;
            v.visit(plan, kernel)?
        };
        Ok((state, out))
    }
}

/// RMSprop's update: the averages of `g²` (and `g`, centered) and the
/// rescaled gradient.
#[derive(Clone, Copy, Debug)]
struct RmsStep(RmsConfig);

impl RmsStep {
    /// `v ← α·v + (1 − α)·g²`; centered, also `m ← α·m + (1 − α)·g`
    #[inline(always)]
    fn average<T: Num>(&self, g: &T, nu: &mut T, mu: Option<&mut T>) -> Result<(), T::Error> {
        let decay = self.0.decay;
        *nu = g
            .sqr()?
            .affine(1.0 - decay, 0.)?
            .add(&nu.affine(decay, 0.)?)?;
        if let Some(mu) = mu {
            *mu = g.affine(1.0 - decay, 0.)?.add(&mu.affine(decay, 0.)?)?;
        }
        Ok(())
    }

    /// `g / (√(v − m²) + ε)` centered, `g / (√v + ε)` otherwise; with
    /// `eps_in_sqrt`, `ε` inside the root
    #[inline(always)]
    fn direction<T: Num>(&self, g: &T, nu: &T, mu: Option<&T>) -> Result<T, T::Error> {
        let var = match mu {
            Some(mu) => nu.sub(&mu.sqr()?)?,
            None => nu.clone(),
        };
        let denom = if self.0.eps_in_sqrt {
            var.affine(1.0, self.0.eps)?.sqrt()?
        } else {
            var.sqrt()?.affine(1.0, self.0.eps)?
        };
        g.div(&denom)
    }
}

/// Uncentered: the state is `v`.
impl Elementwise<1> for RmsStep {
    #[inline(always)]
    fn advance<T: Num>(&self, g: &T, _: &T, [nu]: &mut [T; 1]) -> Result<(), T::Error> {
        self.average(g, nu, None)
    }

    #[inline(always)]
    fn output<T: Num>(&self, g: &T, _: &T, [nu]: &[T; 1]) -> Result<T, T::Error> {
        self.direction(g, nu, None)
    }
}

/// Centered: the state is `v` and `m`.
impl Elementwise<2> for RmsStep {
    #[inline(always)]
    fn advance<T: Num>(&self, g: &T, _: &T, [nu, mu]: &mut [T; 2]) -> Result<(), T::Error> {
        self.average(g, nu, Some(mu))
    }

    #[inline(always)]
    fn output<T: Num>(&self, g: &T, _: &T, [nu, mu]: &[T; 2]) -> Result<T, T::Error> {
        self.direction(g, nu, Some(mu))
    }
}

/// Saved as `prefix.nu.<name>` and, when centered, `prefix.mu.<name>`.
impl OptState for RmsState {
    fn save(&self, prefix: &str, out: &mut Tree) -> Result<()> {
        self.nu.save(&key(prefix, "nu"), out)?;
        self.mu.save(&key(prefix, "mu"), out)
    }

    fn load(&mut self, prefix: &str, saved: &Tree) -> Result<()> {
        self.nu.load(&key(prefix, "nu"), saved)?;
        self.mu.load(&key(prefix, "mu"), saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use candle_core::{Device, Tensor};

    fn tree(v: f64) -> Tree {
        let mut t = Tree::new();
        t.insert("w", Tensor::new(&[v], &Device::Cpu).unwrap());
        t
    }

    fn first(u: &Tree) -> f64 {
        u.get("w").unwrap().to_vec1::<f64>().unwrap()[0]
    }

    #[test]
    fn centered_and_eps_placement_by_hand() -> Result<()> {
        // α = 0.5, g = 2: v = 2, m = 1, centered var = 2 − 1 = 1.
        let p = tree(0.0);
        let run = |cfg: RmsConfig| -> Result<f64> {
            let tx = scale_by_rms(cfg);
            Ok(first(&tx.update(tree(2.0), tx.init(&p)?, &p)?.0))
        };
        let base = RmsConfig {
            decay: 0.5,
            eps: 0.25,
            ..Default::default()
        };
        assert!((run(base)? - 2.0 / (2f64.sqrt() + 0.25)).abs() < 1e-12);
        let c = RmsConfig {
            centered: true,
            ..base
        };
        assert!((run(c)? - 2.0 / 1.25).abs() < 1e-12);
        let o = RmsConfig {
            eps_in_sqrt: true,
            ..base
        };
        assert!((run(o)? - 2.0 / 2.25f64.sqrt()).abs() < 1e-12);
        let i = RmsConfig {
            initial_scale: 2.0,
            ..base
        };
        assert!((run(i)? - 2.0 / (3f64.sqrt() + 0.25)).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn invalid_decay_is_rejected() {
        let tx = scale_by_rms(RmsConfig {
            decay: 1.5,
            ..Default::default()
        });
        assert!(matches!(
            tx.init(&tree(0.0)),
            Err(Error::InvalidHyperparameter { name: "decay", .. })
        ));
    }
}
