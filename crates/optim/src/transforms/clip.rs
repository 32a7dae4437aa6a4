//! Gradient clipping: by global norm and elementwise.

use crate::error::ensure;
use crate::fuse::{Elementwise, FuseVisitor, Reduction, apply, global};
use crate::num::Num;
use crate::{Plan, Result, Transform, Tree};

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
/// norm). The squared norms are reduced on the device and read back once;
/// fused, they are summed in f64, and the clip is a pass over the gradients
/// before the update's pass.
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

    fn update(&self, updates: Tree, state: (), params: &Tree) -> Result<(Tree, ())> {
        Ok((global(self, updates, params)?, state))
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

impl Reduction for ClipByGlobalNorm {
    fn global(&self) -> bool {
        true
    }

    fn reads_weight(&self) -> bool {
        false
    }

    /// The norm is the updates' own.
    #[inline(always)]
    fn measure<T: Num>(&self, u: &T, _: &T) -> Result<T, T::Error> {
        Ok(u.clone())
    }

    /// `max_norm / ‖u‖` if `‖u‖ > max_norm`, else 1.
    fn factor(&self, _: f64, u_sq: f64) -> f64 {
        let norm = u_sq.sqrt();
        if norm <= self.max_norm {
            1.0
        } else {
            self.max_norm / norm
        }
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

    fn update(&self, updates: Tree, state: (), params: &Tree) -> Result<(Tree, ())> {
        let (updates, []) = apply(self, &updates, params, [])?;
        Ok((updates, state))
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
        let kernel = plan.pure(*self, true);
        Ok((state, v.visit(plan, kernel)?))
    }
}

impl Elementwise<0> for Clip {
    /// `clamp(u, −δ, δ)`
    #[inline(always)]
    fn output<T: Num>(&self, u: &T, _: &T, _: &[T; 0]) -> Result<T, T::Error> {
        u.clamp(-self.max_delta, self.max_delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use candle_core::{Device, Tensor};

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
