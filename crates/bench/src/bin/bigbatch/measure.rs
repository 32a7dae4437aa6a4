//! `bigbatch measure`: measurements on weights saved by `bigbatch train`,
//! each written as a typed [`MeasurementRecord`] and summarised on stdout.

#![allow(clippy::print_stdout)] // the summary tables are these commands' output

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bigbatch_bench::{
    Data, Measured, MeasurementRecord, Model, NetworkOracle, SavedWeights, WorkloadExt,
    device_label, param_tree, state_tree, write_json_atomic,
};
use bigbatch_data::ImageClassification;
use bigbatch_noise::{ExampleSubset, SharpnessConfig, Subspace};
use bigbatch_noise::{FiniteDifferenceHvp, GradientOracle, NoiseScaleEstimate};
use bigbatch_record::{InterpolationRow, NoiseScaleMeasurement, Schema, SharpnessRow};
use bigbatch_spec::BatchNormPolicy;
use candle_core::Device;
use clap::Subcommand;

use crate::DeviceArg;

#[derive(Subcommand)]
pub(crate) enum MeasureCommand {
    /// ‖W1 − W0‖ in total and per tensor (You et al. 2020; Hoffer et al. 2017).
    Distance(DistanceArgs),
    /// Train and test loss and accuracy along (1−α)·A + α·B (Keskar et al. 2017, Fig. 3).
    #[command(allow_negative_numbers = true)]
    Interpolate(InterpolateArgs),
    /// Keskar et al.'s ε-sharpness of the training loss, in the full space or a random subspace.
    Sharpness(SharpnessArgs),
    /// The gradient noise scale B_simple (two batch sizes, repeated) and B_noise (McCandlish et al. 2018).
    NoiseScale(NoiseScaleArgs),
}

impl MeasureCommand {
    /// The output file, checked before any work.
    pub(crate) fn out(&self) -> &Path {
        match self {
            MeasureCommand::Distance(a) => &a.out,
            MeasureCommand::Interpolate(a) => &a.common.out,
            MeasureCommand::Sharpness(a) => &a.common.out,
            MeasureCommand::NoiseScale(a) => &a.common.out,
        }
    }

    /// The thread count asked for, if any.
    pub(crate) fn threads(&self) -> Option<usize> {
        match self {
            MeasureCommand::Distance(_) => Some(1),
            MeasureCommand::Interpolate(a) => a.common.threads,
            MeasureCommand::Sharpness(a) => a.common.threads,
            MeasureCommand::NoiseScale(a) => a.common.threads,
        }
    }

    /// Every check that needs no data.
    pub(crate) fn check(&self) -> Result<()> {
        match self {
            MeasureCommand::Distance(_) => Ok(()),
            MeasureCommand::Interpolate(a) => a.common.check(),
            MeasureCommand::Sharpness(a) => {
                a.common.check()?;
                if a.epsilon.is_empty() {
                    bail!("--epsilon: give at least one box size (1e-3,5e-4)");
                }
                if let Some(e) = a.epsilon.iter().find(|e| !(**e > 0.0 && e.is_finite())) {
                    bail!("--epsilon {e} is out of range: a box size > 0");
                }
                if a.iterations == 0 {
                    bail!("--iterations 0 is out of range: at least 1 (the paper: 10)");
                }
                if a.examples == Some(0) {
                    bail!("--examples 0 is out of range: at least 1");
                }
                Ok(())
            }
            MeasureCommand::NoiseScale(a) => {
                a.common.check()?;
                if !(1..a.big_batch).contains(&a.small_batch) {
                    bail!(
                        "--small-batch {} --big-batch {}: need 1 <= small < big",
                        a.small_batch,
                        a.big_batch
                    );
                }
                if a.repeats == 0 {
                    bail!("--repeats 0 is out of range: at least 1");
                }
                if a.hessian_micro_batches == 1 {
                    bail!("--hessian-micro-batches 1 is out of range: 0 (off) or at least 2");
                }
                Ok(())
            }
        }
    }

    pub(crate) fn run(&self, threads: usize) -> Result<()> {
        match self {
            MeasureCommand::Distance(a) => distance(a, threads),
            MeasureCommand::Interpolate(a) => interpolate(a, threads),
            MeasureCommand::Sharpness(a) => sharpness(a, threads),
            MeasureCommand::NoiseScale(a) => noise_scale(a, threads),
        }
    }
}

/// What every measurement that evaluates the network takes.
#[derive(clap::Args)]
pub(crate) struct EvalArgs {
    /// Directory holding the datasets (the weights' workload's data).
    #[arg(long, env = "BIGBATCH_DATA_DIR", default_value = "data")]
    data_dir: PathBuf,
    /// Batch-norm statistics while measuring: train (each batch's), eval
    /// (the stored running statistics) or recompute:N (re-estimated on N
    /// training batches at the evaluated weights).
    #[arg(long, default_value = "eval")]
    batch_norm: BatchNormPolicy,
    /// Examples per forward pass (under `train`: per batch-norm batch).
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
    /// Where to write the measurement record (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Seed of the examples and subspaces drawn.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// CPU threads for the tensor engine (default: all cores).
    #[arg(long, env = "BIGBATCH_THREADS")]
    threads: Option<usize>,
    /// Where to run.
    #[arg(long, env = "BIGBATCH_DEVICE", default_value = "auto")]
    device: DeviceArg,
}

impl EvalArgs {
    fn check(&self) -> Result<()> {
        if self.batch_size == 0 {
            bail!("--batch-size 0 is out of range: at least 1");
        }
        Ok(())
    }
}

#[derive(clap::Args)]
pub(crate) struct DistanceArgs {
    /// The initial weights (a directory written by `bigbatch train --save-init`).
    #[arg(long)]
    from: PathBuf,
    /// The later weights.
    #[arg(long)]
    to: PathBuf,
    /// Where to write the measurement record (JSON).
    #[arg(long)]
    out: PathBuf,
}

#[derive(clap::Args)]
pub(crate) struct InterpolateArgs {
    /// The weights at α = 0.
    #[arg(long)]
    from: PathBuf,
    /// The weights at α = 1.
    #[arg(long)]
    to: PathBuf,
    /// START:END:COUNT, COUNT evenly spaced values of α from START to END.
    #[arg(long, default_value = "-1:2:25", allow_hyphen_values = true)]
    alpha: AlphaRange,
    /// Training examples evaluated at each α (default: all).
    #[arg(long)]
    train_examples: Option<usize>,
    #[command(flatten)]
    common: EvalArgs,
}

#[derive(clap::Args)]
pub(crate) struct SharpnessArgs {
    /// The weights to measure.
    #[arg(long)]
    weights: PathBuf,
    /// Box sizes ε, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1e-3,5e-4")]
    epsilon: Vec<f64>,
    /// `full`, or `random:N` for a seeded random N-dimensional subspace.
    #[arg(long, default_value = "full")]
    subspace: SubspaceArg,
    /// L-BFGS-B iterations of the maximisation (Keskar et al.: 10).
    #[arg(long, default_value_t = 10)]
    iterations: usize,
    /// Training examples the loss is evaluated on (default: all).
    #[arg(long)]
    examples: Option<usize>,
    #[command(flatten)]
    common: EvalArgs,
}

#[derive(clap::Args)]
pub(crate) struct NoiseScaleArgs {
    /// The weights to measure.
    #[arg(long)]
    weights: PathBuf,
    /// The small batch b of the two-batch estimator.
    #[arg(long, default_value_t = 32)]
    small_batch: usize,
    /// The big batch B.
    #[arg(long, default_value_t = 1024)]
    big_batch: usize,
    /// Independent repeats, each on fresh training examples.
    #[arg(long, default_value_t = 10)]
    repeats: usize,
    /// Micro-batches of the small size for B_noise (0: do not measure B_noise).
    #[arg(long, default_value_t = 8)]
    hessian_micro_batches: usize,
    /// Training examples of the Hessian (disjoint draws from the gradients').
    #[arg(long, default_value_t = 1000)]
    hessian_examples: usize,
    #[command(flatten)]
    common: EvalArgs,
}

/// `START:END:COUNT`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct AlphaRange {
    start: f64,
    end: f64,
    count: usize,
}

impl AlphaRange {
    fn values(&self) -> Vec<f64> {
        match self.count {
            1 => vec![self.start],
            n => (0..n)
                .map(|i| self.start + (self.end - self.start) * i as f64 / (n - 1) as f64)
                .collect(),
        }
    }
}

impl std::str::FromStr for AlphaRange {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad =
            || format!("`{s}`: expected START:END:COUNT with START < END and COUNT >= 1 (-1:2:25)");
        let parts: Vec<&str> = s.split(':').collect();
        let [start, end, count] = parts.as_slice() else {
            return Err(bad());
        };
        let (start, end) = (start.parse::<f64>(), end.parse::<f64>());
        let (Ok(start), Ok(end), Ok(count)) = (start, end, count.parse::<usize>()) else {
            return Err(bad());
        };
        if !(start.is_finite() && end.is_finite() && start < end && count >= 1) {
            return Err(bad());
        }
        Ok(Self { start, end, count })
    }
}

/// `full` or `random:N`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct SubspaceArg(Subspace);

impl std::str::FromStr for SubspaceArg {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.split_once(':') {
            None if s == "full" => Ok(Self(Subspace::Full)),
            Some(("random", n)) => match n.parse::<usize>() {
                Ok(dim) if dim >= 1 => Ok(Self(Subspace::Random { dim })),
                _ => Err(format!("`{s}`: random:N needs N >= 1 (random:100)")),
            },
            _ => Err(format!("`{s}`: expected full or random:N")),
        }
    }
}

/// Weights and the data of their workload, loaded.
struct Loaded {
    weights: SavedWeights,
    model: Model,
    data: Data,
    device: Device,
}

impl Loaded {
    /// The record of `result`, measured on these weights and then `others`
    /// with the flags' batch-norm policy, begun at `start`.
    fn record(
        &self,
        others: &[&SavedWeights],
        common: &EvalArgs,
        threads: usize,
        result: Measured,
        start: Instant,
    ) -> MeasurementRecord {
        let mut weights = vec![self.weights.reference()];
        weights.extend(others.iter().map(|w| w.reference()));
        MeasurementRecord {
            schema: Schema,
            model: self.weights.info.model,
            weights,
            batch_norm: Some(common.batch_norm),
            provenance: bigbatch_bench::provenance(
                common.seed,
                threads,
                &device_label(&self.device),
                self.weights.info.spec.workload,
                &self.data,
            ),
            result,
            wall_seconds: start.elapsed().as_secs_f64(),
        }
    }

    /// The model on `set` as the flags say (statistics re-estimated on the
    /// training split).
    fn oracle<'a>(
        &'a self,
        set: &'a ImageClassification,
        common: &EvalArgs,
    ) -> bigbatch_bench::Result<NetworkOracle<'a>> {
        NetworkOracle::new(
            &self.model,
            set,
            &self.data.train,
            &self.data.normalization,
            &self.device,
            common.batch_norm,
            common.batch_size,
        )
    }
}

fn load(dir: &Path, common: &EvalArgs) -> Result<Loaded> {
    let weights = SavedWeights::read(dir)?;
    let device = common.device.open()?;
    let model = weights.load(&device)?;
    let workload = weights.info.spec.workload;
    let data = workload
        .load_data(&common.data_dir)
        .with_context(|| format!("loading {workload} data from {}", common.data_dir.display()))?;
    Ok(Loaded {
        weights,
        model,
        data,
        device,
    })
}

fn write(out: &Path, record: &MeasurementRecord) -> Result<()> {
    write_json_atomic(out, record)?;
    tracing::info!(out = %out.display(), seconds = record.wall_seconds, "measured");
    Ok(())
}

fn distance(args: &DistanceArgs, threads: usize) -> Result<()> {
    let start = Instant::now();
    let (w0, w1) = (
        SavedWeights::read(&args.from)?,
        SavedWeights::read(&args.to)?,
    );
    w0.check_same_model(&w1)?;
    let (m0, m1) = (w0.load(&Device::Cpu)?, w1.load(&Device::Cpu)?);
    let d = bigbatch_noise::distance_from_init(&param_tree(&m1)?, &param_tree(&m0)?)?;
    println!("‖W1 − W0‖ = {:.6}", d.total);
    for layer in &d.per_layer {
        println!(
            "  {:<40} {:>12.6}  (‖W0‖ {:.6})",
            layer.name, layer.distance, layer.init_norm
        );
    }
    let mut provenance = w1.info.provenance.clone();
    provenance.threads = threads;
    provenance.git_revision = bigbatch_bench::git_revision();
    let record = MeasurementRecord {
        schema: Schema,
        model: w0.info.model,
        weights: vec![w0.reference(), w1.reference()],
        batch_norm: None,
        provenance,
        result: Measured::Distance(d),
        wall_seconds: start.elapsed().as_secs_f64(),
    };
    write(&args.out, &record)
}

fn interpolate(args: &InterpolateArgs, threads: usize) -> Result<()> {
    let start = Instant::now();
    let a = load(&args.from, &args.common)?;
    let b = SavedWeights::read(&args.to)?;
    a.weights.check_same_model(&b)?;
    let (wa, wb) = (state_tree(&a.model)?, state_tree(&b.load(&a.device)?)?);
    let train_idx = match args.train_examples {
        Some(count) => ExampleSubset::Random {
            count,
            seed: args.common.seed,
        }
        .indices(a.data.train.len())?,
        None => (0..a.data.train.len()).collect(),
    };
    let test_idx: Vec<usize> = (0..a.data.test.len()).collect();
    let policy = args.common.batch_norm;
    let (mut on_train, mut on_test) = (
        a.oracle(&a.data.train, &args.common)?,
        a.oracle(&a.data.test, &args.common)?,
    );
    let mut points = Vec::new();
    let alphas = args.alpha.values();
    let bar = crate::bar(alphas.len() as u64, "α");
    let mut rows = Vec::new();
    let losses = bigbatch_noise::interpolate(&wa, &wb, &alphas, policy, |w, _| {
        let mut run = || -> bigbatch_bench::Result<f64> {
            on_train.set_weights(w)?;
            let train = on_train.evaluate(&train_idx, false)?;
            let test = on_test.evaluate(&test_idx, false)?;
            let loss = train.loss;
            rows.push((train, test));
            Ok(loss)
        };
        let loss = run().map_err(|e| bigbatch_noise::Error::Evaluation(Box::new(e)));
        bar.inc(1);
        loss
    })?;
    bar.finish_and_clear();
    for (p, (train, test)) in losses.iter().zip(rows) {
        points.push(InterpolationRow {
            alpha: p.alpha,
            train_loss: train.loss,
            train_accuracy: train.accuracy,
            test_loss: test.loss,
            test_accuracy: test.accuracy,
        });
    }
    println!(
        "{:>7} {:>11} {:>10} {:>11} {:>10}",
        "α", "train loss", "train acc", "test loss", "test acc"
    );
    for p in &points {
        println!(
            "{:>7.3} {:>11.4} {:>9.2}% {:>11.4} {:>9.2}%",
            p.alpha,
            p.train_loss,
            100.0 * p.train_accuracy,
            p.test_loss,
            100.0 * p.test_accuracy
        );
    }
    let figures = interpolation_figures(&args.common.out, &points)?;
    let record = a.record(
        &[&b],
        &args.common,
        threads,
        Measured::Interpolation { points },
        start,
    );
    write(&args.common.out, &record)?;
    for f in figures {
        tracing::info!(figure = %f.display(), "drawn");
    }
    Ok(())
}

/// Keskar et al.'s Fig. 3 beside the record `out`: train and test loss
/// (`<out>.loss.svg`) and accuracy (`<out>.accuracy.svg`) against α.
fn interpolation_figures(out: &Path, points: &[InterpolationRow]) -> Result<Vec<PathBuf>> {
    let line = |name: &str, f: fn(&InterpolationRow) -> f64| bigbatch_plot::Series {
        name: name.into(),
        points: points.iter().map(|p| (p.alpha, f(p))).collect(),
    };
    let mut drawn = Vec::new();
    for (what, unit, train, test) in [
        (
            "loss",
            "cross-entropy",
            line("train", |p| p.train_loss),
            line("test", |p| p.test_loss),
        ),
        (
            "accuracy",
            "accuracy (%)",
            line("train", |p| 100.0 * p.train_accuracy),
            line("test", |p| 100.0 * p.test_accuracy),
        ),
    ] {
        let path = out.with_extension(format!("{what}.svg"));
        let title = format!("{what} along (1 − α)·A + α·B");
        let chart = bigbatch_plot::Chart {
            title: &title,
            x_label: "α (0: --from, 1: --to)",
            y_label: unit,
        };
        bigbatch_plot::line_chart(&path, &chart, &[train, test])?;
        drawn.push(path);
    }
    Ok(drawn)
}

fn sharpness(args: &SharpnessArgs, threads: usize) -> Result<()> {
    let start = Instant::now();
    let l = load(&args.weights, &args.common)?;
    let examples = match args.examples {
        Some(count) => ExampleSubset::Random {
            count,
            seed: args.common.seed,
        },
        None => ExampleSubset::All,
    };
    let n_examples = examples.indices(l.data.train.len())?.len();
    let params = param_tree(&l.model)?;
    let mut oracle = l.oracle(&l.data.train, &args.common)?;
    let mut results = Vec::new();
    for &epsilon in &args.epsilon {
        let cfg = SharpnessConfig {
            epsilon,
            subspace: args.subspace.0,
            max_iters: args.iterations,
            examples,
            seed: args.common.seed,
            ..SharpnessConfig::default()
        };
        let r = bigbatch_noise::sharpness_of(&mut oracle, &params, &cfg)?;
        let subspace_dim = match args.subspace.0 {
            Subspace::Full => None,
            Subspace::Random { dim } => Some(dim),
        };
        println!(
            "ε = {epsilon:e}: sharpness {:.4} (loss {:.5} → {:.5}, {} iterations)",
            r.sharpness, r.loss, r.max_loss, r.iterations
        );
        results.push(SharpnessRow {
            epsilon,
            subspace_dim,
            examples: n_examples,
            sharpness: r.sharpness,
            loss: r.loss,
            max_loss: r.max_loss,
            iterations: r.iterations,
            evaluations: r.evaluations,
        });
    }
    let record = l.record(
        &[],
        &args.common,
        threads,
        Measured::Sharpness { results },
        start,
    );
    write(&args.common.out, &record)
}

/// Seeded examples of the training split: `count` of them, drawn for `(seed, stream)`.
fn draw(n: usize, count: usize, seed: u64, stream: u64) -> Result<Vec<usize>> {
    let seed = seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Ok(ExampleSubset::Random { count, seed }.indices(n)?)
}

fn noise_scale(args: &NoiseScaleArgs, threads: usize) -> Result<()> {
    let start = Instant::now();
    let l = load(&args.weights, &args.common)?;
    let n = l.data.train.len();
    let need = args
        .big_batch
        .max(args.small_batch * args.hessian_micro_batches);
    if need > n {
        bail!(
            "a batch of {need} examples does not fit the {n} training examples of {}",
            l.weights.info.spec.workload
        );
    }
    let params = param_tree(&l.model)?;
    let mut oracle = l.oracle(&l.data.train, &args.common)?;
    let (b, big) = (args.small_batch, args.big_batch);
    let bar = crate::bar(args.repeats as u64, "repeats");
    let mut repeats = Vec::with_capacity(args.repeats);
    for r in 0..args.repeats as u64 {
        let seed = args.common.seed;
        let (_, g_small) = oracle.loss_and_grad(&params, &draw(n, b, seed, 2 * r)?)?;
        let (_, g_big) = oracle.loss_and_grad(&params, &draw(n, big, seed, 2 * r + 1)?)?;
        repeats.push(bigbatch_noise::two_batch_estimate(
            b as f64,
            g_small.squared_norm()?,
            big as f64,
            g_big.squared_norm()?,
        )?);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let mean = |f: fn(&NoiseScaleEstimate) -> f64, picks: &[usize]| {
        picks.iter().map(|&i| f(&repeats[i])).sum::<f64>() / picks.len() as f64
    };
    let all: Vec<usize> = (0..repeats.len()).collect();
    let (g_sq, trace_sigma) = (mean(|e| e.g_sq, &all), mean(|e| e.trace_sigma, &all));
    let b_simple = (g_sq > 0.0).then(|| trace_sigma / g_sq);
    let b_simple_interval = match b_simple {
        Some(_) => bigbatch_noise::b_simple_interval(&repeats, 0.9, args.common.seed),
        _ => None,
    };
    let hessian = if args.hessian_micro_batches >= 2 {
        let k = args.hessian_micro_batches;
        let picked = draw(n, k * b, args.common.seed, u64::MAX)?;
        let mut micro = Vec::with_capacity(k);
        for chunk in picked.chunks(b) {
            micro.push((chunk.len(), oracle.loss_and_grad(&params, chunk)?.1));
        }
        let rest: Vec<usize> = {
            let used: std::collections::BTreeSet<usize> = picked.iter().copied().collect();
            let pool = draw(n, n, args.common.seed, u64::MAX - 1)?;
            pool.into_iter()
                .filter(|i| !used.contains(i))
                .take(args.hessian_examples)
                .collect()
        };
        let mut hvp = FiniteDifferenceHvp::new(
            &mut oracle,
            &params,
            rest,
            FiniteDifferenceHvp::<NetworkOracle<'_>>::DEFAULT_REL_STEP,
        )?;
        Some(bigbatch_noise::hessian_noise_scale(&mut hvp, &micro)?)
    } else {
        None
    };
    match b_simple {
        Some(v) => println!(
            "B_simple = {v:.1} (|G|² {g_sq:.4e}, tr(Σ) {trace_sigma:.4e}, {} repeats of b = {b}, B = {big})",
            repeats.len()
        ),
        None => println!(
            "B_simple undefined: the |G|² estimate is {g_sq:.3e} ≤ 0 over {} repeats of b = {b}, B = {big}; use more repeats or a bigger B",
            repeats.len()
        ),
    }
    if let Some(i) = b_simple_interval {
        println!("  90% bootstrap interval [{:.1}, {:.1}]", i.lower, i.upper);
    }
    if let Some(h) = &hessian {
        println!(
            "B_noise = {:.1} (ε_max {:.4e}; B_simple from the micro-batches {:.1})",
            h.b_noise, h.eps_max, h.b_simple
        );
    }
    let result = Measured::NoiseScale(NoiseScaleMeasurement {
        small_batch: b,
        big_batch: big,
        repeats,
        g_sq,
        trace_sigma,
        b_simple,
        b_simple_interval,
        hessian,
    });
    write(
        &args.common.out,
        &l.record(&[], &args.common, threads, result, start),
    )
}
