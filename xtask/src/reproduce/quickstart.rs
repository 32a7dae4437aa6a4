//! Quickstart: LeNet-5 on MNIST with momentum SGD (LeCun et al. 1998).
//!
//! The smallest real experiment: it fetches MNIST if needed, trains in the
//! release bench binary, and writes `reports/quickstart/` with the loss and
//! accuracy curves, the table, and the full run record.

use std::ffi::OsString;

use anyhow::{Context, Result};

use super::ReproduceArgs;
use crate::fetch::{self, DatasetName};
use crate::report::{self, Chart, Series, markdown_table};
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
    let out = args.reports_dir.join("quickstart");
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

/// Renders `report.md`, `loss.svg` and `accuracy.svg` from `results.json` in `out`.
pub fn render(out: &std::path::Path) -> Result<()> {
    let record = report::read_record(&out.join("results.json"))?;
    let curve = &record.curve;
    let points =
        |f: fn(&report::EvalPoint) -> f64| curve.iter().map(|p| (p.step as f64, f(p))).collect();
    report::line_chart(
        &out.join("loss.svg"),
        &Chart {
            title: "LeNet-5 on MNIST: loss",
            x_label: "step",
            y_label: "cross-entropy",
        },
        &[
            Series {
                name: "train (mean since last eval)".into(),
                points: points(|p| p.train_loss),
            },
            Series {
                name: "test".into(),
                points: points(|p| p.test_loss),
            },
        ],
    )?;
    report::line_chart(
        &out.join("accuracy.svg"),
        &Chart {
            title: "LeNet-5 on MNIST: test accuracy",
            x_label: "step",
            y_label: "accuracy (%)",
        },
        &[Series {
            name: "test accuracy".into(),
            points: points(|p| 100.0 * p.test_accuracy),
        }],
    )?;
    let rows: Vec<Vec<String>> = curve
        .iter()
        .map(|p| {
            vec![
                p.step.to_string(),
                format!("{:.2}", p.epoch),
                format!("{:.4}", p.train_loss),
                format!("{:.4}", p.test_loss),
                format!("{:.2}%", 100.0 * p.test_accuracy),
            ]
        })
        .collect();
    let last = curve.last();
    let prov = &record.provenance;
    let datasets: String = prov
        .datasets
        .iter()
        .map(|d| format!("- `{}` sha256 `{}`\n", d.file, d.sha256))
        .collect();
    let md = format!(
        "# Quickstart: LeNet-5 on MNIST\n\n\
         LeNet-5 (LeCun et al. 1998; 61,706 parameters) trained with momentum SGD.\n\n\
         **Final test accuracy: {acc}** after {steps} steps ({epochs} epochs), status `{status}`, {secs:.0} s.\n\n\
         ![loss](loss.svg)\n\n![accuracy](accuracy.svg)\n\n\
         ## Curve\n\n{table}\n\
         ## Configuration\n\n```json\n{config}\n```\n\n\
         ## Provenance\n\n\
         - workload `{workload}`, seed {seed}, {threads} thread(s) on `{device}`\n\
         - bigbatch {version}, git revision `{rev}`\n{datasets}\n\
         Machine-readable: [results.json](results.json).\n",
        acc = last.map_or("n/a".into(), |p| format!("{:.2}%", 100.0 * p.test_accuracy)),
        steps = last.map_or(0, |p| p.step),
        epochs = last.map_or("0".into(), |p| format!("{:.2}", p.epoch)),
        status = record
            .status
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or("unknown"),
        secs = record.wall_seconds,
        table = markdown_table(
            &["step", "epoch", "train loss", "test loss", "test accuracy"],
            &rows
        ),
        config = serde_json::to_string_pretty(&record.config)?,
        workload = record.workload,
        seed = prov.seed,
        threads = prov.threads,
        device = prov.device,
        version = prov.bigbatch_version,
        rev = prov.git_revision.as_deref().unwrap_or("unknown"),
    );
    report::write_atomic(&out.join("report.md"), md.as_bytes())
}
