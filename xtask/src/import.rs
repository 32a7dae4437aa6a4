//! `cargo xtask import-mnist-csv`: real digits from a CSV into MNIST IDX files.

use std::path::PathBuf;

use anyhow::{Context, Result};
use bigbatch_data::{Split, mnist};

use crate::DataArgs;

/// Arguments of `cargo xtask import-mnist-csv`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The CSV (optionally gzipped): 784 pixel values then the label on each row.
    pub csv: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Examples held out as the test split, stratified by class.
    #[arg(long, default_value_t = 1000)]
    pub test_count: usize,
    /// Seed of the stratified split.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Reads the CSV, splits it stratified by class, and writes the four IDX files
/// into `<data-dir>/mnist`.
pub fn run(args: &ImportArgs) -> Result<()> {
    let all =
        mnist::read_csv(&args.csv).with_context(|| format!("importing {}", args.csv.display()))?;
    let (train, test) = all.stratified_split(args.test_count, args.seed)?;
    let dir = args.data.dir().join("mnist");
    mnist::write_idx(&dir, Split::Train, &train, true)?;
    mnist::write_idx(&dir, Split::Test, &test, true)?;
    tracing::info!(
        train = train.len(),
        test = test.len(),
        "wrote MNIST IDX files to {}",
        dir.display()
    );
    Ok(())
}
