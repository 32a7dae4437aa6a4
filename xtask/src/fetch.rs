//! `cargo xtask fetch`: datasets into the data directory, with progress bars.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bigbatch_data::download::{self, FetchOptions, Progress};
use bigbatch_data::vision::{cifar, svhn};
use bigbatch_data::{Split, mnist};
use indicatif::{ProgressBar, ProgressStyle};

use bigbatch_spec::DatasetName;

use crate::DataArgs;

/// The folder of `dataset` under the data directory.
pub fn folder(dataset: DatasetName) -> &'static str {
    match dataset {
        DatasetName::Mnist => mnist::Variant::Digits.dir_name(),
        DatasetName::FashionMnist => mnist::Variant::Fashion.dir_name(),
        DatasetName::Cifar10 => cifar::Variant::Cifar10.dir_name(),
        DatasetName::Cifar100 => cifar::Variant::Cifar100Fine.dir_name(),
        DatasetName::Svhn | DatasetName::SvhnExtra => svhn::DIR_NAME,
    }
}

/// The published files of `dataset`, with mirrors and checksums.
fn resources(dataset: DatasetName) -> Vec<download::Resource> {
    match dataset {
        DatasetName::Mnist => mnist::resources(mnist::Variant::Digits),
        DatasetName::FashionMnist => mnist::resources(mnist::Variant::Fashion),
        DatasetName::Cifar10 => vec![cifar::resource(cifar::Variant::Cifar10)],
        DatasetName::Cifar100 => vec![cifar::resource(cifar::Variant::Cifar100Fine)],
        DatasetName::Svhn => vec![
            svhn::resource(svhn::SvhnSplit::Train),
            svhn::resource(svhn::SvhnSplit::Test),
        ],
        DatasetName::SvhnExtra => vec![svhn::resource(svhn::SvhnSplit::Extra)],
    }
}

/// Which of `dataset`'s files in `dir` are missing, and which are present
/// but not the published ones (their errors), without touching the network.
fn survey(
    dataset: DatasetName,
    dir: &std::path::Path,
) -> Result<(Vec<download::Resource>, Vec<String>)> {
    let look = FetchOptions {
        offline: true,
        ..FetchOptions::default()
    };
    let (mut missing, mut not_official) = (Vec::new(), Vec::new());
    for resource in resources(dataset) {
        match download::fetch(&resource, dir, &look, &download::NoProgress) {
            Ok(_) => {}
            Err(bigbatch_data::Error::Offline { .. }) => missing.push(resource),
            Err(e @ bigbatch_data::Error::NotOfficial { .. }) => not_official.push(e.to_string()),
            Err(e) => return Err(e).with_context(|| format!("checking {}", dir.display())),
        }
    }
    Ok((missing, not_official))
}

/// Downloads the files of `dataset` that are missing. Present files that
/// are not the published ones are left untouched and reported (they may be
/// a user's own data), unless `force` replaces them.
pub fn fetch(dataset: DatasetName, data: &DataArgs, force: bool) -> Result<PathBuf> {
    let dir = data.dir().join(folder(dataset));
    let (missing, not_official) = survey(dataset, &dir)?;
    if !not_official.is_empty() && !force {
        anyhow::bail!(
            "nothing fetched: {} file(s) present are not the published {dataset}:\n  - {}",
            not_official.len(),
            not_official.join("\n  - ")
        );
    }
    let opts = FetchOptions {
        offline: data.offline,
        force,
        ..FetchOptions::default()
    };
    let wanted = if force { resources(dataset) } else { missing };
    download_all(dataset, &dir, wanted, &opts)?;
    Ok(dir)
}

/// Downloads `wanted` into `dir` with a progress bar each.
fn download_all(
    dataset: DatasetName,
    dir: &std::path::Path,
    wanted: Vec<download::Resource>,
    opts: &FetchOptions,
) -> Result<()> {
    for resource in wanted {
        let bar = Bar::default();
        let path = download::fetch(&resource, dir, opts, &bar)
            .with_context(|| format!("fetching {dataset}"))?;
        bar.0.finish_and_clear();
        tracing::info!("{} ok", path.display());
    }
    Ok(())
}

/// Makes sure the MNIST-format files of an MNIST-format `dataset` are
/// present. Files already there are used as they are (they may be a user's
/// own subset, such as the 5,000 digits CI trains on); only missing files
/// are fetched, and only when the present ones are the published ones
/// (fetching into a user's own set would mix two data sets).
pub fn ensure_mnist_format(dataset: DatasetName, data: &DataArgs) -> Result<PathBuf> {
    let dir = data.dir().join(folder(dataset));
    let present = [Split::Train, Split::Test]
        .into_iter()
        .all(|split| mnist::files(&dir, split).is_ok());
    if present {
        return Ok(dir);
    }
    let (missing, not_official) = survey(dataset, &dir)?;
    let names: Vec<&str> = missing.iter().map(|r| r.file_name.as_str()).collect();
    if !not_official.is_empty() {
        anyhow::bail!(
            "{} lacks {}, and the files there are not the published {dataset} (your own data?), \
             so fetching the published ones would mix two data sets: write all four with \
             `cargo xtask import-mnist-csv`, or replace them with `cargo xtask fetch {} --force`",
            dir.display(),
            names.join(", "),
            dataset
        );
    }
    tracing::info!(
        "{} lacks {}; fetching them",
        dir.display(),
        names.join(", ")
    );
    let opts = FetchOptions {
        offline: data.offline,
        ..FetchOptions::default()
    };
    download_all(dataset, &dir, missing, &opts)?;
    Ok(dir)
}

/// An indicatif bar behind the data crate's progress callback.
struct Bar(ProgressBar);

impl Default for Bar {
    fn default() -> Self {
        Bar(ProgressBar::new(0))
    }
}

impl Progress for Bar {
    fn start(&self, file: &str, total_bytes: Option<u64>, already: u64) {
        let bar = &self.0;
        bar.set_length(total_bytes.unwrap_or(0));
        bar.set_position(already);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar.set_message(file.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
    }

    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn message(&self, text: &str) {
        self.0.suspend(|| tracing::warn!("{text}"));
    }
}
