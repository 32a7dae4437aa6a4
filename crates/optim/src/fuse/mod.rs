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
//! [`crate::scale_by_learning_rate`]) writes its per-element update once
//! ([`Elementwise`]), generic over the numbers it runs on (`crate::num`):
//! its [`crate::Transform::update`] runs that function on tensors, and in a
//! fused step the same function runs on `f32` elements. A reduction
//! ([`crate::scale_by_trust_ratio`], [`crate::clip_by_global_norm`]) states
//! what it takes the norm of the same way ([`Reduction`]), and adds a pass
//! that sums those norms before the pass that applies its factor.
//!
//! Each transform adds its members to a [`Plan`] (which parameters each
//! applies to, with which state tensors) and hands on its statically typed
//! [`Kernel`]; [`crate::chain`] and [`crate::masked`] hand on their parts',
//! so a whole chain's per-element updates compile into one loop per pass
//! (`kernel`). Any chain of these transforms fuses: every named optimizer
//! and every [`crate::OptimizerSpec`]. [`crate::boxed`] fuses as a whole
//! ([`crate::Optimizer`] boxes every transform), but a boxed transform has
//! lost its parts' types, so a chain *containing* one runs composed.
//!
//! [`crate::Optimizer`] runs the plan (`pass`). The state is the chain's
//! state value, its tensors updated in place, so a checkpoint moves between
//! the fused and the composed forms. The `f32` operations round as candle's
//! do, so fused and composed agree bit for bit, except that fused norms are
//! summed in f64 (composed ones in the tensors' dtype): where a reduction is
//! involved the two agree to rounding.

mod elementwise;
mod kernel;
mod open;
mod pass;
mod reduction;

use std::collections::BTreeSet;
use std::sync::Arc;

use candle_core::Tensor;

pub(crate) use elementwise::{Elementwise, PureKernel, StateKernel, apply, state_of};
pub use kernel::{FuseVisitor, Kernel};
pub(crate) use kernel::{Members, Top};
pub(crate) use reduction::{ReduceKernel, Reduction, global, per_parameter};

use pass::Run;
use reduction::Factor;

use crate::{Error, OptState, Params, Result, Transform, Tree};

/// One fused step as the transforms of a chain describe it: the members
/// (elementwise updates and reductions) in chain order, which parameters each
/// applies to with the state tensors it updates in place, and the chain's
/// statically composed kernel that runs them.
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
    kernel: Option<Box<dyn Run>>,
}

/// One transform's part of a step.
struct Member {
    role: Role,
    /// Per parameter: its state tensors if the member applies to it.
    applies: Vec<Option<Vec<Tensor>>>,
}

enum Role {
    Map {
        stateful: bool,
        /// See [`Elementwise::output_reads_update`].
        replay_reads_update: bool,
    },
    Reduce(Box<dyn Factor>),
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
            kernel: None,
        }
    }

    fn applies(&self, name: &str) -> bool {
        self.selected.as_ref().is_none_or(|s| s.contains(name))
    }

    fn push(&mut self, role: Role, applies: Vec<Option<Vec<Tensor>>>) -> usize {
        self.members.push(Member { role, applies });
        self.members.len() - 1
    }

    /// Adds the stateless elementwise update `e` (the identity unless `on`);
    /// returns its kernel.
    pub(crate) fn pure<E: Elementwise<0>>(&mut self, e: E, on: bool) -> PureKernel<E> {
        let applies = self
            .names
            .iter()
            .map(|name| (on && self.applies(name)).then(Vec::new))
            .collect();
        let role = Role::Map {
            stateful: false,
            replay_reads_update: true,
        };
        PureKernel {
            e,
            pos: self.push(role, applies),
        }
    }

    /// Adds the elementwise update `e` (the identity unless `on`), with the
    /// state tensors `state(name)` of each parameter it applies to; returns
    /// its kernel.
    ///
    /// # Errors
    /// The first error `state` returns.
    pub(crate) fn stateful<E: Elementwise<N>, const N: usize>(
        &mut self,
        e: E,
        on: bool,
        mut state: impl FnMut(&str) -> Result<[Tensor; N]>,
    ) -> Result<StateKernel<E, N>> {
        let applies = self
            .names
            .iter()
            .map(|name| {
                Ok(match on && self.applies(name) {
                    true => Some(Vec::from(state(name)?)),
                    false => None,
                })
            })
            .collect::<Result<_>>()?;
        let role = Role::Map {
            stateful: N > 0,
            replay_reads_update: e.output_reads_update(),
        };
        Ok(StateKernel {
            e,
            pos: self.push(role, applies),
        })
    }

    /// Adds the reduction `r`; returns its kernel.
    pub(crate) fn reduce<R: Reduction>(&mut self, r: R) -> ReduceKernel<R> {
        let applies = self
            .names
            .iter()
            .map(|name| self.applies(name).then(Vec::new))
            .collect();
        ReduceKernel {
            r,
            pos: self.push(Role::Reduce(Box::new(r)), applies),
        }
    }

    /// Makes the members added next apply to `selected` only (all
    /// parameters for `None`); returns the selection it replaces.
    pub(crate) fn select(
        &mut self,
        selected: Option<Arc<BTreeSet<String>>>,
    ) -> Option<Arc<BTreeSet<String>>> {
        std::mem::replace(&mut self.selected, selected)
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
