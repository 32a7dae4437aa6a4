//! Measurement results: the gradient noise scale and the steps/examples
//! trade-off (McCandlish et al. 2018).

use serde::{Deserialize, Serialize};

/// Unbiased estimates of `|G|²` and `tr(Σ)`, and their ratio `B_simple`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseScaleEstimate {
    /// The squared norm of the true gradient, `|G|²`.
    pub g_sq: f64,
    /// The trace of the per-example gradient covariance, `tr(Σ)`.
    pub trace_sigma: f64,
    /// `B_simple = tr(Σ)/|G|²`. Each estimate is unbiased but noisy, so a single
    /// step's `g_sq` can be near zero or negative and this ratio unusable:
    /// prefer a smoothed value.
    pub b_simple: f64,
}

impl NoiseScaleEstimate {
    /// The estimate with `b_simple = trace_sigma / g_sq`.
    pub fn new(g_sq: f64, trace_sigma: f64) -> Self {
        Self {
            g_sq,
            trace_sigma,
            b_simple: trace_sigma / g_sq,
        }
    }
}

/// One step of a noise-scale tracker: this step's raw estimate and the
/// smoothed one.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseScaleStep {
    /// How many steps have been observed, this one included.
    pub steps: u64,
    /// This step's unbiased (and noisy) estimate.
    pub raw: NoiseScaleEstimate,
    /// Debiased moving averages of `g_sq` and `trace_sigma`, and their ratio.
    pub smoothed: NoiseScaleEstimate,
}

/// The least-squares fit of `S(B) = S_min + E_min/B` in log space.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParetoFit {
    /// The minimum number of steps (infinite batch), `S_min`.
    pub s_min: f64,
    /// The minimum number of examples (batch size → 0), `E_min`.
    pub e_min: f64,
    /// The critical batch size `B_crit = E_min/S_min`.
    pub b_crit: f64,
    /// The root-mean-square residual `log S_i − log S(B_i)`.
    pub rms_log_residual: f64,
    /// False when `B_crit` lies at an edge of the searched range
    /// (`10⁻⁶·min B … 10⁶·max B`): the runs do not bracket the knee (all in
    /// perfect scaling, or all saturated) and `S_min` or `E_min` is not
    /// identified.
    pub identified: bool,
}

impl ParetoFit {
    /// The fitted steps at batch size `b`, `S_min + E_min/b`.
    pub fn steps_at(&self, b: f64) -> f64 {
        self.s_min + self.e_min / b
    }
}

/// A closed interval `[lower, upper]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// The lower end.
    pub lower: f64,
    /// The upper end.
    pub upper: f64,
}

impl Interval {
    /// Whether `x` lies in the interval.
    pub fn contains(&self, x: f64) -> bool {
        self.lower <= x && x <= self.upper
    }
}

/// A [`ParetoFit`] with bootstrap percentile intervals.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ParetoBootstrap {
    /// The fit to all points.
    pub fit: ParetoFit,
    /// The interval for `S_min`.
    pub s_min: Interval,
    /// The interval for `E_min`.
    pub e_min: Interval,
    /// The interval for `B_crit`.
    pub b_crit: Interval,
    /// Resamples used: draws with fewer than two distinct batch sizes cannot be
    /// fitted and are skipped.
    pub resamples_used: usize,
}

/// Unbiased estimates of the quantities of the quadratic model of
/// McCandlish et al. (2018, §2.1), from micro-batch gradients.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HessianNoiseScale {
    /// `|G|²`.
    pub g_sq: f64,
    /// `tr(Σ)`.
    pub trace_sigma: f64,
    /// `GᵀHG`.
    pub g_h_g: f64,
    /// `tr(HΣ)`.
    pub trace_h_sigma: f64,
    /// `B_simple = tr(Σ)/|G|²`.
    pub b_simple: f64,
    /// `B_noise = tr(HΣ)/(GᵀHG)`.
    pub b_noise: f64,
    /// `ε_max = |G|²/(GᵀHG)`, the optimal step with noise-free gradients.
    pub eps_max: f64,
}

impl HessianNoiseScale {
    /// The predicted optimal step at batch size `batch_size`,
    /// `ε_opt(B) = ε_max / (1 + B_noise/B)` (McCandlish et al. 2018, eq. 2.6).
    pub fn optimal_learning_rate(&self, batch_size: f64) -> f64 {
        optimal_learning_rate(self.eps_max, self.b_noise, batch_size)
    }
}

/// `ε_opt(B) = ε_max / (1 + B_noise/B)` (McCandlish et al. 2018, eq. 2.6).
///
/// ```
/// assert_eq!(bigbatch_record::optimal_learning_rate(0.4, 100., 100.), 0.2);
/// ```
pub fn optimal_learning_rate(eps_max: f64, b_noise: f64, batch_size: f64) -> f64 {
    eps_max / (1. + b_noise / batch_size)
}
