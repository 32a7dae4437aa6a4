//! Workloads: a dataset, a model, a loss, an evaluation metric and a target.
//!
//! [`Workload`] is the typed description (targets are data, as in Shallue et
//! al. 2019, Table 1); [`WorkloadKind`] names the workloads this build can
//! load and train.

use std::path::{Path, PathBuf};

use bigbatch_data::vision::{cifar, mnist};
use bigbatch_data::{ImageClassification, Normalization, Split};
use bigbatch_models::{
    CifarResNet, CifarResNetConfig, KeskarF1, KeskarF1Config, LeNet5, LeNet5Config, Network, Norm,
    SimpleCnn, SimpleCnnConfig, VarStore,
};
use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::{EvalPoint, FileDigest, Result};

/// A dataset, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum DatasetName {
    /// MNIST handwritten digits (LeCun et al. 1998).
    Mnist,
    /// Fashion-MNIST (Xiao et al. 2017).
    FashionMnist,
    /// CIFAR-10 (Krizhevsky 2009).
    Cifar10,
}

/// A model family, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Architecture {
    /// LeNet-5 (LeCun et al. 1998).
    Lenet5,
    /// Shallue et al.'s simple CNN (two conv + max-pool layers, then dense).
    SimpleCnn,
    /// ResNet-8 (He et al. 2016), as in Shallue et al. (2019).
    Resnet8,
    /// Keskar et al.'s F1: 784 → 512×5 → 10, fully connected with batch norm.
    KeskarF1,
}

impl Architecture {
    /// Whether the model has batch-norm layers.
    pub fn has_batch_norm(self) -> bool {
        matches!(self, Architecture::Resnet8 | Architecture::KeskarF1)
    }
}

/// The training loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Loss {
    /// Softmax cross-entropy on class labels.
    CrossEntropy,
}

/// An evaluation metric on the test split.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Classification accuracy; higher is better.
    TestAccuracy,
    /// Classification error `1 − accuracy`; lower is better.
    TestError,
}

impl Metric {
    /// The metric's value at an evaluation.
    pub fn value(self, point: &EvalPoint) -> f64 {
        match self {
            Metric::TestAccuracy => point.test_accuracy,
            Metric::TestError => 1.0 - point.test_accuracy,
        }
    }

    /// Whether larger values are better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::TestAccuracy)
    }
}

/// A metric threshold that ends a steps-to-target run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// What is measured.
    pub metric: Metric,
    /// The value to reach (at least, for accuracy; at most, for error).
    pub threshold: f64,
}

impl Target {
    /// Whether `point` meets the target.
    ///
    /// ```
    /// use bigbatch_bench::{Metric, Target};
    /// let t = Target { metric: Metric::TestError, threshold: 0.01 };
    /// # let p = |a| bigbatch_bench::EvalPoint { step: 1, epoch: 0., examples: 1,
    /// #     train_loss: 0., test_loss: 0., test_accuracy: a, b_simple: None, b_simple_smoothed: None };
    /// assert!(t.is_met(&p(0.995)) && !t.is_met(&p(0.98)));
    /// ```
    pub fn is_met(&self, point: &EvalPoint) -> bool {
        let v = self.metric.value(point);
        if self.metric.higher_is_better() {
            v >= self.threshold
        } else {
            v <= self.threshold
        }
    }

    /// Steps to target (Shallue et al. 2019): the step of the first evaluation
    /// in `curve` that meets the target, if any.
    pub fn steps_to_target(&self, curve: &[EvalPoint]) -> Option<u64> {
        curve.iter().find(|p| self.is_met(p)).map(|p| p.step)
    }
}

/// A typed workload description: dataset, model, loss, metric and target.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// The data.
    pub dataset: DatasetName,
    /// The model family.
    pub model: Architecture,
    /// The training loss.
    pub loss: Loss,
    /// The target on the test split.
    pub target: Target,
}

impl Workload {
    /// The workloads of Shallue et al. (2019), Keskar et al. (2017) and You et
    /// al. (2020) with their published targets: every [`WorkloadKind`].
    pub fn catalogue() -> Vec<Workload> {
        WorkloadKind::ALL.iter().map(|k| k.workload()).collect()
    }
}

/// The workloads bigbatch knows, by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// LeNet-5 on MNIST (LeCun et al. 1998; You et al. 2020 train it to 99.2%).
    MnistLenet5,
    /// Shallue et al.'s simple CNN on MNIST, to test error 0.01.
    MnistSimpleCnn,
    /// Shallue et al.'s simple CNN on Fashion-MNIST, to test error 0.10.
    FashionMnistSimpleCnn,
    /// ResNet-8 with batch norm on CIFAR-10 (Shallue et al.), to test error 0.30.
    #[value(name = "cifar10-resnet8")]
    #[serde(rename = "cifar10-resnet8")]
    Cifar10Resnet8,
    /// Keskar et al.'s F1 (fully connected, batch norm) on MNIST, to 97.8%
    /// test accuracy.
    MnistKeskarF1,
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
    /// The batch statistics of its batch-norm layers (`None`: it has none).
    /// The training loop checks it against [`TrainConfig::norm`](crate::TrainConfig::norm).
    pub batch_norm: Option<Norm>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("parameters", &self.vars.elem_count())
            .field("batch_norm", &self.batch_norm)
            .finish()
    }
}

impl WorkloadKind {
    /// Every workload, in declaration order.
    pub const ALL: [WorkloadKind; 5] = [
        WorkloadKind::MnistLenet5,
        WorkloadKind::MnistSimpleCnn,
        WorkloadKind::FashionMnistSimpleCnn,
        WorkloadKind::Cifar10Resnet8,
        WorkloadKind::MnistKeskarF1,
    ];

    /// The typed description, with the published target.
    pub fn workload(self) -> Workload {
        let (dataset, model, metric, threshold) = match self {
            // You et al. (2020) train LeNet-5 on MNIST to 99.2% test accuracy.
            WorkloadKind::MnistLenet5 => (
                DatasetName::Mnist,
                Architecture::Lenet5,
                Metric::TestAccuracy,
                0.992,
            ),
            // Shallue et al. (2019), Table 1.
            WorkloadKind::MnistSimpleCnn => (
                DatasetName::Mnist,
                Architecture::SimpleCnn,
                Metric::TestError,
                0.01,
            ),
            WorkloadKind::FashionMnistSimpleCnn => (
                DatasetName::FashionMnist,
                Architecture::SimpleCnn,
                Metric::TestError,
                0.10,
            ),
            WorkloadKind::Cifar10Resnet8 => (
                DatasetName::Cifar10,
                Architecture::Resnet8,
                Metric::TestError,
                0.30,
            ),
            // Keskar et al. (2017), Table 2: F1 reaches about 98.0% test
            // accuracy with small batches and 97.8% with large ones.
            WorkloadKind::MnistKeskarF1 => (
                DatasetName::Mnist,
                Architecture::KeskarF1,
                Metric::TestAccuracy,
                0.978,
            ),
        };
        Workload {
            dataset,
            model,
            loss: Loss::CrossEntropy,
            target: Target { metric, threshold },
        }
    }

    /// Whether the model has batch-norm layers (and so takes a ghost batch size).
    pub fn has_batch_norm(self) -> bool {
        self.workload().model.has_batch_norm()
    }

    /// Loads the workload's dataset from `data_dir` (`mnist/`,
    /// `fashion-mnist/` or `cifar-10/` inside it) and digests its files.
    ///
    /// # Errors
    /// The data crate's typed errors, naming the missing or corrupt file.
    pub fn load_data(self, data_dir: &Path) -> Result<Data> {
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
        };
        Ok(Data {
            train,
            test,
            normalization,
            digests: digests(&files)?,
        })
    }

    /// Builds the workload's model with variables drawn from `seed`; its
    /// batch-norm layers (if any) normalise with `norm`.
    ///
    /// # Errors
    /// [`Error::Config`](crate::Error::Config) for a ghost batch size on a
    /// model without batch norm; a model error (candle allocation) otherwise.
    pub fn build_model(self, seed: u64, norm: Norm, device: &Device) -> Result<Model> {
        if !self.has_batch_norm() && norm != Norm::Batch {
            return Err(crate::Error::Config(format!(
                "{self:?} has no batch norm, so it takes no ghost batch size"
            )));
        }
        let vars = VarStore::new(seed);
        let vb = vars.var_builder(DType::F32, device);
        let net: Box<dyn Network> = match self {
            WorkloadKind::MnistLenet5 => Box::new(LeNet5::new(&LeNet5Config::default(), vb)?),
            WorkloadKind::MnistSimpleCnn | WorkloadKind::FashionMnistSimpleCnn => {
                Box::new(SimpleCnn::new(&SimpleCnnConfig::shallue(), vb)?)
            }
            WorkloadKind::Cifar10Resnet8 => Box::new(CifarResNet::new(
                &CifarResNetConfig {
                    norm,
                    ..CifarResNetConfig::resnet8()
                },
                vb,
            )?),
            WorkloadKind::MnistKeskarF1 => Box::new(KeskarF1::new(
                &KeskarF1Config {
                    norm,
                    ..KeskarF1Config::default()
                },
                vb,
            )?),
        };
        Ok(Model {
            net,
            vars,
            batch_norm: self.has_batch_norm().then_some(norm),
        })
    }
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
