//! Cyclical schedules: triangular cycles (Smith 2017) and cosine with warm restarts (SGDR).

use super::{Schedule, lerp};
use crate::Result;
use crate::error::{ensure, ensure_finite, ensure_steps};

/// Smith's triangular cyclical learning rate ("Cyclical learning rates for
/// training neural networks", WACV 2017): from `base` up to `max` and back
/// once per `cycle_steps` (Smith's `stepsize` is half a cycle).
///
/// `η(t) = a + (b − a)·(1 − |2·(t mod C)/C − 1|)`
///
/// ```
/// use bigbatch_optim::schedule::{Triangular, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let s = Triangular::new(0.1, 1.0, 10)?;
/// assert_eq!([s.at(0), s.at(5), s.at(10)], [0.1, 1.0, 0.1]);
/// assert!((s.at(15) - 1.0).abs() < 1e-15);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Triangular {
    base: f64,
    max: f64,
    cycle_steps: u64,
}

impl Triangular {
    /// Cycles between `base` and `max` every `cycle_steps`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if a value is not finite or
    /// `cycle_steps < 2`.
    pub fn new(base: f64, max: f64, cycle_steps: u64) -> Result<Self> {
        ensure_finite("base", base)?;
        ensure_finite("max", max)?;
        ensure(
            cycle_steps >= 2,
            "cycle_steps",
            cycle_steps as f64,
            "must be >= 2",
        )?;
        Ok(Self {
            base,
            max,
            cycle_steps,
        })
    }
}

impl Schedule for Triangular {
    fn at(&self, step: u64) -> f64 {
        let x = (step % self.cycle_steps) as f64 / self.cycle_steps as f64;
        lerp(self.base, self.max, 1.0 - (2.0 * x - 1.0).abs())
    }
}

/// Cosine annealing with warm restarts (Loshchilov & Hutter 2017, "SGDR",
/// eq. 5; PyTorch's `CosineAnnealingWarmRestarts`): periods
/// `T_i = T₀·mᶦ`, and within a period, after `t_cur` steps,
///
/// `η = η_min + (η_max − η_min)·(1 + cos(π·t_cur/T_i))/2`
///
/// ```
/// use bigbatch_optim::schedule::{CosineRestarts, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let s = CosineRestarts::new(1.0, 0.0, 4, 2)?; // periods 4, 8, 16, …
/// assert_eq!([s.at(0), s.at(2), s.at(4), s.at(8), s.at(12)], [1.0, 0.5, 1.0, 0.5, 1.0]);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineRestarts {
    max: f64,
    min: f64,
    first_period: u64,
    period_mult: u64,
}

impl CosineRestarts {
    /// Restarts at `max` after `first_period` steps, each period `period_mult`
    /// times longer than the one before.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if a value is not finite or
    /// `first_period`, `period_mult` are 0.
    pub fn new(max: f64, min: f64, first_period: u64, period_mult: u64) -> Result<Self> {
        ensure_finite("max", max)?;
        ensure_finite("min", min)?;
        ensure_steps("first_period", first_period)?;
        ensure_steps("period_mult", period_mult)?;
        Ok(Self {
            max,
            min,
            first_period,
            period_mult,
        })
    }
}

impl Schedule for CosineRestarts {
    fn at(&self, step: u64) -> f64 {
        let (mut t, mut period) = (step, self.first_period);
        if self.period_mult == 1 {
            t %= period;
        } else {
            while t >= period {
                t -= period;
                period = period.saturating_mul(self.period_mult);
            }
        }
        let c = (std::f64::consts::PI * t as f64 / period as f64).cos();
        lerp(self.min, self.max, (1.0 + c) / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn invalid_cycles_are_rejected() {
        assert!(matches!(
            Triangular::new(0.0, 1.0, 1),
            Err(Error::InvalidHyperparameter {
                name: "cycle_steps",
                ..
            })
        ));
        assert!(matches!(
            CosineRestarts::new(1.0, 0.0, 5, 0),
            Err(Error::InvalidHyperparameter {
                name: "period_mult",
                ..
            })
        ));
    }

    #[test]
    fn constant_periods_repeat() -> Result<()> {
        let s = CosineRestarts::new(1.0, 0.0, 3, 1)?;
        assert!((0..30).all(|t| s.at(t) == s.at(t % 3)));
        Ok(())
    }
}
