//! Quickstart: LeNet-5 on MNIST with momentum SGD (LeCun et al. 1998).
//!
//! The smallest real experiment: it fetches MNIST if needed, trains in the
//! release bench binary, and writes `reports/quickstart/` with the loss and
//! accuracy curves, the table, and the full run record.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, Result};
use bigbatch_record::{EvalPoint, RunRecord, Status, read_json};

use super::ReproduceArgs;
use bigbatch_spec::DatasetName;

use crate::fetch;
use crate::report::{Axes, Block, Cell, Column, Figure, Report, Section, Series, Table};
use crate::runner;

/// Steps of batch 128: about 3.2 epochs of full MNIST (≈99% test accuracy).
const DEFAULT_STEPS: u64 = 1500;
const BATCH_SIZE: u64 = 128;
const LEARNING_RATE: f64 = 0.05;
const MOMENTUM: f64 = 0.9;
const EVAL_EVERY_STEPS: u64 = 100;

/// Runs the quickstart and renders its report.
pub fn run(args: &ReproduceArgs) -> Result<()> {
    let data_dir = fetch::ensure_mnist_format(DatasetName::Mnist, &args.data)?
        .parent()
        .map(|p| p.to_path_buf())
        .context("data directory has no parent")?;
    let out = args.report_dir("quickstart");
    let results = out.join("results.json");
    let bin = runner::build_bench(&args.features)?;
    let steps = args.steps.unwrap_or(DEFAULT_STEPS);
    let mut cmd: Vec<OsString> = vec!["train".into(), "--workload".into(), "mnist-lenet5".into()];
    cmd.extend(["--data-dir".into(), data_dir.into_os_string()]);
    cmd.extend(["--out".into(), results.clone().into_os_string()]);
    for (flag, value) in [
        ("--steps", steps.to_string()),
        ("--batch-size", BATCH_SIZE.to_string()),
        ("--optimizer", "momentum".into()),
        ("--learning-rate", LEARNING_RATE.to_string()),
        ("--momentum", MOMENTUM.to_string()),
        (
            "--eval-every-steps",
            EVAL_EVERY_STEPS.min(steps).to_string(),
        ),
        ("--seed", args.seed.to_string()),
    ] {
        cmd.extend([flag.into(), value.into()]);
    }
    if let Some(t) = args.threads {
        cmd.extend(["--threads".into(), t.to_string().into()]);
    }
    runner::run(&bin, &cmd)?;
    render(&out)?;
    tracing::info!("report: {}", out.join("report.md").display());
    Ok(())
}

/// Renders `report.md`, `loss.svg`, `accuracy.svg` and `results.json` from
/// the run record the bench binary wrote to `results.json` in `out`.
pub fn render(out: &Path) -> Result<()> {
    let record: RunRecord = read_json(&out.join("results.json"))?;
    report(&record).write(out, &record)
}

/// The quickstart's report: the curve as figures and a table, the configuration.
fn report(record: &RunRecord) -> Report {
    let curve = &record.curve;
    let points = |f: fn(&EvalPoint) -> Option<f64>| {
        curve
            .iter()
            .filter_map(|p| Some((p.step as f64, f(p)?)))
            .collect()
    };
    let loss = Figure {
        file: "loss.svg".into(),
        title: "LeNet-5 on MNIST: loss".into(),
        x_label: "step".into(),
        y_label: "cross-entropy".into(),
        axes: Axes::Linear,
        series: vec![
            Series {
                name: "train (mean since last eval)".into(),
                points: points(|p| Some(p.train_loss)),
            },
            Series {
                name: "test".into(),
                points: points(|p| p.test_loss),
            },
        ],
    };
    let accuracy = Figure {
        file: "accuracy.svg".into(),
        title: "LeNet-5 on MNIST: test accuracy".into(),
        x_label: "step".into(),
        y_label: "accuracy (%)".into(),
        axes: Axes::Linear,
        series: vec![Series {
            name: "test accuracy".into(),
            points: points(|p| p.test_accuracy.map(|a| 100.0 * a)),
        }],
    };
    let table = Table {
        columns: vec![
            Column::label("step"),
            Column::label("epoch"),
            Column::ours("train loss", None),
            Column::ours("test loss", None),
            Column::ours("test accuracy", Some("%")),
        ],
        rows: curve
            .iter()
            .map(|p| {
                vec![
                    Cell::text(p.step.to_string()),
                    Cell::number(p.epoch, 2),
                    Cell::number(p.train_loss, 4),
                    p.test_loss.map_or(Cell::Missing, |l| Cell::number(l, 4)),
                    p.test_accuracy
                        .map_or(Cell::Missing, |a| Cell::number(100.0 * a, 2)),
                ]
            })
            .collect(),
    };
    let last = curve.last();
    let status = match record.status {
        Status::Completed => "completed",
        Status::ReachedTarget { .. } => "reached target",
        Status::Diverged { .. } => "diverged",
        Status::Pruned { .. } => "pruned",
    };
    let data = record
        .provenance
        .data
        .map_or_else(|| "not recorded".to_owned(), |d| d.describe());
    let headline = format!(
        "LeNet-5 (LeCun et al. 1998; 61,706 parameters) trained with momentum SGD on {data}.\n\n\
         **Final test accuracy: {acc}** after {steps} steps ({epochs} epochs), status `{status}`, {secs:.0} s.",
        acc = last
            .and_then(|p| p.test_accuracy)
            .map_or("n/a".into(), |a| format!("{:.2}%", 100.0 * a)),
        steps = last.map_or(0, |p| p.step),
        epochs = last.map_or("0".into(), |p| format!("{:.2}", p.epoch)),
        secs = record.wall_seconds,
    );
    Report {
        title: "Quickstart: LeNet-5 on MNIST".into(),
        reference: "LeCun et al. 1998, *Gradient-based learning applied to document recognition*"
            .into(),
        sections: vec![
            Section {
                heading: String::new(),
                blocks: vec![
                    Block::Text(headline),
                    Block::Figure(loss),
                    Block::Figure(accuracy),
                ],
            },
            Section {
                heading: "Curve".into(),
                blocks: vec![Block::Table(table)],
            },
            Section {
                heading: "Configuration".into(),
                blocks: vec![
                    Block::Text(format!("Workload `{}`.", record.workload)),
                    Block::Json(serde_json::to_value(&record.config).unwrap_or_default()),
                ],
            },
        ],
        provenance: vec![record.provenance.clone()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bigbatch_record::Schema;
    use bigbatch_spec::{Budget, Method, OptimizerSpec, TrainConfig, WorkloadKind};

    /// A run record as `bigbatch train` writes it: three evaluations.
    fn record() -> RunRecord {
        let point = |step: u64, loss: f64, acc: f64| EvalPoint {
            step,
            epoch: step as f64 / 31.0,
            examples: step * 128,
            train_loss: loss + 0.05,
            test_loss: Some(loss),
            test_accuracy: Some(acc),
            validation_loss: None,
            validation_accuracy: None,
            b_simple: None,
            b_simple_smoothed: None,
        };
        RunRecord {
            schema: Schema,
            workload: WorkloadKind::MnistLenet5,
            model: WorkloadKind::MnistLenet5.workload().model,
            config: TrainConfig::new(
                128,
                Budget::Steps(300),
                OptimizerSpec::new(Method::Momentum { momentum: 0.9 }).with_learning_rate(0.05),
            ),
            provenance: super::super::sample_provenance(2),
            status: Status::Completed,
            curve: vec![
                point(100, 0.52, 0.851),
                point(200, 0.21, 0.934),
                point(300, 0.14, 0.957),
            ],
            steps_to_target: None,
            examples_to_target: None,
            noise_scale: vec![],
            wall_seconds: 12.3,
        }
    }

    #[test]
    fn report_renders_curve_figures_and_provenance() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let record = record();
        bigbatch_record::write_json_atomic(&dir.path().join("results.json"), &record)?;
        render(dir.path())?;
        let md = std::fs::read_to_string(dir.path().join("report.md"))?;
        expect_test::expect_file!["snapshots/quickstart_report.md"].assert_eq(&md);
        for (file, text) in [
            ("loss.svg", "cross-entropy"),
            ("accuracy.svg", "test accuracy"),
        ] {
            let svg = std::fs::read_to_string(dir.path().join(file))?;
            assert!(svg.starts_with("<svg") && svg.contains(text), "{file}");
        }
        let back: RunRecord = read_json(&dir.path().join("results.json"))?;
        assert_eq!(back, record);
        Ok(())
    }
}
