//! `cargo xtask fetch` never destroys: a user's own files are left untouched
//! and reported; offline, the error names the file that is actually missing.

use std::path::Path;
use std::process::{Command, Output};

fn xtask(dir: &Path, args: &[&str]) -> std::io::Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(dir)
        .args(args)
        .env_remove("BIGBATCH_DATA_DIR")
        .env("NO_COLOR", "1")
        .output()
}

/// Writes a user's own 20 digits as the four MNIST files in `dir/data/mnist`.
fn own_digits(dir: &Path) -> std::io::Result<()> {
    let rows: Vec<String> = (0..20)
        .map(|i| {
            let pixels: Vec<String> = (0..784).map(|p| ((p * 3 + i) % 256).to_string()).collect();
            format!("{},{}", pixels.join(","), i % 10)
        })
        .collect();
    std::fs::write(dir.join("digits.csv"), rows.join("\n") + "\n")?;
    let out = xtask(
        dir,
        &[
            "import-mnist-csv",
            "digits.csv",
            "--test-count",
            "10",
            "--data-dir",
            "data",
        ],
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

#[test]
fn a_users_own_files_are_left_untouched_and_reported() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    own_digits(dir.path())?;
    let mnist = dir.path().join("data/mnist");
    std::fs::remove_file(mnist.join("t10k-labels-idx1-ubyte.gz"))?;
    let before: Vec<(String, Vec<u8>)> = [
        "train-images-idx3-ubyte.gz",
        "train-labels-idx1-ubyte.gz",
        "t10k-images-idx3-ubyte.gz",
    ]
    .iter()
    .map(|f| Ok((f.to_string(), std::fs::read(mnist.join(f))?)))
    .collect::<std::io::Result<_>>()?;
    let out = xtask(
        dir.path(),
        &["fetch", "mnist", "--offline", "--data-dir", "data"],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("not the published") && stderr.contains("--force"),
        "{stderr}"
    );
    for (file, bytes) in before {
        assert_eq!(
            std::fs::read(mnist.join(&file))?,
            bytes,
            "{file} was touched"
        );
    }
    Ok(())
}

#[test]
fn offline_the_error_names_the_missing_file() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = xtask(
        dir.path(),
        &["fetch", "fashion-mnist", "--offline", "--data-dir", "data"],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("train-images-idx3-ubyte.gz") && stderr.contains("offline"),
        "{stderr}"
    );
    Ok(())
}
