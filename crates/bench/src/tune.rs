//! Metaparameter search per batch size: quasi-random (Halton) points over a
//! log-scaled search space, as in Shallue et al. (2019, §3.5 and Appendix B).

use serde::{Deserialize, Serialize};

use crate::{Error, LrSchedule, OptimizerConfig, Result};

/// The first primes: the bases of the Halton sequence's dimensions.
const PRIMES: [u64; 8] = [2, 3, 5, 7, 11, 13, 17, 19];

/// The radical inverse of `index` in base `base`: its digits mirrored about
/// the radix point, e.g. `6 = 110₂ ↦ 0.011₂ = 0.375`.
fn radical_inverse(mut index: u64, base: u64) -> f64 {
    let (mut inverse, mut scale) = (0.0, 1.0 / base as f64);
    while index > 0 {
        inverse += (index % base) as f64 * scale;
        index /= base;
        scale /= base as f64;
    }
    inverse
}

/// Point `index` of the `dims`-dimensional Halton sequence in `[0, 1)^dims`,
/// shifted by a seed-dependent offset (a Cranley–Patterson rotation, so
/// different seeds give different but equally uniform point sets; seed 0 is
/// the plain sequence).
///
/// The plain sequence skips index 0 (the origin).
///
/// ```
/// use bigbatch_bench::halton;
/// assert_eq!(halton(1, 2, 0), vec![0.5, 1.0 / 3.0]);
/// assert_eq!(halton(2, 2, 0), vec![0.25, 2.0 / 3.0]);
/// ```
///
/// # Panics
/// If `dims > 8`.
pub fn halton(index: u64, dims: usize, seed: u64) -> Vec<f64> {
    assert!(dims <= PRIMES.len(), "halton supports at most 8 dimensions");
    PRIMES[..dims]
        .iter()
        .enumerate()
        .map(|(d, &base)| {
            let shift = if seed == 0 {
                0.0
            } else {
                unit_hash(seed, d as u64)
            };
            (radical_inverse(index, base) + shift).fract()
        })
        .collect()
}

/// A uniform number in `[0, 1)` from `(seed, dim)` (SplitMix64).
fn unit_hash(seed: u64, dim: u64) -> f64 {
    let mut z = seed
        .wrapping_add(dim.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// A closed interval searched on a log scale.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRange {
    /// The smallest value.
    pub low: f64,
    /// The largest value.
    pub high: f64,
}

impl LogRange {
    /// `low·(high/low)^u` for `u ∈ [0, 1]`.
    pub fn at(&self, u: f64) -> f64 {
        self.low * (self.high / self.low).powf(u)
    }

    fn validate(&self, name: &str) -> Result<()> {
        if self.low > 0.0 && self.high >= self.low && self.high.is_finite() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "{name} range [{}, {}] must be positive and ordered",
                self.low, self.high
            )))
        }
    }
}

/// A closed interval searched on a linear scale.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearRange {
    /// The smallest value.
    pub low: f64,
    /// The largest value.
    pub high: f64,
}

impl LinearRange {
    /// `low + (high − low)·u` for `u ∈ [0, 1]`.
    pub fn at(&self, u: f64) -> f64 {
        self.low + (self.high - self.low) * u
    }

    fn validate(&self, name: &str, within: std::ops::RangeInclusive<f64>) -> Result<()> {
        if within.contains(&self.low) && within.contains(&self.high) && self.low <= self.high {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "{name} range [{}, {}] must be ordered and within [{}, {}]",
                self.low,
                self.high,
                within.start(),
                within.end()
            )))
        }
    }
}

/// The search space of a linear learning-rate decay ([`LrSchedule::LinearDecay`]):
/// the final fraction `α` on a log scale and the decay length as a fraction
/// of the run on a linear one (Shallue et al. 2019, Appendix C).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LinearDecaySpace {
    /// `α`: the final learning rate over the initial one, within `(0, 1]`.
    pub final_fraction: LogRange,
    /// The decay steps over the run's steps, within `(0, 1]`.
    pub decay_fraction: LinearRange,
}

/// The search space of heavy-ball momentum: learning rate and `1 − momentum`,
/// both log-uniform (Shallue et al. 2019 search `η` and `1 − γ` on log scales),
/// and optionally the parameters of a linear learning-rate decay.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchSpace {
    /// The learning rate `η`.
    pub learning_rate: LogRange,
    /// One minus the momentum coefficient, `1 − γ`.
    pub one_minus_momentum: LogRange,
    /// Search a linear decay of the learning rate too (`None`: constant).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_decay: Option<LinearDecaySpace>,
}

/// One point of a search: the optimizer it configures and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPoint {
    /// The index in the Halton sequence.
    pub index: u64,
    /// The optimizer at this point.
    pub optimizer: OptimizerConfig,
    /// Its learning-rate schedule.
    pub schedule: LrSchedule,
}

impl SearchSpace {
    /// The first `n` quasi-random points (Halton indices `1..=n`, rotated by
    /// `seed`), each a momentum optimizer with its schedule: two dimensions,
    /// four with a linear decay. Reproducible from `seed`.
    ///
    /// ```
    /// use bigbatch_bench::{LogRange, SearchSpace};
    /// let space = SearchSpace {
    ///     learning_rate: LogRange { low: 1e-3, high: 1.0 },
    ///     one_minus_momentum: LogRange { low: 1e-2, high: 0.5 },
    ///     linear_decay: None,
    /// };
    /// let points = space.points(4, 7).unwrap();
    /// assert_eq!(points.len(), 4);
    /// assert_eq!(points, space.points(4, 7).unwrap());
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] for a range that is not positive and ordered.
    pub fn points(&self, n: usize, seed: u64) -> Result<Vec<SearchPoint>> {
        self.learning_rate.validate("learning_rate")?;
        self.one_minus_momentum.validate("one_minus_momentum")?;
        if let Some(d) = &self.linear_decay {
            d.final_fraction.validate("final_fraction")?;
            if d.final_fraction.high > 1.0 {
                return Err(Error::Config(format!(
                    "final_fraction range ends at {} > 1",
                    d.final_fraction.high
                )));
            }
            d.decay_fraction
                .validate("decay_fraction", f64::MIN_POSITIVE..=1.0)?;
        }
        let dims = if self.linear_decay.is_some() { 4 } else { 2 };
        Ok((1..=n as u64)
            .map(|index| {
                let u = halton(index, dims, seed);
                SearchPoint {
                    index,
                    optimizer: OptimizerConfig::Momentum {
                        learning_rate: self.learning_rate.at(u[0]),
                        momentum: 1.0 - self.one_minus_momentum.at(u[1]),
                    },
                    schedule: self.linear_decay.map_or(LrSchedule::Constant, |d| {
                        LrSchedule::LinearDecay {
                            final_fraction: d.final_fraction.at(u[2]),
                            decay_fraction: d.decay_fraction.at(u[3]),
                        }
                    }),
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halton_base_two_and_three_match_the_definition() {
        let xs: Vec<f64> = (1..=4).map(|i| halton(i, 1, 0)[0]).collect();
        assert_eq!(xs, [0.5, 0.25, 0.75, 0.125]);
        let ys: Vec<f64> = (1..=3).map(|i| halton(i, 2, 0)[1]).collect();
        assert_eq!(ys, [1.0 / 3.0, 2.0 / 3.0, 1.0 / 9.0]);
    }

    #[test]
    fn search_points_are_reproducible_from_a_seed_and_in_range() -> Result<()> {
        let space = SearchSpace {
            learning_rate: LogRange {
                low: 1e-3,
                high: 10.0,
            },
            one_minus_momentum: LogRange {
                low: 1e-3,
                high: 1.0,
            },
            linear_decay: None,
        };
        let a = space.points(16, 42)?;
        assert_eq!(a, space.points(16, 42)?);
        assert_ne!(a, space.points(16, 43)?);
        for p in &a {
            let OptimizerConfig::Momentum {
                learning_rate,
                momentum,
            } = p.optimizer
            else {
                panic!("not momentum: {:?}", p.optimizer);
            };
            assert!((1e-3..=10.0).contains(&learning_rate));
            assert!((0.0..=0.999 + 1e-12).contains(&momentum));
        }
        Ok(())
    }

    #[test]
    fn a_decay_space_adds_two_halton_dimensions() -> Result<()> {
        let space = SearchSpace {
            learning_rate: LogRange {
                low: 1e-2,
                high: 1.0,
            },
            one_minus_momentum: LogRange {
                low: 1e-2,
                high: 1.0,
            },
            linear_decay: Some(LinearDecaySpace {
                final_fraction: LogRange {
                    low: 1e-3,
                    high: 0.1,
                },
                decay_fraction: LinearRange {
                    low: 0.5,
                    high: 1.0,
                },
            }),
        };
        let points = space.points(8, 0)?;
        for p in &points {
            // Unrotated Halton, bases 5 and 7 in dimensions 3 and 4.
            let u = halton(p.index, 4, 0);
            let LrSchedule::LinearDecay {
                final_fraction,
                decay_fraction,
            } = p.schedule
            else {
                panic!("constant schedule at {}", p.index);
            };
            assert!((final_fraction - 1e-3 * 100f64.powf(u[2])).abs() < 1e-15);
            assert!((decay_fraction - (0.5 + 0.5 * u[3])).abs() < 1e-15);
        }
        assert_eq!(halton(1, 4, 0)[2..], [0.2, 1.0 / 7.0]);
        let no_decay = SearchSpace {
            linear_decay: None,
            ..space
        };
        assert!(
            no_decay
                .points(8, 0)?
                .iter()
                .all(|p| p.schedule == LrSchedule::Constant)
        );
        Ok(())
    }

    #[test]
    fn empty_or_inverted_ranges_are_config_errors() {
        let space = SearchSpace {
            learning_rate: LogRange {
                low: 1.0,
                high: 0.1,
            },
            one_minus_momentum: LogRange {
                low: 0.1,
                high: 1.0,
            },
            linear_decay: None,
        };
        assert!(matches!(space.points(2, 0), Err(Error::Config(_))));
    }
}
