//! Learning-rate schedules: pure functions of the step, validated when built.
//!
//! Every schedule here is a small struct implementing [`Schedule`]; its
//! constructor checks the hyperparameters and returns
//! [`Error::InvalidHyperparameter`] instead of building a schedule that would
//! produce NaN or run backwards. Pieces are combined with [`join`]; specs in
//! epochs are turned into steps by [`StepsPerEpoch`], and base learning rates
//! are scaled to a batch size by [`ScalingRule`].
//!
//! | schedule | value at step `t` |
//! |---|---|
//! | [`Constant`] (or a plain `f64`) | `c` |
//! | [`Linear`] (linear warmup) | `a + (b − a)·min(t, T)/T` |
//! | [`CosineWarmup`] | `a + (b − a)·(1 − cos(π·min(t, T)/T))/2` |
//! | [`Polynomial`] | `(a − b)·(1 − min(t, T)/T)^p + b` |
//! | [`CosineDecay`] | `b + (a − b)·(1 + cos(π·min(t, T)/T))/2` |
//! | [`Piecewise`] (step decay) | `v_i` for `t ∈ [B_{i−1}, B_i)` |
//! | [`Exponential`] | `a·r^(t/T)` (floored exponent if staircase), bounded by `b` |
//! | [`Triangular`] (Smith 2017) | `a + (b − a)·(1 − |2·(t mod C)/C − 1|)` |
//! | [`CosineRestarts`] (SGDR) | cosine decay restarted after `T₀, T₀m, T₀m², …` |
//! | [`join`] | piece `i` at `t − B_{i−1}` |
//!
//! ```
//! use bigbatch_optim::schedule::{join, warmup_cosine_decay, CosineDecay, Linear, Schedule};
//! # fn main() -> Result<(), bigbatch_optim::Error> {
//! let s = join(vec![Box::new(Linear::new(0.0, 1.0, 10)?), Box::new(CosineDecay::new(1.0, 0.0, 90)?)], vec![10])?;
//! assert_eq!((s.at(0), s.at(5), s.at(10), s.at(100)), (0.0, 0.5, 1.0, 0.0));
//! let same = warmup_cosine_decay(0.0, 1.0, 10, 100, 0.0)?;
//! assert!((0..120).all(|t| same.at(t) == s.at(t)));
//! # Ok(()) }
//! ```

use std::sync::Arc;

use crate::error::ensure;
use crate::{Error, Result};

mod cyclic;
mod decay;
mod ramp;
mod scaling;

pub use cyclic::{CosineRestarts, Triangular};
pub use decay::{CosineDecay, Exponential, Piecewise, Polynomial};
pub use ramp::{CosineWarmup, Linear, warmup_cosine_decay};
pub use scaling::{ScalingRule, StepsPerEpoch};

/// A learning rate (or any scalar) as a pure function of the step count.
///
/// ```
/// use bigbatch_optim::Schedule;
/// struct Halving;
/// impl Schedule for Halving {
///     fn at(&self, step: u64) -> f64 { 0.5f64.powi(step as i32) }
/// }
/// assert_eq!(Halving.at(2), 0.25);
/// assert_eq!(0.1.at(1_000), 0.1); // a number is a constant schedule
/// ```
pub trait Schedule: Send + Sync {
    /// The value at `step` (0-based: the first update uses `at(0)`).
    fn at(&self, step: u64) -> f64;
}

/// A constant schedule: a plain number is its own schedule.
impl Schedule for f64 {
    fn at(&self, _: u64) -> f64 {
        *self
    }
}

impl<S: Schedule + ?Sized> Schedule for Box<S> {
    fn at(&self, step: u64) -> f64 {
        (**self).at(step)
    }
}

impl<S: Schedule + ?Sized> Schedule for Arc<S> {
    fn at(&self, step: u64) -> f64 {
        (**self).at(step)
    }
}

impl<S: Schedule + ?Sized> Schedule for &S {
    fn at(&self, step: u64) -> f64 {
        (**self).at(step)
    }
}

/// A validated constant: `η(t) = c`.
///
/// # Errors
/// [`Error::InvalidHyperparameter`] if `c` is not finite.
///
/// ```
/// use bigbatch_optim::schedule::{Constant, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// assert_eq!(Constant::new(0.1)?.at(7), 0.1);
/// assert!(Constant::new(f64::NAN).is_err());
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Constant {
    value: f64,
}

impl Constant {
    /// The constant `value`.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] if `value` is not finite.
    pub fn new(value: f64) -> Result<Self> {
        crate::error::ensure_finite("value", value)?;
        Ok(Self { value })
    }
}

impl Schedule for Constant {
    fn at(&self, _: u64) -> f64 {
        self.value
    }
}

/// Schedules played one after another; see [`join`].
pub struct Join {
    schedules: Vec<Box<dyn Schedule>>,
    boundaries: Vec<u64>,
}

impl std::fmt::Debug for Join {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Join")
            .field("pieces", &self.schedules.len())
            .field("boundaries", &self.boundaries)
            .finish()
    }
}

/// Plays `schedules[0]` until `boundaries[0]`, then `schedules[1]` restarted
/// from its own step 0, and so on (optax's `join_schedules`):
///
/// `η(t) = s_i(t − B_{i−1})` for `B_{i−1} ≤ t < B_i`, with `B_{−1} = 0`.
///
/// The pieces meet continuously when `s_i(B_i − B_{i−1}) = s_{i+1}(0)`, as for
/// a warmup ending at the peak a decay starts from.
///
/// # Errors
/// [`Error::InvalidHyperparameter`] (`boundaries`) unless there is exactly one
/// more schedule than boundaries and the boundaries strictly increase from > 0.
///
/// ```
/// use bigbatch_optim::schedule::{join, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let s = join(vec![Box::new(1.0), Box::new(0.1), Box::new(0.01)], vec![30, 60])?;
/// assert_eq!([s.at(29), s.at(30), s.at(60)], [1.0, 0.1, 0.01]);
/// assert!(join(vec![Box::new(1.0)], vec![5]).is_err());
/// # Ok(()) }
/// ```
pub fn join(schedules: Vec<Box<dyn Schedule>>, boundaries: Vec<u64>) -> Result<Join> {
    ensure(
        schedules.len() == boundaries.len() + 1,
        "boundaries",
        boundaries.len() as f64,
        "there must be one schedule more than boundaries",
    )?;
    check_increasing(&boundaries)?;
    Ok(Join {
        schedules,
        boundaries,
    })
}

/// Checks that boundaries are > 0 and strictly increasing.
pub(crate) fn check_increasing(boundaries: &[u64]) -> Result<()> {
    let mut previous = 0;
    for &b in boundaries {
        if b <= previous {
            return Err(Error::InvalidHyperparameter {
                name: "boundaries",
                value: b as f64,
                reason: "must be > 0 and strictly increasing",
            });
        }
        previous = b;
    }
    Ok(())
}

impl Schedule for Join {
    fn at(&self, step: u64) -> f64 {
        let i = self.boundaries.partition_point(|&b| b <= step);
        let start = if i == 0 { 0 } else { self.boundaries[i - 1] };
        self.schedules[i].at(step - start)
    }
}

/// `a·(1 − f) + b·f`: exactly `a` at `f = 0` and exactly `b` at `f = 1`, so
/// pieces that are meant to meet at a boundary meet bit for bit.
pub(crate) fn lerp(a: f64, b: f64, f: f64) -> f64 {
    a * (1.0 - f) + b * f
}

/// `min(t, T)/T` in f64: the fraction of a ramp done.
pub(crate) fn progress(step: u64, steps: u64) -> f64 {
    step.min(steps) as f64 / steps as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_rejects_bad_boundaries() {
        let two = || -> Vec<Box<dyn Schedule>> { vec![Box::new(1.0), Box::new(2.0)] };
        for bad in [vec![], vec![0], vec![3, 3]] {
            let pieces = if bad.len() == 2 {
                vec![
                    Box::new(1.0) as Box<dyn Schedule>,
                    Box::new(2.0),
                    Box::new(3.0),
                ]
            } else {
                two()
            };
            assert!(matches!(
                join(pieces, bad),
                Err(Error::InvalidHyperparameter {
                    name: "boundaries",
                    ..
                })
            ));
        }
    }

    #[test]
    fn join_restarts_each_piece() -> Result<()> {
        let s = join(
            vec![
                Box::new(Linear::new(0.0, 4.0, 4)?),
                Box::new(Linear::new(4.0, 0.0, 2)?),
            ],
            vec![4],
        )?;
        let v: Vec<f64> = (0..8).map(|t| s.at(t)).collect();
        assert_eq!(v, [0.0, 1.0, 2.0, 3.0, 4.0, 2.0, 0.0, 0.0]);
        Ok(())
    }
}
