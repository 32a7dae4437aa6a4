//! `bigbatch`: run one training job and write its record.
//!
//! ```text
//! bigbatch train --workload mnist-lenet5 --data-dir data --out run/results.json
//! bigbatch sweep --plan plan.json --dir sweeps/x --data-dir data --jobs 2
//! bigbatch sweep --plan plan.json --dir sweeps/x --data-dir data --emit slurm
//! bigbatch trial --spec sweeps/x/trials/ID.json --out sweeps/x/results/ID.json
//! ```
//! `cargo xtask` drives this binary; it is also usable directly.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use bigbatch_bench::{
    Budget, Checkpointing, EvalPoint, LrSchedule, Metric, Observer, OptimizerConfig, Provenance,
    RunRecord, SweepDir, SweepPlan, Target, TrainConfig, TrialSpec, WorkloadKind, device_label,
    read_json, run_sweep, run_trial, slurm_script, summarize, train_resumable, write_json_atomic,
};
use candle_core::Device;
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

/// mimalloc keeps freed pages for reuse: a training step's activations and
/// gradients are freed and reallocated at the same sizes every step, and
/// glibc's allocator returns them to the OS and faults them back in.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Run one trial spec of a sweep and write its result atomically.
    Trial(TrialArgs),
    /// Run (or resume) a sweep: every unfinished trial as its own process.
    Sweep(SweepArgs),
    /// List every model of `bigbatch-models` with its parameter count.
    Models,
}

#[derive(clap::Args)]
struct TrialArgs {
    /// The trial spec (`trials/<id>.json`).
    #[arg(long)]
    spec: PathBuf,
    /// Where to write the result.
    #[arg(long)]
    out: PathBuf,
    /// Directory holding the datasets.
    #[arg(long, env = "BIGBATCH_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Append the trial id here when it starts.
    #[arg(long)]
    attempts_log: Option<PathBuf>,
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    /// Exit when standard input closes (the sweep that started us died).
    #[arg(long)]
    exit_with_parent: bool,
    /// CPU threads for the tensor engine (default: all cores).
    #[arg(long, env = "BIGBATCH_THREADS")]
    threads: Option<usize>,
    /// Where to train.
    #[arg(long, env = "BIGBATCH_DEVICE", default_value = "auto")]
    device: DeviceArg,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// A device choice on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum DeviceArg {
    /// The first CUDA GPU if this binary was built with `--features cuda` and
    /// one is present, else the CPU.
    Auto,
    /// The CPU.
    Cpu,
    /// The first CUDA GPU (needs a build with `--features cuda`).
    Cuda,
}

impl DeviceArg {
    fn open(self) -> Result<Device> {
        Ok(match self {
            DeviceArg::Auto => Device::cuda_if_available(0)?,
            DeviceArg::Cpu => Device::Cpu,
            DeviceArg::Cuda => Device::new_cuda(0)
                .context("opening CUDA device 0 (is this binary built with --features cuda?)")?,
        })
    }
}

#[derive(clap::Args)]
struct CheckpointArgs {
    /// Save a resumable checkpoint here (safetensors); resume from it if it exists.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Steps between checkpoints.
    #[arg(long, default_value_t = 500, requires = "checkpoint")]
    checkpoint_every: u64,
}

impl CheckpointArgs {
    fn get(&self) -> Option<Checkpointing> {
        self.checkpoint.as_ref().map(|path| Checkpointing {
            path: path.clone(),
            every_steps: self.checkpoint_every,
        })
    }

    /// Deletes the checkpoint of a run whose record is safely written.
    fn remove(&self) -> Result<()> {
        match &self.checkpoint {
            Some(path) if path.exists() => std::fs::remove_file(path)
                .with_context(|| format!("removing finished checkpoint {}", path.display())),
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    /// A Slurm job-array script (`<dir>/sweep.slurm`) instead of running here.
    Slurm,
}

#[derive(clap::Args)]
struct SweepArgs {
    /// The sweep plan (JSON `SweepPlan`).
    #[arg(long)]
    plan: PathBuf,
    /// The sweep directory (specs, results, summary).
    #[arg(long)]
    dir: PathBuf,
    /// Directory holding the datasets.
    #[arg(long, env = "BIGBATCH_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Trials run at once, each its own process.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// CPU threads per trial process.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Where each trial trains.
    #[arg(long, env = "BIGBATCH_DEVICE", default_value = "auto")]
    device: DeviceArg,
    /// Write a cluster script instead of running the trials.
    #[arg(long, value_enum)]
    emit: Option<Emit>,
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
    /// Directory holding the datasets (`<dir>/mnist/…`, `<dir>/cifar-10/…`).
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
    /// Decay the learning rate linearly to this fraction of itself (Shallue et al. 2019).
    #[arg(long)]
    lr_decay_to: Option<f64>,
    /// Fraction of the run over which the learning rate decays.
    #[arg(long, default_value_t = 1.0, requires = "lr_decay_to")]
    lr_decay_fraction: f64,
    /// Label smoothing of the cross-entropy.
    #[arg(long, default_value_t = 0.0)]
    label_smoothing: f64,
    /// Stop at the first evaluation with at least this test accuracy.
    #[arg(long)]
    target_accuracy: Option<f64>,
    /// Accumulate gradients over micro-batches of at most this many examples.
    #[arg(long)]
    micro_batch_size: Option<usize>,
    /// Track the gradient noise scale B_simple from the micro-batches.
    #[arg(long, requires = "micro_batch_size")]
    track_noise_scale: bool,
    /// Ghost batch norm: normalise each group of this many examples alone
    /// (workloads with batch norm only).
    #[arg(long)]
    ghost_batch_size: Option<usize>,
    #[command(flatten)]
    checkpoint: CheckpointArgs,
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
    /// Where to train.
    #[arg(long, env = "BIGBATCH_DEVICE", default_value = "auto")]
    device: DeviceArg,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn main() -> std::process::ExitCode {
    // SAFETY: the first statement of `main`, before any thread exists.
    unsafe { bigbatch_bench::quiet_candle_pool() };
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
    let requested = match &cli.command {
        Command::Train(a) => a.threads,
        Command::Trial(a) => a.threads,
        Command::Sweep(a) => Some(a.threads),
        Command::Models => Some(1),
    };
    let threads =
        requested.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
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
    match &cli.command {
        Command::Train(args) => run_train(args, threads),
        Command::Trial(args) => run_one_trial(args, threads),
        Command::Sweep(args) => run_sweep_cmd(args),
        Command::Models => print_models(),
    }
}

/// Prints the model summary table (name, dataset, parameters, reference) to stdout.
fn print_models() -> Result<()> {
    let table = bigbatch_models::summary_table(&bigbatch_models::ModelKind::ALL)?;
    #[allow(clippy::print_stdout)] // the table is this command's output
    {
        print!("{table}");
    }
    Ok(())
}

fn run_one_trial(args: &TrialArgs, threads: usize) -> Result<()> {
    if args.exit_with_parent {
        std::thread::spawn(|| {
            use std::io::Read;
            let mut buf = [0u8; 64];
            // Our parent holds the write end: EOF means it died.
            while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
            std::process::exit(137);
        });
    }
    let spec: TrialSpec = read_json(&args.spec)?;
    let id = spec.id();
    if let Some(log) = &args.attempts_log {
        let dir = SweepDir::new(log.parent().unwrap_or(std::path::Path::new(".")));
        dir.log_attempt(&id)?;
    }
    let device = args.device.open()?;
    let mut bar = Bar::new(args.quiet);
    let checkpointing = args.checkpoint.get();
    let result = run_trial(
        &spec,
        &args.data_dir,
        &device,
        threads,
        &mut bar,
        checkpointing.as_ref(),
    )
    .with_context(|| format!("trial {}", args.spec.display()))?;
    bar.bar.finish_and_clear();
    write_json_atomic(&args.out, &result)?;
    args.checkpoint.remove()?;
    tracing::info!(
        trial = id,
        batch_size = spec.config.batch_size,
        status = ?result.record.status,
        steps_to_target = ?result.record.steps_to_target,
        "trial done"
    );
    Ok(())
}

fn run_sweep_cmd(args: &SweepArgs) -> Result<()> {
    let plan: SweepPlan = read_json(&args.plan)?;
    let data = plan.workload.load_data(&args.data_dir).with_context(|| {
        format!(
            "loading {:?} data from {}",
            plan.workload,
            args.data_dir.display()
        )
    })?;
    let trials = plan.trials(data.train.len())?;
    let dir = SweepDir::new(&args.dir);
    let ids = dir.prepare(&plan, &trials)?;
    let bin = std::env::current_exe().context("locating the bigbatch binary")?;
    if let Some(Emit::Slurm) = args.emit {
        let path = args.dir.join("sweep.slurm");
        let script = slurm_script(
            &dir,
            ids.len(),
            &bin,
            &args.data_dir,
            plan.checkpoint_every_steps,
        );
        std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(trials = ids.len(), script = %path.display(), "wrote Slurm job array");
        return Ok(());
    }
    tracing::info!(trials = ids.len(), jobs = args.jobs, dir = %args.dir.display(), "sweep");
    let progress = run_sweep(&dir, &ids, args.jobs, |id| {
        let mut cmd = std::process::Command::new(&bin);
        cmd.arg("trial")
            .arg("--quiet")
            .arg("--exit-with-parent")
            .arg("--threads")
            .arg(args.threads.to_string())
            .arg("--spec")
            .arg(dir.spec(id))
            .arg("--out")
            .arg(dir.result(id))
            .arg("--attempts-log")
            .arg(dir.attempts_log())
            .arg("--data-dir")
            .arg(&args.data_dir)
            .arg("--device")
            .arg(
                args.device
                    .to_possible_value()
                    .map_or("auto".into(), |v| v.get_name().to_owned()),
            )
            .stdin(std::process::Stdio::piped());
        if let Some(every) = plan.checkpoint_every_steps {
            cmd.arg("--checkpoint")
                .arg(dir.checkpoint(id))
                .arg("--checkpoint-every")
                .arg(every.to_string());
        }
        cmd
    })?;
    let summary = summarize(&plan, &ids, &dir)?;
    write_json_atomic(&args.dir.join("summary.json"), &summary)?;
    tracing::info!(
        skipped = progress.skipped,
        finished = progress.finished,
        failed = progress.failed,
        "sweep done"
    );
    if progress.failed > 0 {
        bail!("{} trial(s) failed; rerun to retry them", progress.failed);
    }
    Ok(())
}

fn run_train(args: &TrainArgs, threads: usize) -> Result<()> {
    let device = args.device.open()?;
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
    let budget = match (args.steps, args.epochs) {
        (Some(steps), _) => Budget::Steps(steps),
        (None, epochs) => Budget::Epochs(epochs.unwrap_or(10)),
    };
    let mut config = TrainConfig::new(args.batch_size, budget, optimizer);
    config.seed = args.seed;
    if let Some(final_fraction) = args.lr_decay_to {
        config.schedule = LrSchedule::LinearDecay {
            final_fraction,
            decay_fraction: args.lr_decay_fraction,
        };
    }
    config.label_smoothing = args.label_smoothing;
    config.target = args.target_accuracy.map(|threshold| Target {
        metric: Metric::TestAccuracy,
        threshold,
    });
    config.micro_batch_size = args.micro_batch_size;
    config.track_noise_scale = args.track_noise_scale;
    config.ghost_batch_size = args.ghost_batch_size;
    config.eval_batch_size = args.eval_batch_size;
    config.eval_every_steps = args
        .eval_every_steps
        .unwrap_or_else(|| config.steps_per_epoch(data.train.len()).max(1));
    let model = args
        .workload
        .build_model(args.seed, config.norm(), &device)?;
    tracing::info!(
        workload = ?args.workload,
        train = data.train.len(),
        test = data.test.len(),
        parameters = model.vars.elem_count(),
        threads,
        device = device_label(&device),
        "training"
    );
    let mut bar = Bar::new(args.quiet);
    let checkpointing = args.checkpoint.get();
    let outcome = train_resumable(
        &model,
        &data,
        &config,
        &device,
        &mut bar,
        checkpointing.as_ref(),
    )?;
    bar.bar.finish_and_clear();
    let provenance = Provenance::collect(args.seed, threads, &device_label(&device), data.digests);
    let record = RunRecord::new(args.workload, config, provenance, outcome);
    write_json_atomic(&args.out, &record)?;
    args.checkpoint.remove()?;
    match record.final_eval() {
        Some(p) => tracing::info!(
            status = ?record.status,
            test_accuracy = p.test_accuracy,
            test_loss = p.test_loss,
            steps_to_target = ?record.steps_to_target,
            examples_to_target = ?record.examples_to_target,
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
