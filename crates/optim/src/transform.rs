//! The [`Transform`] trait and its combinators: [`chain`], [`identity`], [`boxed`].
//!
//! As in optax, a gradient transformation is a pair of pure functions. `init`
//! builds the state from the parameters; `update` maps incoming updates (at
//! first the gradients) and the state to outgoing updates and the next state.
//! Hyperparameters live in the transform value; everything that changes lives
//! in the state, passed in and returned. The final updates are *added* to the
//! parameters: the minus sign lives in [`crate::scale_by_learning_rate`].

use std::any::Any;

use crate::fuse::{FuseVisitor, Members, Top};
use crate::{Error, OptState, Plan, Result, Tree};

/// A gradient transformation: `(updates, state, params) -> (updates', state')`.
///
/// ```
/// use bigbatch_optim::{chain, scale, trace, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut params = Tree::new();
/// params.insert("w", Tensor::new(&[1f32], &Device::Cpu)?);
/// let tx = chain((trace(0.9, false), scale(-0.1)));
/// let state = tx.init(&params)?;
/// let grads = params.clone();
/// let (u, state) = tx.update(grads.clone(), state, &params)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f32>()?, [-0.1]);
/// let (u, _) = tx.update(grads, state, &params)?;
/// assert!((u.get("w").unwrap().to_vec1::<f32>()?[0] + 0.19).abs() < 1e-6);
/// # Ok(()) }
/// ```
pub trait Transform: Send + Sync {
    /// The state carried between steps.
    type State: OptState;

    /// The initial state for `params`.
    ///
    /// # Errors
    /// A candle error while allocating state tensors.
    fn init(&self, params: &Tree) -> Result<Self::State>;

    /// Transforms `updates` given the current `params`, consuming and returning the state.
    ///
    /// # Errors
    /// [`Error::TreeMismatch`] if the trees disagree on names, or a candle error.
    fn update(
        &self,
        updates: Tree,
        state: Self::State,
        params: &Tree,
    ) -> Result<(Tree, Self::State)>;

    /// Whether [`Transform::fuse`] can run this transform in place (`false`
    /// unless the transform says otherwise; see [`Plan`]).
    fn fusable(&self) -> bool {
        false
    }

    /// Whether this transform fuses as a member of a chain (a [`Boxed`] one
    /// only fuses as a whole: its members' types are gone).
    #[doc(hidden)]
    fn fusable_member(&self) -> bool {
        self.fusable()
    }

    /// Adds this transform's members to `plan` and hands `v` its statically
    /// typed kernel; returns the state advanced as [`Transform::update`]
    /// would advance it. What [`Transform::fuse`] and [`crate::chain`] are
    /// built on.
    ///
    /// # Errors
    /// [`Error::NotFusable`] unless [`Transform::fusable_member`];
    /// [`Error::StateMismatch`] if the state does not cover the parameters.
    #[doc(hidden)]
    fn fuse_kernel<V: FuseVisitor>(
        &self,
        state: Self::State,
        plan: &mut Plan,
        v: V,
    ) -> Result<(Self::State, V::Out)>
    where
        Self: Sized,
    {
        let _ = (state, plan, v);
        Err(Error::NotFusable {
            transform: std::any::type_name::<Self>(),
        })
    }

    /// Adds this transform's part of a fused in-place step to `plan`, and
    /// returns the state advanced as [`Transform::update`] would advance it
    /// (its tensors are updated in place when the plan runs).
    ///
    /// # Errors
    /// [`Error::NotFusable`] unless [`Transform::fusable`];
    /// [`Error::StateMismatch`] if the state does not cover the parameters.
    fn fuse(&self, state: Self::State, plan: &mut Plan) -> Result<Self::State>
    where
        Self: Sized,
    {
        let (state, ()) = self.fuse_kernel(state, plan, Top)?;
        Ok(state)
    }
}

/// The transform that passes updates through unchanged.
#[derive(Clone, Copy, Debug, Default)]
pub struct Identity;

/// `u ↦ u`, with no state.
pub fn identity() -> Identity {
    Identity
}

impl Transform for Identity {
    type State = ();

    fn init(&self, _: &Tree) -> Result<()> {
        Ok(())
    }

    fn update(&self, updates: Tree, state: (), _: &Tree) -> Result<(Tree, ())> {
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
        Ok((state, v.visit(plan, ())?))
    }
}

/// Transforms applied one after another; built by [`chain`] from a tuple.
#[derive(Clone, Debug)]
pub struct Chain<T>(pub T);

/// Composes transforms left to right: `chain((a, b, c))` feeds the output of `a`
/// into `b`, then `c`. The state is the tuple of the parts' states.
pub fn chain<T>(transforms: T) -> Chain<T>
where
    Chain<T>: Transform,
{
    Chain(transforms)
}

/// `cons!(a, b, c)` is `(a, (b, (c, ())))`.
macro_rules! cons {
    () => { () };
    ($head:expr $(, $tail:expr)*) => { ($head, cons!($($tail),*)) };
}

/// `cons_pat!(a, b)` is the pattern `(a, (b, ()))`.
macro_rules! cons_pat {
    () => { () };
    ($head:ident $(, $tail:ident)*) => { ($head, cons_pat!($($tail),*)) };
}

macro_rules! tuple_chain {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: Transform),+> Transform for Chain<($($name,)+)> {
            type State = ($($name::State,)+);

            fn init(&self, params: &Tree) -> Result<Self::State> {
                Ok(($(self.0.$idx.init(params)?,)+))
            }

            #[allow(non_snake_case)]
            fn update(
                &self,
                updates: Tree,
                state: Self::State,
                params: &Tree,
            ) -> Result<(Tree, Self::State)> {
                let ($($name,)+) = state;
                $(let (updates, $name) = self.0.$idx.update(updates, $name, params)?;)+
                Ok((updates, ($($name,)+)))
            }

            fn fusable(&self) -> bool {
                cons!($(&self.0.$idx),+).fusable()
            }

            #[allow(non_snake_case)]
            fn fuse_kernel<V: FuseVisitor>(
                &self,
                state: Self::State,
                plan: &mut Plan,
                v: V,
            ) -> Result<(Self::State, V::Out)> {
                let ($($name,)+) = state;
                let (states, out) =
                    cons!($(&self.0.$idx),+).fuse_members(cons!($($name),+), plan, (), v)?;
                let cons_pat!($($name),+) = states;
                Ok((($($name,)+), out))
            }
        }
    };
}

tuple_chain!(A 0);
tuple_chain!(A 0, B 1);
tuple_chain!(A 0, B 1, C 2);
tuple_chain!(A 0, B 1, C 2, D 3);
tuple_chain!(A 0, B 1, C 2, D 3, E 4);
tuple_chain!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_chain!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_chain!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);

/// A [`Transform`] whose concrete type is erased, for optimizers chosen at run time.
pub struct Boxed(Box<dyn DynTransform>);

/// The state of a [`Boxed`] transform.
pub struct BoxedState(Box<dyn DynState>);

/// Erases the type of `tx`, so that optimizers picked from a config share one type.
pub fn boxed(tx: impl Transform + 'static) -> Boxed {
    Boxed(Box::new(tx))
}

impl std::fmt::Debug for Boxed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Boxed(..)")
    }
}

impl std::fmt::Debug for BoxedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BoxedState(..)")
    }
}

trait DynTransform: Send + Sync {
    fn init_dyn(&self, params: &Tree) -> Result<Box<dyn DynState>>;
    fn update_dyn(
        &self,
        updates: Tree,
        state: Box<dyn DynState>,
        params: &Tree,
    ) -> Result<(Tree, Box<dyn DynState>)>;
    fn fusable_dyn(&self) -> bool;
    fn fuse_dyn(&self, state: Box<dyn DynState>, plan: &mut Plan) -> Result<Box<dyn DynState>>;
}

trait DynState: Send + Sync {
    fn clone_box(&self) -> Box<dyn DynState>;
    fn into_any(self: Box<Self>) -> Box<dyn Any>;
    fn save_dyn(&self, prefix: &str, out: &mut Tree) -> Result<()>;
    fn load_dyn(&mut self, prefix: &str, saved: &Tree) -> Result<()>;
}

impl<S: OptState> DynState for S {
    fn clone_box(&self) -> Box<dyn DynState> {
        Box::new(self.clone())
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any> {
        self
    }

    fn save_dyn(&self, prefix: &str, out: &mut Tree) -> Result<()> {
        self.save(prefix, out)
    }

    fn load_dyn(&mut self, prefix: &str, saved: &Tree) -> Result<()> {
        self.load(prefix, saved)
    }
}

impl<T: Transform + 'static> DynTransform for T {
    fn init_dyn(&self, params: &Tree) -> Result<Box<dyn DynState>> {
        Ok(Box::new(self.init(params)?))
    }

    fn update_dyn(
        &self,
        updates: Tree,
        state: Box<dyn DynState>,
        params: &Tree,
    ) -> Result<(Tree, Box<dyn DynState>)> {
        let state = downcast::<T>(state)?;
        let (updates, state) = self.update(updates, state, params)?;
        Ok((updates, Box::new(state)))
    }

    fn fusable_dyn(&self) -> bool {
        self.fusable()
    }

    fn fuse_dyn(&self, state: Box<dyn DynState>, plan: &mut Plan) -> Result<Box<dyn DynState>> {
        Ok(Box::new(self.fuse(downcast::<T>(state)?, plan)?))
    }
}

/// The state of a boxed `T` as its concrete type.
fn downcast<T: Transform>(state: Box<dyn DynState>) -> Result<T::State> {
    state
        .into_any()
        .downcast::<T::State>()
        .map(|s| *s)
        .map_err(|_| Error::StateMismatch {
            reason: "boxed state belongs to a different transform".into(),
        })
}

impl Clone for BoxedState {
    fn clone(&self) -> Self {
        BoxedState(self.0.clone_box())
    }
}

impl OptState for BoxedState {
    fn save(&self, prefix: &str, out: &mut Tree) -> Result<()> {
        self.0.save_dyn(prefix, out)
    }

    fn load(&mut self, prefix: &str, saved: &Tree) -> Result<()> {
        self.0.load_dyn(prefix, saved)
    }
}

impl Transform for Boxed {
    type State = BoxedState;

    fn init(&self, params: &Tree) -> Result<BoxedState> {
        Ok(BoxedState(self.0.init_dyn(params)?))
    }

    fn update(
        &self,
        updates: Tree,
        state: BoxedState,
        params: &Tree,
    ) -> Result<(Tree, BoxedState)> {
        let (updates, state) = self.0.update_dyn(updates, state.0, params)?;
        Ok((updates, BoxedState(state)))
    }

    fn fusable(&self) -> bool {
        self.0.fusable_dyn()
    }

    fn fusable_member(&self) -> bool {
        false
    }

    fn fuse(&self, state: BoxedState, plan: &mut Plan) -> Result<BoxedState> {
        Ok(BoxedState(self.0.fuse_dyn(state.0, plan)?))
    }
}
