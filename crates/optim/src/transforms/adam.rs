//! Adam's bias-corrected moment estimates (Kingma & Ba 2015).

use crate::error::{ensure, ensure_non_negative, ensure_unit};
use crate::fuse::{Elementwise, FuseVisitor, apply, state_of};
use crate::num::Num;
use crate::state::key;
use crate::{OptState, Plan, Result, Transform, Tree};

/// Hyperparameters of [`scale_by_adam`]; the defaults are PyTorch's and optax's.
///
/// ```
/// use bigbatch_optim::AdamConfig;
/// let cfg = AdamConfig { b2: 0.98, ..AdamConfig::default() };
/// assert_eq!((cfg.b1, cfg.eps), (0.9, 1e-8));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Decay of the first moment, `β₁` (0.9).
    pub b1: f64,
    /// Decay of the second moment, `β₂` (0.999).
    pub b2: f64,
    /// Added outside the square root, `ε` (1e-8).
    pub eps: f64,
    /// Added inside the square root, `ε_root` (0); optax's `eps_root`.
    pub eps_root: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            b1: 0.9,
            b2: 0.999,
            eps: 1e-8,
            eps_root: 0.0,
        }
    }
}

impl AdamConfig {
    fn validate(&self) -> Result<()> {
        ensure_unit("b1", self.b1)?;
        ensure_unit("b2", self.b2)?;
        ensure_non_negative("eps", self.eps)?;
        ensure_non_negative("eps_root", self.eps_root)?;
        ensure(
            self.eps > 0.0 || self.eps_root > 0.0,
            "eps",
            self.eps,
            "eps and eps_root cannot both be 0",
        )
    }
}

/// Rescales updates by Adam's moment estimates; see [`scale_by_adam`].
#[derive(Clone, Copy, Debug)]
pub struct ScaleByAdam {
    cfg: AdamConfig,
}

/// The state of [`ScaleByAdam`]: the step count and both moments.
#[derive(Clone, Debug)]
pub struct AdamState {
    /// Updates so far, `t`.
    pub count: u64,
    /// First moment `m`, per parameter.
    pub mu: Tree,
    /// Second moment `v`, per parameter.
    pub nu: Tree,
}

/// Adam's preconditioner (Kingma & Ba 2015, Algorithm 1):
///
/// ```text
/// m ← β₁·m + (1 − β₁)·g
/// v ← β₂·v + (1 − β₂)·g²
/// u = m̂ / (√(v̂ + ε_root) + ε),   m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)
/// ```
///
/// `ε` outside the root is PyTorch's `Adam(eps=…)` and optax's `eps`; `ε_root`
/// inside the root is optax's `eps_root` (0 in PyTorch). The bias corrections
/// are folded into one scaling of the denominator, so a step costs four passes.
///
/// # Errors
/// `init` returns [`crate::Error::InvalidHyperparameter`] unless `β₁, β₂ ∈ [0, 1)`,
/// `ε, ε_root ≥ 0` and not both 0.
///
/// ```
/// use bigbatch_optim::{scale_by_adam, AdamConfig, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[0.5f64, -2.], &Device::Cpu)?);
/// let tx = scale_by_adam(AdamConfig::default());
/// let (u, state) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// // The first bias-corrected step is (almost) the sign of the gradient.
/// let u = u.get("w").unwrap().to_vec1::<f64>()?;
/// assert!((u[0] - 1.).abs() < 1e-7 && (u[1] + 1.).abs() < 1e-7);
/// assert_eq!(state.count, 1);
/// # Ok(()) }
/// ```
pub fn scale_by_adam(cfg: AdamConfig) -> ScaleByAdam {
    ScaleByAdam { cfg }
}

impl Transform for ScaleByAdam {
    type State = AdamState;

    fn init(&self, params: &Tree) -> Result<AdamState> {
        self.cfg.validate()?;
        Ok(AdamState {
            count: 0,
            mu: params.zeros_like()?,
            nu: params.zeros_like()?,
        })
    }

    fn update(&self, updates: Tree, state: AdamState, params: &Tree) -> Result<(Tree, AdamState)> {
        let count = state.count + 1;
        let step = AdamStep::new(self.cfg, count);
        let (updates, [mu, nu]) = apply(&step, &updates, params, [&state.mu, &state.nu])?;
        Ok((updates, AdamState { count, mu, nu }))
    }

    fn fusable(&self) -> bool {
        true
    }

    fn fuse_kernel<V: FuseVisitor>(
        &self,
        state: AdamState,
        plan: &mut Plan,
        v: V,
    ) -> Result<(AdamState, V::Out)> {
        let count = state.count + 1;
        let moments = [&state.mu, &state.nu];
        let kernel = plan.stateful(AdamStep::new(self.cfg, count), true, |name| {
            state_of(&moments, name)
        })?;
        let out = v.visit(plan, kernel)?;
        Ok((AdamState { count, ..state }, out))
    }
}

/// Adam's update at step `t`: the hyperparameters and the bias corrections
/// `bc1 = 1 − β₁ᵗ`, `bc2 = 1 − β₂ᵗ`.
#[derive(Clone, Copy, Debug)]
struct AdamStep {
    cfg: AdamConfig,
    bc1: f64,
    bc2: f64,
}

impl AdamStep {
    fn new(cfg: AdamConfig, count: u64) -> Self {
        let t = i32::try_from(count).unwrap_or(i32::MAX);
        Self {
            cfg,
            bc1: 1.0 - cfg.b1.powi(t),
            bc2: 1.0 - cfg.b2.powi(t),
        }
    }
}

impl Elementwise<2> for AdamStep {
    /// `m ← (1 − β₁)·g + β₁·m`, `v ← (1 − β₂)·g² + β₂·v`
    #[inline(always)]
    fn advance<T: Num>(&self, g: &T, _: &T, [m, v]: &mut [T; 2]) -> Result<(), T::Error> {
        let AdamConfig { b1, b2, .. } = self.cfg;
        *m = g.affine(1.0 - b1, 0.)?.add(&m.affine(b1, 0.)?)?;
        *v = g.sqr()?.affine(1.0 - b2, 0.)?.add(&v.affine(b2, 0.)?)?;
        Ok(())
    }

    /// `m̂ / (√(v̂ + ε_root) + ε) = m / ((√(v/bc2 + ε_root) + ε)·bc1)`
    #[inline(always)]
    fn output<T: Num>(&self, _: &T, _: &T, [m, v]: &[T; 2]) -> Result<T, T::Error> {
        let AdamConfig { eps, eps_root, .. } = self.cfg;
        let denom = v
            .affine(1.0 / self.bc2, eps_root)?
            .sqrt()?
            .affine(self.bc1, eps * self.bc1)?;
        m.div(&denom)
    }

    fn output_reads_update(&self) -> bool {
        false
    }
}

/// Saved as `prefix.count`, `prefix.mu.<name>`, `prefix.nu.<name>`.
impl OptState for AdamState {
    fn save(&self, prefix: &str, out: &mut Tree) -> Result<()> {
        self.count.save(&key(prefix, "count"), out)?;
        self.mu.save(&key(prefix, "mu"), out)?;
        self.nu.save(&key(prefix, "nu"), out)
    }

    fn load(&mut self, prefix: &str, saved: &Tree) -> Result<()> {
        self.count.load(&key(prefix, "count"), saved)?;
        self.mu.load(&key(prefix, "mu"), saved)?;
        self.nu.load(&key(prefix, "nu"), saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use candle_core::{Device, Tensor};

    fn tree(v: &[f64]) -> Tree {
        let mut t = Tree::new();
        t.insert("w", Tensor::new(v, &Device::Cpu).unwrap());
        t
    }

    #[test]
    fn two_steps_by_hand() -> Result<()> {
        // g1 = 1, g2 = 3, β₁ = 0.5, β₂ = 0.75, ε = 0:
        // m1 = .5, v1 = .25 → u1 = (.5/.5)/√(.25/.25) = 1
        // m2 = .25 + 1.5 = 1.75, v2 = .1875 + 2.25 = 2.4375
        // u2 = (1.75/.75)/√(2.4375/.4375) = 2.3333…/2.3604… = 0.98852…
        let cfg = AdamConfig {
            b1: 0.5,
            b2: 0.75,
            eps: 0.0,
            eps_root: 1e-300,
        };
        let tx = scale_by_adam(cfg);
        let p = tree(&[0.0]);
        let (u, s) = tx.update(tree(&[1.0]), tx.init(&p)?, &p)?;
        assert!((u.get("w").unwrap().to_vec1::<f64>()?[0] - 1.0).abs() < 1e-12);
        let (u, _) = tx.update(tree(&[3.0]), s, &p)?;
        let want = (1.75 / 0.75) / (2.4375f64 / 0.4375).sqrt();
        assert!((u.get("w").unwrap().to_vec1::<f64>()?[0] - want).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn invalid_config_is_rejected() {
        let p = tree(&[0.0]);
        let bad = |cfg: AdamConfig| scale_by_adam(cfg).init(&p);
        assert!(matches!(
            bad(AdamConfig {
                b1: 1.0,
                ..Default::default()
            }),
            Err(Error::InvalidHyperparameter { name: "b1", .. })
        ));
        assert!(matches!(
            bad(AdamConfig {
                b2: -0.5,
                ..Default::default()
            }),
            Err(Error::InvalidHyperparameter { name: "b2", .. })
        ));
        assert!(matches!(
            bad(AdamConfig {
                eps: 0.0,
                ..Default::default()
            }),
            Err(Error::InvalidHyperparameter { name: "eps", .. })
        ));
    }
}
