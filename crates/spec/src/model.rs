//! [`ModelKind`]: every network of `bigbatch-models`, by name, with what a
//! spec needs to know about it without building it. `bigbatch-models`
//! builds them (its `BuildModel` trait) and counts their parameters.

use serde::{Deserialize, Serialize};

use crate::{DatasetName, Error, Result};

/// Every model and published configuration in `bigbatch-models`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// LeNet-5 on MNIST.
    #[serde(rename = "lenet5")]
    LeNet5,
    /// Shallue et al.'s simple CNN (32/64 channels) on MNIST.
    SimpleCnn,
    /// The TPU MNIST model ("LeNet" of You et al. 2020): 32/64, dropout 0.4.
    TpuMnist,
    /// The TPU MNIST model with 32/32 channels.
    #[serde(rename = "tpu-mnist-32")]
    TpuMnist32,
    /// Keskar et al.'s F1 on MNIST.
    #[serde(rename = "keskar-f1")]
    KeskarF1,
    /// Keskar et al.'s C1 (shallow convnet, CIFAR-10).
    #[serde(rename = "keskar-c1")]
    KeskarC1,
    /// Keskar et al.'s C2 (VGG-style, CIFAR-10).
    #[serde(rename = "keskar-c2")]
    KeskarC2,
    /// Keskar et al.'s C3 (shallow convnet, CIFAR-100).
    #[serde(rename = "keskar-c3")]
    KeskarC3,
    /// Keskar et al.'s C4 (VGG-style, CIFAR-100).
    #[serde(rename = "keskar-c4")]
    KeskarC4,
    /// He et al.'s ResNet-8 on CIFAR-10, option A shortcuts.
    #[serde(rename = "resnet8")]
    ResNet8,
    /// He et al.'s ResNet-20 on CIFAR-10, option A shortcuts.
    #[serde(rename = "resnet20")]
    ResNet20,
    /// ResNet-20 with option B (projection) shortcuts.
    #[serde(rename = "resnet20-b")]
    ResNet20B,
    /// He et al.'s ResNet-32 on CIFAR-10, option A shortcuts.
    #[serde(rename = "resnet32")]
    ResNet32,
    /// He et al.'s ResNet-56 on CIFAR-10, option A shortcuts.
    #[serde(rename = "resnet56")]
    ResNet56,
    /// ResNet-18 with a CIFAR stem.
    #[serde(rename = "resnet18-cifar")]
    ResNet18Cifar,
    /// ResNet-50 v1 with a CIFAR stem.
    #[serde(rename = "resnet50-cifar")]
    ResNet50Cifar,
    /// ResNet-50 v1.5 on ImageNet (MLPerf).
    #[serde(rename = "resnet50-v1.5")]
    ResNet50V1_5,
    /// The convolutional VAE on SVHN.
    SvhnVae,
}

/// What a model takes and gives: its input shape and its outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// Images `(channels, height, width)` to logits over `classes`.
    Classify {
        /// The input image shape.
        input: [usize; 3],
        /// The output classes.
        classes: usize,
    },
    /// Images to a scalar reconstruction loss (no labels).
    Autoencode {
        /// The input image shape.
        input: [usize; 3],
    },
}

impl ModelKind {
    /// Every model, in the order of the summary table.
    pub const ALL: [Self; 18] = [
        Self::LeNet5,
        Self::SimpleCnn,
        Self::TpuMnist,
        Self::TpuMnist32,
        Self::KeskarF1,
        Self::KeskarC1,
        Self::KeskarC2,
        Self::KeskarC3,
        Self::KeskarC4,
        Self::ResNet8,
        Self::ResNet20,
        Self::ResNet20B,
        Self::ResNet32,
        Self::ResNet56,
        Self::ResNet18Cifar,
        Self::ResNet50Cifar,
        Self::ResNet50V1_5,
        Self::SvhnVae,
    ];

    /// A short, stable, lower-case name (`resnet50-v1.5`), as in specs and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::LeNet5 => "lenet5",
            Self::SimpleCnn => "simple-cnn",
            Self::TpuMnist => "tpu-mnist",
            Self::TpuMnist32 => "tpu-mnist-32",
            Self::KeskarF1 => "keskar-f1",
            Self::KeskarC1 => "keskar-c1",
            Self::KeskarC2 => "keskar-c2",
            Self::KeskarC3 => "keskar-c3",
            Self::KeskarC4 => "keskar-c4",
            Self::ResNet8 => "resnet8",
            Self::ResNet20 => "resnet20",
            Self::ResNet20B => "resnet20-b",
            Self::ResNet32 => "resnet32",
            Self::ResNet56 => "resnet56",
            Self::ResNet18Cifar => "resnet18-cifar",
            Self::ResNet50Cifar => "resnet50-cifar",
            Self::ResNet50V1_5 => "resnet50-v1.5",
            Self::SvhnVae => "svhn-vae",
        }
    }

    /// The data set the configuration is for, as papers write it.
    pub fn dataset(self) -> &'static str {
        match self {
            Self::LeNet5 | Self::SimpleCnn | Self::TpuMnist | Self::TpuMnist32 | Self::KeskarF1 => {
                "MNIST"
            }
            Self::KeskarC3 | Self::KeskarC4 => "CIFAR-100",
            Self::ResNet50V1_5 => "ImageNet",
            Self::SvhnVae => "SVHN",
            _ => "CIFAR-10",
        }
    }

    /// The paper the model comes from.
    pub fn reference(self) -> &'static str {
        match self {
            Self::LeNet5 => "LeCun et al. 1998",
            Self::SimpleCnn => "Shallue et al. 2019",
            Self::TpuMnist | Self::TpuMnist32 => "You et al. 2020 (TPU MNIST model)",
            Self::KeskarF1 | Self::KeskarC1 | Self::KeskarC2 | Self::KeskarC3 | Self::KeskarC4 => {
                "Keskar et al. 2017"
            }
            Self::ResNet8 => "He et al. 2016; Shallue et al. 2019",
            Self::ResNet20 | Self::ResNet20B | Self::ResNet32 | Self::ResNet56 => "He et al. 2016",
            Self::ResNet18Cifar | Self::ResNet50Cifar => "He et al. 2016; You et al. 2020",
            Self::ResNet50V1_5 => "He et al. 2016; Goyal et al. 2017; MLPerf",
            Self::SvhnVae => "Kingma & Welling 2014; McCandlish et al. 2018",
        }
    }

    /// What the model takes and gives.
    pub fn task(self) -> Task {
        let classify = |input, classes| Task::Classify { input, classes };
        match self {
            Self::LeNet5 | Self::SimpleCnn | Self::TpuMnist | Self::TpuMnist32 | Self::KeskarF1 => {
                classify([1, 28, 28], 10)
            }
            Self::KeskarC3 | Self::KeskarC4 => classify([3, 32, 32], 100),
            Self::ResNet50V1_5 => classify([3, 224, 224], 1000),
            Self::SvhnVae => Task::Autoencode { input: [3, 32, 32] },
            _ => classify([3, 32, 32], 10),
        }
    }

    /// Whether the model has batch-norm layers (and so takes a ghost batch size).
    pub fn has_batch_norm(self) -> bool {
        !matches!(
            self,
            Self::LeNet5 | Self::SimpleCnn | Self::TpuMnist | Self::TpuMnist32 | Self::SvhnVae
        )
    }

    /// Checks that the model classifies `dataset`'s images into its classes.
    ///
    /// ```
    /// use bigbatch_spec::{DatasetName, ModelKind};
    /// assert!(ModelKind::TpuMnist.check_fits(DatasetName::Mnist).is_ok());
    /// let err = ModelKind::ResNet20.check_fits(DatasetName::Mnist).unwrap_err().to_string();
    /// assert!(err.contains("3×32×32"), "{err}");
    /// ```
    ///
    /// # Errors
    /// [`Error::Inconsistent`] naming `model` for another input shape, class
    /// count, or a model that is not a classifier.
    pub fn check_fits(self, dataset: DatasetName) -> Result<()> {
        let (shape, classes) = (dataset.shape(), dataset.classes());
        let problem = match self.task() {
            Task::Classify { input, classes: c } if input == shape && c == classes => return Ok(()),
            Task::Classify { input, classes: c } => format!(
                "{} takes {}×{}×{} images into {c} classes; {} has {}×{}×{} images in {classes}",
                self.name(),
                input[0],
                input[1],
                input[2],
                dataset.title(),
                shape[0],
                shape[1],
                shape[2]
            ),
            Task::Autoencode { .. } => format!(
                "{} is an autoencoder; the training loop trains classifiers",
                self.name()
            ),
        };
        Err(Error::Inconsistent {
            field: "model".into(),
            problem,
        })
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ModelKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::UnknownName {
                what: "model",
                name: s.to_owned(),
                valid: Self::ALL.map(|m| m.name()).join(", "),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_serde() -> Result<()> {
        for kind in ModelKind::ALL {
            assert_eq!(kind.name().parse::<ModelKind>()?, kind);
            let json = format!("\"{}\"", kind.name());
            assert_eq!(
                serde_json::from_str::<ModelKind>(&json).ok(),
                Some(kind),
                "{json}"
            );
        }
        Ok(())
    }
}
