//! The simple gradient noise scale `B_simple = tr(Σ)/|G|²`.
//!
//! McCandlish, Kaplan, Amodei and the OpenAI Dota Team (2018), "An Empirical
//! Model of Large-Batch Training", arXiv:1812.06162, §2.2 and Appendix A.
//!
//! For per-example gradients with mean `G` and covariance `Σ`, the mean gradient
//! `G_B` of a batch of `B` independent examples satisfies
//! `E|G_B|² = |G|² + tr(Σ)/B`. Two batch sizes `b < B` at the same weights give
//! two equations and so unbiased estimates of both unknowns:
//!
//! ```text
//! |G|²  ≈ (B·|G_B|² − b·|G_b|²) / (B − b)
//! tr(Σ) ≈ (|G_b|² − |G_B|²) / (1/b − 1/B)
//! ```
//!
//! The naive `|G_B|²` overestimates `|G|²` by `tr(Σ)/B`. Both estimates are
//! noisy, so (Appendix A) they are smoothed separately by exponential moving
//! averages and `B_simple` is the ratio of the smoothed values.
//!
//! With gradient accumulation (or data parallelism) the micro-batches are
//! disjoint parts of the big batch at the same weights, so the estimate costs
//! `O(parameters)` per step and no extra forward or backward pass:
//! [`NoiseScaleTracker`].

use bigbatch_optim::Tree;
pub use bigbatch_record::{NoiseScaleEstimate, NoiseScaleStep};
use serde::{Deserialize, Serialize};

use crate::flat::weighted_sum;
use crate::{Error, Result};

/// A percentile-bootstrap interval at `level` (0.9: the 5th to 95th
/// percentile) of `B_simple` estimated from repeated measurements as the
/// ratio of their mean `tr(Σ)` to their mean `|G|²` (each mean unbiased, the
/// ratio the estimator McCandlish et al. recommend): 1,000 resamples of the
/// repeats with replacement, seeded. `None` for fewer than two repeats, or
/// when more than a tenth of the resamples give `|G|² ≤ 0`.
///
/// ```
/// use bigbatch_noise::{NoiseScaleEstimate, b_simple_interval};
/// let repeats: Vec<_> = [(1.0, 90.0), (1.2, 100.0), (0.8, 110.0), (1.0, 100.0)]
///     .map(|(g, t)| NoiseScaleEstimate::new(g, t)).to_vec();
/// let i = b_simple_interval(&repeats, 0.9, 0).unwrap();
/// assert!(i.lower < 100.0 && 100.0 < i.upper && i.lower > 70.0 && i.upper < 140.0);
/// ```
pub fn b_simple_interval(
    repeats: &[NoiseScaleEstimate],
    level: f64,
    seed: u64,
) -> Option<crate::Interval> {
    use rand::{Rng, SeedableRng};
    const RESAMPLES: usize = 1000;
    let k = repeats.len();
    if k < 2 || !(level > 0.0 && level < 1.0) {
        return None;
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut ratios: Vec<f64> = (0..RESAMPLES)
        .filter_map(|_| {
            let (mut g, mut t) = (0.0, 0.0);
            for _ in 0..k {
                let e = &repeats[rng.random_range(0..k)];
                g += e.g_sq;
                t += e.trace_sigma;
            }
            (g > 0.0).then(|| t / g)
        })
        .collect();
    if ratios.len() * 10 < RESAMPLES * 9 {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    Some(crate::Interval {
        lower: at(tail),
        upper: at(1.0 - tail),
    })
}

/// The two-batch-size estimator of McCandlish et al. (2018, Appendix A.1).
///
/// From squared gradient norms measured at the same weights with a small batch
/// (`b_small` examples, `|G_small|²`) and a big batch (`b_big`, `|G_big|²`):
///
/// ```text
/// |G|²  = (b_big·|G_big|² − b_small·|G_small|²) / (b_big − b_small)
/// tr(Σ) = (|G_small|² − |G_big|²) / (1/b_small − 1/b_big)
/// ```
///
/// Both are unbiased when examples are independent draws. Batch sizes are
/// `f64` so that an effective (harmonic-mean) size can be passed.
///
/// ```
/// use bigbatch_noise::two_batch_estimate;
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// // |G|² = 1, tr(Σ) = 64: E|G_B|² = 1 + 64/B.
/// let e = two_batch_estimate(8., 1. + 64. / 8., 64., 1. + 64. / 64.)?;
/// assert!((e.g_sq - 1.).abs() < 1e-12 && (e.b_simple - 64.).abs() < 1e-9);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidBatchSizes`] unless `0 < b_small < b_big`;
/// [`Error::NonFinite`] if a norm is not finite.
pub fn two_batch_estimate(
    b_small: f64,
    g_small_sq: f64,
    b_big: f64,
    g_big_sq: f64,
) -> Result<NoiseScaleEstimate> {
    if !(b_small > 0. && b_small < b_big && b_big.is_finite()) {
        return Err(Error::InvalidBatchSizes {
            small: b_small,
            big: b_big,
        });
    }
    if !(g_small_sq.is_finite() && g_big_sq.is_finite()) {
        return Err(Error::NonFinite {
            what: "squared gradient norms",
        });
    }
    let g_sq = (b_big * g_big_sq - b_small * g_small_sq) / (b_big - b_small);
    let trace_sigma = (g_small_sq - g_big_sq) / (1. / b_small - 1. / b_big);
    Ok(NoiseScaleEstimate::new(g_sq, trace_sigma))
}

/// The estimator from per-example gradients: the two-batch estimator with
/// single examples as the small batches and the whole batch as the big one.
///
/// With `n` per-example squared norms `|g_i|²` and the squared norm of their
/// mean `|ḡ|²`:
///
/// ```text
/// tr(Σ) = n/(n−1) · ( (1/n) Σ|g_i|² − |ḡ|² ),   |G|² = |ḡ|² − tr(Σ)/n
/// ```
///
/// (the unbiased sample covariance trace). Use it where the model makes
/// per-example gradient norms cheap (e.g. Goodfellow's trick for dense layers).
///
/// ```
/// use bigbatch_noise::per_example_estimate;
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// // Gradients 1 and 3 in one dimension: mean 2, sample variance 2.
/// let e = per_example_estimate(&[1., 9.], 4.)?;
/// assert!((e.trace_sigma - 2.).abs() < 1e-12 && (e.g_sq - 3.).abs() < 1e-12);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::TooFewPoints`] for fewer than two examples; [`Error::NonFinite`].
pub fn per_example_estimate(
    per_example_sq_norms: &[f64],
    mean_grad_sq: f64,
) -> Result<NoiseScaleEstimate> {
    let n = per_example_sq_norms.len();
    if n < 2 {
        return Err(Error::TooFewPoints {
            what: "per-example gradients",
            needed: 2,
            got: n,
        });
    }
    let mean_sq = per_example_sq_norms.iter().sum::<f64>() / n as f64;
    two_batch_estimate(1., mean_sq, n as f64, mean_grad_sq)
}

/// The two-batch estimate from squared norms of `k ≥ 2` disjoint micro-batch
/// mean gradients `(b_j, |G_j|²)` and of the big batch's mean gradient
/// `|G_big|²`, where `G_big = Σ b_j G_j / Σ b_j`.
///
/// Since `E|G_j|² = |G|² + tr(Σ)/b_j`, the mean of the `|G_j|²` is a small-batch
/// norm at the harmonic mean size `b_h = k / Σ(1/b_j)`, so unequal
/// micro-batches (a short last one) stay unbiased.
///
/// ```
/// use bigbatch_noise::micro_batch_estimate_from_norms;
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// let e = micro_batch_estimate_from_norms(&[(8, 9.), (8, 9.)], 5.)?;
/// assert!((e.trace_sigma - 64.).abs() < 1e-9);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::TooFewPoints`] for fewer than two micro-batches,
/// [`Error::InvalidBatchSizes`] for an empty micro-batch, [`Error::NonFinite`].
pub fn micro_batch_estimate_from_norms(
    micro_sq_norms: &[(usize, f64)],
    big_sq_norm: f64,
) -> Result<NoiseScaleEstimate> {
    let k = micro_sq_norms.len();
    if k < 2 {
        return Err(Error::TooFewPoints {
            what: "micro-batches",
            needed: 2,
            got: k,
        });
    }
    if let Some(&(b, _)) = micro_sq_norms.iter().find(|(b, _)| *b == 0) {
        return Err(Error::InvalidBatchSizes {
            small: b as f64,
            big: micro_sq_norms.iter().map(|(b, _)| *b as f64).sum(),
        });
    }
    let b_big: f64 = micro_sq_norms.iter().map(|(b, _)| *b as f64).sum();
    let b_harmonic = k as f64
        / micro_sq_norms
            .iter()
            .map(|(b, _)| 1. / *b as f64)
            .sum::<f64>();
    let g_small_sq = micro_sq_norms.iter().map(|(_, s)| s).sum::<f64>() / k as f64;
    two_batch_estimate(b_harmonic, g_small_sq, b_big, big_sq_norm)
}

/// [`micro_batch_estimate_from_norms`] from the micro-batch mean gradients
/// themselves: `|G_j|²` per tree, and `|G_big|²` of their size-weighted mean
/// (the accumulated big-batch gradient).
///
/// # Errors
/// As [`micro_batch_estimate_from_norms`], plus tree and candle errors.
pub fn micro_batch_estimate(micro_grads: &[(usize, Tree)]) -> Result<NoiseScaleEstimate> {
    let (norms, big_sq) = micro_batch_norms(micro_grads)?;
    micro_batch_estimate_from_norms(&norms, big_sq)
}

/// `(b_j, |G_j|²)` per micro-batch and `|Σ b_j G_j / Σ b_j|²`.
fn micro_batch_norms(micro_grads: &[(usize, Tree)]) -> Result<(Vec<(usize, f64)>, f64)> {
    if micro_grads.len() < 2 {
        return Err(Error::TooFewPoints {
            what: "micro-batches",
            needed: 2,
            got: micro_grads.len(),
        });
    }
    let total: usize = micro_grads.iter().map(|(b, _)| b).sum();
    let norms = micro_grads
        .iter()
        .map(|(b, g)| Ok((*b, g.squared_norm()?)))
        .collect::<Result<Vec<_>>>()?;
    let big = weighted_sum(
        micro_grads
            .iter()
            .map(|(b, g)| (*b as f64 / total.max(1) as f64, g)),
    )?;
    Ok((norms, big.squared_norm()?))
}

/// Settings of a [`NoiseScaleTracker`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseScaleConfig {
    /// The decay `β` of the exponential moving averages of `|G|²` and `tr(Σ)`:
    /// `m_t = β·m_{t−1} + (1−β)·x_t`, debiased by `1/(1−β^t)` as in Adam so that
    /// early values are not pulled towards zero. `0 ≤ β < 1`; default `0.99`
    /// (an averaging window of about 100 steps).
    pub ema_decay: f64,
}

impl Default for NoiseScaleConfig {
    fn default() -> Self {
        Self { ema_decay: 0.99 }
    }
}

/// A streaming estimate of `B_simple` that the training loop feeds once per
/// step with the micro-batch gradients it already computed for gradient
/// accumulation (McCandlish et al. 2018, Appendix A.1).
///
/// The numerator `tr(Σ)` and denominator `|G|²` are smoothed separately and
/// the ratio is taken after smoothing. Per step the work is `O(k·parameters)`
/// for `k` micro-batches (one squared norm each and one weighted sum), and no
/// forward or backward pass; with [`NoiseScaleTracker::observe_sq_norms`] a
/// loop that already holds the norms pays `O(k)`.
///
/// ```
/// use bigbatch_noise::{NoiseScaleConfig, NoiseScaleTracker};
/// use bigbatch_optim::Tree;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// let mut tracker = NoiseScaleTracker::new(NoiseScaleConfig::default())?;
/// let grad = |v: &[f32]| -> Result<Tree, bigbatch_noise::Error> {
///     let mut t = Tree::new();
///     t.insert("w", Tensor::new(v, &Device::Cpu)?);
///     Ok(t)
/// };
/// // Two micro-batches of 4 examples each, at the same weights.
/// let step = tracker.observe(&[(4, grad(&[1., 0.])?), (4, grad(&[0., 1.])?)])?;
/// assert_eq!(step.steps, 1);
/// assert!((step.raw.trace_sigma - 4.).abs() < 1e-9);
/// assert_eq!(tracker.estimate(), Some(step));
/// # Ok(()) }
/// ```
///
/// The tracker is serde-serialisable, so a training loop can checkpoint it
/// and resume with the same moving averages.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NoiseScaleTracker {
    config: NoiseScaleConfig,
    ema_g_sq: f64,
    ema_trace_sigma: f64,
    decay_pow: f64,
    last: Option<NoiseScaleStep>,
}

impl NoiseScaleTracker {
    /// A tracker with no observation yet.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `0 ≤ ema_decay < 1`.
    pub fn new(config: NoiseScaleConfig) -> Result<Self> {
        if !(0.0..1.0).contains(&config.ema_decay) {
            return Err(Error::InvalidConfig {
                name: "ema_decay",
                value: config.ema_decay,
                reason: "must be in [0, 1)",
            });
        }
        Ok(Self {
            config,
            ema_g_sq: 0.,
            ema_trace_sigma: 0.,
            decay_pow: 1.,
            last: None,
        })
    }

    /// The settings.
    pub fn config(&self) -> &NoiseScaleConfig {
        &self.config
    }

    /// Observes one step from its `k ≥ 2` micro-batch mean gradients
    /// `(b_j, G_j)`, all at the same weights and on disjoint examples (see
    /// [`micro_batch_estimate`]).
    ///
    /// # Errors
    /// As [`micro_batch_estimate`]; on error the tracker is unchanged.
    pub fn observe(&mut self, micro_grads: &[(usize, Tree)]) -> Result<NoiseScaleStep> {
        let raw = micro_batch_estimate(micro_grads)?;
        Ok(self.observe_estimate(raw))
    }

    /// Observes one step from squared norms already computed by the caller:
    /// `(b_j, |G_j|²)` per micro-batch and `|G_big|²` of the accumulated gradient
    /// (see [`micro_batch_estimate_from_norms`]).
    ///
    /// # Errors
    /// As [`micro_batch_estimate_from_norms`]; on error the tracker is unchanged.
    pub fn observe_sq_norms(
        &mut self,
        micro_sq_norms: &[(usize, f64)],
        big_sq_norm: f64,
    ) -> Result<NoiseScaleStep> {
        let raw = micro_batch_estimate_from_norms(micro_sq_norms, big_sq_norm)?;
        Ok(self.observe_estimate(raw))
    }

    /// Folds in a raw estimate obtained elsewhere (e.g. [`per_example_estimate`]
    /// or [`two_batch_estimate`] on separately drawn batches).
    pub fn observe_estimate(&mut self, raw: NoiseScaleEstimate) -> NoiseScaleStep {
        let beta = self.config.ema_decay;
        self.ema_g_sq = beta * self.ema_g_sq + (1. - beta) * raw.g_sq;
        self.ema_trace_sigma = beta * self.ema_trace_sigma + (1. - beta) * raw.trace_sigma;
        self.decay_pow *= beta;
        let debias = 1. - self.decay_pow;
        let steps = self.last.map_or(0, |s| s.steps) + 1;
        let step = NoiseScaleStep {
            steps,
            raw,
            smoothed: NoiseScaleEstimate::new(
                self.ema_g_sq / debias,
                self.ema_trace_sigma / debias,
            ),
        };
        self.last = Some(step);
        step
    }

    /// The latest step (raw and smoothed), or `None` before the first one.
    pub fn estimate(&self) -> Option<NoiseScaleStep> {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Tensor};

    fn tree(v: &[f32]) -> Result<Tree> {
        let mut t = Tree::new();
        t.insert("w", Tensor::new(v, &Device::Cpu)?);
        Ok(t)
    }

    proptest::proptest! {
        /// Fed the exact expectations `E|G_b|² = |G|² + tr(Σ)/b`, the two-batch
        /// estimator returns `|G|²` and `tr(Σ)` exactly (up to rounding).
        #[test]
        fn two_batch_inverts_the_expectations(
            g_sq in 0.0f64..1e3,
            trace in 0.0f64..1e5,
            b_small in 1.0f64..512.,
            ratio in 1.5f64..64.,
        ) {
            let b_big = b_small * ratio;
            let e = two_batch_estimate(b_small, g_sq + trace / b_small, b_big, g_sq + trace / b_big)?;
            let scale = g_sq + trace / b_small;
            proptest::prop_assert!((e.g_sq - g_sq).abs() <= 1e-9 * scale);
            proptest::prop_assert!((e.trace_sigma - trace).abs() <= 1e-9 * scale * b_big);
        }

        /// Per-example gradients are micro-batches of size 1.
        #[test]
        fn per_example_is_micro_batches_of_one(
            sq in proptest::collection::vec(0.0f64..10., 2..20),
            mean_sq in 0.0f64..1.,
        ) {
            let micro: Vec<(usize, f64)> = sq.iter().map(|s| (1, *s)).collect();
            let a = per_example_estimate(&sq, mean_sq)?;
            let b = micro_batch_estimate_from_norms(&micro, mean_sq)?;
            proptest::prop_assert!((a.g_sq - b.g_sq).abs() <= 1e-12 * (1. + a.g_sq.abs()));
            proptest::prop_assert!((a.trace_sigma - b.trace_sigma).abs() <= 1e-12 * (1. + a.trace_sigma.abs()));
        }
    }

    #[test]
    fn rejects_bad_inputs() {
        assert!(matches!(
            two_batch_estimate(8., 1., 8., 1.),
            Err(Error::InvalidBatchSizes { .. })
        ));
        assert!(matches!(
            two_batch_estimate(8., f64::NAN, 16., 1.),
            Err(Error::NonFinite { .. })
        ));
        assert!(matches!(
            per_example_estimate(&[1.], 1.),
            Err(Error::TooFewPoints {
                needed: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            micro_batch_estimate_from_norms(&[(0, 1.), (4, 1.)], 1.),
            Err(Error::InvalidBatchSizes { .. })
        ));
        assert!(matches!(
            NoiseScaleTracker::new(NoiseScaleConfig { ema_decay: 1. }),
            Err(Error::InvalidConfig {
                name: "ema_decay",
                ..
            })
        ));
    }

    #[test]
    fn accumulated_micro_batches_equal_the_big_batch() -> anyhow::Result<()> {
        // Micro-batches of sizes 1 and 3: G_big = (1·[3, 0] + 3·[1, 4]) / 4 = [1.5, 3].
        let micro = [(1, tree(&[3., 0.])?), (3, tree(&[1., 4.])?)];
        let (norms, big_sq) = micro_batch_norms(&micro)?;
        assert_eq!(norms, [(1, 9.), (3, 17.)]);
        assert!((big_sq - (1.5f64 * 1.5 + 9.)).abs() < 1e-12);
        let e = micro_batch_estimate(&micro)?;
        let b_h = 2. / (1. + 1. / 3.);
        let expected = two_batch_estimate(b_h, 13., 4., big_sq)?;
        assert_eq!(e, expected);
        Ok(())
    }

    #[test]
    fn per_example_estimator_is_the_sample_covariance_trace() -> anyhow::Result<()> {
        // Two-dimensional gradients; the sample covariance trace by hand.
        let g = [[1., 2.], [3., -1.], [0., 0.], [2., 5.]];
        let n = g.len() as f64;
        let mean = [
            g.iter().map(|v| v[0]).sum::<f64>() / n,
            g.iter().map(|v| v[1]).sum::<f64>() / n,
        ];
        let var: f64 = g
            .iter()
            .map(|v| (v[0] - mean[0]).powi(2) + (v[1] - mean[1]).powi(2))
            .sum::<f64>()
            / (n - 1.);
        let sq: Vec<f64> = g.iter().map(|v| v[0] * v[0] + v[1] * v[1]).collect();
        let mean_sq = mean[0] * mean[0] + mean[1] * mean[1];
        let e = per_example_estimate(&sq, mean_sq)?;
        assert!((e.trace_sigma - var).abs() < 1e-12);
        assert!((e.g_sq - (mean_sq - var / n)).abs() < 1e-12);
        Ok(())
    }

    #[test]
    fn ema_is_debiased_and_ratio_is_taken_after_smoothing() -> anyhow::Result<()> {
        let mut t = NoiseScaleTracker::new(NoiseScaleConfig { ema_decay: 0.5 })?;
        let s1 = t.observe_estimate(NoiseScaleEstimate::new(2., 10.));
        // Debiasing makes the first smoothed value the raw one.
        assert!((s1.smoothed.g_sq - 2.).abs() < 1e-12);
        let s2 = t.observe_estimate(NoiseScaleEstimate::new(-1., 20.));
        // m₁ = 0.5·2 = 1, m₂ = 0.5·1 + 0.5·(−1) = 0, debiased by 1 − 0.5² = 0.75.
        let g = (0.5 * 1. - 0.5 * 1.) / 0.75;
        let tr = (0.5 * 5. + 0.5 * 20.) / 0.75;
        assert!((s2.smoothed.g_sq - g).abs() < 1e-12);
        assert!((s2.smoothed.trace_sigma - tr).abs() < 1e-12);
        assert_eq!(s2.steps, 2);
        // The raw ratio of the second step is negative; the smoothed ratio is
        // the ratio of the smoothed parts, not the mean of ratios.
        assert!(s2.raw.b_simple < 0.);
        let s3 = t.observe_estimate(NoiseScaleEstimate::new(3., 30.));
        assert_eq!(
            s3.smoothed.b_simple,
            s3.smoothed.trace_sigma / s3.smoothed.g_sq
        );
        Ok(())
    }
}
