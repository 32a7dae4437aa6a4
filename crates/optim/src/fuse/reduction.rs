//! [`Reduction`]: a transform that rescales updates by a factor computed
//! from norms (a trust ratio per parameter, a clip over all of them).
//!
//! What the norms are taken of is stated once ([`Reduction::measure`],
//! generic over [`Num`]); [`per_parameter`] and [`global`] run it on tensors
//! (the composed path), [`Reducer`] on the blocks of a fused pass, which sums
//! the squares in f64.

use candle_core::{DType, Tensor};

use super::pass::wide;
use crate::num::{Num, exact};
use crate::{Error, Result, Tree};

/// A rescaling of updates by a factor that depends on norms: of `w`, and of
/// [`Reduction::measure`]`(u, w)` for the incoming update `u`.
pub(crate) trait Reduction: Send + Sync + 'static {
    /// One factor from the norms over all parameters together (`true`), or
    /// one per parameter from its own norms (`false`).
    fn global(&self) -> bool {
        false
    }

    /// Whether the factor reads `‖w‖²` (or the measure reads `w`).
    fn reads_weight(&self) -> bool;

    /// The tensor whose norm the factor needs.
    fn measure<T: Num>(&self, u: &T, w: &T) -> Result<T, T::Error>;

    /// The factor, from `‖w‖²` (0 unless [`Reduction::reads_weight`]) and
    /// `‖measure(u, w)‖²`.
    fn factor(&self, w_sq: f64, x_sq: f64) -> f64;
}

/// `u ↦ f·u`, and `u` itself when `f = 1`.
pub(crate) fn rescale<T: Num>(u: &T, factor: f64) -> Result<T, T::Error> {
    if factor == 1.0 {
        Ok(u.clone())
    } else {
        u.affine(factor, 0.)
    }
}

/// `‖t‖²` as a rank-0 f64 tensor, left on the tensor's device (summed in the
/// tensor's dtype).
fn squared_norm(t: &Tensor) -> Result<Tensor> {
    Ok(t.sqr()?.sum_all()?.to_dtype(DType::F64)?)
}

/// The composed update of a per-parameter reduction: each update rescaled by
/// its own factor. The norms are reduced on the device and read back at once.
///
/// # Errors
/// [`Error::TreeMismatch`] if the trees differ in names, or a candle error.
pub(crate) fn per_parameter<R: Reduction>(r: &R, updates: Tree, params: &Tree) -> Result<Tree> {
    updates.check_same_names(params)?;
    if updates.is_empty() {
        return Ok(updates);
    }
    let mut norms = Vec::with_capacity(2 * updates.len());
    for ((_, u), (_, w)) in updates.iter().zip(params.iter()) {
        norms.push(if r.reads_weight() {
            squared_norm(w)?
        } else {
            Tensor::zeros((), DType::F64, w.device())?
        });
        norms.push(squared_norm(&r.measure(u, w)?)?);
    }
    let norms = Tensor::stack(&norms, 0)?.to_vec1::<f64>()?;
    updates
        .into_iter()
        .zip(norms.chunks_exact(2))
        .map(|((name, u), n)| Ok((name, rescale(&u, r.factor(n[0], n[1]))?)))
        .collect()
}

/// The composed update of a global reduction: every update rescaled by one
/// factor from the norms summed over all parameters in name order.
///
/// # Errors
/// [`Error::TreeMismatch`] if `params` lacks a name of `updates` (and `r`
/// reads weights), or a candle error.
pub(crate) fn global<R: Reduction>(r: &R, updates: Tree, params: &Tree) -> Result<Tree> {
    if updates.is_empty() {
        return Ok(updates);
    }
    let mut norms = Vec::with_capacity(2 * updates.len());
    for (name, u) in updates.iter() {
        let w = match params.get(name) {
            Some(w) => w,
            // Not read: any tensor will do.
            None if !r.reads_weight() => u,
            None => {
                return Err(Error::TreeMismatch {
                    name: name.to_owned(),
                });
            }
        };
        if r.reads_weight() {
            norms.push(squared_norm(w)?);
        }
        norms.push(squared_norm(&r.measure(u, w)?)?);
    }
    let norms = Tensor::stack(&norms, 0)?.to_vec1::<f64>()?;
    let (w_sq, x_sq) = if r.reads_weight() {
        norms
            .chunks_exact(2)
            .fold((0.0, 0.0), |(a, b), n| (a + n[0], b + n[1]))
    } else {
        (0.0, norms.iter().sum())
    };
    let factor = r.factor(w_sq, x_sq);
    updates.map(|_, u| Ok(rescale(u, factor)?))
}

/// A [`Reduction`] as the fused pass calls it: on one block.
pub(crate) trait ReduceKernel: Send + Sync {
    /// See [`Reduction::global`].
    fn global(&self) -> bool;
    /// See [`Reduction::reads_weight`].
    fn reads_weight(&self) -> bool;
    /// `u ← measure(u, w)` over one block.
    fn measure(&self, u: &mut [f32], w: &[f32]);
    /// See [`Reduction::factor`].
    fn factor(&self, w_sq: f64, x_sq: f64) -> f64;
    /// `u ← rescale(u, factor)` over one block.
    fn rescale(&self, u: &mut [f32], factor: f64);
}

/// The fused form of a [`Reduction`].
pub(crate) struct Reducer<R>(pub(crate) R);

impl<R: Reduction> ReduceKernel for Reducer<R> {
    fn global(&self) -> bool {
        self.0.global()
    }

    fn reads_weight(&self) -> bool {
        self.0.reads_weight()
    }

    fn measure(&self, u: &mut [f32], w: &[f32]) {
        let w = &w[..u.len()];
        wide(
            #[inline(always)]
            || {
                for (u, w) in u.iter_mut().zip(w) {
                    *u = exact(self.0.measure(u, w));
                }
            },
        );
    }

    fn factor(&self, w_sq: f64, x_sq: f64) -> f64 {
        self.0.factor(w_sq, x_sq)
    }

    fn rescale(&self, u: &mut [f32], factor: f64) {
        wide(
            #[inline(always)]
            || {
                for u in u.iter_mut() {
                    *u = exact(rescale(u, factor));
                }
            },
        );
    }
}
