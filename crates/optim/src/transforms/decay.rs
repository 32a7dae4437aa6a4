//! Weight decay as an update term.

use crate::error::ensure_non_negative;
use crate::fuse::{Elementwise, FuseVisitor, apply};
use crate::num::Num;
use crate::{Plan, Result, Transform, Tree};

/// Adds `λ·w` to the updates; see [`add_decayed_weights`].
#[derive(Clone, Copy, Debug)]
pub struct AddDecayedWeights {
    weight_decay: f64,
}

/// Weight decay: `u ↦ u + λ·w`.
///
/// Where it sits in a chain decides which weight decay it is:
/// - **before** a preconditioner it is an L2 penalty folded into the gradient,
///   `g + λw` (PyTorch's `weight_decay` in `SGD`, `Adam`, `Adagrad`, `RMSprop`);
/// - **after** it, just before [`crate::scale_by_learning_rate`], it is
///   decoupled weight decay, `w ← w − η(u + λw)` (Loshchilov & Hutter 2019,
///   AdamW; PyTorch's `AdamW`, optax's `adamw`).
///
/// For SGD without momentum the two coincide. Wrap it in [`crate::masked`] to
/// exempt biases and normalisation parameters. With `λ = 0` it is the identity.
///
/// # Errors
/// `init` returns [`crate::Error::InvalidHyperparameter`] unless `λ ≥ 0`.
///
/// ```
/// use bigbatch_optim::{add_decayed_weights, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut w = Tree::new();
/// w.insert("w", Tensor::new(&[2f64], &Device::Cpu)?);
/// let tx = add_decayed_weights(0.25);
/// let (u, _) = tx.update(w.zeros_like()?, tx.init(&w)?, &w)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [0.5]);
/// # Ok(()) }
/// ```
pub fn add_decayed_weights(weight_decay: f64) -> AddDecayedWeights {
    AddDecayedWeights { weight_decay }
}

impl Transform for AddDecayedWeights {
    type State = ();

    fn init(&self, _: &Tree) -> Result<()> {
        ensure_non_negative("weight_decay", self.weight_decay)
    }

    fn update(&self, updates: Tree, state: (), params: &Tree) -> Result<(Tree, ())> {
        if self.weight_decay == 0.0 {
            return Ok((updates, state));
        }
        updates.check_same_names(params)?;
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
        // With λ = 0 it is the identity: a member that applies to nothing.
        let kernel = plan.pure(*self, self.weight_decay != 0.0);
        Ok((state, v.visit(plan, kernel)?))
    }
}

/// `u ↦ u + λ·w`.
impl Elementwise<0> for AddDecayedWeights {
    #[inline(always)]
    fn output<T: Num>(&self, u: &T, w: &T, _: &[T; 0]) -> Result<T, T::Error> {
        u.add(&w.affine(self.weight_decay, 0.)?)
    }

    fn reads_weight(&self) -> bool {
        true
    }
}
