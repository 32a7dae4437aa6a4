//! [`ScheduleSpec`]: how the learning rate moves over a run, relative to the
//! optimizer's peak `η₀`.
//!
//! A schedule is an optional linear warmup from 0 to `η₀`, then a decay. Its
//! lengths are [`Length`]s: steps, epochs or a fraction of the run, turned
//! into steps for a batch size and a training-set size by [`Horizon`], the
//! one place that conversion happens. A spec in epochs therefore means the
//! same amount of data at every batch size (5 warmup epochs are 195 steps at
//! batch 1,536 on 60,000 examples and 7 at batch 8,192), which is how the
//! papers state their recipes.
//!
//! ```toml
//! warmup = { epochs = 5 }
//! decay = { kind = "polynomial", power = 2.0, final_fraction = 0.0 }
//! ```
//!
//! | `decay.kind` | `η(t)/η₀` after warmup, `t` counted from its end, `T` its length | reference |
//! |---|---|---|
//! | `constant` | 1 | |
//! | `linear` | `1 − (1 − α)·min(t, T)/T` | Shallue et al. 2019 |
//! | `polynomial` | `(1 − α)·(1 − min(t, T)/T)^p + α` | You et al. 2017/2020 |
//! | `cosine` | `α + (1 − α)·(1 + cos(π·min(t, T)/T))/2` | Loshchilov & Hutter 2017 |
//! | `piecewise` | `v_i` between boundaries `B_{i−1}` and `B_i` | Goyal et al. 2017 |
//! | `cyclical` | `α + (1 − α)·(1 − |2·(t mod C)/C − 1|)` | Smith 2017 |
//! | `cosine-restarts` | cosine to `α` over `T₀`, restarted with periods `T₀·m^k` | Loshchilov & Hutter 2017 |
//!
//! `length` (linear, polynomial, cosine) defaults to the rest of the run.

use serde::{Deserialize, Serialize};

use crate::error::{ensure, fraction, positive};
use crate::{Error, Result};

/// A learning-rate schedule: warmup, then decay.
///
/// ```
/// use bigbatch_spec::{Decay, Horizon, Length, ScheduleSpec};
/// let s: ScheduleSpec = serde_json::from_str(
///     r#"{"warmup": {"epochs": 2}, "decay": {"kind": "cosine", "final_fraction": 0.01}}"#,
/// ).unwrap();
/// assert_eq!(s.warmup, Some(Length::Epochs(2.0)));
/// // 2 epochs of 60 examples in batches of 10 is 12 steps, at any run length.
/// let h = Horizon { total_steps: 100, steps_per_epoch: 6 };
/// assert_eq!(s.warmup_steps(&h).unwrap(), 12);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Linear warmup from 0 to the peak over this long (none: start at the peak).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<Length>,
    /// What follows the warmup.
    #[serde(default, skip_serializing_if = "Decay::is_constant")]
    pub decay: Decay,
}

/// A duration in a schedule.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Length {
    /// Optimizer steps.
    Steps(u64),
    /// Passes over the training set (fractional allowed), rounded to the nearest step.
    Epochs(f64),
    /// A fraction of the run's steps in `(0, 1]`, rounded up (Shallue et al.
    /// 2019 tune the decay length this way).
    Fraction(f64),
}

/// The decay after the warmup; see the module table.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Decay {
    /// The peak throughout.
    #[default]
    Constant,
    /// Linear decay to `final_fraction·η₀` over `length`, then constant.
    Linear {
        /// `α ∈ [0, 1]`.
        #[serde(default)]
        final_fraction: f64,
        /// `T` (default: the rest of the run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        length: Option<Length>,
    },
    /// Polynomial decay of power `p` to `final_fraction·η₀`.
    Polynomial {
        /// `p > 0` (1: linear; You et al. use 2).
        power: f64,
        /// `α ∈ [0, 1]`.
        #[serde(default)]
        final_fraction: f64,
        /// `T` (default: the rest of the run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        length: Option<Length>,
    },
    /// Half a cosine down to `final_fraction·η₀`.
    Cosine {
        /// `α ∈ [0, 1]`.
        #[serde(default)]
        final_fraction: f64,
        /// `T` (default: the rest of the run).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        length: Option<Length>,
    },
    /// Constant pieces: `values[i]·η₀` from `boundaries[i−1]` to `boundaries[i]`
    /// (step decay: `values = [1, 0.1, 0.01]`).
    Piecewise {
        /// Where each piece ends, increasing; one fewer than `values`.
        boundaries: Vec<Length>,
        /// Each piece's fraction of the peak.
        values: Vec<f64>,
    },
    /// Triangular cycles between `min_fraction·η₀` and `η₀` (Smith 2017).
    Cyclical {
        /// The bottom of each cycle, `α ∈ [0, 1]`.
        min_fraction: f64,
        /// One full cycle (up and down).
        cycle: Length,
    },
    /// SGDR: cosine to `final_fraction·η₀`, restarted after `T₀, T₀m, T₀m², …`.
    CosineRestarts {
        /// `α ∈ [0, 1]`.
        #[serde(default)]
        final_fraction: f64,
        /// `T₀`.
        first_period: Length,
        /// `m ≥ 1`.
        #[serde(default = "one")]
        period_mult: u64,
    },
}

fn one() -> u64 {
    1
}

impl Decay {
    /// Every kind's name, as written in a spec.
    pub const NAMES: [&'static str; 7] = [
        "constant",
        "linear",
        "polynomial",
        "cosine",
        "piecewise",
        "cyclical",
        "cosine-restarts",
    ];

    fn is_constant(&self) -> bool {
        *self == Decay::Constant
    }

    /// The kind's name.
    pub fn name(&self) -> &'static str {
        match self {
            Decay::Constant => "constant",
            Decay::Linear { .. } => "linear",
            Decay::Polynomial { .. } => "polynomial",
            Decay::Cosine { .. } => "cosine",
            Decay::Piecewise { .. } => "piecewise",
            Decay::Cyclical { .. } => "cyclical",
            Decay::CosineRestarts { .. } => "cosine-restarts",
        }
    }

    /// The final fraction `α`, for the kinds that have one.
    pub fn final_fraction_mut(&mut self) -> Option<&mut f64> {
        match self {
            Decay::Linear { final_fraction, .. }
            | Decay::Polynomial { final_fraction, .. }
            | Decay::Cosine { final_fraction, .. }
            | Decay::CosineRestarts { final_fraction, .. } => Some(final_fraction),
            Decay::Cyclical { min_fraction, .. } => Some(min_fraction),
            Decay::Constant | Decay::Piecewise { .. } => None,
        }
    }

    /// The decay length, for the kinds that have one.
    pub fn length_mut(&mut self) -> Option<&mut Option<Length>> {
        match self {
            Decay::Linear { length, .. }
            | Decay::Polynomial { length, .. }
            | Decay::Cosine { length, .. } => Some(length),
            _ => None,
        }
    }
}

/// The run a schedule is laid over: its length and the steps in an epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Horizon {
    /// The optimizer steps in the run.
    pub total_steps: u64,
    /// Optimizer steps per epoch at this batch size.
    pub steps_per_epoch: u64,
}

impl Horizon {
    /// `length` in steps.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for negative or non-finite epochs, or a fraction outside `(0, 1]`.
    pub fn steps(&self, field: &str, length: Length) -> Result<u64> {
        Ok(match length {
            Length::Steps(n) => n,
            Length::Epochs(e) => {
                ensure(
                    e.is_finite() && e >= 0.0,
                    field,
                    e,
                    "a finite number of epochs >= 0",
                )?;
                (e * self.steps_per_epoch as f64).round() as u64
            }
            Length::Fraction(f) => {
                ensure(
                    f > 0.0 && f <= 1.0,
                    field,
                    f,
                    "a fraction of the run in (0, 1]",
                )?;
                (f * self.total_steps as f64).ceil() as u64
            }
        })
    }
}

impl ScheduleSpec {
    /// Linear warmup of `warmup`, then `decay`.
    pub fn new(warmup: Option<Length>, decay: Decay) -> Self {
        Self { warmup, decay }
    }

    /// The warmup in steps (0 without one).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a bad length, or a warmup as long as the run or longer.
    pub fn warmup_steps(&self, horizon: &Horizon) -> Result<u64> {
        let Some(w) = self.warmup else { return Ok(0) };
        let steps = horizon.steps("schedule.warmup", w)?;
        if steps >= horizon.total_steps {
            return Err(Error::Inconsistent {
                field: "schedule.warmup".into(),
                problem: format!(
                    "{steps} warmup steps leave nothing of a {}-step run",
                    horizon.total_steps
                ),
            });
        }
        Ok(steps)
    }

    /// The decay's length in steps: its own, or the rest of the run after the warmup.
    ///
    /// # Errors
    /// As [`ScheduleSpec::warmup_steps`]; a length of 0.
    pub fn decay_steps(&self, horizon: &Horizon) -> Result<u64> {
        let rest = horizon.total_steps - self.warmup_steps(horizon)?;
        let own = match &self.decay {
            Decay::Linear { length, .. }
            | Decay::Polynomial { length, .. }
            | Decay::Cosine { length, .. } => *length,
            _ => None,
        };
        let steps = match own {
            Some(l) => horizon.steps("schedule.decay.length", l)?,
            None => rest,
        };
        Ok(steps.max(1))
    }

    /// Checks the values that do not depend on the run: fractions in
    /// `[0, 1]`, powers `> 0`, lengths finite (epochs `≥ 0`, fractions in
    /// `(0, 1]`), piecewise values matching their boundaries.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] or [`Error::Inconsistent`] naming the field.
    pub fn validate_values(&self) -> Result<()> {
        let length = |field: &str, l: &Length| match *l {
            Length::Steps(_) => Ok(()),
            Length::Epochs(e) => ensure(
                e.is_finite() && e >= 0.0,
                field,
                e,
                "a finite number of epochs >= 0",
            ),
            Length::Fraction(f) => ensure(
                f > 0.0 && f <= 1.0,
                field,
                f,
                "a fraction of the run in (0, 1]",
            ),
        };
        if let Some(w) = &self.warmup {
            length("schedule.warmup", w)?;
        }
        match &self.decay {
            Decay::Constant => {}
            Decay::Linear {
                final_fraction,
                length: l,
            }
            | Decay::Cosine {
                final_fraction,
                length: l,
            } => {
                fraction("schedule.decay.final_fraction", *final_fraction)?;
                if let Some(l) = l {
                    length("schedule.decay.length", l)?;
                }
            }
            Decay::Polynomial {
                power,
                final_fraction,
                length: l,
            } => {
                positive("schedule.decay.power", *power)?;
                fraction("schedule.decay.final_fraction", *final_fraction)?;
                if let Some(l) = l {
                    length("schedule.decay.length", l)?;
                }
            }
            Decay::Piecewise { boundaries, values } => {
                if values.len() != boundaries.len() + 1 {
                    return Err(Error::Inconsistent {
                        field: "schedule.decay.values".into(),
                        problem: format!(
                            "{} values for {} boundaries; there must be one more value than boundaries",
                            values.len(),
                            boundaries.len()
                        ),
                    });
                }
                for v in values {
                    ensure(
                        v.is_finite() && *v >= 0.0,
                        "schedule.decay.values",
                        *v,
                        "finite and >= 0",
                    )?;
                }
                for b in boundaries {
                    length("schedule.decay.boundaries", b)?;
                }
            }
            Decay::Cyclical {
                min_fraction,
                cycle,
            } => {
                fraction("schedule.decay.min_fraction", *min_fraction)?;
                length("schedule.decay.cycle", cycle)?;
            }
            Decay::CosineRestarts {
                final_fraction,
                first_period,
                period_mult,
            } => {
                fraction("schedule.decay.final_fraction", *final_fraction)?;
                length("schedule.decay.first_period", first_period)?;
                ensure(
                    *period_mult >= 1,
                    "schedule.decay.period_mult",
                    *period_mult as f64,
                    ">= 1",
                )?;
            }
        }
        Ok(())
    }

    /// [`ScheduleSpec::validate_values`], then the checks against a run of
    /// `horizon`: the warmup shorter than the run, every length at least a
    /// step, piecewise boundaries increasing.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] or [`Error::Inconsistent`] naming the field.
    pub fn validate(&self, horizon: &Horizon) -> Result<()> {
        self.validate_values()?;
        self.warmup_steps(horizon)?;
        self.decay_steps(horizon)?;
        match &self.decay {
            Decay::Piecewise { boundaries, .. } => {
                let mut previous = 0;
                for b in boundaries {
                    let s = horizon.steps("schedule.decay.boundaries", *b)?;
                    ensure(
                        s > previous,
                        "schedule.decay.boundaries",
                        s as f64,
                        "> 0 and strictly increasing, in steps",
                    )?;
                    previous = s;
                }
            }
            Decay::Cyclical { cycle, .. } => {
                let c = horizon.steps("schedule.decay.cycle", *cycle)?;
                ensure(c >= 2, "schedule.decay.cycle", c as f64, "at least 2 steps")?;
            }
            Decay::CosineRestarts { first_period, .. } => {
                let p = horizon.steps("schedule.decay.first_period", *first_period)?;
                ensure(
                    p >= 1,
                    "schedule.decay.first_period",
                    p as f64,
                    "at least 1 step",
                )?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Horizon = Horizon {
        total_steps: 100,
        steps_per_epoch: 10,
    };

    #[test]
    fn lengths_convert_in_one_place() -> Result<()> {
        assert_eq!(H.steps("x", Length::Steps(7))?, 7);
        assert_eq!(H.steps("x", Length::Epochs(2.5))?, 25);
        assert_eq!(H.steps("x", Length::Fraction(0.333))?, 34);
        assert!(H.steps("x", Length::Fraction(0.0)).is_err());
        assert!(H.steps("x", Length::Epochs(f64::NAN)).is_err());
        Ok(())
    }

    #[test]
    fn a_warmup_as_long_as_the_run_is_refused() {
        let s = ScheduleSpec::new(Some(Length::Epochs(10.0)), Decay::Constant);
        assert!(
            matches!(s.validate(&H), Err(Error::Inconsistent { field, .. }) if field == "schedule.warmup")
        );
        let s = ScheduleSpec::new(Some(Length::Epochs(9.9)), Decay::Constant);
        assert!(s.validate(&H).is_ok());
    }

    #[test]
    fn the_decay_runs_over_the_rest_of_the_run_by_default() -> Result<()> {
        let s = ScheduleSpec::new(
            Some(Length::Steps(20)),
            Decay::Polynomial {
                power: 2.0,
                final_fraction: 0.0,
                length: None,
            },
        );
        assert_eq!(s.decay_steps(&H)?, 80);
        Ok(())
    }

    #[test]
    fn bad_piecewise_and_cycles_name_their_field() {
        let s = ScheduleSpec::new(
            None,
            Decay::Piecewise {
                boundaries: vec![Length::Steps(30), Length::Steps(30)],
                values: vec![1.0, 0.1, 0.01],
            },
        );
        assert!(
            matches!(s.validate(&H), Err(Error::OutOfRange { field, .. }) if field == "schedule.decay.boundaries")
        );
        let s = ScheduleSpec::new(
            None,
            Decay::Cyclical {
                min_fraction: 1.5,
                cycle: Length::Steps(10),
            },
        );
        assert!(
            matches!(s.validate(&H), Err(Error::OutOfRange { field, .. }) if field == "schedule.decay.min_fraction")
        );
    }
}
