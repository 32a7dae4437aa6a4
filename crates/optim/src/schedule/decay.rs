//! Decays: polynomial, cosine, exponential and piecewise-constant (step) schedules.

use super::{Schedule, check_increasing, lerp, progress};
use crate::Result;
use crate::error::{ensure, ensure_finite, ensure_steps};

/// Polynomial decay from `init` to `end` over `steps`, then constant:
///
/// `η(t) = (a − b)·(1 − min(t, T)/T)^p + b`
///
/// `p = 1` is linear decay; `p = 2` is the LARS recipe of You et al. 2017
/// (optax's `polynomial_schedule`).
///
/// ```
/// use bigbatch_optim::schedule::{Polynomial, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let s = Polynomial::new(1.0, 0.0, 2.0, 10)?;
/// assert_eq!([s.at(0), s.at(10), s.at(20)], [1.0, 0.0, 0.0]);
/// assert!((s.at(5) - 0.25).abs() < 1e-15);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Polynomial {
    init: f64,
    end: f64,
    power: f64,
    steps: u64,
}

impl Polynomial {
    /// Decay from `init` to `end` with exponent `power` over `steps`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if a value is not finite,
    /// `power ≤ 0`, or `steps = 0`.
    pub fn new(init: f64, end: f64, power: f64, steps: u64) -> Result<Self> {
        ensure_finite("init", init)?;
        ensure_finite("end", end)?;
        ensure(
            power.is_finite() && power > 0.0,
            "power",
            power,
            "must be finite and > 0",
        )?;
        ensure_steps("steps", steps)?;
        Ok(Self {
            init,
            end,
            power,
            steps,
        })
    }
}

impl Schedule for Polynomial {
    fn at(&self, step: u64) -> f64 {
        let left = 1.0 - progress(step, self.steps);
        lerp(self.end, self.init, left.powf(self.power))
    }
}

/// Cosine decay from `init` to `end` over `steps`, then constant
/// (Loshchilov & Hutter 2017 without restarts; optax's `cosine_decay_schedule`
/// with `alpha = end/init`):
///
/// `η(t) = b + (a − b)·(1 + cos(π·min(t, T)/T))/2`
///
/// ```
/// use bigbatch_optim::schedule::{CosineDecay, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let s = CosineDecay::new(1.0, 0.2, 100)?;
/// assert_eq!([s.at(0), s.at(100), s.at(1000)], [1.0, 0.2, 0.2]);
/// assert!((s.at(50) - 0.6).abs() < 1e-15);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CosineDecay {
    init: f64,
    end: f64,
    steps: u64,
}

impl CosineDecay {
    /// Cosine decay from `init` to `end` over `steps`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if a value is not finite or `steps = 0`.
    pub fn new(init: f64, end: f64, steps: u64) -> Result<Self> {
        ensure_finite("init", init)?;
        ensure_finite("end", end)?;
        ensure_steps("steps", steps)?;
        Ok(Self { init, end, steps })
    }
}

impl Schedule for CosineDecay {
    fn at(&self, step: u64) -> f64 {
        if step >= self.steps {
            return self.end;
        }
        let c = (std::f64::consts::PI * progress(step, self.steps)).cos();
        lerp(self.end, self.init, (1.0 + c) / 2.0)
    }
}

/// Exponential decay (optax's `exponential_decay`):
///
/// `η(t) = a·r^(t/T)` (`⌊t/T⌋` with `staircase`), never past `end` when given
/// (a floor when `r < 1`, a ceiling when `r > 1`).
///
/// ```
/// use bigbatch_optim::schedule::{Exponential, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let s = Exponential::new(1.0, 0.5, 10, true, Some(0.2))?;
/// assert_eq!([s.at(9), s.at(10), s.at(25), s.at(1000)], [1.0, 0.5, 0.25, 0.2]);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exponential {
    init: f64,
    rate: f64,
    transition_steps: u64,
    staircase: bool,
    end: Option<f64>,
}

impl Exponential {
    /// Multiplies `init` by `rate` every `transition_steps`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if a value is not finite,
    /// `rate ≤ 0`, or `transition_steps = 0`.
    pub fn new(
        init: f64,
        rate: f64,
        transition_steps: u64,
        staircase: bool,
        end: Option<f64>,
    ) -> Result<Self> {
        ensure_finite("init", init)?;
        ensure(
            rate.is_finite() && rate > 0.0,
            "rate",
            rate,
            "must be finite and > 0",
        )?;
        ensure_steps("transition_steps", transition_steps)?;
        if let Some(end) = end {
            ensure_finite("end", end)?;
        }
        Ok(Self {
            init,
            rate,
            transition_steps,
            staircase,
            end,
        })
    }
}

impl Schedule for Exponential {
    fn at(&self, step: u64) -> f64 {
        let p = if self.staircase {
            (step / self.transition_steps) as f64
        } else {
            step as f64 / self.transition_steps as f64
        };
        let v = self.init * self.rate.powf(p);
        match self.end {
            Some(end) if self.rate < 1.0 => v.max(end),
            Some(end) if self.rate > 1.0 => v.min(end),
            _ => v,
        }
    }
}

/// A piecewise-constant (step) schedule:
///
/// `η(t) = v_i` for `B_{i−1} ≤ t < B_i` (with `B_{−1} = 0`, `B_n = ∞`).
///
/// The ResNet-50 recipe of Goyal et al. 2017 divides by 10 at epochs 30, 60, 80.
///
/// ```
/// use bigbatch_optim::schedule::{Piecewise, Schedule};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let s = Piecewise::step_decay(0.1, 0.1, vec![30, 60])?;
/// assert_eq!([s.at(0), s.at(30), s.at(60)], [0.1, 0.1 * 0.1, 0.1 * 0.1 * 0.1]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Piecewise {
    values: Vec<f64>,
    boundaries: Vec<u64>,
}

impl Piecewise {
    /// `values[i]` from `boundaries[i − 1]` to `boundaries[i]`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if a value is not finite, the
    /// lengths do not fit (`values.len() = boundaries.len() + 1`), or the
    /// boundaries do not strictly increase from > 0.
    pub fn new(values: Vec<f64>, boundaries: Vec<u64>) -> Result<Self> {
        ensure(
            values.len() == boundaries.len() + 1,
            "boundaries",
            boundaries.len() as f64,
            "there must be one value more than boundaries",
        )?;
        for &v in &values {
            ensure_finite("values", v)?;
        }
        check_increasing(&boundaries)?;
        Ok(Self { values, boundaries })
    }

    /// Starts at `init` and multiplies by `factor` at each boundary.
    ///
    /// # Errors
    /// As [`Piecewise::new`].
    pub fn step_decay(init: f64, factor: f64, boundaries: Vec<u64>) -> Result<Self> {
        let values = std::iter::successors(Some(init), |v| Some(v * factor))
            .take(boundaries.len() + 1)
            .collect();
        Self::new(values, boundaries)
    }
}

impl Schedule for Piecewise {
    fn at(&self, step: u64) -> f64 {
        self.values[self.boundaries.partition_point(|&b| b <= step)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn invalid_decays_are_rejected() {
        assert!(matches!(
            Polynomial::new(1.0, 0.0, 0.0, 10),
            Err(Error::InvalidHyperparameter { name: "power", .. })
        ));
        assert!(matches!(
            Exponential::new(1.0, -0.5, 10, false, None),
            Err(Error::InvalidHyperparameter { name: "rate", .. })
        ));
        assert!(matches!(
            Piecewise::new(vec![1.0], vec![5]),
            Err(Error::InvalidHyperparameter {
                name: "boundaries",
                ..
            })
        ));
        assert!(matches!(
            Piecewise::new(vec![1.0, 2.0, 3.0], vec![5, 4]),
            Err(Error::InvalidHyperparameter {
                name: "boundaries",
                ..
            })
        ));
    }

    #[test]
    fn exponential_smooth_and_growing() -> Result<()> {
        let s = Exponential::new(2.0, 0.25, 2, false, None)?;
        assert!((s.at(1) - 1.0).abs() < 1e-15);
        let g = Exponential::new(1.0, 2.0, 1, false, Some(5.0))?;
        assert_eq!([g.at(2), g.at(3)], [4.0, 5.0]);
        Ok(())
    }
}
