//! `cargo xtask reproduce <experiment>`: run an experiment and write its report.

mod quickstart;

use std::path::PathBuf;

use anyhow::Result;

use crate::DataArgs;

/// The experiments xtask can reproduce.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Experiment {
    /// LeNet-5 on MNIST with momentum SGD: loss and test accuracy against steps.
    Quickstart,
}

/// Arguments of `cargo xtask reproduce`.
#[derive(clap::Args, Debug)]
pub struct ReproduceArgs {
    /// Which experiment.
    #[arg(value_enum)]
    pub experiment: Experiment,
    #[command(flatten)]
    pub data: DataArgs,
    /// Where reports go (`<dir>/<experiment>/report.md`).
    #[arg(long, default_value = "reports")]
    pub reports_dir: PathBuf,
    /// CPU threads for training (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of initialisation and data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override the experiment's step budget (e.g. for a quick look).
    #[arg(long)]
    pub steps: Option<u64>,
    /// Cargo features for the bench binary, e.g. `cuda`.
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
}

/// Runs the chosen experiment.
pub fn run(args: &ReproduceArgs) -> Result<()> {
    match args.experiment {
        Experiment::Quickstart => quickstart::run(args),
    }
}
