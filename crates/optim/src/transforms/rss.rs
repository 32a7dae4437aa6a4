//! AdaGrad's root sum of squared gradients (Duchi, Hazan & Singer 2011).

use crate::error::ensure_non_negative;
use crate::fuse::{Elementwise, FuseVisitor, apply, state_of};
use crate::num::Num;
use crate::{Plan, Result, Transform, Tree};

/// Rescales updates by the root of the sum of past squared gradients; see [`scale_by_rss`].
#[derive(Clone, Copy, Debug)]
pub struct ScaleByRss {
    initial_accumulator_value: f64,
    eps: f64,
}

/// AdaGrad's preconditioner (Duchi, Hazan & Singer 2011):
///
/// ```text
/// s ← s + g²          (s₀ = initial_accumulator_value)
/// u = g / (√s + ε)
/// ```
///
/// This is PyTorch's `Adagrad` (defaults `s₀ = 0`, `ε = 1e-10`). optax's
/// `scale_by_rss` computes `g / √(s + ε)` where `s > 0` (and 0 elsewhere) with
/// `s₀ = 0.1`; the two agree to `O(ε)` for the same `s₀`. The state is the
/// per-parameter sum `s`.
///
/// # Errors
/// `init` returns [`crate::Error::InvalidHyperparameter`] unless `s₀ ≥ 0` and `ε ≥ 0`.
///
/// ```
/// use bigbatch_optim::{scale_by_rss, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[3f64], &Device::Cpu)?);
/// let tx = scale_by_rss(16.0, 0.0);
/// let (u, s) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [0.6]); // 3 / √(16 + 9)
/// assert_eq!(s.get("w").unwrap().to_vec1::<f64>()?, [25.]);
/// # Ok(()) }
/// ```
pub fn scale_by_rss(initial_accumulator_value: f64, eps: f64) -> ScaleByRss {
    ScaleByRss {
        initial_accumulator_value,
        eps,
    }
}

impl Transform for ScaleByRss {
    type State = Tree;

    fn init(&self, params: &Tree) -> Result<Tree> {
        ensure_non_negative("initial_accumulator_value", self.initial_accumulator_value)?;
        ensure_non_negative("eps", self.eps)?;
        let s0 = self.initial_accumulator_value;
        params.map(|_, p| Ok(p.zeros_like()?.affine(1.0, s0)?))
    }

    fn update(&self, updates: Tree, sum: Tree, params: &Tree) -> Result<(Tree, Tree)> {
        let (updates, [sum]) = apply(self, &updates, params, [&sum])?;
        Ok((updates, sum))
    }

    fn fusable(&self) -> bool {
        true
    }

    fn fuse_kernel<V: FuseVisitor>(
        &self,
        sum: Tree,
        plan: &mut Plan,
        v: V,
    ) -> Result<(Tree, V::Out)> {
        let kernel = plan.stateful(*self, true, |name| state_of(&[&sum], name))?;
        Ok((sum, v.visit(plan, kernel)?))
    }
}

impl Elementwise<1> for ScaleByRss {
    /// `s ← s + g²`
    #[inline(always)]
    fn advance<T: Num>(&self, g: &T, _: &T, [s]: &mut [T; 1]) -> Result<(), T::Error> {
        *s = s.add(&g.sqr()?)?;
        Ok(())
    }

    /// `g / (√s + ε)`
    #[inline(always)]
    fn output<T: Num>(&self, g: &T, _: &T, [s]: &[T; 1]) -> Result<T, T::Error> {
        g.div(&s.sqrt()?.affine(1.0, self.eps)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use candle_core::{Device, Tensor};

    #[test]
    fn zero_gradient_with_zero_sum_stays_finite() -> Result<()> {
        let mut g = Tree::new();
        g.insert("w", Tensor::new(&[0f32], &Device::Cpu)?);
        let tx = scale_by_rss(0.0, 1e-10);
        let (u, _) = tx.update(g.clone(), tx.init(&g)?, &g)?;
        assert_eq!(u.get("w").unwrap().to_vec1::<f32>()?, [0.]);
        assert!(matches!(
            scale_by_rss(-1.0, 0.0).init(&g),
            Err(Error::InvalidHyperparameter {
                name: "initial_accumulator_value",
                ..
            })
        ));
        Ok(())
    }
}
