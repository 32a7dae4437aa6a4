//! Building and running the release `bigbatch` binary of `crates/bench`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The workspace root (the parent of xtask's manifest directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Builds `bigbatch` in release mode (with `features`, e.g. `cuda`) and returns its path.
///
/// # Errors
/// If cargo fails.
pub fn build_bench(features: &[String]) -> Result<PathBuf> {
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "bigbatch-bench",
        "--bin",
        "bigbatch",
    ]);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    tracing::info!("building the release bench binary (first time: a few minutes)");
    let status = cmd.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build of the bench binary failed ({status})");
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target
        .join("release")
        .join(format!("bigbatch{}", std::env::consts::EXE_SUFFIX)))
}

/// Runs `bin` with `args`, streaming its progress bar and logs to this terminal.
///
/// # Errors
/// If the process cannot start or exits unsuccessfully.
pub fn run(bin: &Path, args: &[OsString]) -> Result<()> {
    tracing::debug!(?args, "running {}", bin.display());
    let status = Command::new(bin)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("starting {}", bin.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", bin.display());
    }
    Ok(())
}
