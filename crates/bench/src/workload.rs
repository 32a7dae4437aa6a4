//! Workloads: a dataset, a model and how they meet.

use std::path::Path;

use bigbatch_data::{ImageClassification, Normalization, Split};
use bigbatch_models::{LeNet5, LeNet5Config, Network, VarStore};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::{FileDigest, Result};

/// The workloads bigbatch knows, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// LeNet-5 on MNIST (LeCun et al. 1998; You et al. 2020 train it to 99.2%).
    MnistLenet5,
}

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
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("parameters", &self.vars.elem_count())
            .finish()
    }
}

impl WorkloadKind {
    /// Loads the workload's dataset from `data_dir` and digests its files.
    ///
    /// # Errors
    /// The data crate's typed errors, naming the missing or corrupt file.
    pub fn load_data(self, data_dir: &Path) -> Result<Data> {
        match self {
            WorkloadKind::MnistLenet5 => {
                let dir = data_dir.join("mnist");
                let train = bigbatch_data::mnist::load(&dir, Split::Train)?;
                let test = bigbatch_data::mnist::load(&dir, Split::Test)?;
                let mut digests = Vec::new();
                for split in [Split::Train, Split::Test] {
                    for path in bigbatch_data::mnist::files(&dir, split)? {
                        digests.push(FileDigest {
                            file: path
                                .file_name()
                                .map(|n| n.to_string_lossy().into_owned())
                                .unwrap_or_default(),
                            sha256: bigbatch_data::sha256_file(&path)?,
                        });
                    }
                }
                Ok(Data {
                    train,
                    test,
                    normalization: Normalization::mnist(),
                    digests,
                })
            }
        }
    }

    /// Builds the workload's model with variables drawn from `seed`.
    ///
    /// # Errors
    /// A model error (candle allocation).
    pub fn build_model(self, seed: u64, device: &Device) -> Result<Model> {
        let vars = VarStore::new(seed);
        let vb = vars.var_builder(DType::F32, device);
        let net: Box<dyn Network> = match self {
            WorkloadKind::MnistLenet5 => Box::new(LeNet5::new(&LeNet5Config::default(), vb)?),
        };
        Ok(Model { net, vars })
    }
}
