//! Adam's bias-corrected moment estimates (Kingma & Ba 2015).

use crate::error::{ensure, ensure_non_negative, ensure_unit};
use crate::state::key;
use crate::{OptState, Result, Transform, Tree};

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

    fn update(&self, updates: Tree, state: AdamState, _: &Tree) -> Result<(Tree, AdamState)> {
        let AdamConfig {
            b1,
            b2,
            eps,
            eps_root,
        } = self.cfg;
        let count = state.count + 1;
        let t = i32::try_from(count).unwrap_or(i32::MAX);
        let bc1 = 1.0 - b1.powi(t);
        let bc2 = 1.0 - b2.powi(t);
        let mu = updates.zip_map(&state.mu, |_, g, m| {
            Ok((g.affine(1.0 - b1, 0.)? + m.affine(b1, 0.)?)?)
        })?;
        let nu = updates.zip_map(&state.nu, |_, g, v| {
            Ok((g.sqr()?.affine(1.0 - b2, 0.)? + v.affine(b2, 0.)?)?)
        })?;
        // m̂ / (√(v̂ + ε_root) + ε) = m / ((√(v/bc2 + ε_root) + ε)·bc1)
        let updates = mu.zip_map(&nu, |_, m, v| {
            let denom = v
                .affine(1.0 / bc2, eps_root)?
                .sqrt()?
                .affine(bc1, eps * bc1)?;
            Ok((m / denom)?)
        })?;
        Ok((updates, AdamState { count, mu, nu }))
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
