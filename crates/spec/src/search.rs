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

impl Param {
    /// The field's value in `cfg`, as the search sees it (for the
    /// `OneMinus…` params, `1 − value`); `None` where the spec has no such
    /// field or leaves it unset.
    pub fn get(self, cfg: &TrainConfig) -> Option<f64> {
        let opt = &cfg.optimizer;
        let hyper = |name: &str| {
            opt.method
                .hyperparameters()
                .into_iter()
                .find_map(|(n, v)| match v {
                    Value::Number(x) if n == name => Some(x),
                    _ => None,
                })
        };
        let mut schedule = cfg.schedule.clone();
        match self {
            Param::LearningRate => Some(opt.learning_rate),
            Param::OneMinusMomentum => hyper("momentum").map(|m| 1.0 - m),
            Param::OneMinusB1 => hyper("b1").map(|b| 1.0 - b),
            Param::OneMinusB2 => hyper("b2").map(|b| 1.0 - b),
            Param::Eps => hyper("eps"),
            Param::WeightDecay => Some(opt.weight_decay),
            Param::TrustRatioLower => opt.trust_ratio.and_then(|t| t.bounds).map(|b| b[0]),
            Param::TrustRatioUpper => opt.trust_ratio.and_then(|t| t.bounds).map(|b| b[1]),
            Param::WarmupEpochs => match cfg.schedule.warmup {
                Some(Length::Epochs(e)) => Some(e),
                _ => None,
            },
            Param::DecayPower => match cfg.schedule.decay {
                crate::Decay::Polynomial { power, .. } => Some(power),
                _ => None,
            },
            Param::FinalFraction => schedule.decay.final_fraction_mut().map(|f| *f),
            Param::DecayFraction => match schedule.decay.length_mut() {
                Some(Some(Length::Fraction(f))) => Some(*f),
                _ => None,
            },
            Param::LabelSmoothing => Some(cfg.label_smoothing),
        }
    }

    /// The values the field can take at all, `[low, high]`: a search range
    /// moved towards a better point never crosses them.
    pub fn domain(self) -> (f64, f64) {
        match self {
            Param::OneMinusMomentum
            | Param::OneMinusB1
            | Param::OneMinusB2
            | Param::FinalFraction
            | Param::DecayFraction => (0.0, 1.0),
            Param::LabelSmoothing => (0.0, 0.5),
            _ => (0.0, f64::INFINITY),
        }
    }
}

/// Which end of a search range a point sits at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Side {
    /// Near `low`.
    Low,
    /// Near `high`.
    High,
}

/// A searched field whose best value sits at an end of its range: the best
/// may lie beyond it, so the range should move (Shallue et al. 2019, §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// The field.
    pub param: Param,
    /// Which end.
    pub side: Side,
    /// The best value's position in the range, in `[0, 1]`.
    pub position: f64,
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

    /// The range moved to centre on `value` at the same width (in the
    /// dimension's scale), shifted back inside [`Param::domain`] where it
    /// would cross it.
    pub fn recentred(&self, value: f64) -> Dimension {
        let (lo, hi) = self.param.domain();
        let (low, high) = match self.scale {
            Scale::Log => {
                let half = (self.high / self.low).sqrt();
                let (mut low, mut high) = (value / half, value * half);
                if high > hi {
                    (low, high) = (hi / (half * half), hi);
                }
                if low <= lo {
                    (low, high) = (self.low, self.high);
                }
                (low, high)
            }
            Scale::Linear => {
                let half = (self.high - self.low) / 2.0;
                let (mut low, mut high) = (value - half, value + half);
                if high > hi {
                    (low, high) = (hi - 2.0 * half, hi);
                }
                if low < lo {
                    (low, high) = (lo, (lo + 2.0 * half).min(hi));
                }
                (low, high)
            }
        };
        Dimension { low, high, ..*self }
    }

    /// Whether the range can move past `side` at all (it does not already
    /// end at the field's domain limit there).
    fn can_move(&self, side: Side) -> bool {
        let (lo, hi) = self.param.domain();
        match side {
            Side::Low => self.low > lo && (self.scale == Scale::Linear || self.low > 0.0),
            Side::High => self.high < hi,
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

    /// The dimensions whose value in `best` lies within `margin` (a fraction
    /// of the range in the dimension's scale) of an end the range could move
    /// past: where a better point may lie outside the search.
    pub fn edges(&self, best: &TrainConfig, margin: f64) -> Vec<Edge> {
        self.dimensions
            .iter()
            .filter_map(|d| {
                let position = d.position(d.param.get(best)?);
                let side = if position < margin {
                    Side::Low
                } else if position > 1.0 - margin {
                    Side::High
                } else {
                    return None;
                };
                d.can_move(side).then_some(Edge {
                    param: d.param,
                    side,
                    position,
                })
            })
            .collect()
    }

    /// The space with every dimension in `edges` recentred on its value in
    /// `best` ([`Dimension::recentred`]); the others unchanged.
    pub fn recentred(&self, best: &TrainConfig, edges: &[Edge]) -> SearchSpace {
        SearchSpace {
            dimensions: self
                .dimensions
                .iter()
                .map(|d| match d.param.get(best) {
                    Some(v) if edges.iter().any(|e| e.param == d.param) => d.recentred(v),
                    _ => *d,
                })
                .collect(),
        }
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
    fn get_reads_back_what_apply_set() -> Result<()> {
        let mut cfg = momentum();
        cfg.schedule = ScheduleSpec::new(
            None,
            Decay::Linear {
                final_fraction: 0.0,
                length: None,
            },
        );
        for (param, x) in [
            (Param::LearningRate, 0.3),
            (Param::OneMinusMomentum, 0.05),
            (Param::FinalFraction, 0.01),
            (Param::DecayFraction, 0.75),
            (Param::WeightDecay, 1e-4),
        ] {
            param.apply(&mut cfg, x)?;
            let got = param.get(&cfg).ok_or(Error::NotApplicable {
                field: param.path().into(),
                owner: String::new(),
                valid: String::new(),
            })?;
            assert!((got - x).abs() < 1e-15, "{param:?}: {got} != {x}");
        }
        assert_eq!(Param::OneMinusB2.get(&cfg), None);
        Ok(())
    }

    #[test]
    fn a_best_point_near_an_end_is_an_edge_and_recentring_moves_the_range() -> Result<()> {
        let space = SearchSpace {
            dimensions: vec![
                Dimension::log(Param::LearningRate, 1e-2, 1.0),
                Dimension::log(Param::OneMinusMomentum, 1e-2, 1.0),
            ],
        };
        let mut best = momentum();
        Param::LearningRate.apply(&mut best, 0.9)?; // position 0.977: high end
        Param::OneMinusMomentum.apply(&mut best, 0.1)?; // position 0.5: inside
        let edges = space.edges(&best, 0.1);
        assert_eq!(edges.len(), 1);
        assert_eq!(
            (edges[0].param, edges[0].side),
            (Param::LearningRate, Side::High)
        );
        let moved = space.recentred(&best, &edges);
        let lr = moved.dimensions[0];
        // Same width (a factor 100), centred on 0.9 in log scale.
        assert!((lr.low - 0.09).abs() < 1e-12 && (lr.high - 9.0).abs() < 1e-12);
        assert_eq!(moved.dimensions[1], space.dimensions[1]);
        assert!(moved.edges(&best, 0.1).is_empty());
        // 1 − momentum at its domain limit 1 (momentum 0) cannot move up:
        // no edge there, and a recentred range stays inside (0, 1].
        Param::OneMinusMomentum.apply(&mut best, 0.99)?;
        assert!(
            space
                .edges(&best, 0.1)
                .iter()
                .all(|e| e.param != Param::OneMinusMomentum)
        );
        let near_one = Dimension::log(Param::OneMinusMomentum, 1e-2, 0.5).recentred(0.45);
        assert_eq!(near_one.high, 1.0);
        assert!((near_one.low - 0.02).abs() < 1e-12);
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
