//! `bigbatch`: run one training job and write its record.
//!
//! ```text
//! bigbatch train --workload mnist-lenet5 --data-dir data --out run/results.json
//! bigbatch train --config configs/you2020-lamb.toml --out run/results.json
//! bigbatch train --optimizer lamb --lr 0.01 --weight-decay 0.01 \
//!     --trust-ratio-bounds 0.01,10 --warmup-epochs 5 --schedule poly:2 --out run/results.json
//! bigbatch optimizers
//! bigbatch sweep --plan plan.json --dir sweeps/x --data-dir data --jobs 2
//! bigbatch sweep --plan plan.json --dir sweeps/x --data-dir data --emit slurm
//! bigbatch trial --spec sweeps/x/trials/ID.json --out sweeps/x/results/ID.json
//! ```
//! `cargo xtask` drives this binary; it is also usable directly.

use std::path::PathBuf;

mod measure;

use anyhow::{Context, Result, bail};
use bigbatch_bench::{
    Budget, Checkpointing, EvalPoint, Metric, Model, Observer, Provenance, RunSpec, SweepDir,
    SweepPlan, Target, WeightsInfo, WorkloadExt, WorkloadKind, batch_norm, device_label, read_json,
    run_plan, run_trial, save_weights, slurm_script, train_resumable, write_json_atomic,
};
use bigbatch_spec::{Decay, Length, Method, ModelKind, OptimizerSpec, TrustRatioSpec, Value};
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
    #[command(allow_negative_numbers = true)]
    Train(Box<TrainArgs>),
    /// Run one trial spec of a sweep and write its result atomically.
    Trial(TrialArgs),
    /// Run (or resume) a sweep: every unfinished trial as its own process.
    Sweep(SweepArgs),
    /// List every model of `bigbatch-models` with its parameter count.
    Models,
    /// List every optimizer and schedule with its hyperparameters and defaults.
    Optimizers,
    /// Measure weights saved by `bigbatch train --save-init/--save-final`.
    #[command(subcommand)]
    Measure(measure::MeasureCommand),
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
    /// Stop after this step unless the target is met by then (a sweep's
    /// pruning: the best trial of the batch size met it at this step).
    #[arg(long)]
    stop_after: Option<u64>,
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
    /// Checks the cadence before any work.
    fn check(&self) -> Result<()> {
        if self.checkpoint.is_some() && self.checkpoint_every == 0 {
            bail!("--checkpoint-every 0 is out of range: at least 1 step");
        }
        Ok(())
    }

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

/// Where `bigbatch train` keeps weights (`DIR/weights.safetensors` and its
/// `DIR/weights.json` sidecar), for `bigbatch measure`.
#[derive(clap::Args)]
struct SaveArgs {
    /// Save the initial weights in this directory.
    #[arg(long)]
    save_init: Option<PathBuf>,
    /// Save the final weights in this directory.
    #[arg(long)]
    save_final: Option<PathBuf>,
    /// Also save a snapshot every this many steps, in `<save-final>/step-<N>/`.
    #[arg(long, requires = "save_final")]
    save_every: Option<u64>,
}

impl SaveArgs {
    fn check(&self) -> Result<()> {
        if self.save_every == Some(0) {
            bail!("--save-every 0 is out of range: at least 1 step");
        }
        for dir in [&self.save_init, &self.save_final].into_iter().flatten() {
            if dir.is_file() {
                bail!(
                    "{} is a file; --save-init/--save-final take a directory",
                    dir.display()
                );
            }
        }
        Ok(())
    }
}

/// Saves weights from inside a run: the sidecar's run and provenance, and
/// the last evaluation seen.
struct Saver<'a> {
    model: &'a Model,
    spec: &'a RunSpec,
    provenance: Provenance,
    /// `(every, directory)` of the snapshots.
    snapshots: Option<(u64, PathBuf)>,
    last: Option<EvalPoint>,
    /// The last step taken.
    last_step: u64,
    /// The first failed save: training goes on, the command then fails.
    failed: Option<anyhow::Error>,
}

impl Saver<'_> {
    fn save(&self, dir: &std::path::Path, step: u64) -> Result<()> {
        let info = WeightsInfo {
            schema: Default::default(),
            model: self.spec.model(),
            spec: self.spec.clone(),
            step,
            metrics: self.last.clone().filter(|p| p.step <= step),
            provenance: self.provenance.clone(),
        };
        save_weights(dir, self.model, &info)
            .with_context(|| format!("saving the weights of step {step} in {}", dir.display()))?;
        tracing::debug!(step, dir = %dir.display(), "weights saved");
        Ok(())
    }

    /// Step `step` is done: a snapshot if one is due.
    fn stepped(&mut self, step: u64) {
        self.last_step = step;
        if let Some((every, dir)) = &self.snapshots
            && step.is_multiple_of(*every)
            && self.failed.is_none()
        {
            let dir = dir.join(format!("step-{step}"));
            if let Err(e) = self.save(&dir, step) {
                self.failed = Some(e);
            }
        }
    }
}

/// A progress bar of `len` steps of `unit` on stderr (hidden when stderr is
/// not a terminal).
pub(crate) fn bar(len: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} (eta {{eta}})"
        ))
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
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

#[derive(clap::Args)]
struct TrainArgs {
    /// A run spec (TOML or JSON: `workload` and a `[train]` table); the
    /// flags below override what it says.
    #[arg(long)]
    config: Option<PathBuf>,
    /// What to train: data set, model and target (default: the config's, else mnist-lenet5).
    #[arg(long, value_parser = parse_workload)]
    workload: Option<WorkloadKind>,
    /// Train this model of `bigbatch models` on the workload's data instead
    /// of its own (same input shape and classes).
    #[arg(long, value_parser = parse_model)]
    model: Option<ModelKind>,
    /// Directory holding the datasets (`<dir>/mnist/…`, `<dir>/cifar-10/…`).
    #[arg(long, env = "BIGBATCH_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Where to write the run record.
    #[arg(long)]
    out: PathBuf,
    /// Examples per step (default 128).
    #[arg(long)]
    batch_size: Option<usize>,
    /// Passes over the training set (exclusive with --steps; default 10).
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<u64>,
    /// Optimizer steps.
    #[arg(long)]
    steps: Option<u64>,
    #[command(flatten)]
    optimizer: OptimizerArgs,
    #[command(flatten)]
    schedule: ScheduleArgs,
    /// Label smoothing of the cross-entropy, in [0, 1).
    #[arg(long)]
    label_smoothing: Option<f64>,
    /// Stop at the first evaluation with at least this accuracy, a fraction
    /// in [0, 1] (0.99, not 99): on the validation split with
    /// --validation-examples, else on the test split.
    #[arg(long)]
    target_accuracy: Option<f64>,
    /// Hold out the first this many training examples as a validation split:
    /// evaluations measure it, the test split is measured once, at the end.
    #[arg(long)]
    validation_examples: Option<usize>,
    /// Evaluate at steps growing geometrically by this factor (> 1, e.g.
    /// 1.1), at most --eval-every-steps apart.
    #[arg(long)]
    eval_growth: Option<f64>,
    /// Accumulate gradients over micro-batches of at most this many examples.
    #[arg(long)]
    micro_batch_size: Option<usize>,
    /// Track the gradient noise scale B_simple from the micro-batches.
    #[arg(long)]
    track_noise_scale: bool,
    /// Ghost batch norm: normalise each group of this many examples alone
    /// (workloads with batch norm only).
    #[arg(long)]
    ghost_batch_size: Option<usize>,
    #[command(flatten)]
    checkpoint: CheckpointArgs,
    #[command(flatten)]
    saving: SaveArgs,
    /// Seed of initialisation and data order (default 0).
    #[arg(long)]
    seed: Option<u64>,
    /// Evaluate every this many steps (default: the config's, else once per epoch).
    #[arg(long)]
    eval_every_steps: Option<u64>,
    /// Examples per evaluation forward pass (default 1000).
    #[arg(long)]
    eval_batch_size: Option<usize>,
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

/// The optimizer flags: each sets one field of the run's `OptimizerSpec`
/// (`bigbatch optimizers` lists them all).
#[derive(clap::Args)]
struct OptimizerArgs {
    /// Optimizer: sgd, momentum, nesterov, adagrad, rmsprop, adam, adamw, lars, lamb.
    #[arg(long)]
    optimizer: Option<String>,
    /// Peak learning rate (default: the optimizer's).
    #[arg(long, visible_alias = "lr")]
    learning_rate: Option<f64>,
    /// Momentum coefficient (momentum, nesterov, rmsprop, lars).
    #[arg(long)]
    momentum: Option<f64>,
    /// Any other hyperparameter of the optimizer, as NAME=VALUE (b1=0.9,
    /// b2=0.98, eps=1e-6, centered=true, …); repeatable.
    #[arg(long = "set", value_name = "NAME=VALUE")]
    hyperparameters: Vec<String>,
    /// Weight decay λ, in the form the optimizer defines (L2 or decoupled).
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Exempt biases and normalisation parameters from weight decay and from
    /// the trust ratio (the large-batch recipes' masks).
    #[arg(long)]
    weights_only: bool,
    /// Add a layer-wise trust ratio to the optimizer (You et al. 2020).
    #[arg(long)]
    trust_ratio: bool,
    /// Bound the trust ratio to [LOW, HIGH] (implies --trust-ratio).
    #[arg(long, value_name = "LOW,HIGH", value_parser = parse_bounds, allow_hyphen_values = true)]
    trust_ratio_bounds: Option<[f64; 2]>,
    /// Clip the gradient to this global norm.
    #[arg(long)]
    clip_global_norm: Option<f64>,
}

/// The schedule flags: each sets one field of the run's `ScheduleSpec`.
#[derive(clap::Args)]
struct ScheduleArgs {
    /// Decay after the warmup: constant, linear(:FINAL), poly:POWER(:FINAL),
    /// cosine(:FINAL), cyclical:CYCLE_STEPS(:MIN), restarts:PERIOD_STEPS(:MULT)
    /// (FINAL, MIN: fractions of the peak).
    #[arg(long, value_parser = parse_decay)]
    schedule: Option<Decay>,
    /// Decay over this fraction of the run, then hold (linear, poly, cosine).
    #[arg(long)]
    decay_fraction: Option<f64>,
    /// Linear warmup from 0 over this many epochs.
    #[arg(long, conflicts_with = "warmup_steps")]
    warmup_epochs: Option<f64>,
    /// Linear warmup from 0 over this many steps.
    #[arg(long)]
    warmup_steps: Option<u64>,
}

fn parse_workload(s: &str) -> Result<WorkloadKind> {
    Ok(s.parse()?)
}

fn parse_model(s: &str) -> Result<ModelKind> {
    Ok(s.parse()?)
}

fn parse_bounds(s: &str) -> Result<[f64; 2]> {
    let (lo, hi) = s
        .split_once(',')
        .context("expected LOW,HIGH, e.g. 0.01,10")?;
    Ok([lo.trim().parse()?, hi.trim().parse()?])
}

/// `kind:a:b` (arguments optional) into a [`Decay`].
fn parse_decay(s: &str) -> Result<Decay> {
    let mut parts = s.split(':');
    let kind = parts.next().unwrap_or_default();
    let args: Vec<f64> = parts
        .map(|p| {
            p.parse::<f64>()
                .with_context(|| format!("`{p}` in `{s}` is not a number"))
        })
        .collect::<Result<_>>()?;
    let arg = |i: usize, default: Option<f64>| {
        args.get(i)
            .copied()
            .or(default)
            .with_context(|| format!("`{s}`: {kind} needs a value after `:`"))
    };
    let steps = |x: f64| Length::Steps(x as u64);
    Ok(match kind {
        "constant" => Decay::Constant,
        "linear" => Decay::Linear {
            final_fraction: arg(0, Some(0.0))?,
            length: None,
        },
        "poly" | "polynomial" => Decay::Polynomial {
            power: arg(0, None)?,
            final_fraction: arg(1, Some(0.0))?,
            length: None,
        },
        "cosine" => Decay::Cosine {
            final_fraction: arg(0, Some(0.0))?,
            length: None,
        },
        "cyclical" => Decay::Cyclical {
            cycle: steps(arg(0, None)?),
            min_fraction: arg(1, Some(0.0))?,
        },
        "restarts" | "cosine-restarts" => Decay::CosineRestarts {
            first_period: steps(arg(0, None)?),
            period_mult: arg(1, Some(1.0))? as u64,
            final_fraction: 0.0,
        },
        _ => bail!(
            "unknown schedule `{kind}`; expected one of: constant, linear, poly, cosine, cyclical, restarts"
        ),
    })
}

/// `NAME=VALUE` into a hyperparameter.
fn parse_hyperparameter(s: &str) -> Result<(String, Value)> {
    let (name, value) = s
        .split_once('=')
        .with_context(|| format!("`--set {s}`: expected NAME=VALUE"))?;
    let value = match value.trim() {
        "true" => Value::Flag(true),
        "false" => Value::Flag(false),
        v => Value::Number(
            v.parse()
                .with_context(|| format!("`--set {s}`: `{v}` is not a number or true/false"))?,
        ),
    };
    Ok((name.trim().to_owned(), value))
}

impl OptimizerArgs {
    /// `base` with these flags applied.
    fn apply(&self, base: OptimizerSpec) -> Result<OptimizerSpec> {
        let mut spec = match &self.optimizer {
            Some(name) if name.as_str() != base.method.name() => OptimizerSpec {
                weight_decay: base.weight_decay,
                weight_decay_mask: base.weight_decay_mask,
                trust_ratio: base.trust_ratio,
                trust_ratio_mask: base.trust_ratio_mask,
                clip_global_norm: base.clip_global_norm,
                ..OptimizerSpec::new(Method::named(name)?)
            },
            _ => base,
        };
        if let Some(lr) = self.learning_rate {
            spec.learning_rate = lr;
        }
        if let Some(m) = self.momentum {
            spec.method.set("momentum", Value::Number(m))?;
        }
        for h in &self.hyperparameters {
            let (name, value) = parse_hyperparameter(h)?;
            spec.method.set(&name, value)?;
        }
        if let Some(wd) = self.weight_decay {
            spec.weight_decay = wd;
        }
        if self.weights_only {
            spec.weight_decay_mask = bigbatch_spec::MaskSpec::weights_only();
            spec.trust_ratio_mask = bigbatch_spec::MaskSpec::weights_only();
        }
        if self.trust_ratio || self.trust_ratio_bounds.is_some() {
            let t = spec.trust_ratio.get_or_insert_with(TrustRatioSpec::default);
            if let Some(b) = self.trust_ratio_bounds {
                t.bounds = Some(b);
            }
        }
        if let Some(c) = self.clip_global_norm {
            spec.clip_global_norm = Some(c);
        }
        Ok(spec)
    }
}

impl ScheduleArgs {
    /// `base` with these flags applied.
    fn apply(&self, mut base: bigbatch_spec::ScheduleSpec) -> Result<bigbatch_spec::ScheduleSpec> {
        if let Some(d) = &self.schedule {
            base.decay = d.clone();
        }
        if let Some(f) = self.decay_fraction {
            let kind = base.decay.name();
            *base.decay.length_mut().with_context(|| {
                format!("--decay-fraction needs a linear, poly or cosine schedule, not {kind}")
            })? = Some(Length::Fraction(f));
        }
        if let Some(e) = self.warmup_epochs {
            base.warmup = Some(Length::Epochs(e));
        }
        if let Some(n) = self.warmup_steps {
            base.warmup = Some(Length::Steps(n));
        }
        Ok(base)
    }
}

impl TrainArgs {
    /// The run: the config file (if any) with every given flag applied.
    fn spec(&self) -> Result<RunSpec> {
        let mut spec = match &self.config {
            Some(path) => read_spec(path)?,
            None => RunSpec::new(WorkloadKind::MnistLenet5, Default::default()),
        };
        if let Some(w) = self.workload {
            spec.workload = w;
        }
        if let Some(m) = self.model {
            spec.model = Some(m);
        }
        let t = &mut spec.train;
        if let Some(b) = self.batch_size {
            t.batch_size = b;
        }
        match (self.steps, self.epochs) {
            (Some(steps), _) => t.budget = Budget::Steps(steps),
            (None, Some(epochs)) => t.budget = Budget::Epochs(epochs),
            (None, None) => {}
        }
        t.optimizer = self.optimizer.apply(t.optimizer.clone())?;
        t.schedule = self.schedule.apply(t.schedule.clone())?;
        if let Some(seed) = self.seed {
            t.seed = seed;
        }
        if let Some(ls) = self.label_smoothing {
            t.label_smoothing = ls;
        }
        if let Some(b) = self.eval_batch_size {
            t.eval_batch_size = b;
        }
        if self.validation_examples.is_some() {
            t.validation_examples = self.validation_examples;
        }
        if self.eval_growth.is_some() {
            t.eval_growth = self.eval_growth;
        }
        if let Some(threshold) = self.target_accuracy {
            t.target = Some(Target {
                metric: if t.validation_examples.is_some() {
                    Metric::ValidationAccuracy
                } else {
                    Metric::TestAccuracy
                },
                threshold,
            });
        }
        if self.micro_batch_size.is_some() {
            t.micro_batch_size = self.micro_batch_size;
        }
        if self.ghost_batch_size.is_some() {
            t.ghost_batch_size = self.ghost_batch_size;
        }
        t.track_noise_scale |= self.track_noise_scale;
        if let Some(e) = self.eval_every_steps {
            t.eval_every_steps = e;
        }
        Ok(spec)
    }
}

/// Reads a [`RunSpec`] from TOML (or JSON, by extension), naming the file
/// and the key at fault.
fn read_spec(path: &std::path::Path) -> Result<RunSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    let spec = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).map_err(anyhow::Error::from)
    } else {
        toml::from_str(&text).map_err(anyhow::Error::from)
    };
    spec.with_context(|| format!("config {}", path.display()))
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let requested = match &cli.command {
        Command::Train(a) => a.threads,
        Command::Trial(a) => a.threads,
        Command::Sweep(a) => Some(a.threads),
        Command::Models | Command::Optimizers => Some(1),
        Command::Measure(m) => m.threads(),
    };
    let threads = requested.unwrap_or(cores);
    let most = MAX_THREADS_PER_CORE * cores;
    if !(1..=most).contains(&threads) {
        bail!(
            "--threads {threads} is out of range: 1 to {most} ({MAX_THREADS_PER_CORE} per core on this machine's {cores})"
        );
    }
    // Every check that needs no data, before any data is read or thread started.
    let mut run_spec = None;
    match &cli.command {
        Command::Train(args) => {
            let spec = args.spec()?;
            spec.validate()?;
            check_output(&args.out)?;
            args.checkpoint.check()?;
            args.saving.check()?;
            run_spec = Some(spec);
        }
        Command::Trial(args) => {
            check_output(&args.out)?;
            args.checkpoint.check()?;
        }
        Command::Sweep(args) if args.jobs == 0 => bail!("--jobs 0 is out of range: at least 1"),
        Command::Measure(m) => {
            m.check()?;
            check_output(m.out())?;
        }
        _ => {}
    }
    // SAFETY: nothing has started a thread yet; candle's pool reads these on first use.
    unsafe {
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    }
    match &cli.command {
        Command::Train(args) => match run_spec {
            Some(spec) => run_train(args, spec, threads),
            None => bail!("the run spec was not read"),
        },
        Command::Trial(args) => run_one_trial(args, threads),
        Command::Sweep(args) => run_sweep_cmd(args),
        Command::Models => print_models(),
        Command::Optimizers => print_optimizers(),
        Command::Measure(m) => m.run(threads),
    }
}

/// Threads per core `--threads` may ask for: more only oversubscribes.
const MAX_THREADS_PER_CORE: usize = 4;

/// Checks that `out` can be written: not an existing directory, its directory
/// creatable and writable. Run before any work, so that a long run never
/// fails at its last step.
fn check_output(out: &std::path::Path) -> Result<()> {
    if out.is_dir() {
        bail!(
            "--out {} is a directory; give the file to write (e.g. {}/results.json)",
            out.display(),
            out.display()
        );
    }
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("--out {}: cannot create {}", out.display(), dir.display()))?;
    let probe = dir.join(format!(".bigbatch-write-test-{}", std::process::id()));
    std::fs::write(&probe, b"")
        .with_context(|| format!("--out {}: {} is not writable", out.display(), dir.display()))?;
    std::fs::remove_file(&probe).with_context(|| format!("removing {}", probe.display()))?;
    Ok(())
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

/// Prints every optimizer and schedule with its hyperparameters and defaults.
fn print_optimizers() -> Result<()> {
    use std::fmt::Write;
    let mut out =
        String::from("Optimizers (`--optimizer NAME`, or `name = ...` in [train.optimizer]):\n\n");
    for name in Method::NAMES {
        let m = Method::named(name)?;
        writeln!(out, "  {name:<9} {}", m.summary())?;
        let hyper: Vec<String> = m
            .hyperparameters()
            .iter()
            .map(|(k, v)| format!("{k} = {v}"))
            .collect();
        writeln!(
            out,
            "            learning_rate = {}",
            m.default_learning_rate()
        )?;
        if !hyper.is_empty() {
            writeln!(out, "            {}", hyper.join(", "))?;
        }
        writeln!(out, "            weight_decay: {}", m.weight_decay_form())?;
    }
    out.push_str(
        "\nEvery optimizer also takes: weight_decay (0), weight_decay_mask, trust_ratio\n\
         ({ bounds = [LOW, HIGH], eps }: layer-wise, You et al. 2020), trust_ratio_mask,\n\
         clip_global_norm. Masks: { exclude_kinds = [\"bias\", \"norm-scale\", \"norm-shift\",\n\
         \"embedding\"], exclude_names = [\"fc*.bias\"] }.\n\n\
         Schedules (`--schedule`, or [train.schedule]): warmup = { steps | epochs | fraction = X },\n\
         then decay = { kind = ... }:\n",
    );
    let schedules = [
        ("constant", "the peak throughout"),
        (
            "linear",
            "to final_fraction (0) over length (rest of run); Shallue et al. 2019",
        ),
        (
            "polynomial",
            "power p, to final_fraction (0) over length; You et al. 2020",
        ),
        ("cosine", "half cosine to final_fraction (0) over length"),
        (
            "piecewise",
            "values (fractions of the peak) between boundaries; Goyal et al. 2017",
        ),
        (
            "cyclical",
            "triangular between min_fraction and the peak, period cycle; Smith 2017",
        ),
        (
            "cosine-restarts",
            "SGDR: cosine to final_fraction, periods first_period·period_mult^k",
        ),
    ];
    for (kind, what) in schedules {
        writeln!(out, "  {kind:<16} {what}")?;
    }
    #[allow(clippy::print_stdout)] // the list is this command's output
    {
        print!("{out}");
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
    let spec: RunSpec = read_json(&args.spec)?;
    let id = spec.id();
    if let Some(log) = &args.attempts_log {
        let dir = SweepDir::new(log.parent().unwrap_or(std::path::Path::new(".")));
        dir.log_attempt(&id)?;
    }
    let device = args.device.open()?;
    let mut bar = Bar::new(args.quiet, None);
    let checkpointing = args.checkpoint.get();
    let result = run_trial(
        &spec,
        &args.data_dir,
        &device,
        threads,
        &mut bar,
        checkpointing.as_ref(),
        args.stop_after,
    )
    .with_context(|| format!("trial {}", args.spec.display()))?;
    bar.bar.finish_and_clear();
    write_json_atomic(&args.out, &result)?;
    args.checkpoint.remove()?;
    tracing::info!(
        trial = id,
        batch_size = spec.train.batch_size,
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
            "loading {} data from {}",
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
    let current = bigbatch_bench::provenance(plan.seed, args.threads, "", plan.workload, &data);
    tracing::info!(trials = ids.len(), jobs = args.jobs, dir = %args.dir.display(), "sweep");
    let (summary, progress) = run_plan(
        &plan,
        &dir,
        data.train.len(),
        &current,
        args.jobs,
        |id, stop_after| {
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
            if let Some(cap) = stop_after {
                cmd.arg("--stop-after").arg(cap.to_string());
            }
            if let Some(every) = plan.checkpoint_every_steps {
                cmd.arg("--checkpoint")
                    .arg(dir.checkpoint(id))
                    .arg("--checkpoint-every")
                    .arg(every.to_string());
            }
            cmd
        },
    )?;
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

/// Trains the validated run `spec` (the config file and flags of `args`).
fn run_train(args: &TrainArgs, mut spec: RunSpec, threads: usize) -> Result<()> {
    let (workload, model_kind) = (spec.workload, spec.model());
    let config = &mut spec.train;
    let device = args.device.open()?;
    let data = workload
        .load_data(&args.data_dir)
        .with_context(|| format!("loading {workload} data from {}", args.data_dir.display()))?;
    if args.eval_every_steps.is_none() && args.config.is_none() {
        config.eval_every_steps = config.steps_per_epoch(data.train.len()).max(1);
    }
    config.validate_for(data.train.len())?;
    let model = bigbatch_bench::build_model(model_kind, config.seed, batch_norm(config), &device)?;
    tracing::info!(
        workload = %workload,
        model = %model_kind,
        train = data.train.len(),
        test = data.test.len(),
        parameters = model.vars.elem_count(),
        optimizer = config.optimizer.method.name(),
        threads,
        device = device_label(&device),
        "training"
    );
    let provenance = bigbatch_bench::provenance(
        config.seed,
        threads,
        &device_label(&device),
        workload,
        &data,
    );
    let checkpointing = args.checkpoint.get();
    let config = config.clone();
    let spec = RunSpec {
        train: config.clone(),
        ..spec
    };
    let saver = Saver {
        model: &model,
        spec: &spec,
        provenance: provenance.clone(),
        snapshots: args.saving.save_every.zip(args.saving.save_final.clone()),
        last: None,
        last_step: 0,
        failed: None,
    };
    if let Some(dir) = &args.saving.save_init {
        saver.save(dir, 0)?;
    }
    let mut bar = Bar::new(args.quiet, Some(saver));
    let outcome = train_resumable(
        &model,
        &data,
        &config,
        &device,
        &mut bar,
        checkpointing.as_ref(),
    )?;
    bar.bar.finish_and_clear();
    let Some(saver) = bar.saver else {
        bail!("the weight saver was lost")
    };
    if let Some(e) = saver.failed {
        return Err(e);
    }
    let final_step = saver.last_step;
    if let Some(dir) = &args.saving.save_final {
        saver.save(dir, final_step)?;
    }
    let record = outcome.into_record(&spec, provenance);
    write_json_atomic(&args.out, &record)?;
    args.checkpoint.remove()?;
    match record.final_eval() {
        Some(p) => tracing::info!(
            status = ?record.status,
            test_accuracy = ?p.test_accuracy,
            test_loss = ?p.test_loss,
            validation_accuracy = ?p.validation_accuracy,
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
struct Bar<'a> {
    bar: ProgressBar,
    /// No progress bar and no per-evaluation log lines.
    quiet: bool,
    last_accuracy: Option<f64>,
    /// Saves weight snapshots as the run goes.
    saver: Option<Saver<'a>>,
}

impl<'a> Bar<'a> {
    fn new(quiet: bool, saver: Option<Saver<'a>>) -> Self {
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
            quiet,
            last_accuracy: None,
            saver,
        }
    }
}

impl Observer for Bar<'_> {
    fn started(&mut self, total_steps: u64) {
        self.bar.set_length(total_steps);
    }

    fn stepped(&mut self, step: u64, loss: f64) {
        self.bar.set_position(step);
        if let Some(saver) = &mut self.saver {
            saver.stepped(step);
        }
        if step.is_multiple_of(10) {
            let acc = self
                .last_accuracy
                .map_or(String::new(), |a| format!(" eval acc {:.2}%", 100.0 * a));
            self.bar.set_message(format!("loss {loss:.4}{acc}"));
        }
    }

    fn evaluated(&mut self, point: &EvalPoint) {
        self.last_accuracy = point.validation_accuracy.or(point.test_accuracy);
        if let Some(saver) = &mut self.saver {
            saver.last = Some(point.clone());
        }
        if self.quiet {
            return;
        }
        let four = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"));
        self.bar.suspend(|| {
            tracing::info!(
                step = point.step,
                epoch = format!("{:.2}", point.epoch),
                train_loss = format!("{:.4}", point.train_loss),
                validation_loss = four(point.validation_loss),
                validation_accuracy = four(point.validation_accuracy),
                test_loss = four(point.test_loss),
                test_accuracy = four(point.test_accuracy),
                "eval"
            );
        });
    }
}
