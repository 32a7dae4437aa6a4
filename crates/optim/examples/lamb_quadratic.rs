//! Fits a small least-squares problem with LAMB, linear warmup and cosine
//! decay, excluding the bias from weight decay and from the trust ratio, and
//! resumes from a saved optimizer state halfway.
//!
//! Run with `cargo run -p bigbatch-optim --example lamb_quadratic`.

#![allow(clippy::print_stdout)] // an example's output is the point

use anyhow::Context;
use bigbatch_optim::schedule::{ScalingRule, warmup_cosine_decay};
use bigbatch_optim::{LambConfig, Optimizer, Params, lamb, mask};
use candle_core::{DType, Device, Tensor, Var};

fn main() -> anyhow::Result<()> {
    let device = Device::Cpu;
    // y = x·w* + b* with w* = (1, −2, 3), b* = 0.5.
    let inputs: Vec<f32> = (0..256 * 3)
        .map(|i| ((i as f32) * 0.37).sin() * 1.5)
        .collect();
    let x = Tensor::from_vec(inputs, (256, 3), &device)?;
    let w_star = Tensor::new(&[[1f32], [-2.], [3.]], &device)?;
    let y = (x.matmul(&w_star)? + 0.5)?;

    let w = Var::zeros((3, 1), DType::F32, &device)?;
    let b = Var::zeros(1, DType::F32, &device)?;
    let params = Params::new([
        ("fc.weight".to_string(), w.clone()),
        ("fc.bias".to_string(), b.clone()),
    ]);

    // A peak rate tuned at batch 32, scaled with √(B/B₀) to the full batch of 256.
    let peak = ScalingRule::Sqrt.scale(0.02, 32, 256)?;
    let schedule = warmup_cosine_decay(0.0, peak, 20, 400, 0.0)?;
    let cfg = LambConfig {
        weight_decay: 1e-4,
        weight_decay_mask: mask::exclude_bias_and_norm(),
        trust_ratio_mask: mask::exclude_bias_and_norm(),
        ..LambConfig::default()
    };
    let mut opt = Optimizer::new(lamb(schedule, cfg), &params)?;
    let dir = tempfile::tempdir()?;
    let checkpoint = dir.path().join("optimizer.safetensors");

    for step in 0..400 {
        let pred = x.matmul(w.as_tensor())?.broadcast_add(b.as_tensor())?;
        let loss = (pred - &y)?.sqr()?.mean_all()?;
        opt.step(&params, params.grads(&loss.backward()?)?)?;
        if step == 199 {
            opt.save(&checkpoint)
                .context("saving the optimizer state")?;
            opt.load(&checkpoint).context("loading it back")?;
        }
        if step % 100 == 0 || step == 399 {
            println!("step {step:>3}  loss {:.6}", loss.to_scalar::<f32>()?);
        }
    }
    println!(
        "w = {:?}, b = {:?}",
        w.as_tensor().flatten_all()?.to_vec1::<f32>()?,
        b.as_tensor().to_vec1::<f32>()?
    );
    Ok(())
}
