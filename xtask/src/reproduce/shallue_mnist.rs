//! Shallue et al. (2019), "Measuring the effects of data parallelism on neural
//! network training", on MNIST: steps to a test-accuracy target against batch
//! size (powers of two from 16 to the training set), SGD with momentum tuned
//! separately at every batch size by quasi-random search, and the critical
//! batch size `B_crit = E_min/S_min` of McCandlish et al. (2018) fitted to the
//! best trial per batch size.
//!
//! The sweep runs in the release bench binary (`bigbatch sweep`), one process
//! per trial, resumable; this module writes the plan and renders
//! `reports/shallue-mnist/` from the sweep's `summary.json`.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result};
use bigbatch_spec::{
    Dimension, Method, Metric, OptimizerSpec, Param, ScheduleSpec, SearchSpace, StepBudget,
    SweepPlan, Target, WorkloadKind,
};
use serde::Deserialize;

use super::{Emit, Profile, ReproduceArgs};
use crate::fetch::{self, DatasetName};
use crate::report::{self, Chart, Series, markdown_table};
use crate::runner;

/// The sweep plan of a profile: the very type the bench binary reads.
fn plan(profile: Profile, train_len: usize, seed: u64) -> SweepPlan {
    // The smoke profile on a few thousand digits (CI's 5,000) stops at batch
    // 1024: enough to pass the critical batch size (a few hundred here) and
    // see the steps flatten, cheap enough for minutes on two cores.
    let small = profile == Profile::Smoke && train_len < 20_000;
    let largest = if small { 1024 } else { train_len };
    let batch_sizes: Vec<usize> = (4..=16)
        .map(|k| 1usize << k)
        .filter(|&b| b <= largest.min(train_len))
        .collect();
    // Shallue et al. target 0.01 error with a simple CNN; LeNet-5 trained on
    // a few thousand digits tops out near 97%, so the smoke target is lower.
    // Budgets: `examples/B` steps, at least `min_steps` so that batches past
    // the critical size get the steps they need (the flat part of the curve).
    let (trials, examples, min_steps, max_steps, threshold, evals) = match profile {
        Profile::Smoke if small => (6, 12_000, 200, 750, 0.93, 25),
        Profile::Smoke => (6, 120_000, 200, 1_500, 0.97, 25),
        Profile::Paper => (20, 60_000 * 30, 100, 30_000, 0.99, 100),
    };
    // Learning rate and 1 − momentum on log scales; the smoke profile's few
    // points span effective learning rates η/(1 − μ) from about 0.2 to 5.
    let (lr, one_minus_momentum) = match profile {
        Profile::Smoke => ((1e-2, 0.5), (0.03, 0.3)),
        Profile::Paper => ((1e-3, 1.0), (1e-2, 0.5)),
    };
    SweepPlan {
        workload: WorkloadKind::MnistLenet5,
        batch_sizes,
        trials_per_batch_size: trials,
        optimizer: OptimizerSpec::new(Method::Momentum { momentum: 0.9 }),
        schedule: ScheduleSpec::default(),
        label_smoothing: 0.0,
        search: SearchSpace {
            dimensions: vec![
                Dimension::log(Param::LearningRate, lr.0, lr.1),
                Dimension::log(
                    Param::OneMinusMomentum,
                    one_minus_momentum.0,
                    one_minus_momentum.1,
                ),
            ],
        },
        search_seed: seed,
        seed,
        budget: StepBudget {
            examples,
            min_steps,
            max_steps,
        },
        target: Target {
            metric: Metric::TestAccuracy,
            threshold,
        },
        evals_per_trial: evals,
        eval_batch_size: 1000,
        micro_batch_size: Some(1024),
        ghost_batch_size: None,
        // Paper-scale trials run for hours: a killed one resumes from its
        // last checkpoint instead of starting over. Smoke trials are short.
        checkpoint_every_steps: (profile == Profile::Paper).then_some(1_000),
    }
}

/// The parts of `summary.json` the report uses (see `bigbatch_bench::SweepSummary`).
#[derive(Debug, Deserialize)]
struct Summary {
    plan: SweepPlan,
    trials_planned: usize,
    batch_sizes: Vec<BatchSize>,
    pareto: Option<Pareto>,
    provenance: Option<report::Provenance>,
}

#[derive(Debug, Deserialize)]
struct BatchSize {
    batch_size: usize,
    trials: usize,
    reached: usize,
    diverged: usize,
    best: Option<Best>,
}

#[derive(Debug, Deserialize)]
struct Best {
    steps: u64,
    examples: u64,
    optimizer: OptimizerSpec,
}

#[derive(Debug, Deserialize)]
struct Pareto {
    fit: Fit,
    s_min: Interval,
    e_min: Interval,
    b_crit: Interval,
}

#[derive(Debug, Deserialize)]
struct Fit {
    s_min: f64,
    e_min: f64,
    b_crit: f64,
    identified: bool,
}

#[derive(Debug, Deserialize)]
struct Interval {
    lower: f64,
    upper: f64,
}

/// Runs (or resumes) the sweep and renders the report.
pub fn run(args: &ReproduceArgs) -> Result<()> {
    let mnist = fetch::ensure_mnist_format(DatasetName::Mnist, &args.data)?;
    let data_dir = mnist
        .parent()
        .map(Path::to_path_buf)
        .context("data directory has no parent")?;
    let train_len = bigbatch_data::mnist::load(&mnist, bigbatch_data::Split::Train)
        .with_context(|| format!("reading MNIST from {}", mnist.display()))?
        .len();
    let out = args.reports_dir.join("shallue-mnist");
    let sweep_dir = out.join(match args.profile {
        Profile::Smoke => "sweep-smoke",
        Profile::Paper => "sweep-paper",
    });
    let plan_path = out.join(match args.profile {
        Profile::Smoke => "plan-smoke.json",
        Profile::Paper => "plan-paper.json",
    });
    let plan = plan(args.profile, train_len, args.seed);
    plan.trials(train_len)
        .context("the profile's sweep plan is invalid")?;
    report::write_atomic(&plan_path, &serde_json::to_vec_pretty(&plan)?)?;
    let bin = runner::build_bench(&args.features)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = args.jobs.unwrap_or((cores / 2).max(1));
    let threads = args.threads.unwrap_or((cores / jobs).max(1));
    let mut cmd: Vec<OsString> = vec!["sweep".into()];
    cmd.extend(["--plan".into(), plan_path.into_os_string()]);
    cmd.extend(["--dir".into(), sweep_dir.clone().into_os_string()]);
    cmd.extend(["--data-dir".into(), data_dir.into_os_string()]);
    cmd.extend(["--jobs".into(), jobs.to_string().into()]);
    cmd.extend(["--threads".into(), threads.to_string().into()]);
    if let Some(Emit::Slurm) = args.emit {
        cmd.extend(["--emit".into(), "slurm".into()]);
        runner::run(&bin, &cmd)?;
        tracing::info!("Slurm script: {}", sweep_dir.join("sweep.slurm").display());
        return Ok(());
    }
    tracing::info!(train_len, jobs, threads, profile = ?args.profile, "sweep (resumable: rerun to continue)");
    runner::run(&bin, &cmd)?;
    let summary_bytes = std::fs::read(sweep_dir.join("summary.json"))
        .with_context(|| format!("reading {}", sweep_dir.join("summary.json").display()))?;
    report::write_atomic(&out.join("results.json"), &summary_bytes)?;
    render(&out)?;
    tracing::info!("report: {}", out.join("report.md").display());
    Ok(())
}

/// Renders `report.md` and `steps.svg` from `results.json` in `out`.
pub fn render(out: &Path) -> Result<()> {
    let path = out.join("results.json");
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let summary: Summary =
        serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", path.display()))?;
    let reached: Vec<(f64, f64)> = summary
        .batch_sizes
        .iter()
        .filter_map(|b| {
            b.best
                .as_ref()
                .map(|best| (b.batch_size as f64, best.steps as f64))
        })
        .collect();
    let mut series = vec![Series {
        name: "best trial per batch size".into(),
        points: reached.clone(),
    }];
    if let (Some(&(b0, s0)), Some(&(b1, _))) = (reached.first(), reached.last()) {
        series.push(Series {
            name: "~perfect scaling (S ∝ 1/B)".into(),
            points: vec![(b0, s0), (b1, s0 * b0 / b1)],
        });
    }
    if let Some(p) = &summary.pareto {
        let (lo, hi) = (
            reached.first().map_or(1.0, |p| p.0),
            reached.last().map_or(1.0, |p| p.0),
        );
        let points = (0..=24)
            .map(|i| {
                let b = lo * (hi / lo).powf(f64::from(i) / 24.0);
                (b, p.fit.s_min + p.fit.e_min / b)
            })
            .collect();
        series.push(Series {
            name: format!("~fit S = S_min + E_min/B (B_crit = {:.0})", p.fit.b_crit),
            points,
        });
    }
    let threshold = summary.plan.target.threshold;
    let metric = match summary.plan.target.metric {
        Metric::TestAccuracy => "test-accuracy",
        Metric::TestError => "test-error",
    };
    report::log_log_chart(
        &out.join("steps.svg"),
        &Chart {
            title: &format!("LeNet-5 on MNIST: steps to {metric} {threshold}"),
            x_label: "batch size",
            y_label: "steps to target",
        },
        &series,
    )?;
    let rows: Vec<Vec<String>> = summary
        .batch_sizes
        .iter()
        .map(|b| {
            let (steps, examples, lr, mom) = match &b.best {
                Some(best) => (
                    best.steps.to_string(),
                    best.examples.to_string(),
                    format!("{:.4}", best.optimizer.learning_rate),
                    match best.optimizer.method {
                        Method::Momentum { momentum } | Method::Nesterov { momentum } => {
                            format!("{momentum:.4}")
                        }
                        _ => "—".into(),
                    },
                ),
                None => ("—".into(), "—".into(), "—".into(), "—".into()),
            };
            vec![
                b.batch_size.to_string(),
                steps,
                examples,
                lr,
                mom,
                format!("{}/{}", b.reached, b.trials),
                b.diverged.to_string(),
            ]
        })
        .collect();
    let fit = match &summary.pareto {
        Some(p) => format!(
            "Fit of `S = S_min + E_min/B` to the best trials (McCandlish et al. 2018), 95% bootstrap intervals:\n\n\
             - S_min = {:.1} [{:.1}, {:.1}] steps\n- E_min = {:.0} [{:.0}, {:.0}] examples\n\
             - **B_crit = E_min/S_min = {:.0}** [{:.0}, {:.0}]{}\n",
            p.fit.s_min,
            p.s_min.lower,
            p.s_min.upper,
            p.fit.e_min,
            p.e_min.lower,
            p.e_min.upper,
            p.fit.b_crit,
            p.b_crit.lower,
            p.b_crit.upper,
            if p.fit.identified {
                ""
            } else {
                " (not identified: the batch sizes do not bracket the knee)"
            },
        ),
        None => "No B_crit fit: fewer than three batch sizes reached the target.\n".into(),
    };
    let prov = match &summary.provenance {
        Some(p) => format!(
            "- seed {}, {} thread(s) per trial on `{}`\n- bigbatch {}, git revision `{}`\n{}",
            p.seed,
            p.threads,
            p.device,
            p.bigbatch_version,
            p.git_revision.as_deref().unwrap_or("unknown"),
            p.datasets
                .iter()
                .map(|d| format!("- `{}` sha256 `{}`\n", d.file, d.sha256))
                .collect::<String>()
        ),
        None => "- no trial finished\n".into(),
    };
    let md = format!(
        "# Steps to target against batch size: LeNet-5 on MNIST\n\n\
         Shallue et al. (2019): for each batch size, SGD with momentum is tuned by \
         quasi-random (Halton) search over the learning rate and 1 − momentum on log \
         scales, and the best trial's steps to reach {metric} {threshold} (first \
         evaluation meeting it) are plotted. Perfect scaling halves the steps when the \
         batch size doubles; beyond the critical batch size the steps flatten.\n\n\
         ![steps](steps.svg)\n\n\
         ## Best trial per batch size\n\n{table}\n\
         {fit}\n\
         ## Search space and plan\n\n{trials} trials planned.\n\n```json\n{plan}\n```\n\n\
         ## Provenance\n\n{prov}\n\
         Machine-readable: [results.json](results.json); every trial's record lies in the sweep directory.\n",
        table = markdown_table(
            &[
                "batch size",
                "steps",
                "examples",
                "learning rate",
                "momentum",
                "reached",
                "diverged"
            ],
            &rows
        ),
        trials = summary.trials_planned,
        plan = serde_json::to_string_pretty(&summary.plan)?,
    );
    report::write_atomic(&out.join("report.md"), md.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A sweep summary as `bigbatch sweep` writes it: best steps on the curve
    /// `S = S_min + E_min/B` with `S_min = 50`, `E_min = 6400` (B_crit = 128),
    /// one batch size that never reached the target.
    fn summary() -> serde_json::Value {
        let sizes: Vec<serde_json::Value> = [16u64, 64, 256, 1024]
            .iter()
            .map(|&b| {
                let steps = 50 + 6400 / b;
                json!({
                    "batch_size": b, "trials": 4, "reached": 3, "diverged": 1,
                    "best": {"id": format!("{b:016x}"), "steps": steps, "examples": steps * b,
                             "optimizer": {"name": "momentum", "learning_rate": 0.05, "momentum": 0.9}},
                })
            })
            .chain([json!({"batch_size": 4096, "trials": 4, "reached": 0, "diverged": 4, "best": null})])
            .collect();
        json!({
            "plan": plan(Profile::Smoke, 4096, 0),
            "trials_planned": 20,
            "batch_sizes": sizes,
            "pareto": {
                "fit": {"s_min": 50.0, "e_min": 6400.0, "b_crit": 128.0, "identified": true},
                "s_min": {"lower": 45.0, "upper": 55.0},
                "e_min": {"lower": 6000.0, "upper": 6800.0},
                "b_crit": {"lower": 110.0, "upper": 150.0},
            },
            "provenance": {
                "seed": 0, "git_revision": "0123abc", "threads": 1, "device": "cpu",
                "bigbatch_version": "0.1.0",
                "datasets": [{"file": "mnist/train-images-idx3-ubyte.gz", "sha256": "ab12"}],
            },
        })
    }

    #[test]
    fn report_renders_table_fit_and_figure() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-shallue-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        report::write_atomic(&dir.join("results.json"), &serde_json::to_vec(&summary())?)?;
        render(&dir)?;
        let md = std::fs::read_to_string(dir.join("report.md"))?;
        expect_test::expect_file!["snapshots/shallue_mnist_report.md"].assert_eq(&md);
        let svg = std::fs::read_to_string(dir.join("steps.svg"))?;
        assert!(svg.starts_with("<svg"));
        for text in ["steps to target", "perfect scaling", "B_crit = 128"] {
            assert!(svg.contains(text), "steps.svg lacks {text:?}");
        }
        assert!(!svg.contains("~perfect"));
        std::fs::remove_dir_all(dir)?;
        Ok(())
    }
}
