//! [`Elementwise`]: a transform's per-element update, and the two ways it runs.
//!
//! [`apply`] runs it over whole tensors (the composed path, any device and
//! dtype); [`PureKernel`] and [`StateKernel`] put it in a fused chain's loop,
//! element by element (the fused path). Both call the same `advance` and
//! `output`.

use std::vec::IntoIter;

use candle_core::Tensor;

use super::kernel::{Kernel, Off, Pass, Stage, StageVisitor, Stages};
use crate::num::{Num, exact};
use crate::{Error, Result, Tree};

/// An update that is the same function at every element of a parameter,
/// with `N` state tensors shaped like it.
///
/// A step is `advance` (the state from the incoming update `u` and the
/// parameter `w`), then `output` (the outgoing update, from `u`, `w` and the
/// advanced state). Keeping the two apart lets a fused step that needs a norm
/// first advance the state in one pass and read it back in the next.
pub(crate) trait Elementwise<const N: usize>: Copy + Send + Sync + 'static {
    /// Advances the state of one element (or of one whole tensor).
    #[inline(always)]
    fn advance<T: Num>(&self, u: &T, w: &T, state: &mut [T; N]) -> Result<(), T::Error> {
        let _ = (u, w, state);
        Ok(())
    }

    /// The outgoing update, from the incoming one and the advanced state.
    fn output<T: Num>(&self, u: &T, w: &T, state: &[T; N]) -> Result<T, T::Error>;

    /// Whether `output` reads the incoming update (if not, a pass that only
    /// reads the advanced state back skips computing it, and reading `g`).
    fn output_reads_update(&self) -> bool {
        true
    }

    /// Whether `advance` or `output` reads the parameter `w`.
    fn reads_weight(&self) -> bool {
        false
    }
}

/// The composed update: `e` over every tensor of `updates`, with `w` from
/// `params` and the state from the trees `state` (same names); returns the
/// outgoing updates and the advanced state trees.
///
/// # Errors
/// [`Error::TreeMismatch`] if `params` lacks a name of `updates` (and `e`
/// reads weights), [`Error::StateMismatch`] if a state tree does, or a
/// candle error.
pub(crate) fn apply<E: Elementwise<N>, const N: usize>(
    e: &E,
    updates: &Tree,
    params: &Tree,
    state: [&Tree; N],
) -> Result<(Tree, [Tree; N])> {
    let mut out = Tree::new();
    let mut next: [Tree; N] = std::array::from_fn(|_| Tree::new());
    for (name, u) in updates.iter() {
        let w = match params.get(name) {
            Some(w) => w,
            // Not read: any tensor will do.
            None if !e.reads_weight() => u,
            None => {
                return Err(Error::TreeMismatch {
                    name: name.to_owned(),
                });
            }
        };
        let mut s = state_of(&state, name)?;
        e.advance(u, w, &mut s)?;
        out.insert(name, e.output(u, w, &s)?);
        for (tree, t) in next.iter_mut().zip(s) {
            tree.insert(name, t);
        }
    }
    Ok((out, next))
}

/// The state tensors of the parameter `name`, one from each tree.
pub(crate) fn state_of<const N: usize>(state: &[&Tree; N], name: &str) -> Result<[Tensor; N]> {
    let mut found = Vec::with_capacity(N);
    for tree in state {
        let t = tree.get(name).ok_or_else(|| Error::StateMismatch {
            reason: format!("no optimizer state for `{name}`"),
        })?;
        found.push(t.clone());
    }
    found.try_into().map_err(|_| Error::StateMismatch {
        reason: format!("optimizer state for `{name}` has the wrong number of tensors"),
    })
}

/// A stateless elementwise update at position `pos` of a fused chain.
pub struct PureKernel<E> {
    pub(crate) e: E,
    pub(crate) pos: usize,
}

impl<E: Elementwise<0>> Kernel for PureKernel<E> {
    const REDUCES: bool = false;

    fn stages<'p, V: StageVisitor<'p>>(&'p self, pass: Pass<'p>, v: V) -> V::Out {
        v.visit(Pure {
            e: self.e,
            active: pass.runs(self.pos).is_some(),
        })
    }
}

/// A stateful elementwise update at position `pos` of a fused chain.
pub struct StateKernel<E, const N: usize> {
    pub(crate) e: E,
    pub(crate) pos: usize,
}

impl<E: Elementwise<N>, const N: usize> Kernel for StateKernel<E, N> {
    const REDUCES: bool = false;

    fn stages<'p, V: StageVisitor<'p>>(&'p self, pass: Pass<'p>, v: V) -> V::Out {
        let e = self.e;
        match pass.runs(self.pos) {
            None => v.visit(Off),
            Some(state) if pass.replays(self.pos) => v.visit(Replay::<E, N> { e, state }),
            Some(state) => v.visit(Advance::<E, N> { e, state }),
        }
    }
}

/// A stateless update, or (`!active`: masked off, or outside the pass) the
/// identity: a select, not a branch, in the loop.
#[derive(Clone, Copy)]
pub struct Pure<E> {
    e: E,
    active: bool,
}

impl<'p, E: Elementwise<0>> Stages<'p> for Pure<E> {
    type Bound<'a> = Self;

    fn tensors(&self, _: &mut Vec<&'p Tensor>) {}

    #[inline(always)]
    fn bind(&self, _: &mut IntoIter<&mut [f32]>) -> Self {
        *self
    }
}

impl<E: Elementwise<0>> Stage for Pure<E> {
    #[inline(always)]
    fn trim(self, _: usize) -> Self {
        self
    }

    #[inline(always)]
    fn step<const NORM: bool>(&mut self, _: usize, u: f32, w: f32) -> f32 {
        let out = exact(self.e.output(&u, &w, &[]));
        if self.active { out } else { u }
    }
}

/// Advances the state and outputs the update.
pub struct Advance<'p, E, const N: usize> {
    e: E,
    state: &'p [Tensor],
}

impl<'p, E: Elementwise<N>, const N: usize> Stages<'p> for Advance<'p, E, N> {
    type Bound<'a> = Advancing<'a, E, N>;

    fn tensors(&self, out: &mut Vec<&'p Tensor>) {
        out.extend(self.state);
    }

    #[inline(always)]
    fn bind<'a>(&self, slices: &mut IntoIter<&'a mut [f32]>) -> Advancing<'a, E, N> {
        Advancing {
            e: self.e,
            s: std::array::from_fn(|_| next(slices)),
        }
    }
}

/// [`Advance`] on one chunk.
pub struct Advancing<'a, E, const N: usize> {
    e: E,
    s: [&'a mut [f32]; N],
}

impl<E: Elementwise<N>, const N: usize> Stage for Advancing<'_, E, N> {
    #[inline(always)]
    fn trim(self, n: usize) -> Self {
        Self {
            e: self.e,
            s: self.s.map(|s| &mut s[..n]),
        }
    }

    #[inline(always)]
    fn step<const NORM: bool>(&mut self, i: usize, u: f32, w: f32) -> f32 {
        let mut st: [f32; N] = std::array::from_fn(|j| self.s[j][i]);
        exact(self.e.advance(&u, &w, &mut st));
        for (s, v) in self.s.iter_mut().zip(st) {
            s[i] = v;
        }
        exact(self.e.output(&u, &w, &st))
    }
}

/// Outputs the update from the state an earlier pass advanced.
pub struct Replay<'p, E, const N: usize> {
    e: E,
    state: &'p [Tensor],
}

impl<'p, E: Elementwise<N>, const N: usize> Stages<'p> for Replay<'p, E, N> {
    type Bound<'a> = Replaying<'a, E, N>;

    fn tensors(&self, out: &mut Vec<&'p Tensor>) {
        out.extend(self.state);
    }

    #[inline(always)]
    fn bind<'a>(&self, slices: &mut IntoIter<&'a mut [f32]>) -> Replaying<'a, E, N> {
        Replaying {
            e: self.e,
            s: std::array::from_fn(|_| &*next(slices)),
        }
    }
}

/// [`Replay`] on one chunk.
pub struct Replaying<'a, E, const N: usize> {
    e: E,
    s: [&'a [f32]; N],
}

impl<E: Elementwise<N>, const N: usize> Stage for Replaying<'_, E, N> {
    #[inline(always)]
    fn trim(self, n: usize) -> Self {
        Self {
            e: self.e,
            s: self.s.map(|s| &s[..n]),
        }
    }

    #[inline(always)]
    fn step<const NORM: bool>(&mut self, i: usize, u: f32, w: f32) -> f32 {
        let st: [f32; N] = std::array::from_fn(|j| self.s[j][i]);
        exact(self.e.output(&u, &w, &st))
    }
}

/// The next chunk slice; [`Stages::tensors`] opened one per state tensor.
#[inline(always)]
fn next<'a>(slices: &mut IntoIter<&'a mut [f32]>) -> &'a mut [f32] {
    match slices.next() {
        Some(s) => s,
        None => unreachable!("a slice was opened for every state tensor"),
    }
}
