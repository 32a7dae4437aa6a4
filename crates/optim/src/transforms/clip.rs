//! Gradient clipping: by global norm and elementwise.

use candle_core::{DType, Tensor};

use crate::error::ensure;
use crate::{Result, Transform, Tree};

/// Rescales all updates together when their global norm is too large; see [`clip_by_global_norm`].
#[derive(Clone, Copy, Debug)]
pub struct ClipByGlobalNorm {
    max_norm: f64,
}

/// Global-norm clipping (Pascanu et al. 2013):
///
/// ```text
/// ‖u‖ = √(Σ_l ‖u_l‖²)
/// u ↦ u · max_norm / ‖u‖     if ‖u‖ > max_norm, else u
/// ```
///
/// optax's `clip_by_global_norm` (PyTorch's `clip_grad_norm_` adds 1e-6 to the
/// norm). The squared norms are reduced on the device and read back once.
///
/// # Errors
/// `init` returns [`crate::Error::InvalidHyperparameter`] unless `max_norm > 0`.
///
/// ```
/// use bigbatch_optim::{clip_by_global_norm, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("a", Tensor::new(&[3f64], &Device::Cpu)?);
/// g.insert("b", Tensor::new(&[4f64], &Device::Cpu)?); // global norm 5
/// let tx = clip_by_global_norm(1.0);
/// let (u, _) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// assert_eq!(u.get("b").unwrap().to_vec1::<f64>()?, [0.8]);
/// # Ok(()) }
/// ```
pub fn clip_by_global_norm(max_norm: f64) -> ClipByGlobalNorm {
    ClipByGlobalNorm { max_norm }
}

impl Transform for ClipByGlobalNorm {
    type State = ();

    fn init(&self, _: &Tree) -> Result<()> {
        ensure(
            self.max_norm.is_finite() && self.max_norm > 0.0,
            "max_norm",
            self.max_norm,
            "must be finite and > 0",
        )
    }

    fn update(&self, updates: Tree, state: (), _: &Tree) -> Result<(Tree, ())> {
        if updates.is_empty() {
            return Ok((updates, state));
        }
        let squares = updates
            .iter()
            .map(|(_, u)| Ok(u.sqr()?.sum_all()?.to_dtype(DType::F64)?))
            .collect::<Result<Vec<_>>>()?;
        let norm = Tensor::stack(&squares, 0)?
            .to_vec1::<f64>()?
            .iter()
            .sum::<f64>()
            .sqrt();
        if norm <= self.max_norm {
            return Ok((updates, state));
        }
        let factor = self.max_norm / norm;
        Ok((updates.map(|_, u| Ok(u.affine(factor, 0.)?))?, state))
    }
}

/// Clamps every update coordinate; see [`clip`].
#[derive(Clone, Copy, Debug)]
pub struct Clip {
    max_delta: f64,
}

/// Elementwise clipping: `u ↦ clamp(u, −δ, δ)` (optax's `clip`).
///
/// # Errors
/// `init` returns [`crate::Error::InvalidHyperparameter`] unless `δ ≥ 0`.
///
/// ```
/// use bigbatch_optim::{clip, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[-3f32, 0.5, 2.], &Device::Cpu)?);
/// let tx = clip(1.0);
/// let (u, _) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f32>()?, [-1., 0.5, 1.]);
/// # Ok(()) }
/// ```
pub fn clip(max_delta: f64) -> Clip {
    Clip { max_delta }
}

impl Transform for Clip {
    type State = ();

    fn init(&self, _: &Tree) -> Result<()> {
        ensure(
            self.max_delta >= 0.0,
            "max_delta",
            self.max_delta,
            "must be >= 0",
        )
    }

    fn update(&self, updates: Tree, state: (), _: &Tree) -> Result<(Tree, ())> {
        let d = self.max_delta;
        Ok((updates.map(|_, u| Ok(u.clamp(-d, d)?))?, state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use candle_core::Device;

    #[test]
    fn small_norms_pass_and_bad_bounds_fail() -> Result<()> {
        let mut g = Tree::new();
        g.insert("a", Tensor::new(&[0.3f64, 0.4], &Device::Cpu)?);
        let tx = clip_by_global_norm(1.0);
        let (u, _) = tx.update(g.clone(), tx.init(&g)?, &g)?;
        assert_eq!(u.get("a").unwrap().to_vec1::<f64>()?, [0.3, 0.4]);
        assert!(matches!(
            clip_by_global_norm(0.0).init(&g),
            Err(Error::InvalidHyperparameter {
                name: "max_norm",
                ..
            })
        ));
        assert!(matches!(
            clip(-1.0).init(&g),
            Err(Error::InvalidHyperparameter {
                name: "max_delta",
                ..
            })
        ));
        Ok(())
    }
}
