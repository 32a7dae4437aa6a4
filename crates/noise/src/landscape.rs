//! Loss-landscape and training diagnostics: 1-D interpolation between two
//! models, distance from initialisation, gradient signal-to-noise ratio and
//! per-layer trust ratios.
//!
//! - Interpolation `f(α·x₂ + (1−α)·x₁)`, `α ∈ [−1, 2]`: Goodfellow, Vinyals and
//!   Saxe (2015), "Qualitatively Characterizing Neural Network Optimization
//!   Problems", ICLR; used between small- and large-batch minima by Keskar et
//!   al. (2017, Fig. 3). Batch-norm statistics need an explicit policy (Li et
//!   al. 2018, "Visualizing the Loss Landscape of Neural Nets", NeurIPS).
//! - `‖w_t − w_0‖`: Hoffer, Hubara and Soudry (2017), "Train longer, generalize
//!   better", NeurIPS; You et al. (2020), "Large Batch Optimization for Deep
//!   Learning: Training BERT in 76 minutes" (LAMB), ICLR, Fig. 11–12.
//! - Trust ratios `‖w‖/‖g‖` per layer: You, Gitman and Ginsburg (2017), "Large
//!   Batch Training of Convolutional Networks" (LARS), arXiv:1708.03888.
//! - Gradient signal-to-noise ratio `|G|²/(tr(Σ)/b)` per layer: the inverse of
//!   the noise scale per micro-batch (McCandlish et al. 2018, §2.2).

use bigbatch_optim::Tree;
pub use bigbatch_record::{LayerDistance, WeightDistance};
pub use bigbatch_spec::BatchNormPolicy;
use serde::{Deserialize, Serialize};

use crate::flat::lin_comb;
use crate::gns::micro_batch_estimate;
use crate::{Error, Result};

/// The loss at one point of an interpolation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterpolationPoint {
    /// `α`: 0 is the first model, 1 the second.
    pub alpha: f64,
    /// The loss the evaluation closure returned.
    pub loss: f64,
}

/// `α = −1, −1 + 1/m, …, 2`: `3m + 1` evenly spaced points, hitting 0 and 1
/// exactly.
///
/// ```
/// assert_eq!(bigbatch_noise::interpolation_alphas(2), [-1., -0.5, 0., 0.5, 1., 1.5, 2.]);
/// ```
///
/// # Panics
/// If `steps_per_unit` is 0 (API misuse).
pub fn interpolation_alphas(steps_per_unit: usize) -> Vec<f64> {
    assert!(steps_per_unit > 0, "steps_per_unit must be positive");
    let m = steps_per_unit as f64;
    (0..=3 * steps_per_unit)
        .map(|k| (k as f64 - m) / m)
        .collect()
}

/// The loss along the line `x(α) = α·x₂ + (1−α)·x₁`.
///
/// For each `α`, `eval(&x(α), policy)` returns the loss. Under
/// [`BatchNormPolicy::Eval`] the running statistics are interpolated like
/// every other tensor; under the other policies they are removed from `x(α)`
/// (batch statistics need none; `Recompute` re-estimates them in `eval`). At `α = 0` and `α = 1` the trees are exactly `x₁`
/// and `x₂` (modulo removed statistics), so the end points reproduce the two
/// models' losses bit for bit.
///
/// ```
/// use bigbatch_noise::{BatchNormPolicy, interpolate};
/// use bigbatch_optim::Tree;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// let tree = |v: f32| -> Result<Tree, bigbatch_noise::Error> {
///     let mut t = Tree::new();
///     t.insert("w", Tensor::new(&[v], &Device::Cpu)?);
///     Ok(t)
/// };
/// // f(w) = w² between w = −1 and w = 1.
/// let loss = |t: &Tree, _| Ok(t.squared_norm()?);
/// let pts = interpolate(&tree(-1.)?, &tree(1.)?, &[0., 0.5, 1.], BatchNormPolicy::Eval, loss)?;
/// assert_eq!(pts.iter().map(|p| p.loss).collect::<Vec<_>>(), [1., 0., 1.]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// Tree errors if `x₁` and `x₂` hold different names; [`Error::NonFinite`]
/// for a non-finite `α`; errors from `eval`.
pub fn interpolate(
    x1: &Tree,
    x2: &Tree,
    alphas: &[f64],
    policy: BatchNormPolicy,
    mut eval: impl FnMut(&Tree, BatchNormPolicy) -> Result<f64>,
) -> Result<Vec<InterpolationPoint>> {
    x1.check_same_names(x2)?;
    let keep = |t: Tree| -> Tree {
        if policy.combines_statistics() {
            return t;
        }
        t.into_iter()
            .filter(|(name, _)| !BatchNormPolicy::is_statistic(name))
            .collect()
    };
    let mut out = Vec::with_capacity(alphas.len());
    for &alpha in alphas {
        if !alpha.is_finite() {
            return Err(Error::NonFinite {
                what: "interpolation coefficient",
            });
        }
        let point = if alpha == 0. {
            x1.clone()
        } else if alpha == 1. {
            x2.clone()
        } else {
            lin_comb(1. - alpha, x1, alpha, x2)?
        };
        let loss = eval(&keep(point), policy)?;
        out.push(InterpolationPoint { alpha, loss });
    }
    Ok(out)
}

/// `‖w_t − w_0‖` per tensor and over all tensors (Hoffer et al. 2017; You et
/// al. 2020, Fig. 11–12).
///
/// ```
/// use bigbatch_noise::distance_from_init;
/// use bigbatch_optim::Tree;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// let mut w0 = Tree::new();
/// w0.insert("a", Tensor::new(&[0f32, 0.], &Device::Cpu)?);
/// let mut wt = Tree::new();
/// wt.insert("a", Tensor::new(&[3f32, 4.], &Device::Cpu)?);
/// assert_eq!(distance_from_init(&wt, &w0)?.total, 5.);
/// # Ok(()) }
/// ```
///
/// # Errors
/// Tree errors if the names differ; candle errors.
pub fn distance_from_init(w_t: &Tree, w_0: &Tree) -> Result<WeightDistance> {
    let diff = lin_comb(1., w_t, -1., w_0)?;
    let mut total = 0.;
    let mut per_layer = Vec::with_capacity(diff.len());
    for ((name, d), (_, w0)) in diff.iter().zip(w_0.iter()) {
        let sq = norm_sq(d)?;
        total += sq;
        per_layer.push(LayerDistance {
            name: name.to_owned(),
            distance: sq.sqrt(),
            init_norm: norm_sq(w0)?.sqrt(),
        });
    }
    Ok(WeightDistance {
        total: total.sqrt(),
        per_layer,
    })
}

fn norm_sq(t: &candle_core::Tensor) -> Result<f64> {
    Ok(t.to_dtype(candle_core::DType::F64)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f64>()?)
}

/// The gradient signal-to-noise ratio of one tensor (or of all of them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSnr {
    /// The tensor name (`"total"` for all tensors together).
    pub name: String,
    /// Unbiased `|G|²` restricted to this tensor.
    pub g_sq: f64,
    /// Unbiased `tr(Σ)` restricted to this tensor.
    pub trace_sigma: f64,
    /// `|G|² / (tr(Σ)/b)` at the micro-batch size `b`.
    pub snr: f64,
}

/// Gradient signal-to-noise ratios per tensor and in total.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradientSnr {
    /// The micro-batch size `b` the noise refers to (the harmonic mean of the
    /// micro-batch sizes).
    pub batch_size: f64,
    /// All tensors together; `snr = b/B_simple`.
    pub total: LayerSnr,
    /// Per tensor, in sorted name order.
    pub per_layer: Vec<LayerSnr>,
}

/// The signal-to-noise ratio of micro-batch gradients, `|G|²/(tr(Σ)/b)`, per
/// tensor and in total, from `k ≥ 2` disjoint micro-batch mean gradients at
/// the same weights. `|G|²` and `tr(Σ)` are the unbiased two-batch estimates
/// of [`crate::micro_batch_estimate`] restricted to each tensor; a ratio above
/// 1 means the mean gradient dominates the noise of one micro-batch.
///
/// # Errors
/// As [`crate::micro_batch_estimate`].
pub fn gradient_snr(micro_grads: &[(usize, Tree)]) -> Result<GradientSnr> {
    let total_est = micro_batch_estimate(micro_grads)?;
    let k = micro_grads.len() as f64;
    let b = k / micro_grads.iter().map(|(b, _)| 1. / *b as f64).sum::<f64>();
    let snr = |name: &str, g_sq: f64, trace_sigma: f64| LayerSnr {
        name: name.to_owned(),
        g_sq,
        trace_sigma,
        snr: g_sq / (trace_sigma / b),
    };
    let mut per_layer = Vec::new();
    if let Some((_, first)) = micro_grads.first() {
        for name in first.names() {
            let layer: Vec<(usize, Tree)> = micro_grads
                .iter()
                .map(|(size, g)| {
                    let t = g
                        .get(name)
                        .ok_or_else(|| bigbatch_optim::Error::TreeMismatch {
                            name: name.to_owned(),
                        })?;
                    Ok((*size, [(name.to_owned(), t.clone())].into_iter().collect()))
                })
                .collect::<Result<_>>()?;
            let e = micro_batch_estimate(&layer)?;
            per_layer.push(snr(name, e.g_sq, e.trace_sigma));
        }
    }
    Ok(GradientSnr {
        batch_size: b,
        total: snr("total", total_est.g_sq, total_est.trace_sigma),
        per_layer,
    })
}

/// The trust ratio of one tensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerTrustRatio {
    /// The tensor name.
    pub name: String,
    /// `‖w‖`.
    pub weight_norm: f64,
    /// `‖g‖`.
    pub grad_norm: f64,
    /// `‖w‖/‖g‖` (infinite for a zero gradient).
    pub ratio: f64,
}

/// Per-layer trust ratios and their summary statistics.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrustRatioStats {
    /// Per tensor, in sorted name order.
    pub per_layer: Vec<LayerTrustRatio>,
    /// The smallest finite ratio (NaN if none is finite).
    pub min: f64,
    /// The largest finite ratio.
    pub max: f64,
    /// The mean of the finite ratios.
    pub mean: f64,
    /// The median of the finite ratios.
    pub median: f64,
}

/// The LARS trust ratio `‖w‖/‖g‖` of every tensor (You et al. 2017) and its
/// min, max, mean and median over tensors with a finite ratio. A wide spread
/// is what layer-wise adaptation corrects.
///
/// ```
/// use bigbatch_noise::trust_ratio_stats;
/// use bigbatch_optim::Tree;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// let mut w = Tree::new();
/// w.insert("a", Tensor::new(&[3f32, 4.], &Device::Cpu)?);
/// let mut g = Tree::new();
/// g.insert("a", Tensor::new(&[0.5f32, 0.], &Device::Cpu)?);
/// assert_eq!(trust_ratio_stats(&w, &g)?.median, 10.);
/// # Ok(()) }
/// ```
///
/// # Errors
/// Tree errors if the names differ; candle errors.
pub fn trust_ratio_stats(params: &Tree, grads: &Tree) -> Result<TrustRatioStats> {
    params.check_same_names(grads)?;
    let mut per_layer = Vec::with_capacity(params.len());
    for ((name, w), (_, g)) in params.iter().zip(grads.iter()) {
        let weight_norm = norm_sq(w)?.sqrt();
        let grad_norm = norm_sq(g)?.sqrt();
        per_layer.push(LayerTrustRatio {
            name: name.to_owned(),
            weight_norm,
            grad_norm,
            ratio: weight_norm / grad_norm,
        });
    }
    let mut finite: Vec<f64> = per_layer
        .iter()
        .map(|l| l.ratio)
        .filter(|r| r.is_finite())
        .collect();
    finite.sort_by(f64::total_cmp);
    let n = finite.len();
    let (min, max, mean, median) = if n == 0 {
        (f64::NAN, f64::NAN, f64::NAN, f64::NAN)
    } else {
        let median = if n % 2 == 1 {
            finite[n / 2]
        } else {
            0.5 * (finite[n / 2 - 1] + finite[n / 2])
        };
        (
            finite[0],
            finite[n - 1],
            finite.iter().sum::<f64>() / n as f64,
            median,
        )
    };
    Ok(TrustRatioStats {
        per_layer,
        min,
        max,
        mean,
        median,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::two_batch_estimate;
    use candle_core::{Device, Tensor};

    fn tree(entries: &[(&str, &[f32])]) -> Result<Tree> {
        let mut t = Tree::new();
        for (name, v) in entries {
            t.insert(*name, Tensor::new(*v, &Device::Cpu)?);
        }
        Ok(t)
    }

    /// A nonlinear "model": loss = Σ sin(w)·cos(w²)·3 over weights, using the
    /// running mean as an offset.
    fn loss(t: &Tree) -> Result<f64> {
        let w = t
            .get("fc.weight")
            .ok_or(Error::NonFinite { what: "missing" })?;
        let w = w.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?;
        let offset = match t.get("bn.running_mean") {
            Some(m) => m.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?[0],
            None => 0.25,
        };
        Ok(w.iter()
            .map(|v| 3. * v.sin() * (v * v).cos() + offset)
            .sum())
    }

    #[test]
    fn interpolation_end_points_reproduce_both_losses_exactly() -> anyhow::Result<()> {
        let x1 = tree(&[
            ("fc.weight", &[0.123_456_7, -1.7, 2.3]),
            ("bn.running_mean", &[0.1]),
        ])?;
        let x2 = tree(&[
            ("fc.weight", &[-0.7, 0.333_333_3, 1e-3]),
            ("bn.running_mean", &[0.9]),
        ])?;
        let alphas = interpolation_alphas(10);
        assert_eq!(alphas.len(), 31);
        let pts = interpolate(&x1, &x2, &alphas, BatchNormPolicy::Eval, |t, _| loss(t))?;
        let at = |a: f64| pts.iter().find(|p| p.alpha == a).map(|p| p.loss);
        assert_eq!(at(0.), Some(loss(&x1)?));
        assert_eq!(at(1.), Some(loss(&x2)?));
        assert_eq!(pts.first().map(|p| p.alpha), Some(-1.));
        assert_eq!(pts.last().map(|p| p.alpha), Some(2.));
        Ok(())
    }

    #[test]
    fn recompute_policy_hands_no_statistics_to_the_evaluation() -> anyhow::Result<()> {
        let x1 = tree(&[
            ("fc.weight", &[1.]),
            ("bn.running_mean", &[0.1]),
            ("bn.running_var", &[2.]),
        ])?;
        let x2 = tree(&[
            ("fc.weight", &[2.]),
            ("bn.running_mean", &[0.9]),
            ("bn.running_var", &[3.]),
        ])?;
        let mut seen = Vec::new();
        interpolate(
            &x1,
            &x2,
            &[0.5],
            BatchNormPolicy::Recompute { batches: 4 },
            |t, policy| {
                assert_eq!(policy, BatchNormPolicy::Recompute { batches: 4 });
                seen.extend(t.names().map(str::to_owned));
                loss(t)
            },
        )?;
        assert_eq!(seen, ["fc.weight"]);
        let mut halfway = 0.;
        interpolate(&x1, &x2, &[0.5], BatchNormPolicy::Eval, |t, _| {
            halfway = flat_one(t, "bn.running_mean")?;
            Ok(0.)
        })?;
        assert!((halfway - 0.5).abs() < 1e-6);
        Ok(())
    }

    fn flat_one(t: &Tree, name: &str) -> Result<f64> {
        let v = t.get(name).ok_or(Error::NonFinite { what: "missing" })?;
        Ok(v.to_dtype(candle_core::DType::F64)?.to_vec1::<f64>()?[0])
    }

    #[test]
    fn distance_and_trust_ratios_by_hand() -> anyhow::Result<()> {
        let w0 = tree(&[("a", &[1., 1.]), ("b", &[0., 0., 0.])])?;
        let wt = tree(&[("a", &[4., 5.]), ("b", &[0., 12., 0.])])?;
        let d = distance_from_init(&wt, &w0)?;
        assert_eq!(d.per_layer[0].distance, 5.);
        assert_eq!(d.per_layer[1].distance, 12.);
        assert_eq!(d.total, 13.);
        assert_eq!(d.per_layer[0].init_norm, 2f64.sqrt());

        let g = tree(&[("a", &[0.3, 0.4]), ("b", &[0., 0., 0.])])?;
        let s = trust_ratio_stats(&wt, &g)?;
        assert!((s.per_layer[0].ratio - 41f64.sqrt() / 0.5).abs() < 1e-6);
        assert!(s.per_layer[1].ratio.is_infinite());
        assert_eq!(s.min, s.max);
        assert_eq!(s.mean, s.median);
        assert!(trust_ratio_stats(&wt, &tree(&[("a", &[1., 1.])])?).is_err());
        Ok(())
    }

    #[test]
    fn snr_per_layer_is_the_two_batch_estimate_per_layer() -> anyhow::Result<()> {
        let micro = [
            (4, tree(&[("a", &[1., 2.]), ("b", &[0.5])])?),
            (4, tree(&[("a", &[3., 0.]), ("b", &[-0.5])])?),
            (4, tree(&[("a", &[2., 1.]), ("b", &[1.5])])?),
        ];
        let s = gradient_snr(&micro)?;
        assert_eq!(s.batch_size, 4.);
        // Layer "b" by hand: mean of squares and square of the mean.
        let sq = (0.25 + 0.25 + 2.25) / 3.;
        let mean: f64 = (0.5 - 0.5 + 1.5) / 3.;
        let e = two_batch_estimate(4., sq, 12., mean * mean)?;
        let b = &s.per_layer[1];
        assert_eq!(b.name, "b");
        assert!((b.g_sq - e.g_sq).abs() < 1e-9 && (b.trace_sigma - e.trace_sigma).abs() < 1e-9);
        assert!((b.snr - 4. / e.b_simple).abs() < 1e-9);
        // Squared norms add over layers, so both estimates do too.
        let sum: f64 = s.per_layer.iter().map(|l| l.trace_sigma).sum();
        assert!((s.total.trace_sigma - sum).abs() < 1e-9);
        Ok(())
    }
}
