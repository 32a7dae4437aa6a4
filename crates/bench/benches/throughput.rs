//! Training throughput on the CPU, the counterpart of
//! `shared/peers/torch_throughput.py` (PyTorch eager): full SGD-with-momentum
//! steps (forward, softmax cross-entropy, backward, update through
//! `bigbatch_optim`) of LeNet-5, ResNet-8, ResNet-20 (projection shortcuts,
//! as the peer) and a 784-512-512-10 MLP on random inputs of the real shapes.
//! Prints one JSON line per batch size, with the peer's fields.
//!
//! ```sh
//! RAYON_NUM_THREADS=1 cargo bench -p bigbatch-bench --bench throughput -- --model resnet8 --batch 32 128
//! python3 crates/bench/scripts/throughput_vs_torch.py   # every row, both engines, ratio table
//! ```
//!
//! The thread count is candle's (`RAYON_NUM_THREADS`, read once at start-up).

#![allow(missing_docs, clippy::print_stdout)]

use std::time::Instant;

use anyhow::{Context, Result};
use bigbatch_bench::on_pool;
use bigbatch_models::layers::{Linear, linear};
use bigbatch_models::ops::Activation;
use bigbatch_models::{
    CifarResNet, CifarResNetConfig, LeNet5, LeNet5Config, Network, Shortcut, VarStore,
};
use bigbatch_optim::{Optimizer, Params, momentum, softmax_cross_entropy};
use candle_core::{DType, Device, Tensor};
use clap::{Parser, ValueEnum};

/// mimalloc keeps freed pages for reuse: a training step's activations and
/// gradients are freed and reallocated at the same sizes every step, and
/// glibc's allocator returns them to the OS and faults them back in.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ModelName {
    Lenet5,
    Mlp,
    Resnet8,
    Resnet20,
}

#[derive(Parser)]
struct Args {
    /// The architecture.
    #[arg(long, value_enum, default_value = "lenet5")]
    model: ModelName,
    /// Batch sizes, one JSON line each.
    #[arg(long, num_args = 1.., default_values_t = [128])]
    batch: Vec<usize>,
    /// Timed steps per batch size.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 5)]
    warmup: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The peer's MLP: Flatten, 784-512 ReLU, 512-512 ReLU, 512-10.
struct Mlp([Linear; 3]);

impl Network for Mlp {
    fn forward(&self, xs: &Tensor, _train: bool) -> bigbatch_models::Result<Tensor> {
        let [a, b, c] = &self.0;
        let xs = a.forward_with(&xs.flatten_from(1)?, Activation::Relu)?;
        let xs = b.forward_with(&xs, Activation::Relu)?;
        c.forward(&xs)
    }
}

fn build(model: ModelName, vars: &VarStore) -> Result<(Box<dyn Network>, [usize; 3])> {
    let vb = vars.var_builder(DType::F32, &Device::Cpu);
    let resnet = |depth| -> Result<Box<dyn Network>> {
        let cfg = CifarResNetConfig {
            shortcut: Shortcut::B,
            ..CifarResNetConfig::with_depth(depth)
        };
        Ok(Box::new(CifarResNet::new(&cfg, vb.clone())?))
    };
    Ok(match model {
        ModelName::Lenet5 => (
            Box::new(LeNet5::new(&LeNet5Config::default(), vb.clone())?),
            [1, 28, 28],
        ),
        ModelName::Mlp => (
            Box::new(Mlp([
                linear(784, 512, vb.pp("fc1"))?,
                linear(512, 512, vb.pp("fc2"))?,
                linear(512, 10, vb.pp("fc3"))?,
            ])),
            [1, 28, 28],
        ),
        ModelName::Resnet8 => (resnet(8)?, [3, 32, 32]),
        ModelName::Resnet20 => (resnet(20)?, [3, 32, 32]),
    })
}

fn main() -> Result<()> {
    // As the `bigbatch` binary. SAFETY: first in `main`, before any thread.
    unsafe { bigbatch_bench::quiet_candle_pool() };
    let args = Args::parse();
    let threads = candle_core::utils::get_num_threads();
    let name = format!("{:?}", args.model).to_lowercase();
    for &batch in &args.batch {
        let vars = VarStore::new(0);
        let (net, [c, h, w]) = build(args.model, &vars)?;
        let params = Params::new(vars.vars());
        // As the training loop builds it: momentum, updated in place.
        let mut opt = Optimizer::new(momentum(0.01, 0.9), &params)?;
        let x = Tensor::randn(0f32, 1., (batch, c, h, w), &Device::Cpu)?;
        let labels: Vec<u32> = (0..batch as u32).map(|i| (i * 7 + 3) % 10).collect();
        let y = Tensor::new(labels.as_slice(), &Device::Cpu)?;
        // On the pool, as the training loop runs its steps.
        let mut step = || -> Result<()> {
            on_pool(|| {
                let loss = softmax_cross_entropy(&net.forward(&x, true)?, &y, 0.0)?;
                let grads = params.grads(&loss.backward()?)?;
                opt.step(&params, grads).context("optimizer step")
            })
        };
        for _ in 0..args.warmup {
            step()?;
        }
        let start = Instant::now();
        for _ in 0..args.steps {
            step()?;
        }
        let dt = start.elapsed().as_secs_f64();
        let line = serde_json::json!({
            "peer": "bigbatch",
            "model": name,
            "batch": batch,
            "threads": threads,
            "examples_per_s": (args.steps * batch) as f64 / dt,
            "ms_per_step": 1000.0 * dt / args.steps as f64,
        });
        println!("{line}");
    }
    Ok(())
}
