//! Ramps: linear and cosine warmups, and the warmup-then-cosine recipe.

use super::{CosineDecay, Join, Schedule, join, lerp, progress};
use crate::Result;
use crate::error::{ensure_finite, ensure_steps};

/// A linear ramp from `init` to `end` over `steps`, then constant at `end`:
///
/// `η(t) = a + (b − a)·min(t, T)/T`
///
/// With `a = 0` this is the linear warmup of Goyal et al. 2017 ("Accurate,
/// large minibatch SGD"), reaching the peak exactly at `t = T`.
///
/// ```
/// use bigbatch_optim::schedule::{Linear, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let warmup = Linear::warmup(0.4, 5)?;
/// assert_eq!([warmup.at(0), warmup.at(5), warmup.at(50)], [0.0, 0.4, 0.4]);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Linear {
    init: f64,
    end: f64,
    steps: u64,
}

impl Linear {
    /// A ramp from `init` to `end` over `steps`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if a value is not finite or `steps = 0`.
    pub fn new(init: f64, end: f64, steps: u64) -> Result<Self> {
        ensure_finite("init", init)?;
        ensure_finite("end", end)?;
        ensure_steps("steps", steps)?;
        Ok(Self { init, end, steps })
    }

    /// A linear warmup from 0 to `peak` over `warmup_steps`.
    ///
    /// # Errors
    /// As [`Linear::new`].
    pub fn warmup(peak: f64, warmup_steps: u64) -> Result<Self> {
        Self::new(0.0, peak, warmup_steps)
    }
}

impl Schedule for Linear {
    fn at(&self, step: u64) -> f64 {
        lerp(self.init, self.end, progress(step, self.steps))
    }
}

/// A half-cosine ramp from `init` to `peak` over `steps`, then constant:
///
/// `η(t) = a + (b − a)·(1 − cos(π·min(t, T)/T))/2`
///
/// A warmup with zero slope at both ends.
///
/// ```
/// use bigbatch_optim::schedule::{CosineWarmup, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let s = CosineWarmup::new(0.0, 2.0, 10)?;
/// assert_eq!([s.at(0), s.at(10), s.at(11)], [0.0, 2.0, 2.0]);
/// assert!((s.at(5) - 1.0).abs() < 1e-15);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineWarmup {
    init: f64,
    peak: f64,
    steps: u64,
}

impl CosineWarmup {
    /// A half-cosine ramp from `init` to `peak` over `steps`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if a value is not finite or `steps = 0`.
    pub fn new(init: f64, peak: f64, steps: u64) -> Result<Self> {
        ensure_finite("init", init)?;
        ensure_finite("peak", peak)?;
        ensure_steps("steps", steps)?;
        Ok(Self { init, peak, steps })
    }
}

impl Schedule for CosineWarmup {
    fn at(&self, step: u64) -> f64 {
        if step >= self.steps {
            return self.peak;
        }
        let c = (std::f64::consts::PI * progress(step, self.steps)).cos();
        lerp(self.init, self.peak, (1.0 - c) / 2.0)
    }
}

/// Linear warmup to `peak`, then cosine decay to `end` (optax's
/// `warmup_cosine_decay_schedule`; Goyal et al. 2017 warmup, Loshchilov &
/// Hutter 2017 cosine). `total_steps` counts the warmup.
///
/// `η(t) = Linear(init → peak, W)(t)` for `t < W`, then
/// `CosineDecay(peak → end, total − W)(t − W)`.
///
/// # Errors
/// [`crate::Error::InvalidHyperparameter`] if a value is not finite, or unless
/// `1 ≤ warmup_steps < total_steps`.
///
/// ```
/// use bigbatch_optim::schedule::{warmup_cosine_decay, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let s = warmup_cosine_decay(0.0, 1.0, 5, 15, 0.1)?;
/// assert_eq!([s.at(5), s.at(15)], [1.0, 0.1]);
/// # Ok(()) }
/// ```
pub fn warmup_cosine_decay(
    init: f64,
    peak: f64,
    warmup_steps: u64,
    total_steps: u64,
    end: f64,
) -> Result<Join> {
    ensure_steps("warmup_steps", warmup_steps)?;
    crate::error::ensure(
        total_steps > warmup_steps,
        "total_steps",
        total_steps as f64,
        "must exceed warmup_steps",
    )?;
    join(
        vec![
            Box::new(Linear::new(init, peak, warmup_steps)?),
            Box::new(CosineDecay::new(peak, end, total_steps - warmup_steps)?),
        ],
        vec![warmup_steps],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn invalid_ramps_are_rejected() {
        assert!(matches!(
            Linear::new(0.0, 1.0, 0),
            Err(Error::InvalidHyperparameter { name: "steps", .. })
        ));
        assert!(matches!(
            CosineWarmup::new(f64::INFINITY, 1.0, 3),
            Err(Error::InvalidHyperparameter { name: "init", .. })
        ));
        assert!(matches!(
            warmup_cosine_decay(0.0, 1.0, 10, 10, 0.0),
            Err(Error::InvalidHyperparameter {
                name: "total_steps",
                ..
            })
        ));
    }
}
