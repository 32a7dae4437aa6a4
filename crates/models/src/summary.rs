//! The model zoo at a glance: every model and published configuration in this
//! crate ([`ModelKind`]), buildable by name, with its parameter count computed
//! by building it, and a text table of them all ([`summary_table`], what
//! `cargo xtask models` prints).
//!
//! References per model are in each family's module docs.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};

pub use bigbatch_spec::ModelKind;

use crate::{
    Autoencoder, CifarResNet, CifarResNetConfig, KeskarDeep, KeskarDeepConfig, KeskarF1,
    KeskarF1Config, KeskarShallow, KeskarShallowConfig, LeNet5, LeNet5Config, Network, Norm,
    ResNet, ResNetConfig, Result, Shortcut, SimpleCnn, SimpleCnnConfig, SvhnVae, SvhnVaeConfig,
    is_buffer,
};

/// A built model: a classifier or an autoencoder.
pub enum Model {
    /// Images to logits.
    Classifier(Box<dyn Network>),
    /// Images to a scalar loss.
    Autoencoder(Box<dyn Autoencoder>),
}

/// The registry: builds any [`ModelKind`] (named in `bigbatch-spec`) and
/// counts its parameters.
pub trait BuildModel {
    /// Builds the model with its published configuration through `vb`.
    ///
    /// # Errors
    /// A candle error if `vb` holds tensors of the wrong shape.
    fn build(self, vb: VarBuilder<'_>) -> Result<Model>;

    /// Builds the model with its batch-norm layers (if any) normalising with `norm`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] for a ghost batch norm on a model without
    /// batch norm; as [`BuildModel::build`] otherwise.
    fn build_with(self, norm: Norm, vb: VarBuilder<'_>) -> Result<Model>;

    /// The number of trainable parameters, computed by building the model
    /// (with zero tensors: nothing is drawn).
    ///
    /// ```
    /// use bigbatch_models::{BuildModel, ModelKind};
    /// assert_eq!(ModelKind::LeNet5.param_count()?, 61_706);
    /// # Ok::<(), bigbatch_models::Error>(())
    /// ```
    ///
    /// # Errors
    /// A candle error if building fails.
    fn param_count(self) -> Result<usize>;
}

impl BuildModel for ModelKind {
    fn build(self, vb: VarBuilder<'_>) -> Result<Model> {
        self.build_with(Norm::Batch, vb)
    }

    fn build_with(self, norm: Norm, vb: VarBuilder<'_>) -> Result<Model> {
        fn net(n: impl Network + 'static) -> Model {
            Model::Classifier(Box::new(n))
        }
        if norm != Norm::Batch && !self.has_batch_norm() {
            return Err(crate::Error::InvalidConfig {
                what: self.name(),
                reason: "it has no batch norm, so it takes no ghost batch size".into(),
            });
        }
        let cifar = |depth| CifarResNetConfig {
            norm,
            ..CifarResNetConfig::with_depth(depth)
        };
        Ok(match self {
            Self::LeNet5 => net(LeNet5::new(&LeNet5Config::default(), vb)?),
            Self::SimpleCnn => net(SimpleCnn::new(&SimpleCnnConfig::shallue(), vb)?),
            Self::TpuMnist => net(SimpleCnn::new(&SimpleCnnConfig::tpu_mnist(), vb)?),
            Self::TpuMnist32 => net(SimpleCnn::new(&SimpleCnnConfig::tpu_mnist_32(), vb)?),
            Self::KeskarF1 => net(KeskarF1::new(
                &KeskarF1Config {
                    norm,
                    ..KeskarF1Config::default()
                },
                vb,
            )?),
            Self::KeskarC1 => net(KeskarShallow::new(
                &KeskarShallowConfig {
                    norm,
                    ..KeskarShallowConfig::c1()
                },
                vb,
            )?),
            Self::KeskarC2 => net(KeskarDeep::new(
                &KeskarDeepConfig {
                    norm,
                    ..KeskarDeepConfig::c2()
                },
                vb,
            )?),
            Self::KeskarC3 => net(KeskarShallow::new(
                &KeskarShallowConfig {
                    norm,
                    ..KeskarShallowConfig::c3()
                },
                vb,
            )?),
            Self::KeskarC4 => net(KeskarDeep::new(
                &KeskarDeepConfig {
                    norm,
                    ..KeskarDeepConfig::c4()
                },
                vb,
            )?),
            Self::ResNet8 => net(CifarResNet::new(&cifar(8), vb)?),
            Self::ResNet20 => net(CifarResNet::new(&cifar(20), vb)?),
            Self::ResNet20B => net(CifarResNet::new(
                &CifarResNetConfig {
                    shortcut: Shortcut::B,
                    ..cifar(20)
                },
                vb,
            )?),
            Self::ResNet32 => net(CifarResNet::new(&cifar(32), vb)?),
            Self::ResNet56 => net(CifarResNet::new(&cifar(56), vb)?),
            Self::ResNet18Cifar => net(ResNet::new(
                &ResNetConfig {
                    norm,
                    ..ResNetConfig::resnet18_cifar()
                },
                vb,
            )?),
            Self::ResNet50Cifar => net(ResNet::new(
                &ResNetConfig {
                    norm,
                    ..ResNetConfig::resnet50_cifar()
                },
                vb,
            )?),
            Self::ResNet50V1_5 => net(ResNet::new(
                &ResNetConfig {
                    norm,
                    ..ResNetConfig::resnet50_v1_5()
                },
                vb,
            )?),
            Self::SvhnVae => {
                Model::Autoencoder(Box::new(SvhnVae::new(&SvhnVaeConfig::default(), vb)?))
            }
        })
    }

    fn param_count(self) -> Result<usize> {
        let shapes = ShapeRecorder::default();
        self.build(VarBuilder::from_backend(
            Box::new(shapes.clone()),
            DType::F32,
            Device::Cpu,
        ))?;
        let shapes = shapes.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(shapes
            .iter()
            .filter(|(name, _)| !is_buffer(name))
            .map(|(_, s)| s.elem_count())
            .sum())
    }
}

/// Renders a table of `kinds`: name, dataset, parameter count and reference.
///
/// ```
/// use bigbatch_models::{ModelKind, summary_table};
/// let table = summary_table(&[ModelKind::LeNet5])?;
/// assert!(table.contains("61,706"));
/// # Ok::<(), bigbatch_models::Error>(())
/// ```
///
/// # Errors
/// As [`ModelKind::param_count`].
pub fn summary_table(kinds: &[ModelKind]) -> Result<String> {
    let rows = kinds
        .iter()
        .map(|k| {
            Ok((
                k.name(),
                k.dataset(),
                bigbatch_spec::thousands(k.param_count()?),
                k.reference(),
            ))
        })
        .collect::<Result<Vec<_>>>()?;
    let w0 = rows.iter().map(|r| r.0.len()).chain([5]).max().unwrap_or(5);
    let w1 = rows.iter().map(|r| r.1.len()).chain([7]).max().unwrap_or(7);
    let w2 = rows
        .iter()
        .map(|r| r.2.len())
        .chain([10])
        .max()
        .unwrap_or(10);
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "{:w0$}  {:w1$}  {:>w2$}  reference",
        "model", "dataset", "parameters"
    );
    for (name, data, count, reference) in rows {
        let _ = writeln!(out, "{name:w0$}  {data:w1$}  {count:>w2$}  {reference}");
    }
    Ok(out)
}

/// A backend that records each requested tensor's shape and hands out zeros.
#[derive(Clone, Default)]
struct ShapeRecorder(Arc<Mutex<BTreeMap<String, Shape>>>);

impl SimpleBackend for ShapeRecorder {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        _: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(name.to_owned(), shape.clone());
        Tensor::zeros(shape, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("no tensor `{name}`")
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VarStore;

    #[test]
    fn counts_agree_with_a_var_store_for_small_models() -> Result<()> {
        for kind in [
            ModelKind::LeNet5,
            ModelKind::ResNet8,
            ModelKind::KeskarC1,
            ModelKind::SvhnVae,
        ] {
            let vars = VarStore::new(0);
            kind.build(vars.var_builder(DType::F32, &Device::Cpu))?;
            assert_eq!(kind.param_count()?, vars.elem_count(), "{kind:?}");
        }
        Ok(())
    }

    #[test]
    fn every_model_builds_and_runs_its_input_shape() -> Result<()> {
        use bigbatch_spec::Task;
        for kind in ModelKind::ALL {
            if kind == ModelKind::ResNet50V1_5 {
                continue; // 224×224 on the CPU in a unit test: checked by its own tests
            }
            let vars = VarStore::new(0);
            let model = kind.build(vars.var_builder(DType::F32, &Device::Cpu))?;
            assert_eq!(vars.elem_count(), kind.param_count()?, "{kind}");
            match (kind.task(), model) {
                (Task::Classify { input, classes }, Model::Classifier(net)) => {
                    let xs =
                        Tensor::zeros((2, input[0], input[1], input[2]), DType::F32, &Device::Cpu)?;
                    assert_eq!(net.forward(&xs, false)?.dims(), [2, classes], "{kind}");
                }
                (Task::Autoencode { input }, Model::Autoencoder(_)) => {
                    assert_eq!(input, [3, 32, 32], "{kind}");
                }
                _ => panic!("{kind}: task and built model disagree"),
            }
            let ghost = kind.build_with(
                Norm::Ghost {
                    virtual_batch_size: 2,
                },
                VarStore::new(0).var_builder(DType::F32, &Device::Cpu),
            );
            assert_eq!(ghost.is_ok(), kind.has_batch_norm(), "{kind}");
        }
        Ok(())
    }

    #[test]
    fn summary_table_snapshot() -> Result<()> {
        let table = summary_table(&ModelKind::ALL)?;
        expect_test::expect![[r#"
            model           dataset    parameters  reference
            lenet5          MNIST          61,706  LeCun et al. 1998
            simple-cnn      MNIST       3,274,634  Shallue et al. 2019
            tpu-mnist       MNIST       3,274,634  You et al. 2020 (TPU MNIST model)
            tpu-mnist-32    MNIST       1,643,370  You et al. 2020 (TPU MNIST model)
            keskar-f1       MNIST       1,462,794  Keskar et al. 2017
            keskar-c1       CIFAR-10    1,756,682  Keskar et al. 2017
            keskar-c2       CIFAR-10   14,991,946  Keskar et al. 2017
            keskar-c3       CIFAR-100   1,774,052  Keskar et al. 2017
            keskar-c4       CIFAR-100  15,038,116  Keskar et al. 2017
            resnet8         CIFAR-10       75,290  He et al. 2016; Shallue et al. 2019
            resnet20        CIFAR-10      269,722  He et al. 2016
            resnet20-b      CIFAR-10      272,474  He et al. 2016
            resnet32        CIFAR-10      464,154  He et al. 2016
            resnet56        CIFAR-10      853,018  He et al. 2016
            resnet18-cifar  CIFAR-10   11,173,962  He et al. 2016; You et al. 2020
            resnet50-cifar  CIFAR-10   23,520,842  He et al. 2016; You et al. 2020
            resnet50-v1.5   ImageNet   25,557,032  He et al. 2016; Goyal et al. 2017; MLPerf
            svhn-vae        SVHN          457,443  Kingma & Welling 2014; McCandlish et al. 2018
        "#]]
        .assert_eq(&table);
        Ok(())
    }
}
