//! The steps/examples trade-off and the critical batch size.
//!
//! McCandlish et al. (2018), "An Empirical Model of Large-Batch Training",
//! arXiv:1812.06162, §2.3 eq. 2.11: training to a fixed target with batch size
//! `B` takes `S` steps and `E = B·S` examples, related by
//!
//! ```text
//! (S/S_min − 1)(E/E_min − 1) = 1,
//! ```
//!
//! whose solution along `E = B·S` is `S(B) = S_min + E_min/B`, i.e.
//! `S = S_min(1 + B_crit/B)` and `E = E_min(1 + B/B_crit)` with the critical
//! batch size `B_crit = E_min/S_min` (the point of the hyperbola where both are
//! twice their minimum). Shallue et al. (2019, JMLR) measure the same curves.

pub use bigbatch_record::{Interval, ParetoBootstrap, ParetoFit};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// One training run: the batch size and the steps it took to reach the target.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParetoPoint {
    /// The batch size `B`.
    pub batch_size: f64,
    /// The steps `S` to reach the target.
    pub steps: f64,
}

impl ParetoPoint {
    /// A run of `steps` steps at batch size `batch_size`.
    pub fn new(batch_size: f64, steps: f64) -> Self {
        Self { batch_size, steps }
    }

    /// The examples processed, `E = B·S`.
    pub fn examples(&self) -> f64 {
        self.batch_size * self.steps
    }
}

const SEARCH_DECADES: f64 = 6.;
const GRID: usize = 241;

/// Fits `S_min` and `E_min` to runs at several batch sizes by minimising
/// `Σ_i (log S_i − log(S_min + E_min/B_i))²`.
///
/// For a fixed `B_crit = E_min/S_min` the model is
/// `log S = log S_min + log(1 + B_crit/B)`, so the best `log S_min` is a mean of
/// residuals; the remaining one-dimensional problem in `log B_crit` is solved
/// by a grid over twelve decades around the data, refined by golden-section
/// search. Deterministic.
///
/// ```
/// use bigbatch_noise::{ParetoPoint, fit_pareto};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// let points: Vec<_> = [16., 64., 256., 1024.]
///     .iter()
///     .map(|&b| ParetoPoint::new(b, 1000. + 128_000. / b))
///     .collect();
/// let fit = fit_pareto(&points)?;
/// assert!((fit.b_crit - 128.).abs() < 1e-4 && fit.identified);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::TooFewPoints`] for fewer than two distinct batch sizes;
/// [`Error::InvalidConfig`] for a batch size or step count that is not
/// positive and finite.
pub fn fit_pareto(points: &[ParetoPoint]) -> Result<ParetoFit> {
    for p in points {
        for (name, value) in [("batch_size", p.batch_size), ("steps", p.steps)] {
            if !(value > 0. && value.is_finite()) {
                return Err(Error::InvalidConfig {
                    name,
                    value,
                    reason: "must be positive and finite",
                });
            }
        }
    }
    let distinct = distinct_batch_sizes(points);
    if distinct < 2 {
        return Err(Error::TooFewPoints {
            what: "distinct batch sizes",
            needed: 2,
            got: distinct,
        });
    }
    Ok(fit_valid(points))
}

fn distinct_batch_sizes(points: &[ParetoPoint]) -> usize {
    let mut b: Vec<f64> = points.iter().map(|p| p.batch_size).collect();
    b.sort_by(f64::total_cmp);
    b.dedup();
    b.len()
}

/// For `log B_crit = t`: (the best `log S_min`, the residual sum of squares).
fn profile(points: &[ParetoPoint], t: f64) -> (f64, f64) {
    let c = t.exp();
    let n = points.len() as f64;
    let r: Vec<f64> = points
        .iter()
        .map(|p| p.steps.ln() - (c / p.batch_size).ln_1p())
        .collect();
    let log_s_min = r.iter().sum::<f64>() / n;
    let rss = r.iter().map(|x| (x - log_s_min).powi(2)).sum();
    (log_s_min, rss)
}

fn fit_valid(points: &[ParetoPoint]) -> ParetoFit {
    let (b_lo, b_hi) = points.iter().fold((f64::INFINITY, 0f64), |(lo, hi), p| {
        (lo.min(p.batch_size), hi.max(p.batch_size))
    });
    let t_lo = b_lo.ln() - SEARCH_DECADES * std::f64::consts::LN_10;
    let t_hi = b_hi.ln() + SEARCH_DECADES * std::f64::consts::LN_10;
    let dt = (t_hi - t_lo) / (GRID - 1) as f64;
    let at = |i: usize| t_lo + dt * i as f64;
    let best = (0..GRID)
        .map(|i| (i, profile(points, at(i)).1))
        .fold(
            (0, f64::INFINITY),
            |acc, x| if x.1 < acc.1 { x } else { acc },
        )
        .0;
    // Golden-section search on the bracket around the best grid point.
    let (mut a, mut b) = (at(best.saturating_sub(1)), at((best + 1).min(GRID - 1)));
    let g = (5f64.sqrt() - 1.) / 2.;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (profile(points, c).1, profile(points, d).1);
    while b - a > 1e-10 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - g * (b - a);
            fc = profile(points, c).1;
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + g * (b - a);
            fd = profile(points, d).1;
        }
    }
    let t = 0.5 * (a + b);
    let (log_s_min, rss) = profile(points, t);
    let s_min = log_s_min.exp();
    let b_crit = t.exp();
    ParetoFit {
        s_min,
        e_min: s_min * b_crit,
        b_crit,
        rms_log_residual: (rss / points.len() as f64).sqrt(),
        identified: best > 0 && best < GRID - 1,
    }
}

/// Settings of [`bootstrap_pareto`].
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BootstrapConfig {
    /// How many resamples. Default 1000.
    pub resamples: usize,
    /// The coverage of the percentile intervals, in `(0, 1)`. Default 0.95.
    pub confidence: f64,
    /// The resampling seed (ChaCha8). Default 0.
    pub seed: u64,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self {
            resamples: 1000,
            confidence: 0.95,
            seed: 0,
        }
    }
}

/// [`fit_pareto`] with nonparametric bootstrap intervals (Efron 1979): the runs
/// are resampled with replacement `resamples` times from a seeded ChaCha8
/// stream, each resample is fitted, and the interval is the
/// `((1−c)/2, (1+c)/2)` percentile range of the fits (linear interpolation
/// between order statistics). Reproducible from the seed.
///
/// ```
/// use bigbatch_noise::{BootstrapConfig, ParetoPoint, bootstrap_pareto};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// let points: Vec<_> = [8., 32., 128., 512., 2048.]
///     .iter()
///     .zip([1.02, 0.97, 1.01, 0.99, 1.03])
///     .map(|(&b, noise)| ParetoPoint::new(b, (500. + 64_000. / b) * noise))
///     .collect();
/// let cfg = BootstrapConfig { resamples: 200, ..Default::default() };
/// let boot = bootstrap_pareto(&points, &cfg)?;
/// assert!(boot.b_crit.lower <= boot.fit.b_crit && boot.fit.b_crit <= boot.b_crit.upper);
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`fit_pareto`]; [`Error::InvalidConfig`] for no resample or a
/// confidence outside `(0, 1)`.
pub fn bootstrap_pareto(
    points: &[ParetoPoint],
    config: &BootstrapConfig,
) -> Result<ParetoBootstrap> {
    if config.resamples == 0 {
        return Err(Error::InvalidConfig {
            name: "resamples",
            value: 0.,
            reason: "must be at least 1",
        });
    }
    if !(config.confidence > 0. && config.confidence < 1.) {
        return Err(Error::InvalidConfig {
            name: "confidence",
            value: config.confidence,
            reason: "must be in (0, 1)",
        });
    }
    let fit = fit_pareto(points)?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let n = points.len();
    let mut fits = Vec::with_capacity(config.resamples);
    let mut sample = Vec::with_capacity(n);
    for _ in 0..config.resamples {
        sample.clear();
        sample.extend((0..n).map(|_| points[rng.random_range(0..n)]));
        if distinct_batch_sizes(&sample) >= 2 {
            fits.push(fit_valid(&sample));
        }
    }
    if fits.is_empty() {
        return Err(Error::TooFewPoints {
            what: "bootstrap resamples with two distinct batch sizes",
            needed: 1,
            got: 0,
        });
    }
    let interval = |f: fn(&ParetoFit) -> f64| {
        let mut v: Vec<f64> = fits.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let alpha = (1. - config.confidence) / 2.;
        Interval {
            lower: quantile(&v, alpha),
            upper: quantile(&v, 1. - alpha),
        }
    };
    Ok(ParetoBootstrap {
        fit,
        s_min: interval(|f| f.s_min),
        e_min: interval(|f| f.e_min),
        b_crit: interval(|f| f.b_crit),
        resamples_used: fits.len(),
    })
}

/// The `q`-quantile of sorted values, interpolating linearly between order
/// statistics (NumPy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (pos - lo as f64) * (sorted[hi] - sorted[lo])
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, StandardNormal};

    const S_MIN: f64 = 1000.;
    const E_MIN: f64 = 64_000.;

    fn runs(noise: f64, seed: u64) -> Vec<ParetoPoint> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (2..=12)
            .map(|k| {
                let b = f64::from(1u32 << k);
                let z: f64 = StandardNormal.sample(&mut rng);
                ParetoPoint::new(b, (S_MIN + E_MIN / b) * (noise * z).exp())
            })
            .collect()
    }

    #[test]
    fn points_on_the_hyperbola_satisfy_the_relation_and_are_recovered() -> anyhow::Result<()> {
        let points = runs(0., 0);
        for p in &points {
            let lhs = (p.steps / S_MIN - 1.) * (p.examples() / E_MIN - 1.);
            assert!((lhs - 1.).abs() < 1e-9);
        }
        let fit = fit_pareto(&points)?;
        assert!((fit.s_min / S_MIN - 1.).abs() < 1e-6, "{fit:?}");
        assert!((fit.e_min / E_MIN - 1.).abs() < 1e-6, "{fit:?}");
        assert!((fit.b_crit - 64.).abs() < 1e-4);
        assert!(fit.rms_log_residual < 1e-6 && fit.identified);
        Ok(())
    }

    /// With 5% log-normal noise on 11 runs the log-space fit has standard errors
    /// of a few percent; each of 20 seeds must land within 15% (≈ 4σ), and the
    /// 95% bootstrap interval must cover the truth for most seeds.
    #[test]
    fn noisy_points_are_recovered_and_intervals_cover_the_truth() -> anyhow::Result<()> {
        let mut covered = 0;
        for seed in 0..20 {
            let points = runs(0.05, seed);
            let boot = bootstrap_pareto(
                &points,
                &BootstrapConfig {
                    resamples: 200,
                    confidence: 0.95,
                    seed,
                },
            )?;
            let fit = boot.fit;
            assert!(
                (fit.s_min / S_MIN - 1.).abs() < 0.15,
                "seed {seed}: {fit:?}"
            );
            assert!(
                (fit.e_min / E_MIN - 1.).abs() < 0.15,
                "seed {seed}: {fit:?}"
            );
            assert!(boot.b_crit.lower <= fit.b_crit && fit.b_crit <= boot.b_crit.upper);
            covered += usize::from(boot.b_crit.contains(64.));
        }
        // Percentile intervals from 11 points under-cover a little; 15 of 20
        // is far below the nominal 19 but far above chance.
        assert!(covered >= 15, "covered {covered}/20");
        Ok(())
    }

    #[test]
    fn bootstrap_is_reproducible_from_the_seed() -> anyhow::Result<()> {
        let points = runs(0.05, 1);
        let cfg = BootstrapConfig {
            resamples: 100,
            ..Default::default()
        };
        let a = bootstrap_pareto(&points, &cfg)?;
        assert_eq!(a, bootstrap_pareto(&points, &cfg)?);
        let b = bootstrap_pareto(&points, &BootstrapConfig { seed: 9, ..cfg })?;
        assert_ne!(a.b_crit, b.b_crit);
        Ok(())
    }

    #[test]
    fn unbracketed_knee_is_flagged_and_bad_input_rejected() -> anyhow::Result<()> {
        // Perfect scaling S ∝ 1/B: B_crit → ∞.
        let points: Vec<_> = [8., 16., 32.]
            .iter()
            .map(|&b| ParetoPoint::new(b, 1e5 / b))
            .collect();
        assert!(!fit_pareto(&points)?.identified);
        assert!(matches!(
            fit_pareto(&[ParetoPoint::new(8., 10.), ParetoPoint::new(8., 12.)]),
            Err(Error::TooFewPoints {
                needed: 2,
                got: 1,
                ..
            })
        ));
        assert!(matches!(
            fit_pareto(&[ParetoPoint::new(8., 10.), ParetoPoint::new(-1., 12.)]),
            Err(Error::InvalidConfig {
                name: "batch_size",
                ..
            })
        ));
        Ok(())
    }
}
