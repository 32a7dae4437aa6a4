//! Ground truth: linear regression with Gaussian inputs, where the gradient
//! mean `G`, covariance `Σ` and Hessian `H` are known in closed form.
//!
//! Model: `y = w*ᵀx + ν` with `x ~ N(0, Λ)`, `Λ = diag(λ)`, `ν ~ N(0, σ²)`, and
//! per-example loss `ℓ(θ) = ½(xᵀθ − y)²`. With `δ = θ − w*` the per-example
//! gradient is `g = x(xᵀδ − ν)`, so
//!
//! ```text
//! H = E[xxᵀ] = Λ,         G = E[g] = Λδ,
//! E[ggᵀ] = E[xxᵀδδᵀxxᵀ] + σ²Λ
//!        = 2Λδδᵀ Λ + (δᵀΛδ)Λ + σ²Λ          (Isserlis: E[x_i x_j x_k x_l] =
//!                                            Λ_ij Λ_kl + Λ_ik Λ_jl + Λ_il Λ_jk)
//! Σ = E[ggᵀ] − GGᵀ = Λδδᵀ Λ + (δᵀΛδ + σ²)Λ,
//! |G|²   = Σ λ_i² δ_i²,      tr(Σ)  = |G|² + (δᵀΛδ + σ²) Σ λ_i,
//! GᵀHG   = Σ λ_i³ δ_i²,      tr(HΣ) = GᵀHG + (δᵀΛδ + σ²) Σ λ_i².
//! ```
//!
//! Tolerances come from the number of draws: each estimator is averaged over
//! `R` independent seeds, its standard error is the sample standard deviation
//! over `√R`, and the mean must lie within `Z = 4` standard errors of the truth
//! (a false failure has probability about 6e-5 per check). Ratios use the delta
//! method: `se(a/b)/(a/b) ≈ √((se_a/a)² + (se_b/b)²)`.

use bigbatch_noise::{
    FiniteDifferenceHvp, FnOracle, NoiseScaleConfig, NoiseScaleEstimate, NoiseScaleTracker,
    flatten, hessian_noise_scale, per_example_estimate, unflatten,
};
use bigbatch_optim::Tree;
use candle_core::{Device, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const Z: f64 = 4.;
const LAMBDA: [f64; 4] = [2., 1., 0.5, 0.25];
const DELTA: [f64; 4] = [0.1, -0.2, 0.5, 2.];
const SIGMA: f64 = 1.;

struct Truth {
    g_sq: f64,
    trace_sigma: f64,
    g_h_g: f64,
    trace_h_sigma: f64,
}

impl Truth {
    fn new() -> Self {
        let q: f64 = (0..4).map(|i| LAMBDA[i] * DELTA[i] * DELTA[i]).sum::<f64>() + SIGMA * SIGMA;
        let g_sq: f64 = (0..4).map(|i| (LAMBDA[i] * DELTA[i]).powi(2)).sum();
        let g_h_g: f64 = (0..4)
            .map(|i| LAMBDA[i].powi(3) * DELTA[i] * DELTA[i])
            .sum();
        Self {
            g_sq,
            trace_sigma: g_sq + q * LAMBDA.iter().sum::<f64>(),
            g_h_g,
            trace_h_sigma: g_h_g + q * LAMBDA.iter().map(|l| l * l).sum::<f64>(),
        }
    }
    fn b_simple(&self) -> f64 {
        self.trace_sigma / self.g_sq
    }
    fn b_noise(&self) -> f64 {
        self.trace_h_sigma / self.g_h_g
    }
}

/// Per-example gradients `x(xᵀδ − ν)` of `n` fresh examples.
fn per_example_grads(rng: &mut ChaCha8Rng, n: usize) -> Vec<[f64; 4]> {
    (0..n)
        .map(|_| {
            let x: [f64; 4] = std::array::from_fn(|i| {
                LAMBDA[i].sqrt()
                    * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng)
            });
            let nu = SIGMA * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng);
            let r = (0..4).map(|i| x[i] * DELTA[i]).sum::<f64>() - nu;
            x.map(|xi| xi * r)
        })
        .collect()
}

fn mean(grads: &[[f64; 4]]) -> [f64; 4] {
    std::array::from_fn(|i| grads.iter().map(|g| g[i]).sum::<f64>() / grads.len() as f64)
}

/// A two-tensor tree (`a`: first two coordinates, `b`: last two), to exercise
/// reductions over several tensors.
fn tree(v: &[f64; 4]) -> anyhow::Result<Tree> {
    let mut t = Tree::new();
    t.insert("a", Tensor::new(&v[..2], &Device::Cpu)?);
    t.insert("b", Tensor::new(&v[2..], &Device::Cpu)?);
    Ok(t)
}

/// Sample mean and its standard error.
fn mean_se(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let m = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.);
    (m, (var / n).sqrt())
}

fn assert_within(name: &str, xs: &[f64], truth: f64) -> (f64, f64) {
    let (m, se) = mean_se(xs);
    assert!(
        (m - truth).abs() <= Z * se,
        "{name}: mean {m} ± {se} is not within {Z} standard errors of {truth}"
    );
    (m, se)
}

const MICRO: usize = 8;
const K: usize = 4;

/// The streaming tracker fed with `K` micro-batches of `MICRO` examples per
/// step: its raw `|G|²` and `tr(Σ)` are unbiased over many seeds, the ratio of
/// their means converges to `B_simple`, and the naive `|G_big|²` is biased by
/// exactly `tr(Σ)/B`.
#[test]
fn two_batch_estimator_is_unbiased_and_the_naive_one_is_not() -> anyhow::Result<()> {
    let truth = Truth::new();
    let seeds = 3000;
    let mut tracker = NoiseScaleTracker::new(NoiseScaleConfig { ema_decay: 0.99 })?;
    let (mut g_sq, mut trace, mut naive) = (Vec::new(), Vec::new(), Vec::new());
    let mut smoothed = Vec::new();
    for seed in 0..seeds {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let grads = per_example_grads(&mut rng, MICRO * K);
        let micro = grads
            .chunks(MICRO)
            .map(|c| Ok((MICRO, tree(&mean(c))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let step = tracker.observe(&micro)?;
        g_sq.push(step.raw.g_sq);
        trace.push(step.raw.trace_sigma);
        naive.push(mean(&grads).iter().map(|v| v * v).sum::<f64>());
        smoothed.push(step.smoothed);
    }
    let (mg, sg) = assert_within("|G|²", &g_sq, truth.g_sq);
    let (mt, st) = assert_within("tr(Σ)", &trace, truth.trace_sigma);
    let ratio = mt / mg;
    let se_ratio = ratio * ((sg / mg).powi(2) + (st / mt).powi(2)).sqrt();
    assert!(
        (ratio - truth.b_simple()).abs() <= Z * se_ratio,
        "B_simple {ratio} ± {se_ratio} vs {}",
        truth.b_simple()
    );

    // The naive estimate of |G|² is off by tr(Σ)/B, many standard errors away.
    let big = (MICRO * K) as f64;
    let (mn, sn) = mean_se(&naive);
    assert!(
        (mn - truth.g_sq).abs() > Z * sn,
        "naive {mn} ± {sn} looks unbiased"
    );
    assert_within(
        "naive |G_big|²",
        &naive,
        truth.g_sq + truth.trace_sigma / big,
    );

    // The smoothed ratio after many steps: an EMA with decay β averages about
    // (1+β)/(1−β) independent steps, so its standard error is the per-step
    // standard deviation times √((1−β)/(1+β)).
    let last: NoiseScaleEstimate = smoothed
        .last()
        .copied()
        .ok_or_else(|| anyhow::anyhow!("no step"))?;
    let shrink = ((1. - 0.99) / (1. + 0.99) * seeds as f64).sqrt();
    let se_smoothed =
        truth.b_simple() * ((sg * shrink / mg).powi(2) + (st * shrink / mt).powi(2)).sqrt();
    assert!(
        (last.b_simple - truth.b_simple()).abs() <= Z * se_smoothed,
        "smoothed B_simple {} ± {se_smoothed} vs {}",
        last.b_simple,
        truth.b_simple()
    );
    Ok(())
}

/// Per-example gradient norms (single examples as the small batch).
#[test]
fn per_example_estimator_converges_to_b_simple() -> anyhow::Result<()> {
    let truth = Truth::new();
    let (mut g_sq, mut trace) = (Vec::new(), Vec::new());
    for seed in 0..2000 {
        let mut rng = ChaCha8Rng::seed_from_u64(1_000_000 + seed);
        let grads = per_example_grads(&mut rng, 32);
        let sq: Vec<f64> = grads
            .iter()
            .map(|g| g.iter().map(|v| v * v).sum())
            .collect();
        let m = mean(&grads).iter().map(|v| v * v).sum();
        let e = per_example_estimate(&sq, m)?;
        g_sq.push(e.g_sq);
        trace.push(e.trace_sigma);
    }
    let (mg, sg) = assert_within("|G|²", &g_sq, truth.g_sq);
    let (mt, st) = assert_within("tr(Σ)", &trace, truth.trace_sigma);
    let se = (mt / mg) * ((sg / mg).powi(2) + (st / mt).powi(2)).sqrt();
    assert!((mt / mg - truth.b_simple()).abs() <= Z * se);
    Ok(())
}

/// `B_noise` from micro-batches with finite-difference Hessian-vector products
/// of the (exact, population) gradient `∇L(θ) = Λ(θ − w*)`: unbiased for
/// `tr(HΣ)` and `GᵀHG`, and different from `B_simple` here.
#[test]
fn hessian_noise_scale_converges_to_b_noise() -> anyhow::Result<()> {
    let truth = Truth::new();
    assert!((truth.b_noise() - truth.b_simple()).abs() > 0.2 * truth.b_simple());
    // Population gradient at θ, with w* = 0 so that δ = θ.
    let mut oracle = FnOracle::new(1, |p: &Tree, _: &[usize]| {
        let theta = flatten(p)?;
        let g: Vec<f64> = theta.iter().zip(LAMBDA).map(|(t, l)| t * l).collect();
        Ok((0., unflatten(&g, p)?))
    });
    let theta = tree(&DELTA)?;
    let mut hvp = FiniteDifferenceHvp::new(&mut oracle, &theta, vec![0], 1e-3)?;
    let (mut thg, mut ghg, mut b_noise_eps) = (Vec::new(), Vec::new(), 0.);
    for seed in 0..1500 {
        let mut rng = ChaCha8Rng::seed_from_u64(2_000_000 + seed);
        let grads = per_example_grads(&mut rng, MICRO * K);
        let micro = grads
            .chunks(MICRO)
            .map(|c| Ok((MICRO, tree(&mean(c))?)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let e = hessian_noise_scale(&mut hvp, &micro)?;
        thg.push(e.trace_h_sigma);
        ghg.push(e.g_h_g);
        b_noise_eps = e.eps_max;
    }
    assert!(b_noise_eps.is_finite());
    let (mt, st) = assert_within("tr(HΣ)", &thg, truth.trace_h_sigma);
    let (mg, sg) = assert_within("GᵀHG", &ghg, truth.g_h_g);
    let se = (mt / mg) * ((sg / mg).powi(2) + (st / mt).powi(2)).sqrt();
    assert!(
        (mt / mg - truth.b_noise()).abs() <= Z * se,
        "B_noise {} ± {se} vs {}",
        mt / mg,
        truth.b_noise()
    );
    Ok(())
}
