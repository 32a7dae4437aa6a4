//! `bigbatch`: run one training job and write its record.
//!
//! ```text
//! bigbatch train --workload mnist-lenet5 --data-dir data --out run/results.json
//! ```
//! `cargo xtask` drives this binary; it is also usable directly.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bigbatch_bench::{
    Budget, EvalPoint, Observer, OptimizerConfig, Provenance, RunRecord, TrainConfig, WorkloadKind,
    git_revision, train, write_json_atomic,
};
use candle_core::Device;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser)]
#[command(version, about = "bigbatch training jobs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train one model and write its record (curve, provenance) as JSON.
    Train(TrainArgs),
}

#[derive(Clone, Copy, ValueEnum)]
enum OptimizerName {
    Sgd,
    Momentum,
    Nesterov,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// What to train.
    #[arg(long, value_enum, default_value = "mnist-lenet5")]
    workload: WorkloadKind,
    /// Directory holding the datasets (`<dir>/mnist/…`).
    #[arg(long, env = "BIGBATCH_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Where to write the run record.
    #[arg(long)]
    out: PathBuf,
    /// Examples per step.
    #[arg(long, default_value_t = 128)]
    batch_size: usize,
    /// Passes over the training set (exclusive with --steps).
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<u64>,
    /// Optimizer steps (default: 10 epochs).
    #[arg(long)]
    steps: Option<u64>,
    /// Optimizer.
    #[arg(long, value_enum, default_value = "momentum")]
    optimizer: OptimizerName,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    learning_rate: f64,
    /// Momentum coefficient (momentum and nesterov).
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// Seed of initialisation and data order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Evaluate every this many steps (default: once per epoch).
    #[arg(long)]
    eval_every_steps: Option<u64>,
    /// Examples per evaluation forward pass.
    #[arg(long, default_value_t = 1000)]
    eval_batch_size: usize,
    /// CPU threads for the tensor engine (default: all cores).
    #[arg(long, env = "BIGBATCH_THREADS")]
    threads: Option<usize>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain joined by ": ", naming the file and the problem.
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let Command::Train(args) = cli.command;
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // SAFETY: nothing has started a thread yet; candle's pool reads these on first use.
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    run_train(&args, threads)
}

fn run_train(args: &TrainArgs, threads: usize) -> Result<()> {
    let device = Device::Cpu;
    let data = args.workload.load_data(&args.data_dir).with_context(|| {
        format!(
            "loading {:?} data from {}",
            args.workload,
            args.data_dir.display()
        )
    })?;
    let optimizer = match args.optimizer {
        OptimizerName::Sgd => OptimizerConfig::Sgd {
            learning_rate: args.learning_rate,
        },
        OptimizerName::Momentum => OptimizerConfig::Momentum {
            learning_rate: args.learning_rate,
            momentum: args.momentum,
        },
        OptimizerName::Nesterov => OptimizerConfig::Nesterov {
            learning_rate: args.learning_rate,
            momentum: args.momentum,
        },
    };
    let mut config = TrainConfig {
        batch_size: args.batch_size,
        budget: match (args.steps, args.epochs) {
            (Some(steps), _) => Budget::Steps(steps),
            (None, epochs) => Budget::Epochs(epochs.unwrap_or(10)),
        },
        seed: args.seed,
        eval_every_steps: 1,
        eval_batch_size: args.eval_batch_size,
        optimizer,
    };
    config.eval_every_steps = args
        .eval_every_steps
        .unwrap_or_else(|| config.steps_per_epoch(data.train.len()).max(1));
    let model = args.workload.build_model(args.seed, &device)?;
    tracing::info!(
        workload = ?args.workload,
        train = data.train.len(),
        test = data.test.len(),
        parameters = model.vars.elem_count(),
        threads,
        "training"
    );
    let mut bar = Bar::new(args.quiet);
    let outcome = train(&model, &data, &config, &device, &mut bar)?;
    bar.bar.finish_and_clear();
    let record = RunRecord {
        workload: args.workload,
        config,
        provenance: Provenance {
            seed: args.seed,
            git_revision: git_revision(),
            threads,
            device: "cpu".into(),
            bigbatch_version: env!("CARGO_PKG_VERSION").into(),
            datasets: data.digests,
        },
        status: outcome.status,
        curve: outcome.curve,
        wall_seconds: outcome.wall_seconds,
    };
    write_json_atomic(&args.out, &record)?;
    match record.final_eval() {
        Some(p) => tracing::info!(
            status = ?record.status,
            test_accuracy = p.test_accuracy,
            test_loss = p.test_loss,
            seconds = record.wall_seconds,
            out = %args.out.display(),
            "done"
        ),
        None => tracing::warn!(status = ?record.status, out = %args.out.display(), "no evaluation"),
    }
    Ok(())
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
struct Bar {
    bar: ProgressBar,
    last_accuracy: Option<f64>,
}

impl Bar {
    fn new(quiet: bool) -> Self {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps ({per_sec}, eta {eta}) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Self {
            bar,
            last_accuracy: None,
        }
    }
}

impl Observer for Bar {
    fn started(&mut self, total_steps: u64) {
        self.bar.set_length(total_steps);
    }

    fn stepped(&mut self, step: u64, loss: f64) {
        self.bar.set_position(step);
        if step.is_multiple_of(10) {
            let acc = self
                .last_accuracy
                .map_or(String::new(), |a| format!(" test acc {:.2}%", 100.0 * a));
            self.bar.set_message(format!("loss {loss:.4}{acc}"));
        }
    }

    fn evaluated(&mut self, point: &EvalPoint) {
        self.last_accuracy = Some(point.test_accuracy);
        self.bar.suspend(|| {
            tracing::info!(
                step = point.step,
                epoch = format!("{:.2}", point.epoch),
                train_loss = format!("{:.4}", point.train_loss),
                test_loss = format!("{:.4}", point.test_loss),
                test_accuracy = format!("{:.4}", point.test_accuracy),
                "eval"
            );
        });
    }
}
