//! Measures the simple noise scale `B_simple` while "training" a linear
//! regression with gradient accumulation, and compares it with the closed form.
//!
//! Gradients come from candle's autodiff through `bigbatch_optim::Params`,
//! exactly as a training loop would produce them; the tracker only sees the
//! micro-batch gradients that gradient accumulation computes anyway.
//!
//! ```text
//! cargo run -p bigbatch-noise --example linear_regression
//! ```
#![allow(clippy::print_stdout)] // An example reports on stdout.

use bigbatch_noise::{
    FiniteDifferenceHvp, FnOracle, NoiseScaleConfig, NoiseScaleTracker, PowerIterationConfig,
    top_hessian_eigenvalue,
};
use bigbatch_optim::{Params, Tree};
use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

const LAMBDA: [f64; 4] = [2., 1., 0.5, 0.25];
const W_STAR: [f64; 4] = [1., -1., 0.5, 2.];
const SIGMA: f64 = 1.;

/// `n` examples `x ~ N(0, diag(LAMBDA))`, `y = w*ᵀx + ν`.
fn batch(rng: &mut ChaCha8Rng, n: usize) -> candle_core::Result<(Tensor, Tensor)> {
    let mut xs = Vec::with_capacity(4 * n);
    let mut ys = Vec::with_capacity(n);
    for _ in 0..n {
        let x: Vec<f64> = LAMBDA
            .iter()
            .map(|l| l.sqrt() * <StandardNormal as Distribution<f64>>::sample(&StandardNormal, rng))
            .collect();
        let noise: f64 = StandardNormal.sample(rng);
        ys.push(x.iter().zip(W_STAR).map(|(a, b)| a * b).sum::<f64>() + SIGMA * noise);
        xs.extend(x);
    }
    Ok((
        Tensor::from_vec(xs, (n, 4), &Device::Cpu)?,
        Tensor::from_vec(ys, n, &Device::Cpu)?,
    ))
}

/// Mean loss `½(xᵀθ − y)²` and its gradient by autodiff.
fn loss_and_grad(params: &Params, w: &Var, x: &Tensor, y: &Tensor) -> anyhow::Result<(f64, Tree)> {
    let pred = x.matmul(&w.as_tensor().unsqueeze(1)?)?.squeeze(1)?;
    let loss = ((pred - y)?.sqr()?.mean_all()? * 0.5)?;
    let grads = params.grads(&loss.backward()?)?;
    Ok((loss.to_scalar::<f64>()?, grads))
}

fn main() -> anyhow::Result<()> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    // Parameters held fixed at θ = w* + δ, so the true noise scale is constant.
    let delta = [0.1, -0.2, 0.5, 2.];
    let theta: Vec<f64> = W_STAR.iter().zip(delta).map(|(a, b)| a + b).collect();
    let w = Var::from_tensor(&Tensor::new(theta.as_slice(), &Device::Cpu)?)?;
    let params = Params::new([("w".to_string(), w.clone())]);

    let mut tracker = NoiseScaleTracker::new(NoiseScaleConfig { ema_decay: 0.995 })?;
    let (micro_batches, micro_size) = (4, 16);
    for step in 1..=2000u64 {
        let mut micro = Vec::with_capacity(micro_batches);
        for _ in 0..micro_batches {
            let (x, y) = batch(&mut rng, micro_size)?;
            micro.push((micro_size, loss_and_grad(&params, &w, &x, &y)?.1));
        }
        let s = tracker.observe(&micro)?;
        if step % 500 == 0 {
            println!(
                "step {step:5}: raw B_simple {:8.2}  smoothed B_simple {:6.2}",
                s.raw.b_simple, s.smoothed.b_simple
            );
        }
    }

    // Closed form (see tests/ground_truth.rs): |G|² = |Λδ|²,
    // tr(Σ) = |G|² + (δᵀΛδ + σ²)·tr(Λ).
    let g_sq: f64 = (0..4).map(|i| (LAMBDA[i] * delta[i]).powi(2)).sum();
    let q: f64 = (0..4).map(|i| LAMBDA[i] * delta[i] * delta[i]).sum::<f64>() + SIGMA * SIGMA;
    let truth = (g_sq + q * LAMBDA.iter().sum::<f64>()) / g_sq;
    println!("true B_simple {truth:.2}");

    // The top Hessian eigenvalue (max λ = 2) by power iteration on
    // finite-difference Hessian-vector products over a fixed batch.
    let (x, y) = batch(&mut rng, 4096)?;
    let mut oracle = FnOracle::new(4096, |p: &Tree, _: &[usize]| {
        let wt = p
            .get("w")
            .ok_or(bigbatch_optim::Error::TreeMismatch { name: "w".into() })?;
        let v = Var::from_tensor(&wt.to_dtype(DType::F64)?)?;
        let ps = Params::new([("w".to_string(), v.clone())]);
        let pred = x.matmul(&v.as_tensor().unsqueeze(1)?)?.squeeze(1)?;
        let loss = ((pred - &y)?.sqr()?.mean_all()? * 0.5)?;
        Ok((loss.to_scalar::<f64>()?, ps.grads(&loss.backward()?)?))
    });
    let at = params.tree();
    let mut hvp = FiniteDifferenceHvp::new(&mut oracle, &at, (0..4096).collect(), 1e-4)?;
    let eig = top_hessian_eigenvalue(&mut hvp, &at, &PowerIterationConfig::default())?;
    println!(
        "top Hessian eigenvalue {:.3} (population value 2) after {} products",
        eig.value, eig.iterations
    );
    Ok(())
}
