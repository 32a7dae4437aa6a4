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
    let mut cmd = cargo();
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

/// Variables `cargo run` sets for the package it runs (xtask). Inherited by
/// a child `cargo build`, they change the fingerprint of every crate whose
/// build reads them (cargo logs `EnvVarChanged { name: "CARGO_MANIFEST_DIR" }`)
/// and so rebuild ring, rustls, ureq and the bench crates on every call.
const RUN_VARIABLES: [&str; 6] = [
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_PKG_",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
];

/// A `cargo` command with the environment a user's shell would give it: the
/// variables `cargo run` set for xtask removed ([`RUN_VARIABLES`]), so a
/// build after any other build compiles nothing.
fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    for (name, _) in std::env::vars_os() {
        let set_by_run = name
            .to_str()
            .is_some_and(|n| RUN_VARIABLES.iter().any(|v| n.starts_with(v)));
        if set_by_run {
            cmd.env_remove(&name);
        }
    }
    cmd
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_child_cargo_does_not_inherit_what_cargo_run_set() {
        // The test binary runs under cargo, which set these for it as `cargo
        // run` does for xtask.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let cmd = cargo();
        let removed: Vec<String> = cmd
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .filter_map(|(k, _)| k.to_str().map(str::to_owned))
            .collect();
        for name in ["CARGO_MANIFEST_DIR", "CARGO_PKG_NAME", "CARGO_CRATE_NAME"] {
            let present = std::env::var_os(name).is_some();
            assert_eq!(
                removed.iter().any(|r| r == name),
                present,
                "{name}: {removed:?}"
            );
        }
        assert!(
            !removed
                .iter()
                .any(|r| r == "CARGO_HOME" || r == "CARGO_TARGET_DIR")
        );
    }
}
