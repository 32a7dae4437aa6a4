//! Workloads: a dataset, a model, a loss, an evaluation metric and a target.
//!
//! [`bigbatch_spec::Workload`] is the typed description (targets are data,
//! as in Shallue et al. 2019, Table 1); [`WorkloadExt`] loads a
//! [`WorkloadKind`]'s data and builds its model.

use std::path::{Path, PathBuf};

use bigbatch_data::vision::{cifar, mnist};
use bigbatch_data::{ImageClassification, Normalization, Split};
use bigbatch_models::{BuildModel, Network, Norm, VarStore};
use bigbatch_optim::Params;
use bigbatch_spec::{DatasetName, ModelKind, WorkloadKind};
use candle_core::{DType, Device};

use crate::{FileDigest, Result};

/// Training and evaluation data of a workload, ready for the training loop.
#[derive(Debug)]
pub struct Data {
    /// Examples the optimizer sees.
    pub train: ImageClassification,
    /// Examples the metrics are computed on.
    pub test: ImageClassification,
    /// Per-channel input normalisation.
    pub normalization: Normalization,
    /// SHA-256 of every file read, for provenance.
    pub digests: Vec<FileDigest>,
}

/// A model's network and its variables.
pub struct Model {
    /// The forward pass.
    pub net: Box<dyn Network>,
    /// The variables the optimizer updates.
    pub vars: VarStore,
    /// The batch statistics of its batch-norm layers (`None`: it has none).
    /// The training loop checks it against [`batch_norm`](crate::batch_norm).
    pub batch_norm: Option<Norm>,
}

impl Model {
    /// The trainable parameters with the kinds the model declared: what an
    /// optimizer is built over (masks select by kind).
    pub fn params(&self) -> Params {
        Params::new(self.vars.vars()).with_kinds(self.vars.kinds())
    }
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("parameters", &self.vars.elem_count())
            .field("batch_norm", &self.batch_norm)
            .finish()
    }
}

/// What bench adds to a [`WorkloadKind`]: loading its data, building its model.
pub trait WorkloadExt {
    /// Loads the workload's dataset from `data_dir` (`mnist/`,
    /// `fashion-mnist/` or `cifar-10/` inside it) and digests its files.
    ///
    /// # Errors
    /// The data crate's typed errors, naming the missing or corrupt file.
    fn load_data(self, data_dir: &Path) -> Result<Data>;

    /// Builds the workload's model with variables drawn from `seed`; its
    /// batch-norm layers (if any) normalise with `norm`.
    ///
    /// # Errors
    /// A model error ([`bigbatch_models::Error::InvalidConfig`]) for a ghost
    /// batch size on a model without batch norm, or from candle allocation.
    fn build_model(self, seed: u64, norm: Norm, device: &Device) -> Result<Model>;
}

impl WorkloadExt for WorkloadKind {
    fn load_data(self, data_dir: &Path) -> Result<Data> {
        let mut files = Vec::new();
        let (train, test, normalization) = match self.workload().dataset {
            DatasetName::Mnist | DatasetName::FashionMnist => {
                let (variant, normalization) = if self.workload().dataset == DatasetName::Mnist {
                    (mnist::Variant::Digits, Normalization::mnist())
                } else {
                    (mnist::Variant::Fashion, Normalization::fashion_mnist())
                };
                let dir = data_dir.join(variant.dir_name());
                let train = mnist::load(&dir, Split::Train)?;
                let test = mnist::load(&dir, Split::Test)?;
                for split in [Split::Train, Split::Test] {
                    files.extend(mnist::files(&dir, split)?);
                }
                (train, test, normalization)
            }
            DatasetName::Cifar10 => {
                let variant = cifar::Variant::Cifar10;
                let dir = data_dir.join(variant.dir_name());
                let train = cifar::load(&dir, variant, Split::Train)?;
                let test = cifar::load(&dir, variant, Split::Test)?;
                for split in [Split::Train, Split::Test] {
                    files.extend(cifar::source_files(&dir, variant, split)?);
                }
                files.dedup();
                (train, test, Normalization::cifar10())
            }
            dataset @ (DatasetName::Cifar100 | DatasetName::Svhn | DatasetName::SvhnExtra) => {
                return Err(crate::Error::NoTrainingLoader { dataset });
            }
        };
        Ok(Data {
            train,
            test,
            normalization,
            digests: digests(&files)?,
        })
    }

    fn build_model(self, seed: u64, norm: Norm, device: &Device) -> Result<Model> {
        build_model(self.workload().model, seed, norm, device)
    }
}

/// Builds `kind` through the model registry ([`BuildModel`]) with variables
/// drawn from `seed`; its batch-norm layers (if any) normalise with `norm`.
///
/// # Errors
/// A model error for a ghost batch size on a model without batch norm;
/// [`crate::Error::NotAClassifier`] for a model the loop cannot train.
pub fn build_model(kind: ModelKind, seed: u64, norm: Norm, device: &Device) -> Result<Model> {
    let vars = VarStore::new(seed);
    let built = kind.build_with(norm, vars.var_builder(DType::F32, device))?;
    let net = match built {
        bigbatch_models::Model::Classifier(net) => net,
        bigbatch_models::Model::Autoencoder(_) => {
            return Err(crate::Error::NotAClassifier { model: kind });
        }
    };
    Ok(Model {
        net,
        vars,
        batch_norm: kind.has_batch_norm().then_some(norm),
    })
}

/// SHA-256 of each file, named by its file name.
fn digests(paths: &[PathBuf]) -> Result<Vec<FileDigest>> {
    paths
        .iter()
        .map(|path| {
            Ok(FileDigest {
                file: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sha256: bigbatch_data::sha256_file(path)?,
            })
        })
        .collect()
}
