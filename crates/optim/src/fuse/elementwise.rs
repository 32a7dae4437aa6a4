//! [`Elementwise`]: a transform's per-element update, and the two ways it runs.
//!
//! [`apply`] runs it over whole tensors (the composed path, any device and
//! dtype); [`Map`] runs it over one block of an f32 parameter in place (the
//! fused path). Both call the same `advance` and `output`.

use std::ops::Range;

use candle_core::Tensor;

use super::pass::wide;
use crate::num::{Num, exact};
use crate::{Error, Result, Tree};

/// An update that is the same function at every element of a parameter,
/// with `N` state tensors shaped like it.
///
/// A step is `advance` (the state from the incoming update `u` and the
/// parameter `w`), then `output` (the outgoing update, from `u`, `w` and the
/// advanced state). Keeping the two apart lets a fused step that needs a norm
/// first advance the state in one pass and read it back in the next.
pub(crate) trait Elementwise<const N: usize>: Send + Sync + 'static {
    /// Advances the state of one element (or of one whole tensor).
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

/// An [`Elementwise`] update as the fused pass calls it: on one block.
pub(crate) trait Kernel: Send + Sync {
    /// State tensors per parameter.
    fn state_len(&self) -> usize;

    /// See [`Elementwise::output_reads_update`].
    fn output_reads_update(&self) -> bool;

    /// `u ← output(u, w, s)` over one block, after `s ← advance(u, w, s)`
    /// unless `replay` (the state was advanced by an earlier pass). `state`
    /// holds the chunk's slices of the state tensors; `at` is the block's
    /// range in them, `u` and `w` the block itself.
    fn run(
        &self,
        replay: bool,
        u: &mut [f32],
        w: &[f32],
        state: &mut [&mut [f32]],
        at: Range<usize>,
    );
}

/// The fused form of an [`Elementwise`] update with `N` state tensors.
pub(crate) struct Map<E, const N: usize>(pub(crate) E);

impl<E: Elementwise<N>, const N: usize> Kernel for Map<E, N> {
    fn state_len(&self) -> usize {
        N
    }

    fn output_reads_update(&self) -> bool {
        self.0.output_reads_update()
    }

    fn run(
        &self,
        replay: bool,
        u: &mut [f32],
        w: &[f32],
        state: &mut [&mut [f32]],
        at: Range<usize>,
    ) {
        let n = u.len();
        let w = &w[..n];
        let Ok(state) = <&mut [&mut [f32]; N]>::try_from(state) else {
            unreachable!("Plan::map opens N state tensors per parameter")
        };
        let mut s = state.each_mut().map(|s| &mut s[at.clone()][..n]);
        let e = &self.0;
        if replay {
            wide(
                #[inline(always)]
                || {
                    for i in 0..n {
                        let st: [f32; N] = std::array::from_fn(|j| s[j][i]);
                        u[i] = exact(e.output(&u[i], &w[i], &st));
                    }
                },
            );
        } else {
            wide(
                #[inline(always)]
                || {
                    for i in 0..n {
                        let mut st: [f32; N] = std::array::from_fn(|j| s[j][i]);
                        exact(e.advance(&u[i], &w[i], &mut st));
                        for (s, v) in s.iter_mut().zip(st) {
                            s[i] = v;
                        }
                        u[i] = exact(e.output(&u[i], &w[i], &st));
                    }
                },
            );
        }
    }
}
