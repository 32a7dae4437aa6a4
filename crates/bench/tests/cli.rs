//! The `bigbatch` binary as a user meets it: bad data gives one clear line
//! naming the file and the problem, never a panic.

use std::path::Path;
use std::process::Command;

use anyhow::Result;
use bigbatch_data::{ImageClassification, ImageShape, Split, mnist};

/// Writes a tiny valid MNIST-format dataset (raw IDX) into `dir/mnist`.
fn write_tiny_mnist(dir: &Path) -> Result<()> {
    let n = 20;
    let pixels: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let data = ImageClassification::new(ImageShape::new(1, 28, 28), pixels, labels, 10)?;
    for split in [Split::Train, Split::Test] {
        mnist::write_idx(&dir.join("mnist"), split, &data, false)?;
    }
    Ok(())
}

fn train_on(dir: &Path) -> Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_bigbatch"))
        .args([
            "train",
            "--quiet",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--threads",
            "1",
        ])
        .arg("--data-dir")
        .arg(dir)
        .arg("--out")
        .arg(dir.join("out/results.json"))
        .env("NO_COLOR", "1")
        .env_remove("RUST_LOG")
        .output()?)
}

fn error_lines(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains("ERROR"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn trains_and_writes_a_record() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path())?;
    let out = train_on(dir.path())?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/results.json"))?)?;
    assert_eq!(record["status"]["kind"], "completed");
    assert_eq!(record["curve"].as_array().map(Vec::len), Some(1));
    assert_eq!(record["curve"][0]["step"], 2);
    assert_eq!(
        record["provenance"]["datasets"].as_array().map(Vec::len),
        Some(4)
    );
    assert_eq!(record["provenance"]["threads"], 1);
    Ok(())
}

#[test]
fn truncated_idx_is_one_line_naming_the_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path())?;
    let images = dir.path().join("mnist/train-images-idx3-ubyte");
    let bytes = std::fs::read(&images)?;
    std::fs::write(&images, &bytes[..bytes.len() - 100])?;
    let out = train_on(dir.path())?;
    assert!(!out.status.success());
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("train-images-idx3-ubyte"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("truncated"), "{}", errors[0]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    Ok(())
}

#[test]
fn corrupt_gzip_and_bad_magic_name_the_file() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path())?;
    let labels = dir.path().join("mnist/t10k-labels-idx1-ubyte");
    std::fs::remove_file(&labels)?;
    // Gzip magic, then garbage.
    std::fs::write(
        labels.with_extension("gz"),
        [0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5],
    )?;
    let out = train_on(dir.path())?;
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("t10k-labels-idx1-ubyte.gz"),
        "{}",
        errors[0]
    );

    std::fs::remove_file(labels.with_extension("gz"))?;
    std::fs::write(&labels, [0, 0, 8, 3, 0, 0, 0, 0])?;
    let out = train_on(dir.path())?;
    let errors = error_lines(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("t10k-labels-idx1-ubyte"),
        "{}",
        errors[0]
    );
    assert!(errors[0].to_lowercase().contains("magic"), "{}", errors[0]);
    Ok(())
}

#[test]
fn any_registered_model_that_fits_the_data_trains_by_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path())?;
    let train = |model: &str| -> Result<std::process::Output> {
        Ok(Command::new(env!("CARGO_BIN_EXE_bigbatch"))
            .args([
                "train",
                "--quiet",
                "--steps",
                "2",
                "--batch-size",
                "4",
                "--threads",
                "1",
            ])
            .args(["--model", model])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--out")
            .arg(dir.path().join(format!("{model}.json")))
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .output()?)
    };
    for model in ["tpu-mnist", "keskar-f1", "simple-cnn"] {
        let out = train(model)?;
        assert!(
            out.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(format!("{model}.json")))?)?;
        assert_eq!(record["model"], model);
        assert_eq!(record["workload"], "mnist-lenet5");
    }
    // A CIFAR model on MNIST, an autoencoder, a typo: refused before any work.
    for (model, needle) in [
        ("resnet20", "3×32×32"),
        ("svhn-vae", "autoencoder"),
        ("lenet", "lenet5"),
    ] {
        let out = train(model)?;
        assert!(!out.status.success());
        let errors = error_lines(&out);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{model}: {stderr}");
        assert!(errors.len() <= 1, "{errors:?}");
    }
    Ok(())
}
