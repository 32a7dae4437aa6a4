//! Typed search spaces: quasi-random (Halton) points over any numeric field
//! of a [`TrainConfig`], on log or linear scales, as in Shallue et al. (2019,
//! §3.5 and Appendix B).

use serde::{Deserialize, Serialize};

use crate::optimizer::Value;
use crate::{Error, Length, Result, TrainConfig, TrustRatioSpec};

/// The first primes: the bases of the Halton sequence's dimensions.
const PRIMES: [u64; 16] = [2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53];

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
/// ```
/// use bigbatch_spec::halton;
/// assert_eq!(halton(1, 2, 0), vec![0.5, 1.0 / 3.0]);
/// assert_eq!(halton(2, 2, 0), vec![0.25, 2.0 / 3.0]);
/// ```
///
/// # Panics
/// If `dims > 16` ([`SearchSpace::validate`] refuses such spaces first).
pub fn halton(index: u64, dims: usize, seed: u64) -> Vec<f64> {
    assert!(
        dims <= PRIMES.len(),
        "halton supports at most 16 dimensions"
    );
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

/// A field of a [`TrainConfig`] that a search can set: a typed path into the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Param {
    /// `optimizer.learning_rate`.
    LearningRate,
    /// `1 − optimizer.momentum` (Shallue et al. search `1 − γ` on a log scale).
    OneMinusMomentum,
    /// `1 − optimizer.b1`.
    OneMinusB1,
    /// `1 − optimizer.b2`.
    OneMinusB2,
    /// `optimizer.eps`.
    Eps,
    /// `optimizer.weight_decay`.
    WeightDecay,
    /// `optimizer.trust_ratio.bounds[0]`.
    TrustRatioLower,
    /// `optimizer.trust_ratio.bounds[1]`.
    TrustRatioUpper,
    /// `schedule.warmup`, in epochs.
    WarmupEpochs,
    /// `schedule.decay.power` (polynomial decay).
    DecayPower,
    /// `schedule.decay.final_fraction` (or a cyclical schedule's `min_fraction`).
    FinalFraction,
    /// `schedule.decay.length` as a fraction of the run.
    DecayFraction,
    /// `label_smoothing`.
    LabelSmoothing,
}

impl Param {
    /// The field's path in the spec, for messages.
    pub fn path(self) -> &'static str {
        match self {
            Param::LearningRate => "optimizer.learning_rate",
            Param::OneMinusMomentum => "optimizer.momentum",
            Param::OneMinusB1 => "optimizer.b1",
            Param::OneMinusB2 => "optimizer.b2",
            Param::Eps => "optimizer.eps",
            Param::WeightDecay => "optimizer.weight_decay",
            Param::TrustRatioLower => "optimizer.trust_ratio.bounds[0]",
            Param::TrustRatioUpper => "optimizer.trust_ratio.bounds[1]",
            Param::WarmupEpochs => "schedule.warmup",
            Param::DecayPower => "schedule.decay.power",
            Param::FinalFraction => "schedule.decay.final_fraction",
            Param::DecayFraction => "schedule.decay.length",
            Param::LabelSmoothing => "label_smoothing",
        }
    }

    /// Sets this field of `cfg` to `x` (for the `OneMinus…` params, to `1 − x`).
    ///
    /// # Errors
    /// [`Error::NotApplicable`] when the spec has no such field (momentum on
    /// Adam, a decay power on a cosine schedule, bounds without a trust ratio).
    pub fn apply(self, cfg: &mut TrainConfig, x: f64) -> Result<()> {
        let opt = &mut cfg.optimizer;
        let not_applicable = |owner: &str, valid: &str| Error::NotApplicable {
            field: self.path().to_owned(),
            owner: owner.to_owned(),
            valid: valid.to_owned(),
        };
        match self {
            Param::LearningRate => opt.learning_rate = x,
            Param::OneMinusMomentum => opt.method.set("momentum", Value::Number(1.0 - x))?,
            Param::OneMinusB1 => opt.method.set("b1", Value::Number(1.0 - x))?,
            Param::OneMinusB2 => opt.method.set("b2", Value::Number(1.0 - x))?,
            Param::Eps => opt.method.set("eps", Value::Number(x))?,
            Param::WeightDecay => opt.weight_decay = x,
            Param::TrustRatioLower | Param::TrustRatioUpper => {
                if !opt.is_layerwise() {
                    return Err(not_applicable(
                        opt.method.name(),
                        "a trust ratio (set optimizer.trust_ratio, or use lars or lamb)",
                    ));
                }
                let t = opt.trust_ratio.get_or_insert_with(TrustRatioSpec::default);
                let [lo, hi] = t.bounds.get_or_insert([0.0, f64::MAX]);
                *(if self == Param::TrustRatioLower {
                    lo
                } else {
                    hi
                }) = x;
            }
            Param::WarmupEpochs => cfg.schedule.warmup = Some(Length::Epochs(x)),
            Param::DecayPower => match &mut cfg.schedule.decay {
                crate::Decay::Polynomial { power, .. } => *power = x,
                other => return Err(not_applicable(other.name(), "polynomial decay")),
            },
            Param::FinalFraction => {
                let name = cfg.schedule.decay.name();
                *cfg.schedule.decay.final_fraction_mut().ok_or_else(|| {
                    not_applicable(
                        name,
                        "linear, polynomial, cosine, cyclical or cosine-restarts decay",
                    )
                })? = x;
            }
            Param::DecayFraction => {
                let name = cfg.schedule.decay.name();
                *cfg.schedule
                    .decay
                    .length_mut()
                    .ok_or_else(|| not_applicable(name, "linear, polynomial or cosine decay"))? =
                    Some(Length::Fraction(x));
            }
            Param::LabelSmoothing => cfg.label_smoothing = x,
        }
        Ok(())
    }
}

/// How a dimension's unit interval maps onto its range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scale {
    /// `low·(high/low)^u` (both ends > 0).
    #[default]
    Log,
    /// `low + (high − low)·u`.
    Linear,
}

/// One searched field and its range.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dimension {
    /// The field.
    pub param: Param,
    /// The smallest value.
    pub low: f64,
    /// The largest value.
    pub high: f64,
    /// Log or linear (log).
    #[serde(default)]
    pub scale: Scale,
}

impl Dimension {
    /// `param` searched on a log scale over `[low, high]`.
    pub fn log(param: Param, low: f64, high: f64) -> Self {
        Self {
            param,
            low,
            high,
            scale: Scale::Log,
        }
    }

    /// `param` searched on a linear scale over `[low, high]`.
    pub fn linear(param: Param, low: f64, high: f64) -> Self {
        Self {
            param,
            low,
            high,
            scale: Scale::Linear,
        }
    }

    /// The value at `u ∈ [0, 1]`.
    pub fn at(&self, u: f64) -> f64 {
        match self.scale {
            Scale::Log => self.low * (self.high / self.low).powf(u),
            Scale::Linear => self.low + (self.high - self.low) * u,
        }
    }

    /// Where `value` sits in the range, in `[0, 1]` (the inverse of [`Dimension::at`]).
    pub fn position(&self, value: f64) -> f64 {
        match self.scale {
            Scale::Log => (value / self.low).ln() / (self.high / self.low).ln(),
            Scale::Linear => (value - self.low) / (self.high - self.low),
        }
    }

    fn validate(&self) -> Result<()> {
        let field = format!("search.{}", self.param.path());
        let ordered = self.low.is_finite() && self.high.is_finite() && self.low <= self.high;
        let positive = self.scale == Scale::Linear || self.low > 0.0;
        if ordered && positive {
            Ok(())
        } else {
            Err(Error::OutOfRange {
                field,
                value: self.low,
                expected: "a finite, ordered range [low, high] (low > 0 on a log scale)",
            })
        }
    }
}

/// A search space: dimensions over fields of a base [`TrainConfig`].
///
/// ```
/// use bigbatch_spec::{Dimension, Method, OptimizerSpec, Param, SearchSpace, TrainConfig, Budget};
/// let space = SearchSpace { dimensions: vec![
///     Dimension::log(Param::OneMinusB2, 1e-4, 1e-1),
///     Dimension::log(Param::WeightDecay, 1e-5, 1e-2),
/// ]};
/// let base = TrainConfig::new(64, Budget::Epochs(1), OptimizerSpec::new(Method::named("adamw").unwrap()));
/// let a = space.points(&base, 8, 7).unwrap();
/// assert_eq!(a, space.points(&base, 8, 7).unwrap());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpace {
    /// The searched fields, in Halton dimension order.
    pub dimensions: Vec<Dimension>,
}

/// One point of a search: the configuration it sets and where it came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SearchPoint {
    /// The index in the Halton sequence (from 1).
    pub index: u64,
    /// The base configuration with this point's values set.
    pub config: TrainConfig,
}

impl SearchSpace {
    /// Checks the ranges, and that every field exists in `base` and accepts
    /// both ends of its range.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for a bad range or value, [`Error::NotApplicable`]
    /// for a field the base spec does not have, [`Error::Inconsistent`] for
    /// more than 16 dimensions or a field searched twice.
    pub fn validate(&self, base: &TrainConfig) -> Result<()> {
        if self.dimensions.len() > PRIMES.len() {
            return Err(Error::Inconsistent {
                field: "search.dimensions".into(),
                problem: format!(
                    "{} dimensions; at most {}",
                    self.dimensions.len(),
                    PRIMES.len()
                ),
            });
        }
        for (i, d) in self.dimensions.iter().enumerate() {
            d.validate()?;
            if self.dimensions[..i].iter().any(|e| e.param == d.param) {
                return Err(Error::Inconsistent {
                    field: format!("search.{}", d.param.path()),
                    problem: "searched twice".into(),
                });
            }
            for end in [d.low, d.high] {
                let mut cfg = base.clone();
                d.param.apply(&mut cfg, end)?;
                cfg.validate()?;
            }
        }
        Ok(())
    }

    /// The first `n` quasi-random points (Halton indices `1..=n`, rotated by
    /// `seed`), each `base` with the point's values set. Reproducible from `seed`.
    ///
    /// # Errors
    /// As [`SearchSpace::validate`].
    pub fn points(&self, base: &TrainConfig, n: usize, seed: u64) -> Result<Vec<SearchPoint>> {
        self.validate(base)?;
        (1..=n as u64)
            .map(|index| {
                let u = halton(index, self.dimensions.len(), seed);
                let mut config = base.clone();
                for (d, u) in self.dimensions.iter().zip(u) {
                    d.param.apply(&mut config, d.at(u))?;
                }
                Ok(SearchPoint { index, config })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Budget, Decay, Method, OptimizerSpec, ScheduleSpec};

    fn momentum() -> TrainConfig {
        TrainConfig::new(64, Budget::Steps(100), OptimizerSpec::default())
    }

    #[test]
    fn halton_base_two_and_three_match_the_definition() {
        let xs: Vec<f64> = (1..=4).map(|i| halton(i, 1, 0)[0]).collect();
        assert_eq!(xs, [0.5, 0.25, 0.75, 0.125]);
        let ys: Vec<f64> = (1..=3).map(|i| halton(i, 2, 0)[1]).collect();
        assert_eq!(ys, [1.0 / 3.0, 2.0 / 3.0, 1.0 / 9.0]);
    }

    #[test]
    fn points_set_the_fields_the_dimensions_name() -> Result<()> {
        let mut base = momentum();
        base.schedule = ScheduleSpec::new(
            None,
            Decay::Linear {
                final_fraction: 0.0,
                length: None,
            },
        );
        let space = SearchSpace {
            dimensions: vec![
                Dimension::log(Param::LearningRate, 1e-2, 1.0),
                Dimension::log(Param::OneMinusMomentum, 1e-2, 1.0),
                Dimension::log(Param::FinalFraction, 1e-3, 0.1),
                Dimension::linear(Param::DecayFraction, 0.5, 1.0),
            ],
        };
        for p in space.points(&base, 8, 0)? {
            let u = halton(p.index, 4, 0);
            assert_eq!(p.config.optimizer.learning_rate, 1e-2 * 100f64.powf(u[0]));
            let Method::Momentum { momentum } = p.config.optimizer.method else {
                panic!("not momentum")
            };
            assert_eq!(momentum, 1.0 - 1e-2 * 100f64.powf(u[1]));
            let Decay::Linear {
                final_fraction,
                length,
            } = p.config.schedule.decay
            else {
                panic!("not linear")
            };
            assert_eq!(final_fraction, 1e-3 * 100f64.powf(u[2]));
            assert_eq!(length, Some(Length::Fraction(0.5 + 0.5 * u[3])));
        }
        Ok(())
    }

    #[test]
    fn fields_the_spec_lacks_are_refused_before_any_point() {
        let space = SearchSpace {
            dimensions: vec![Dimension::log(Param::OneMinusB2, 1e-4, 1e-1)],
        };
        assert!(matches!(
            space.points(&momentum(), 4, 0),
            Err(Error::NotApplicable { .. })
        ));
        let space = SearchSpace {
            dimensions: vec![Dimension::log(Param::LearningRate, 1.0, 0.1)],
        };
        assert!(matches!(
            space.points(&momentum(), 4, 0),
            Err(Error::OutOfRange { .. })
        ));
        let space = SearchSpace {
            dimensions: vec![Dimension::linear(Param::LabelSmoothing, 0.0, 1.0)],
        };
        assert!(
            matches!(space.points(&momentum(), 4, 0), Err(Error::OutOfRange { field, .. }) if field == "label_smoothing")
        );
    }
}
