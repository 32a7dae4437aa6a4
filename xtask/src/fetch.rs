//! `cargo xtask fetch`: datasets into the data directory, with progress bars.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bigbatch_data::download::{self, FetchOptions, Progress};
use bigbatch_data::vision::{cifar, svhn};
use bigbatch_data::{Split, mnist};
use indicatif::{ProgressBar, ProgressStyle};

use crate::DataArgs;

/// Datasets with public download mirrors.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum DatasetName {
    /// MNIST handwritten digits (LeCun et al. 1998).
    Mnist,
    /// Fashion-MNIST (Xiao et al. 2017).
    FashionMnist,
    /// CIFAR-10, the binary version (Krizhevsky 2009): one 163 MB archive.
    #[value(name = "cifar-10")]
    Cifar10,
    /// CIFAR-100, the binary version (Krizhevsky 2009): one 161 MB archive.
    #[value(name = "cifar-100")]
    Cifar100,
    /// SVHN cropped digits (Netzer et al. 2011): `train_32x32.mat` and `test_32x32.mat`.
    Svhn,
    /// SVHN's 531,131 extra training digits: `extra_32x32.mat` (1.3 GB).
    SvhnExtra,
}

impl DatasetName {
    /// The folder under the data directory.
    pub fn folder(self) -> &'static str {
        match self {
            DatasetName::Mnist => mnist::Variant::Digits.dir_name(),
            DatasetName::FashionMnist => mnist::Variant::Fashion.dir_name(),
            DatasetName::Cifar10 => cifar::Variant::Cifar10.dir_name(),
            DatasetName::Cifar100 => cifar::Variant::Cifar100Fine.dir_name(),
            DatasetName::Svhn | DatasetName::SvhnExtra => svhn::DIR_NAME,
        }
    }

    fn resources(self) -> Vec<download::Resource> {
        match self {
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
}

/// Downloads every file of `dataset` that is missing or fails its checksum.
pub fn fetch(dataset: DatasetName, data: &DataArgs) -> Result<PathBuf> {
    let dir = data.dir().join(dataset.folder());
    let opts = FetchOptions {
        offline: data.offline,
        ..FetchOptions::default()
    };
    for resource in dataset.resources() {
        let bar = Bar::default();
        let path = download::fetch(&resource, &dir, &opts, &bar)
            .with_context(|| format!("fetching {dataset:?}"))?;
        bar.0.finish_and_clear();
        tracing::info!("{} ok", path.display());
    }
    Ok(dir)
}

/// Makes sure the MNIST-format files of an MNIST-format `dataset` are
/// present, fetching the official ones if any split is missing. Files already
/// there are used as they are (they may be a user's own subset, such as the
/// 5,000 digits CI trains on).
pub fn ensure_mnist_format(dataset: DatasetName, data: &DataArgs) -> Result<PathBuf> {
    let dir = data.dir().join(dataset.folder());
    let present = [Split::Train, Split::Test]
        .into_iter()
        .all(|split| mnist::files(&dir, split).is_ok());
    if present {
        return Ok(dir);
    }
    tracing::info!("{} is missing files; fetching {dataset:?}", dir.display());
    fetch(dataset, data)
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
