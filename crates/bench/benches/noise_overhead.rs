//! What tracking the gradient noise scale costs the training loop (issue 7's
//! goal: at most 5% extra step time on LeNet-5 and ResNet-8).
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo bench -p bigbatch-bench --bench noise_overhead
//! RAYON_NUM_THREADS=2 cargo bench -p bigbatch-bench --bench noise_overhead -- --reps 7
//! ```
//!
//! Both arms run the same [`train`] with the same micro-batches (gradient
//! accumulation over `k` micro-batches per step); only `track_noise_scale`
//! differs, so the ratio isolates the tracker: the squared norm of each
//! micro-batch gradient and of their weighted sum, and the moving averages.
//! The arms alternate within one process (off, on, off, on, …) so that drift
//! of a shared machine hits both alike, and the median seconds per step of
//! each arm are compared. Because that difference is small against a loaded
//! machine's noise, the tracker's own work is also timed in isolation: one
//! `NoiseScaleTracker::observe` on the real micro-batch gradients of the
//! model, as a fraction of the untracked step. Prints a Markdown table and one
//! JSON line per row.

#![allow(missing_docs, clippy::print_stdout)]

use std::time::Instant;

use anyhow::Result;
use bigbatch_bench::{
    Budget, Data, Model, OptimizerSpec, TrainConfig, WorkloadExt, WorkloadKind, train,
};
use bigbatch_data::{ImageClassification, ImageShape, Normalization};
use bigbatch_models::Norm;
use bigbatch_noise::{NoiseScaleConfig, NoiseScaleTracker};
use bigbatch_optim::{Params, Tree, softmax_cross_entropy};
use bigbatch_spec::Method;
use candle_core::Device;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Timed runs per arm.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// Optimizer steps per run.
    #[arg(long, default_value_t = 8)]
    steps: u64,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn synthetic(shape: ImageShape, len: usize) -> Result<ImageClassification> {
    // A fixed, label-correlated pattern: cheap to make, not all zeros.
    let pixels = (0..len * shape.len())
        .map(|i| ((i * 2_654_435_761) >> 13) as u8)
        .collect();
    let labels = (0..len as u32).map(|i| i % 10).collect();
    Ok(ImageClassification::new(shape, pixels, labels, 10)?)
}

fn build(name: &str, device: &Device) -> Result<Model> {
    let kind = match name {
        "lenet5" => WorkloadKind::MnistLenet5,
        _ => WorkloadKind::Cifar10Resnet8,
    };
    Ok(kind.build_model(0, Norm::Batch, device)?)
}

/// Median seconds of one `observe` on the micro-batch gradients of one step.
fn observe_seconds(model: &Model, data: &Data, batch: usize, micro: usize) -> Result<f64> {
    let params = Params::new(model.vars.vars());
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    let s = data.train.shape();
    let indices: Vec<usize> = (0..batch).collect();
    let mut grads: Vec<(usize, Tree)> = Vec::new();
    for chunk in indices.chunks(micro) {
        data.train
            .batch_into(chunk, &data.normalization, &mut inputs, &mut labels);
        let device = Device::Cpu;
        let xs = candle_core::Tensor::from_slice(
            &inputs,
            (chunk.len(), s.channels, s.height, s.width),
            &device,
        )?;
        let ys = candle_core::Tensor::from_slice(&labels, chunk.len(), &device)?;
        let loss = softmax_cross_entropy(&model.net.forward(&xs, true)?, &ys, 0.0)?;
        grads.push((chunk.len(), params.grads(&loss.backward()?)?));
    }
    let mut tracker = NoiseScaleTracker::new(NoiseScaleConfig::default())?;
    let times = (0..20)
        .map(|_| {
            let start = Instant::now();
            tracker.observe(&grads)?;
            Ok(start.elapsed().as_secs_f64())
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(median(times))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = Device::Cpu;
    let threads = candle_core::utils::get_num_threads();
    println!(
        "| model | batch | micro-batches | s/step off | s/step on | end-to-end overhead | observe() alone |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut lines = Vec::new();
    for (name, shape, batch, micro) in [
        ("lenet5", ImageShape::MNIST, 128, 32),
        ("lenet5", ImageShape::MNIST, 512, 128),
        ("resnet8", ImageShape::new(3, 32, 32), 128, 32),
    ] {
        let data = Data {
            train: synthetic(shape, batch * 4)?,
            test: synthetic(shape, 10)?,
            normalization: Normalization::identity(shape.channels),
            digests: Vec::new(),
        };
        let mut seconds = [Vec::new(), Vec::new()];
        for _ in 0..args.reps {
            for (arm, track) in [false, true].into_iter().enumerate() {
                let mut cfg = TrainConfig::new(
                    batch,
                    Budget::Steps(args.steps),
                    OptimizerSpec::new(Method::Momentum { momentum: 0.9 }).with_learning_rate(0.01),
                );
                cfg.eval_every_steps = u64::MAX;
                cfg.micro_batch_size = Some(micro);
                cfg.track_noise_scale = track;
                let model = build(name, &device)?;
                let start = Instant::now();
                train(&model, &data, &cfg, &device, &mut ())?;
                seconds[arm].push(start.elapsed().as_secs_f64() / args.steps as f64);
            }
        }
        let [off, on] = seconds.map(median);
        let overhead = on / off - 1.0;
        let observe = observe_seconds(&build(name, &device)?, &data, batch, micro)?;
        println!(
            "| {name} | {batch} | {} | {off:.4} | {on:.4} | {:+.1}% | {:.2}% |",
            batch / micro,
            100.0 * overhead,
            100.0 * observe / off
        );
        lines.push(serde_json::json!({
            "model": name, "batch": batch, "micro_batch": micro, "threads": threads,
            "seconds_per_step_off": off, "seconds_per_step_on": on, "overhead": overhead,
            "observe_seconds": observe, "observe_fraction_of_step": observe / off,
        }));
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
