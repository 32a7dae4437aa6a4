//! The static form of a fused chain: one loop per pass, whatever the chain.
//!
//! A transform that fuses hands a [`FuseVisitor`] its [`Kernel`]: the
//! per-step value of its per-element update (an elementwise update with its
//! coefficients, a reduction) and its position in the chain. A chain hands
//! on the pair of its parts' kernels, so a chain's kernel is a type-level
//! list of its members' kernels ([`Members`]).
//!
//! For each pass over each parameter, every kernel gives its [`Stages`],
//! what it does in the pass, and a [`StageVisitor`] runs the list of them:
//! a single loop whose body is the members' per-element updates, inlined one
//! after the other. What decides the memory a pass touches is a type: a
//! stateful update is skipped, advances its state, or reads back the state an
//! earlier pass advanced ([`Off`], `Advance`, `Replay`), so each loop reads
//! and writes only the arrays it needs. The rest is data in the loop (a
//! stateless update masked off, a reduction's factor or measure), applied as
//! selects, which vectorise. A chain type thus compiles `3^k` loops per SIMD
//! width, `k` its number of stateful updates (one or two in practice).

use std::vec::IntoIter;

use candle_core::Tensor;

use super::Plan;
use crate::{Result, Transform};

/// What one pass over one parameter runs: members `start..end`, the state
/// of members before `committed` already advanced by an earlier pass.
#[derive(Clone, Copy)]
pub struct Pass<'p> {
    pub(crate) plan: &'p Plan,
    pub(crate) param: usize,
    /// Members before it only feed one whose output ignores them.
    pub(crate) start: usize,
    /// The reduction whose norms this pass takes, or the number of members
    /// for the pass that applies the update.
    pub(crate) end: usize,
    pub(crate) committed: usize,
    /// Per member: a reduction's factor for this parameter, once known.
    pub(crate) factors: &'p [Option<f64>],
}

impl<'p> Pass<'p> {
    /// The state tensors of member `pos`, if it runs in this pass.
    pub(crate) fn runs(&self, pos: usize) -> Option<&'p [Tensor]> {
        if pos < self.start || pos >= self.end {
            return None;
        }
        self.plan.members[pos].applies[self.param].as_deref()
    }

    /// Whether member `pos` advanced its state in an earlier pass.
    pub(crate) fn replays(&self, pos: usize) -> bool {
        pos < self.committed
    }

    /// Whether this pass ends at member `pos`, taking its norms.
    pub(crate) fn measures(&self, pos: usize) -> bool {
        pos == self.end
    }

    /// The factor member `pos` (a reduction) applies in this pass.
    pub(crate) fn factor(&self, pos: usize) -> f64 {
        if self.runs(pos).is_none() {
            return 1.0;
        }
        match self.factors[pos] {
            Some(f) => f,
            None => unreachable!("a reduction's factor is known before a pass applies it"),
        }
    }
}

/// A fused transform's per-step kernel (see the module docs).
pub trait Kernel: Send + Sync + 'static {
    /// Whether a member is a reduction (whose norm passes need a loop of
    /// their own).
    const REDUCES: bool;

    /// Calls `v` with this kernel's stages in `pass`.
    fn stages<'p, V: StageVisitor<'p>>(&'p self, pass: Pass<'p>, v: V) -> V::Out;
}

/// Receives the stages of a pass, statically typed.
pub trait StageVisitor<'p> {
    /// What the visit returns.
    type Out;

    /// Visits the stages of the pass.
    fn visit<S: Stages<'p>>(self, stages: S) -> Self::Out;
}

/// The stages of one pass, before their state slices are bound.
pub trait Stages<'p>: Sync {
    /// The stages with the slices of one chunk.
    type Bound<'a>: Stage;

    /// Appends the state tensors the stages read or write, in order.
    fn tensors(&self, out: &mut Vec<&'p Tensor>);

    /// The stages on the next slices of `slices` (a chunk of each tensor of
    /// [`Stages::tensors`], in the same order).
    fn bind<'a>(&self, slices: &mut IntoIter<&'a mut [f32]>) -> Self::Bound<'a>;
}

/// One member's work on one element, in a pass's loop.
pub trait Stage {
    /// The same stage with its slices cut to `n` elements (the loop's bound,
    /// which lets LLVM drop the bounds checks).
    fn trim(self, n: usize) -> Self;

    /// The outgoing update at element `i`, from the incoming `u` and `w`,
    /// in a norm pass (`NORM`) or the pass that applies the update.
    fn step<const NORM: bool>(&mut self, i: usize, u: f32, w: f32) -> f32;
}

/// Receives a transform's kernel, statically typed ([`Transform::fuse_kernel`]).
pub trait FuseVisitor {
    /// What the visit returns.
    type Out;

    /// Visits the kernel; `plan` holds the members it refers to.
    ///
    /// # Errors
    /// As the visitor's continuation reports.
    fn visit<K: Kernel>(self, plan: &mut Plan, kernel: K) -> Result<Self::Out>;
}

/// The continuation that ends a fused transform's visit: its kernel becomes
/// the plan's.
pub(crate) struct Top;

impl FuseVisitor for Top {
    type Out = ();

    fn visit<K: Kernel>(self, plan: &mut Plan, kernel: K) -> Result<()> {
        plan.kernel = Some(Box::new(kernel));
        Ok(())
    }
}

/// The empty chain: `u ↦ u`.
impl Kernel for () {
    const REDUCES: bool = false;

    fn stages<'p, V: StageVisitor<'p>>(&'p self, _: Pass<'p>, v: V) -> V::Out {
        v.visit(())
    }
}

/// `A`, then `B`.
impl<A: Kernel, B: Kernel> Kernel for (A, B) {
    const REDUCES: bool = A::REDUCES || B::REDUCES;

    fn stages<'p, V: StageVisitor<'p>>(&'p self, pass: Pass<'p>, v: V) -> V::Out {
        let then = Then {
            next: &self.1,
            pass,
            v,
        };
        self.0.stages(pass, then)
    }
}

/// Having `A`'s stages, asks `B` for its.
struct Then<'p, B, V> {
    next: &'p B,
    pass: Pass<'p>,
    v: V,
}

impl<'p, B: Kernel, V: StageVisitor<'p>> StageVisitor<'p> for Then<'p, B, V> {
    type Out = V::Out;

    fn visit<S: Stages<'p>>(self, first: S) -> V::Out {
        self.next.stages(self.pass, Both { first, v: self.v })
    }
}

/// Having both, hands on the pair.
struct Both<S, V> {
    first: S,
    v: V,
}

impl<'p, A: Stages<'p>, V: StageVisitor<'p>> StageVisitor<'p> for Both<A, V> {
    type Out = V::Out;

    fn visit<B: Stages<'p>>(self, second: B) -> V::Out {
        self.v.visit((self.first, second))
    }
}

impl<'p> Stages<'p> for () {
    type Bound<'a> = ();

    fn tensors(&self, _: &mut Vec<&'p Tensor>) {}

    #[inline(always)]
    fn bind(&self, _: &mut IntoIter<&mut [f32]>) {}
}

impl<'p, A: Stages<'p>, B: Stages<'p>> Stages<'p> for (A, B) {
    type Bound<'a> = (A::Bound<'a>, B::Bound<'a>);

    fn tensors(&self, out: &mut Vec<&'p Tensor>) {
        self.0.tensors(out);
        self.1.tensors(out);
    }

    #[inline(always)]
    fn bind<'a>(&self, slices: &mut IntoIter<&'a mut [f32]>) -> Self::Bound<'a> {
        let first = self.0.bind(slices);
        (first, self.1.bind(slices))
    }
}

impl Stage for () {
    #[inline(always)]
    fn trim(self, _: usize) -> Self {}

    #[inline(always)]
    fn step<const NORM: bool>(&mut self, _: usize, u: f32, _: f32) -> f32 {
        u
    }
}

impl<A: Stage, B: Stage> Stage for (A, B) {
    #[inline(always)]
    fn trim(self, n: usize) -> Self {
        (self.0.trim(n), self.1.trim(n))
    }

    #[inline(always)]
    fn step<const NORM: bool>(&mut self, i: usize, u: f32, w: f32) -> f32 {
        let u = self.0.step::<NORM>(i, u, w);
        self.1.step::<NORM>(i, u, w)
    }
}

/// A stateful update that does nothing in this pass (masked off, or
/// outside it): the identity, touching no state.
#[derive(Clone, Copy, Debug)]
pub struct Off;

impl<'p> Stages<'p> for Off {
    type Bound<'a> = Off;

    fn tensors(&self, _: &mut Vec<&'p Tensor>) {}

    #[inline(always)]
    fn bind(&self, _: &mut IntoIter<&mut [f32]>) -> Off {
        Off
    }
}

impl Stage for Off {
    #[inline(always)]
    fn trim(self, _: usize) -> Self {
        self
    }

    #[inline(always)]
    fn step<const NORM: bool>(&mut self, _: usize, u: f32, _: f32) -> f32 {
        u
    }
}

/// The members of a chain as a list, `(&A, (&B, ()))`, with their states
/// `(A::State, (B::State, ()))`: what [`crate::chain`] fuses through.
pub(crate) trait Members {
    /// The members' states, as a list.
    type State;

    /// Hands `v` the kernel `(acc, (A, (B, …)))` after each member has added
    /// its own to `plan`.
    fn fuse_members<K: Kernel, V: FuseVisitor>(
        &self,
        state: Self::State,
        plan: &mut Plan,
        acc: K,
        v: V,
    ) -> Result<(Self::State, V::Out)>;

    /// Whether every member fuses as part of a chain.
    fn fusable(&self) -> bool;
}

impl Members for () {
    type State = ();

    fn fuse_members<K: Kernel, V: FuseVisitor>(
        &self,
        state: (),
        plan: &mut Plan,
        acc: K,
        v: V,
    ) -> Result<((), V::Out)> {
        Ok((state, v.visit(plan, acc)?))
    }

    fn fusable(&self) -> bool {
        true
    }
}

impl<A: Transform, R: Members> Members for (&A, R) {
    type State = (A::State, R::State);

    fn fuse_members<K: Kernel, V: FuseVisitor>(
        &self,
        (state, rest): Self::State,
        plan: &mut Plan,
        acc: K,
        v: V,
    ) -> Result<(Self::State, V::Out)> {
        let next = Next {
            rest: &self.1,
            state: rest,
            acc,
            v,
        };
        let (state, (rest, out)) = self.0.fuse_kernel(state, plan, next)?;
        Ok(((state, rest), out))
    }

    fn fusable(&self) -> bool {
        self.0.fusable_member() && self.1.fusable()
    }
}

/// Having a member's kernel, appends it and goes on with the rest.
struct Next<'r, R: Members, K, V> {
    rest: &'r R,
    state: R::State,
    acc: K,
    v: V,
}

impl<R: Members, K: Kernel, V: FuseVisitor> FuseVisitor for Next<'_, R, K, V> {
    type Out = (R::State, V::Out);

    fn visit<M: Kernel>(self, plan: &mut Plan, kernel: M) -> Result<Self::Out> {
        self.rest
            .fuse_members(self.state, plan, (self.acc, kernel), self.v)
    }
}
