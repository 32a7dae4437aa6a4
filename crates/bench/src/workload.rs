//! Workloads: a dataset, a model, a loss, an evaluation metric and a target.
//!
//! [`Workload`] is the typed description (targets are data, as in Shallue et
//! al. 2019, Table 1); [`WorkloadKind`] names the workloads this build can
//! load and train.

use std::path::Path;

use bigbatch_data::{ImageClassification, Normalization, Split};
use bigbatch_models::{LeNet5, LeNet5Config, Network, VarStore};
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
    /// The workloads of Shallue et al. (2019) and You et al. (2020) with their
    /// published targets. Those whose loaders exist are [`WorkloadKind`]s; the
    /// others describe what the data and model crates are adding.
    pub fn catalogue() -> Vec<Workload> {
        let w = |dataset, model, metric, threshold| Workload {
            dataset,
            model,
            loss: Loss::CrossEntropy,
            target: Target { metric, threshold },
        };
        vec![
            w(
                DatasetName::Mnist,
                Architecture::SimpleCnn,
                Metric::TestError,
                0.01,
            ),
            w(
                DatasetName::FashionMnist,
                Architecture::SimpleCnn,
                Metric::TestError,
                0.10,
            ),
            w(
                DatasetName::Cifar10,
                Architecture::Resnet8,
                Metric::TestError,
                0.30,
            ),
            WorkloadKind::MnistLenet5.workload(),
        ]
    }
}

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
    /// The typed description, with the published target.
    pub fn workload(self) -> Workload {
        match self {
            // You et al. (2020) train LeNet-5 on MNIST to 99.2% test accuracy.
            WorkloadKind::MnistLenet5 => Workload {
                dataset: DatasetName::Mnist,
                model: Architecture::Lenet5,
                loss: Loss::CrossEntropy,
                target: Target {
                    metric: Metric::TestAccuracy,
                    threshold: 0.992,
                },
            },
        }
    }

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
