//! [`Reduction`]: a transform that rescales updates by a factor computed
//! from norms (a trust ratio per parameter, a clip over all of them).
//!
//! What the norms are taken of is stated once ([`Reduction::measure`],
//! generic over [`Num`]); [`per_parameter`] and [`global`] run it on tensors
//! (the composed path), [`ReduceKernel`] in a fused chain's norm pass, which
//! sums the squares in f64, and applies the factor in the next pass.

use std::vec::IntoIter;

use candle_core::{DType, Tensor};

use super::kernel::{Kernel, Pass, Stage, StageVisitor, Stages};
use crate::num::{Num, exact};
use crate::{Error, Result, Tree};

/// A rescaling of updates by a factor that depends on norms: of `w`, and of
/// [`Reduction::measure`]`(u, w)` for the incoming update `u`.
pub(crate) trait Reduction: Copy + Send + Sync + 'static {
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
#[inline(always)]
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

/// A [`Reduction`] as the fused step's driver sees it, between passes.
pub(crate) trait Factor: Send + Sync {
    /// See [`Reduction::global`].
    fn global(&self) -> bool;
    /// See [`Reduction::reads_weight`].
    fn reads_weight(&self) -> bool;
    /// See [`Reduction::factor`].
    fn factor(&self, w_sq: f64, x_sq: f64) -> f64;
}

impl<R: Reduction> Factor for R {
    fn global(&self) -> bool {
        Reduction::global(self)
    }

    fn reads_weight(&self) -> bool {
        Reduction::reads_weight(self)
    }

    fn factor(&self, w_sq: f64, x_sq: f64) -> f64 {
        Reduction::factor(self, w_sq, x_sq)
    }
}

/// A reduction at position `pos` of a fused chain.
pub struct ReduceKernel<R> {
    pub(crate) r: R,
    pub(crate) pos: usize,
}

impl<R: Reduction> Kernel for ReduceKernel<R> {
    const REDUCES: bool = true;

    fn stages<'p, V: StageVisitor<'p>>(&'p self, pass: Pass<'p>, v: V) -> V::Out {
        v.visit(Reduce {
            r: self.r,
            measure: pass.measures(self.pos),
            factor: pass.factor(self.pos),
        })
    }
}

/// A reduction in a pass: the end of its norm pass (`measure`: `u ↦
/// measure(u, w)`, whose squares are summed), or its factor applied (the
/// identity at 1). Selects, not branches, in the loop; the pass that
/// applies the update compiles no measure.
#[derive(Clone, Copy)]
pub struct Reduce<R> {
    r: R,
    measure: bool,
    factor: f64,
}

impl<'p, R: Reduction> Stages<'p> for Reduce<R> {
    type Bound<'a> = Self;

    fn tensors(&self, _: &mut Vec<&'p Tensor>) {}

    #[inline(always)]
    fn bind(&self, _: &mut IntoIter<&mut [f32]>) -> Self {
        *self
    }
}

impl<R: Reduction> Stage for Reduce<R> {
    #[inline(always)]
    fn trim(self, _: usize) -> Self {
        self
    }

    #[inline(always)]
    fn step<const NORM: bool>(&mut self, _: usize, u: f32, w: f32) -> f32 {
        let rescaled = exact(rescale(&u, self.factor));
        if !NORM {
            return rescaled;
        }
        let measured = exact(self.r.measure(&u, &w));
        if self.measure { measured } else { rescaled }
    }
}
