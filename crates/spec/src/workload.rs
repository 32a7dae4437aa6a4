//! Workloads: a dataset, a model, a loss and a target, by name (Shallue et
//! al. 2019, Table 1: targets are data).

use serde::{Deserialize, Serialize};

use crate::{Metric, ModelKind, Target};

/// A dataset, by name: what `cargo xtask fetch` downloads and what
/// workloads and records name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// MNIST handwritten digits (LeCun et al. 1998).
    Mnist,
    /// Fashion-MNIST (Xiao et al. 2017).
    FashionMnist,
    /// CIFAR-10, the binary version (Krizhevsky 2009).
    #[serde(rename = "cifar-10")]
    Cifar10,
    /// CIFAR-100 with its fine labels, the binary version (Krizhevsky 2009).
    #[serde(rename = "cifar-100")]
    Cifar100,
    /// SVHN cropped digits (Netzer et al. 2011), train and test.
    Svhn,
    /// SVHN's 531,131 extra training digits.
    SvhnExtra,
}

impl DatasetName {
    /// Every data set, in declaration order.
    pub const ALL: [DatasetName; 6] = [
        DatasetName::Mnist,
        DatasetName::FashionMnist,
        DatasetName::Cifar10,
        DatasetName::Cifar100,
        DatasetName::Svhn,
        DatasetName::SvhnExtra,
    ];

    /// The name as written in specs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
            DatasetName::Cifar10 => "cifar-10",
            DatasetName::Cifar100 => "cifar-100",
            DatasetName::Svhn => "svhn",
            DatasetName::SvhnExtra => "svhn-extra",
        }
    }

    /// The published training and test split sizes.
    pub fn full_size(self) -> (usize, usize) {
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist => (60_000, 10_000),
            DatasetName::Cifar10 | DatasetName::Cifar100 => (50_000, 10_000),
            DatasetName::Svhn => (73_257, 26_032),
            DatasetName::SvhnExtra => (531_131, 26_032),
        }
    }

    /// The shape of one image, `[channels, height, width]`.
    pub fn shape(self) -> [usize; 3] {
        match self {
            DatasetName::Mnist | DatasetName::FashionMnist => [1, 28, 28],
            _ => [3, 32, 32],
        }
    }

    /// The number of classes.
    pub fn classes(self) -> usize {
        match self {
            DatasetName::Cifar100 => 100,
            _ => 10,
        }
    }

    /// The name as papers write it.
    pub fn title(self) -> &'static str {
        match self {
            DatasetName::Mnist => "MNIST",
            DatasetName::FashionMnist => "Fashion-MNIST",
            DatasetName::Cifar10 => "CIFAR-10",
            DatasetName::Cifar100 => "CIFAR-100",
            DatasetName::Svhn => "SVHN",
            DatasetName::SvhnExtra => "SVHN extra",
        }
    }
}

/// The training loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loss {
    /// Softmax cross-entropy on class labels.
    CrossEntropy,
}

/// A typed workload description: dataset, model, loss, metric and target.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// The data.
    pub dataset: DatasetName,
    /// The model.
    pub model: ModelKind,
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
///
/// ```
/// use bigbatch_spec::WorkloadKind;
/// let w: WorkloadKind = "cifar10-resnet8".parse().unwrap();
/// assert_eq!(w, WorkloadKind::Cifar10Resnet8);
/// assert_eq!(w.to_string(), "cifar10-resnet8");
/// assert!("mnist-lenet".parse::<WorkloadKind>().unwrap_err().to_string().contains("mnist-lenet5"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// LeNet-5 on MNIST (LeCun et al. 1998; You et al. 2020 train it to 99.2%).
    MnistLenet5,
    /// Shallue et al.'s simple CNN on MNIST, to test error 0.01.
    MnistSimpleCnn,
    /// Shallue et al.'s simple CNN on Fashion-MNIST, to test error 0.10.
    FashionMnistSimpleCnn,
    /// ResNet-8 with batch norm on CIFAR-10 (Shallue et al.), to test error 0.30.
    #[serde(rename = "cifar10-resnet8")]
    Cifar10Resnet8,
    /// Keskar et al.'s F1 (fully connected, batch norm) on MNIST, to 97.8%
    /// test accuracy.
    MnistKeskarF1,
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

    /// The name as written in a spec and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::MnistLenet5 => "mnist-lenet5",
            WorkloadKind::MnistSimpleCnn => "mnist-simple-cnn",
            WorkloadKind::FashionMnistSimpleCnn => "fashion-mnist-simple-cnn",
            WorkloadKind::Cifar10Resnet8 => "cifar10-resnet8",
            WorkloadKind::MnistKeskarF1 => "mnist-keskar-f1",
        }
    }

    /// The typed description, with the published target.
    pub fn workload(self) -> Workload {
        let (dataset, model, metric, threshold) = match self {
            // You et al. (2020) train LeNet-5 on MNIST to 99.2% test accuracy.
            WorkloadKind::MnistLenet5 => (
                DatasetName::Mnist,
                ModelKind::LeNet5,
                Metric::TestAccuracy,
                0.992,
            ),
            // Shallue et al. (2019), Table 1.
            WorkloadKind::MnistSimpleCnn => (
                DatasetName::Mnist,
                ModelKind::SimpleCnn,
                Metric::TestError,
                0.01,
            ),
            WorkloadKind::FashionMnistSimpleCnn => (
                DatasetName::FashionMnist,
                ModelKind::SimpleCnn,
                Metric::TestError,
                0.10,
            ),
            WorkloadKind::Cifar10Resnet8 => (
                DatasetName::Cifar10,
                ModelKind::ResNet8,
                Metric::TestError,
                0.30,
            ),
            // Keskar et al. (2017), Table 2: F1 reaches about 98.0% test
            // accuracy with small batches and 97.8% with large ones.
            WorkloadKind::MnistKeskarF1 => (
                DatasetName::Mnist,
                ModelKind::KeskarF1,
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
}

impl std::fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WorkloadKind {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| crate::Error::UnknownName {
                what: "workload",
                name: s.to_owned(),
                valid: Self::ALL.map(|w| w.name()).join(", "),
            })
    }
}

impl std::fmt::Display for DatasetName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DatasetName {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        Self::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| crate::Error::UnknownName {
                what: "dataset",
                name: s.to_owned(),
                valid: Self::ALL.map(|d| d.name()).join(", "),
            })
    }
}
