//! torchvision-style ResNets: He, Zhang, Ren and Sun, "Deep residual learning
//! for image recognition", CVPR 2016, with torchvision's module names
//! (`conv1`, `bn1`, `layer1.0.conv1`, …, `layer1.0.downsample.0`/`.1`, `fc`),
//! so checkpoints map one-to-one onto `torchvision.models.resnet50().state_dict()`.
//!
//! - **ResNet-50 v1.5** for ImageNet ([`ResNetConfig::resnet50_v1_5`]), as in
//!   the MLPerf reference and torchvision: the stride-2 of a downsampling
//!   bottleneck sits in its 3×3 convolution (v1 puts it in the first 1×1).
//!   25,557,032 parameters. The large-batch options of Goyal et al., "Accurate,
//!   large minibatch SGD: training ImageNet in 1 hour", 2017: the last batch
//!   norm of each residual block starts with γ = 0
//!   ([`ResNetConfig::zero_init_residual`]), and weight decay skips batch-norm
//!   parameters and biases (read it from [`crate::VarStore::param_kind`] or
//!   [`crate::VarStore::weight_decay_mask`]).
//! - **CIFAR variants of ResNet-18 and ResNet-50 v1** that You et al. 2020
//!   train on CIFAR-10 ([`ResNetConfig::resnet18_cifar`],
//!   [`ResNetConfig::resnet50_cifar`]): a 3×3 stride-1 stem without max
//!   pooling (as in the common `pytorch-cifar` models). 11,173,962 and
//!   23,520,842 parameters for 10 classes.
//!
//! Shortcuts are torchvision's: identity, or a 1×1 strided convolution + batch
//! norm (He et al.'s option B) where the shape changes. Initialisation is
//! torchvision's: convolutions `kaiming_normal_(mode="fan_out")`, batch norm
//! γ = 1 (or 0), β = 0, the classifier PyTorch's default.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::layers::{Conv2d, Linear, WeightInit, conv_cfg, conv2d_no_bias, linear};
use crate::norm::{BatchNorm, BatchNormConfig, Norm, global_avg_pool};
use crate::ops::{Activation, Pool2dConfig, add_relu, max_pool2d};
use crate::{Error, Network, Result};

/// The residual block type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Block {
    /// Two 3×3 convolutions (ResNet-18/34), expansion 1.
    Basic,
    /// 1×1, 3×3, 1×1 convolutions (ResNet-50/101/152), expansion 4.
    Bottleneck,
}

impl Block {
    fn expansion(self) -> usize {
        match self {
            Self::Basic => 1,
            Self::Bottleneck => 4,
        }
    }
}

/// The layers before the first residual stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stem {
    /// 7×7 stride-2 convolution, batch norm, ReLU, 3×3 stride-2 max pooling
    /// with padding 1 (224 → 56).
    ImageNet,
    /// 3×3 stride-1 convolution, batch norm, ReLU; no pooling (CIFAR).
    Cifar,
}

/// Configuration of [`ResNet`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResNetConfig {
    /// Block type.
    pub block: Block,
    /// Blocks per stage (ResNet-18: `[2, 2, 2, 2]`; ResNet-50: `[3, 4, 6, 3]`).
    pub layers: [usize; 4],
    /// Stem.
    pub stem: Stem,
    /// Channels of the stem and the first stage, doubled at each later stage
    /// (64 in every published ResNet; smaller for quick experiments).
    pub base_width: usize,
    /// Bottlenecks stride in the 3×3 convolution (v1.5, torchvision, MLPerf)
    /// rather than in the first 1×1 (v1, the original paper).
    pub stride_in_3x3: bool,
    /// Initialise the last batch-norm γ of each block to 0.
    pub zero_init_residual: bool,
    /// Output classes.
    pub num_classes: usize,
    /// Batch or ghost batch norm.
    pub norm: Norm,
}

impl ResNetConfig {
    /// ResNet-50 v1.5 for ImageNet (1000 classes) with the MLPerf large-batch
    /// options: zero-initialised residual γ.
    pub fn resnet50_v1_5() -> Self {
        Self {
            block: Block::Bottleneck,
            layers: [3, 4, 6, 3],
            stem: Stem::ImageNet,
            base_width: 64,
            stride_in_3x3: true,
            zero_init_residual: true,
            num_classes: 1000,
            norm: Norm::Batch,
        }
    }

    /// ResNet-18 with a CIFAR stem, 10 classes.
    pub fn resnet18_cifar() -> Self {
        Self {
            block: Block::Basic,
            layers: [2, 2, 2, 2],
            stem: Stem::Cifar,
            base_width: 64,
            stride_in_3x3: true,
            zero_init_residual: false,
            num_classes: 10,
            norm: Norm::Batch,
        }
    }

    /// ResNet-50 v1 (stride in the first 1×1) with a CIFAR stem, 10 classes.
    pub fn resnet50_cifar() -> Self {
        Self {
            block: Block::Bottleneck,
            layers: [3, 4, 6, 3],
            stride_in_3x3: false,
            ..Self::resnet18_cifar()
        }
    }
}

/// One residual block (basic or bottleneck).
#[derive(Clone, Debug)]
struct Residual {
    convs: Vec<(Conv2d, BatchNorm)>,
    downsample: Option<(Conv2d, BatchNorm)>,
}

impl Residual {
    fn new(
        cfg: &ResNetConfig,
        cin: usize,
        planes: usize,
        stride: usize,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        let init = WeightInit::KaimingFanOut;
        let bn = BatchNormConfig::with_norm(cfg.norm);
        let last = BatchNormConfig {
            zero_init_scale: cfg.zero_init_residual,
            ..bn
        };
        // (in, out, kernel, stride, padding) of each convolution.
        let shapes = match cfg.block {
            Block::Basic => vec![(cin, planes, 3, stride, 1), (planes, planes, 3, 1, 1)],
            Block::Bottleneck => {
                let (s1, s3) = if cfg.stride_in_3x3 {
                    (1, stride)
                } else {
                    (stride, 1)
                };
                vec![
                    (cin, planes, 1, s1, 0),
                    (planes, planes, 3, s3, 1),
                    (planes, planes * 4, 1, 1, 0),
                ]
            }
        };
        let n = shapes.len();
        let mut convs = Vec::with_capacity(n);
        for (i, (ci, co, k, s, p)) in shapes.into_iter().enumerate() {
            let conv = conv2d_no_bias(
                ci,
                co,
                k,
                conv_cfg(s, p),
                init,
                vb.pp(format!("conv{}", i + 1)),
            )?;
            let bn_cfg = if i + 1 == n { last } else { bn };
            convs.push((
                conv,
                BatchNorm::new(co, bn_cfg, vb.pp(format!("bn{}", i + 1)))?,
            ));
        }
        let cout = planes * cfg.block.expansion();
        let downsample = if stride != 1 || cin != cout {
            Some((
                conv2d_no_bias(
                    cin,
                    cout,
                    1,
                    conv_cfg(stride, 0),
                    init,
                    vb.pp("downsample.0"),
                )?,
                BatchNorm::new(cout, bn, vb.pp("downsample.1"))?,
            ))
        } else {
            None
        };
        Ok(Self { convs, downsample })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let mut ys = xs.clone();
        let n = self.convs.len();
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            // Every normalisation but the last is followed by a ReLU.
            let act = if i + 1 < n {
                Activation::Relu
            } else {
                Activation::Identity
            };
            ys = bn.forward_with(&conv.forward(&ys)?, train, act)?;
        }
        let short = match &self.downsample {
            Some((conv, bn)) => bn.forward(&conv.forward(xs)?, train)?,
            None => xs.clone(),
        };
        add_relu(&ys, &short)
    }
}

/// A torchvision-style ResNet.
///
/// ```
/// use bigbatch_models::{Network, ResNet, ResNetConfig, VarStore};
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let vars = VarStore::new(0);
/// let net = ResNet::new(&ResNetConfig::resnet18_cifar(), vars.var_builder(DType::F32, &Device::Cpu))?;
/// assert_eq!(vars.elem_count(), 11_173_962);
/// let x = Tensor::zeros((1, 3, 8, 8), DType::F32, &Device::Cpu)?;
/// assert_eq!(net.forward(&x, false)?.dims(), [1, 10]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ResNet {
    cfg: ResNetConfig,
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<Residual>,
    fc: Linear,
}

impl ResNet {
    /// Builds the network.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if a stage has no blocks; a candle error if
    /// `vb` holds tensors of the wrong shape.
    pub fn new(cfg: &ResNetConfig, vb: VarBuilder<'_>) -> Result<Self> {
        if cfg.layers.contains(&0) || cfg.base_width == 0 {
            return Err(Error::InvalidConfig {
                what: "ResNet",
                reason: format!(
                    "every stage needs a block and channels, got {:?} with base width {}",
                    cfg.layers, cfg.base_width
                ),
            });
        }
        let init = WeightInit::KaimingFanOut;
        let w = cfg.base_width;
        let conv1 = match cfg.stem {
            Stem::ImageNet => conv2d_no_bias(3, w, 7, conv_cfg(2, 3), init, vb.pp("conv1"))?,
            Stem::Cifar => conv2d_no_bias(3, w, 3, conv_cfg(1, 1), init, vb.pp("conv1"))?,
        };
        let bn1 = BatchNorm::new(w, BatchNormConfig::with_norm(cfg.norm), vb.pp("bn1"))?;
        let mut blocks = Vec::new();
        let mut cin = w;
        for (stage, (&n, planes)) in cfg.layers.iter().zip([w, 2 * w, 4 * w, 8 * w]).enumerate() {
            for j in 0..n {
                let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                let vb = vb.pp(format!("layer{}.{j}", stage + 1));
                blocks.push(Residual::new(cfg, cin, planes, stride, vb)?);
                cin = planes * cfg.block.expansion();
            }
        }
        Ok(Self {
            cfg: cfg.clone(),
            conv1,
            bn1,
            blocks,
            fc: linear(cin, cfg.num_classes, vb.pp("fc"))?,
        })
    }
}

impl Network for ResNet {
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (_, c, _, _) = xs.dims4()?;
        if c != 3 {
            return Err(Error::InputShape {
                model: "ResNet",
                expected: "(batch, 3, H, W)".into(),
                found: xs.dims().to_vec(),
            });
        }
        let mut xs = self
            .bn1
            .forward_with(&self.conv1.forward(xs)?, train, Activation::Relu)?;
        if self.cfg.stem == Stem::ImageNet {
            xs = max_pool2d(&xs, Pool2dConfig::new(3, 2, 1))?;
        }
        for block in &self.blocks {
            xs = block.forward(&xs, train)?;
        }
        self.fc.forward(&global_avg_pool(&xs)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::testing::assert_trains;
    use crate::{ParamKind, VarStore};

    fn build(cfg: &ResNetConfig) -> Result<(VarStore, ResNet)> {
        let vars = VarStore::new(0);
        let net = ResNet::new(cfg, vars.var_builder(DType::F32, &Device::Cpu))?;
        Ok((vars, net))
    }

    /// torchvision's `resnet50()` state dict, generated by
    /// `scripts/resnet50_keys.py`: `name shape` per line, parameters and
    /// buffers (`running_mean`, `running_var`, `num_batches_tracked` with
    /// shape `[]`) alike.
    const RESNET50_KEYS: &str = include_str!("../tests/data/resnet50_keys.txt");

    #[test]
    fn resnet50_matches_torchvision_state_dict_keys_and_shapes() -> Result<()> {
        let (vars, _) = build(&ResNetConfig::resnet50_v1_5())?;
        let mut expected: Vec<(String, Vec<usize>)> = RESNET50_KEYS
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (name, shape) = l.split_once(' ').expect("`name shape`");
                let shape = shape
                    .trim_matches(['[', ']'])
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().parse().expect("dimension"))
                    .collect();
                (name.to_owned(), shape)
            })
            .collect();
        expected.sort();
        let ours: Vec<(String, Vec<usize>)> = vars
            .state()
            .into_iter()
            .map(|(k, v)| (k, v.dims().to_vec()))
            .collect();
        assert_eq!(
            expected.len(),
            320,
            "torchvision resnet50 has 320 state-dict entries"
        );
        assert_eq!(ours, expected);
        // 25,557,032 parameters (torchvision's documented count).
        assert_eq!(vars.elem_count(), 25_557_032);
        Ok(())
    }

    #[test]
    fn resnet50_large_batch_options() -> Result<()> {
        let (vars, _) = build(&ResNetConfig::resnet50_v1_5())?;
        // Zero-initialised last γ of each block, the others 1.
        let gamma = |n: &str| -> Result<f32> {
            Ok(vars
                .get(n)
                .expect(n)
                .as_tensor()
                .sum_all()?
                .to_scalar::<f32>()?)
        };
        assert_eq!(gamma("layer1.0.bn3.weight")?, 0.0);
        assert_eq!(gamma("layer4.2.bn3.weight")?, 0.0);
        assert_eq!(gamma("layer1.0.bn2.weight")?, 64.0);
        assert_eq!(gamma("layer1.0.downsample.1.weight")?, 256.0);
        let decay = vars.weight_decay_mask();
        let (mut decayed, mut skipped) = (0, 0);
        for (name, v) in vars.vars() {
            let kind = vars.param_kind(&name).expect("param");
            assert_eq!(decay(&name, v.dims()), kind == ParamKind::Weight, "{name}");
            assert_eq!(kind == ParamKind::Weight, v.rank() >= 2, "{name}");
            if kind == ParamKind::Weight {
                decayed += 1
            } else {
                skipped += 1
            }
        }
        // 53 convolutions + fc weight; 53 BNs × 2 + fc bias.
        assert_eq!((decayed, skipped), (54, 107));
        assert_eq!(vars.param_kind("fc.bias"), Some(ParamKind::Bias));
        assert_eq!(vars.param_kind("bn1.bias"), Some(ParamKind::NormShift));
        Ok(())
    }

    #[test]
    fn resnet50_forward_at_64_pixels() -> Result<()> {
        let (_, net) = build(&ResNetConfig::resnet50_v1_5())?;
        let x = crate::testing::random(&[1, 3, 64, 64], 0)?;
        assert_eq!(net.forward(&x, false)?.dims(), [1, 1000]);
        Ok(())
    }

    #[test]
    fn cifar_variants_have_the_reference_counts() -> Result<()> {
        // ResNet-18: pytorch-cifar's 11,173,962.
        let (vars, _) = build(&ResNetConfig::resnet18_cifar())?;
        assert_eq!(vars.elem_count(), 11_173_962);
        // ResNet-50: torchvision's 25,557,032 − 7·7·3·64 + 3·3·3·64 − (2048·1000+1000) + (2048·10+10).
        let (vars, _) = build(&ResNetConfig::resnet50_cifar())?;
        assert_eq!(
            vars.elem_count(),
            25_557_032 - 9_408 + 1_728 - 2_049_000 + 20_490
        );
        assert_eq!(vars.elem_count(), 23_520_842);
        // v1: the stride sits in conv1 of the first block of stages 2-4.
        let w = vars.get("layer2.0.conv1.weight").expect("conv1");
        assert_eq!(w.dims(), [128, 256, 1, 1]);
        Ok(())
    }

    #[test]
    fn tiny_bottleneck_resnet_trains_with_the_imagenet_stem() -> Result<()> {
        let cfg = ResNetConfig {
            layers: [1, 1, 1, 1],
            base_width: 4,
            num_classes: 10,
            zero_init_residual: false,
            norm: Norm::Ghost {
                virtual_batch_size: 8,
            },
            ..ResNetConfig::resnet50_v1_5()
        };
        let (vars, net) = build(&cfg)?;
        assert_trains(&net, &vars, (3, 16, 16), 10, 0.05, 30)
    }
}
