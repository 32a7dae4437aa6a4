//! Paths a user gives mean the same from any directory: relative ones are
//! resolved against the directory xtask was run from.

use std::path::Path;
use std::process::Command;

/// A CSV of 20 digits (784 pixels then the label per row), two per class.
fn write_csv(path: &Path) -> std::io::Result<()> {
    let rows: Vec<String> = (0..20)
        .map(|i| {
            let pixels: Vec<String> = (0..784).map(|p| ((p * 7 + i) % 256).to_string()).collect();
            format!("{},{}", pixels.join(","), i % 10)
        })
        .collect();
    std::fs::write(path, rows.join("\n") + "\n")
}

#[test]
fn relative_paths_resolve_against_the_callers_directory() -> std::io::Result<()> {
    let root = tempfile::tempdir()?;
    let sub = root.path().join("deep/sub");
    std::fs::create_dir_all(&sub)?;
    write_csv(&sub.join("digits.csv"))?;
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(&sub)
        .args([
            "import-mnist-csv",
            "digits.csv",
            "--test-count",
            "10",
            "--data-dir",
            "../mine",
        ])
        .env_remove("BIGBATCH_DATA_DIR")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mnist = root.path().join("deep/mine/mnist");
    for file in ["train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
        assert!(
            mnist.join(file).is_file(),
            "{} missing",
            mnist.join(file).display()
        );
    }
    // The environment variable is resolved the same way.
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .current_dir(&sub)
        .args(["import-mnist-csv", "digits.csv", "--test-count", "10"])
        .env("BIGBATCH_DATA_DIR", "env-data")
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        sub.join("env-data/mnist/train-labels-idx1-ubyte.gz")
            .is_file()
    );
    Ok(())
}
