//! Momentum as a trace of past updates (heavy ball and Nesterov).

use crate::error::ensure_unit;
use crate::fuse::{Elementwise, FuseVisitor, apply, state_of};
use crate::num::Num;
use crate::{Plan, Result, Transform, Tree};

/// Accumulates a decaying trace of updates; see [`trace`].
#[derive(Clone, Copy, Debug)]
pub struct Trace {
    decay: f64,
    nesterov: bool,
}

/// Momentum: `m ← g + μ·m`, then `u = m` (heavy ball) or `u = g + μ·m` (Nesterov).
///
/// This is PyTorch's `SGD(momentum=μ, dampening=0, nesterov=…)` buffer and optax's
/// `trace` (Polyak 1964; Sutskever et al. 2013 for the Nesterov form). With
/// `μ = 0` the trace is the identity and keeps no state.
///
/// # Errors
/// `init` returns [`crate::Error::InvalidHyperparameter`] unless `0 ≤ μ < 1`.
///
/// ```
/// use bigbatch_optim::{trace, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[1f64], &Device::Cpu)?);
/// let tx = trace(0.5, true);
/// let (u, m) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [1.5]); // g + μ(g + μ·0)
/// let (u, _) = tx.update(g.clone(), m, &g)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [1.75]); // m = 1.5, g + μm
/// # Ok(()) }
/// ```
pub fn trace(decay: f64, nesterov: bool) -> Trace {
    Trace { decay, nesterov }
}

impl Transform for Trace {
    type State = Tree;

    fn init(&self, params: &Tree) -> Result<Tree> {
        ensure_unit("momentum", self.decay)?;
        if self.decay == 0.0 {
            return Ok(Tree::new());
        }
        params.zeros_like()
    }

    fn update(&self, updates: Tree, trace: Tree, params: &Tree) -> Result<(Tree, Tree)> {
        if self.decay == 0.0 {
            return Ok((updates, trace));
        }
        let (updates, [trace]) = apply(self, &updates, params, [&trace])?;
        Ok((updates, trace))
    }

    fn fusable(&self) -> bool {
        true
    }

    fn fuse_kernel<V: FuseVisitor>(
        &self,
        trace: Tree,
        plan: &mut Plan,
        v: V,
    ) -> Result<(Tree, V::Out)> {
        // With μ = 0 it is the identity and keeps no state: a member that
        // applies to nothing.
        let on = self.decay != 0.0;
        let kernel = plan.stateful(*self, on, |name| state_of(&[&trace], name))?;
        Ok((trace, v.visit(plan, kernel)?))
    }
}

impl Elementwise<1> for Trace {
    /// `m ← u + μ·m`
    #[inline(always)]
    fn advance<T: Num>(&self, u: &T, _: &T, [m]: &mut [T; 1]) -> Result<(), T::Error> {
        *m = u.add(&m.affine(self.decay, 0.)?)?;
        Ok(())
    }

    /// `m` (heavy ball), or `u + μ·m` (Nesterov)
    #[inline(always)]
    fn output<T: Num>(&self, u: &T, _: &T, [m]: &[T; 1]) -> Result<T, T::Error> {
        if self.nesterov {
            u.add(&m.affine(self.decay, 0.)?)
        } else {
            Ok(m.clone())
        }
    }

    fn output_reads_update(&self) -> bool {
        self.nesterov
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;
    use candle_core::{Device, Tensor};

    #[test]
    fn decay_out_of_range_is_rejected() -> Result<()> {
        let mut p = Tree::new();
        p.insert("w", Tensor::new(&[1f32], &Device::Cpu)?);
        for bad in [-0.1, 1.0, f64::NAN] {
            assert!(matches!(
                trace(bad, false).init(&p),
                Err(Error::InvalidHyperparameter {
                    name: "momentum",
                    ..
                })
            ));
        }
        assert!(trace(0.0, false).init(&p)?.is_empty());
        Ok(())
    }
}
