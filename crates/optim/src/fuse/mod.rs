//! Fusion: a chain of transforms run as in-place passes over each parameter.
//!
//! Composed from candle ops, one step of [`crate::adam`] makes several passes
//! over every parameter-sized tensor and allocates a fresh tensor for each op,
//! then one more for `w + u`. Fused, it is one pass per parameter: read `w`,
//! `g` and the state once, write `w` and the state back in place, threaded
//! over chunks with rayon (as PyTorch's `foreach`/`fused` kernels do).
//!
//! Fusion is a property of the transforms, not a second copy of each
//! optimizer. An elementwise transform ([`crate::trace`],
//! [`crate::scale_by_adam`], [`crate::scale_by_rms`], [`crate::scale_by_rss`],
//! [`crate::add_decayed_weights`], [`crate::scale`], [`crate::clip`],
//! [`crate::scale_by_learning_rate`]) writes its per-element update once,
//! generic over the numbers it runs on ([`crate::num`]): its
//! [`crate::Transform::update`] runs that function on tensors, and in a fused
//! step the same function runs on `f32` elements. A reduction
//! ([`crate::scale_by_trust_ratio`], [`crate::clip_by_global_norm`]) states
//! what it takes the norm of in the same way, and adds a pass that sums those
//! norms before the pass that applies its factor. [`crate::chain`],
//! [`crate::masked`], [`crate::identity`] and [`crate::boxed`] combine the
//! plans of their parts, so any chain of these transforms fuses: every
//! named optimizer and every [`crate::OptimizerSpec`].
//!
//! Each transform adds its part of a step to a [`Plan`]
//! ([`crate::Transform::fuse`]), advancing its state value as `update` does;
//! [`crate::Optimizer`] then runs the plan ([`pass`]). The state is the
//! chain's state value, its tensors updated in place, so a checkpoint moves
//! between the fused and the composed forms. The `f32` operations round as
//! candle's do, so fused and composed agree bit for bit, except that fused
//! norms are summed in f64 (composed ones in the tensors' dtype): where a
//! reduction is involved the two agree to rounding.

mod elementwise;
mod open;
mod pass;
mod reduction;

use std::collections::BTreeSet;
use std::sync::Arc;

use candle_core::Tensor;

pub(crate) use elementwise::{Elementwise, apply, state_of};
pub(crate) use reduction::{Reduction, global, per_parameter};

use elementwise::{Kernel, Map};
use reduction::{ReduceKernel, Reducer};

use crate::{Error, OptState, Params, Result, Transform, Tree};

/// One fused step as the transforms of a chain describe it: for every
/// parameter, the elementwise updates and reductions that apply to it, in
/// chain order, with the state tensors each one updates in place.
///
/// A [`Transform`] adds its part in [`Transform::fuse`];
/// [`crate::Optimizer::new`] fuses a transform whose every part does
/// ([`Transform::fusable`]) when the parameters are f32 CPU tensors.
///
/// ```
/// use bigbatch_optim::{lamb, LambConfig, Optimizer, Params};
/// use candle_core::{Device, Var};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let w = Var::new(&[3f32, 4.], &Device::Cpu)?;
/// let params = Params::new([("w".to_string(), w.clone())]);
/// let opt = Optimizer::new(lamb(0.01, LambConfig::default()), &params)?;
/// assert!(opt.is_fused()); // Adam moments, decay, trust ratio, learning rate: two passes
/// # Ok(()) }
/// ```
pub struct Plan {
    /// Every parameter, in sorted order.
    names: Vec<String>,
    /// The parameters the member being added applies to ([`crate::masked`]).
    selected: Option<Arc<BTreeSet<String>>>,
    members: Vec<Member>,
}

/// One transform's part of a step.
struct Member {
    action: Action,
    /// Per parameter: its state tensors if the member applies to it.
    applies: Vec<Option<Vec<Tensor>>>,
}

enum Action {
    Map(Box<dyn Kernel>),
    Reduce(Box<dyn ReduceKernel>),
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("parameters", &self.names.len())
            .field("members", &self.members.len())
            .finish_non_exhaustive()
    }
}

impl Plan {
    /// An empty plan over the parameters `names` (sorted).
    fn new(names: Vec<String>) -> Self {
        Self {
            names,
            selected: None,
            members: Vec::new(),
        }
    }

    fn applies(&self, name: &str) -> bool {
        self.selected.as_ref().is_none_or(|s| s.contains(name))
    }

    /// Adds the elementwise update `e`, with the state tensors `state(name)`
    /// of each parameter it applies to.
    ///
    /// # Errors
    /// The first error `state` returns.
    pub(crate) fn map<E: Elementwise<N>, const N: usize>(
        &mut self,
        e: E,
        mut state: impl FnMut(&str) -> Result<[Tensor; N]>,
    ) -> Result<()> {
        let applies = self
            .names
            .iter()
            .map(|name| {
                Ok(match self.applies(name) {
                    true => Some(Vec::from(state(name)?)),
                    false => None,
                })
            })
            .collect::<Result<_>>()?;
        self.members.push(Member {
            action: Action::Map(Box::new(Map::<E, N>(e))),
            applies,
        });
        Ok(())
    }

    /// Adds the reduction `r`.
    pub(crate) fn reduce<R: Reduction>(&mut self, r: R) {
        let applies = self
            .names
            .iter()
            .map(|name| self.applies(name).then(Vec::new))
            .collect();
        self.members.push(Member {
            action: Action::Reduce(Box::new(Reducer(r))),
            applies,
        });
    }

    /// Runs `f` with the members it adds applying to `selected` only.
    pub(crate) fn within<T>(
        &mut self,
        selected: &Arc<BTreeSet<String>>,
        f: impl FnOnce(&mut Plan) -> T,
    ) -> T {
        let outer = self.selected.replace(selected.clone());
        let out = f(self);
        self.selected = outer;
        out
    }
}

/// One fused step of `tx`: `params` updated in place from `grads`, `state`
/// advanced (its tensors in place).
///
/// # Errors
/// [`Error::TreeMismatch`] or [`Error::BadInput`] for gradients that do not
/// match the parameters (nothing changes then), or a candle error.
pub(crate) fn step<T: Transform>(
    tx: &T,
    state: &mut T::State,
    params: &Params,
    grads: &Tree,
) -> Result<()> {
    // On rayon's pool: called from outside it, each tensor's parallel loop
    // would hand its work over and sleep until it is done (tens of
    // microseconds, per tensor).
    rayon::scope(|_| {
        params.tree().check_same_names(grads)?;
        let pairs = pairs(params, grads)?;
        let mut plan = Plan::new(pairs.iter().map(|(name, ..)| (*name).to_owned()).collect());
        let next = tx.fuse(state.clone(), &mut plan)?;
        pass::run(&plan, &pairs)?;
        *state = next;
        Ok(())
    })
}

/// Gives every tensor of `state` its own storage, so that updating it in
/// place cannot be seen through a tree it was loaded from or saved to.
///
/// # Errors
/// A candle error while copying.
pub(crate) fn own<S: OptState>(state: &mut S) -> Result<()> {
    let mut saved = Tree::new();
    state.save("", &mut saved)?;
    let copies = saved.map(|_, t| Ok(t.copy()?))?;
    state.load("", &copies)
}

/// `(name, parameter, contiguous gradient)` in sorted name order.
fn pairs<'a>(params: &'a Params, grads: &'a Tree) -> Result<Vec<(&'a str, &'a Tensor, Tensor)>> {
    params
        .iter()
        .map(|(name, var)| {
            let g = grads.get(name).ok_or_else(|| Error::TreeMismatch {
                name: name.to_owned(),
            })?;
            if g.dims() != var.dims() || g.dtype() != var.dtype() {
                return Err(Error::BadInput {
                    name: "gradient",
                    expected: "its parameter's shape and dtype",
                    found: g.dims().to_vec(),
                });
            }
            Ok((name, var.as_tensor(), g.contiguous()?))
        })
        .collect()
}
