//! `cargo xtask reproduce <experiment>`: run an experiment and write its report.

mod quickstart;
mod shallue;

use std::path::PathBuf;

use anyhow::Result;

use crate::DataArgs;

/// The experiments xtask can reproduce.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Experiment {
    /// LeNet-5 on MNIST with momentum SGD: loss and test accuracy against steps.
    Quickstart,
    /// Steps to a validation goal against batch size for SGD, momentum and
    /// Nesterov, each tuned per batch size (Shallue et al. 2019), with the
    /// critical batch size fit (McCandlish et al. 2018); `--workload` picks
    /// the data set.
    #[value(alias = "shallue-mnist")]
    Shallue,
}

/// How big an experiment is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// The pipeline end to end at toy size, in a couple of minutes (CI's test).
    Ci,
    /// Minutes on a laptop's CPU cores, on whatever data is present.
    #[default]
    Smoke,
    /// The published scale.
    Paper,
}

/// Alternative outputs of a sweep.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Emit {
    /// A Slurm job-array script sharing the results directory.
    Slurm,
}

/// Arguments of `cargo xtask reproduce`.
#[derive(clap::Args, Debug)]
pub struct ReproduceArgs {
    /// Which experiment.
    #[arg(value_enum)]
    pub experiment: Experiment,
    #[command(flatten)]
    pub data: DataArgs,
    /// Where reports go (`<dir>/<experiment>/report.md`; default: `reports/`
    /// in the workspace root, from any directory).
    #[arg(long)]
    pub reports_dir: Option<PathBuf>,
    /// CPU threads for training (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Seed of initialisation and data order.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override the experiment's step budget (e.g. for a quick look).
    #[arg(long)]
    pub steps: Option<u64>,
    /// How big (experiments with profiles).
    #[arg(long, value_enum, default_value = "smoke")]
    pub profile: Profile,
    /// The data set of experiments with several workloads (`shallue`:
    /// mnist, fashion-mnist or cifar-10; default mnist).
    #[arg(long, value_parser = parse_dataset)]
    pub workload: Option<bigbatch_spec::DatasetName>,
    /// Trials run in parallel, each its own process (default: 1 per 2 cores).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Write a Slurm job-array script instead of running the sweep here.
    #[arg(long, value_enum)]
    pub emit: Option<Emit>,
    /// Run only this optimizer's sweep (`shallue`: sgd, momentum or
    /// nesterov); the report reads the others' summaries as they are.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Render the report from the sweeps already in the report directory,
    /// running nothing (experiments with sweeps).
    #[arg(long)]
    pub render_only: bool,
    /// Cargo features for the bench binary, e.g. `cuda`.
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
}

impl ReproduceArgs {
    /// The directory of `experiment`'s report, absolute.
    pub fn report_dir(&self, experiment: &str) -> PathBuf {
        let root = match &self.reports_dir {
            Some(dir) => crate::absolute(dir),
            None => crate::runner::workspace_root().join("reports"),
        };
        root.join(experiment)
    }
}

fn parse_dataset(s: &str) -> Result<bigbatch_spec::DatasetName, String> {
    s.parse().map_err(|e: bigbatch_spec::Error| e.to_string())
}

/// Runs the chosen experiment.
pub fn run(args: &ReproduceArgs) -> Result<()> {
    match args.experiment {
        Experiment::Quickstart => quickstart::run(args),
        Experiment::Shallue => shallue::run(args),
    }
}

/// The provenance of a run on CI's 4,000 training digits, for the reports'
/// snapshot tests.
#[cfg(test)]
pub(crate) fn sample_provenance(threads: usize) -> bigbatch_record::Provenance {
    bigbatch_record::Provenance {
        seed: 0,
        git_revision: Some("0123abc".into()),
        threads,
        device: "cpu".into(),
        cpu_model: None,
        bigbatch_version: "0.1.0".into(),
        datasets: vec![bigbatch_record::FileDigest {
            file: "train-images-idx3-ubyte.gz".into(),
            sha256: "ab12".into(),
        }],
        data: Some(bigbatch_record::DataUsed {
            dataset: bigbatch_spec::DatasetName::Mnist,
            train_examples: 4000,
            test_examples: 1000,
        }),
    }
}
