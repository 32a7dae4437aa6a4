//! The CIFAR ResNets of He, Zhang, Ren and Sun, "Deep residual learning for
//! image recognition", CVPR 2016, Section 4.2: depth `6n + 2` (ResNet-8, -20,
//! -32, -56, …), a 3×3 convolution to 16 channels, three stages of `n` basic
//! blocks with 16, 32 and 64 channels (stride 2 at the start of stages 2 and
//! 3), global average pooling and a dense classifier.
//!
//! Shortcuts when the shape changes ([`Shortcut`]):
//! - **A** (He et al.'s CIFAR choice, "so all residual models have exactly the
//!   same number of parameters as their plain counterparts"): identity on the
//!   spatially subsampled input (`x[:, :, ::2, ::2]`), zero-padded with
//!   `planes/4` channels on each side. Parameter-free. ResNet-20 has 269,722
//!   parameters (the paper's "0.27M").
//! - **B**: a 1×1 stride-2 convolution and batch norm (`shortcut.0`,
//!   `shortcut.1`), as in the TensorFlow models Shallue et al. 2019 train. It
//!   adds `16·32 + 2·32 + 32·64 + 2·64` = 2,752 parameters: ResNet-20 has
//!   272,474.
//!
//! Names and initialisation follow the widely used PyTorch reimplementation
//! (Idelbayev, `pytorch_resnet_cifar10`): `conv1`, `bn1`,
//! `layer{1,2,3}.{j}.{conv1,bn1,conv2,bn2}`, `linear`; convolutions and the
//! dense weight drawn from `kaiming_normal_` (fan in).
//!
//! Parameter counts for 10 classes, option A: ResNet-8 75,290; ResNet-20
//! 269,722; ResNet-32 464,154; ResNet-56 853,018.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::layers::{Conv2d, Linear, WeightInit, conv_cfg, conv2d_no_bias, linear_with};
use crate::norm::{BatchNorm, BatchNormConfig, Norm, global_avg_pool};
use crate::ops::{Activation, add_relu};
use crate::{Error, Network, Result};

/// How a CIFAR ResNet block's shortcut changes shape (He et al. 2016, §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Shortcut {
    /// Parameter-free: subsample and zero-pad the channels.
    #[default]
    A,
    /// Projection: 1×1 stride-2 convolution and batch norm.
    B,
}

/// Configuration of [`CifarResNet`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CifarResNetConfig {
    /// Total depth `6n + 2`.
    pub depth: usize,
    /// The shortcut when the shape changes.
    pub shortcut: Shortcut,
    /// Output classes.
    pub num_classes: usize,
    /// Batch or ghost batch norm.
    pub norm: Norm,
}

impl CifarResNetConfig {
    /// ResNet-`depth` for CIFAR-10 with option A shortcuts.
    pub fn with_depth(depth: usize) -> Self {
        Self {
            depth,
            shortcut: Shortcut::A,
            num_classes: 10,
            norm: Norm::Batch,
        }
    }

    /// ResNet-8 (n = 1), the ResNet Shallue et al. 2019 train on CIFAR-10.
    pub fn resnet8() -> Self {
        Self::with_depth(8)
    }

    /// ResNet-20 (n = 3).
    pub fn resnet20() -> Self {
        Self::with_depth(20)
    }

    /// ResNet-32 (n = 5).
    pub fn resnet32() -> Self {
        Self::with_depth(32)
    }

    /// ResNet-56 (n = 9).
    pub fn resnet56() -> Self {
        Self::with_depth(56)
    }
}

/// What a block adds to its residual branch.
#[derive(Clone, Debug)]
enum ShortcutPath {
    /// The input itself.
    Identity,
    /// Option A: subsample, zero-pad the channels.
    Pad,
    /// Option B: 1×1 convolution and batch norm.
    Projection(Conv2d, BatchNorm),
}

/// A basic block: two 3×3 convolutions with batch norm, plus the shortcut.
#[derive(Clone, Debug)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    shortcut: ShortcutPath,
    planes: usize,
}

impl BasicBlock {
    fn new(
        cin: usize,
        planes: usize,
        stride: usize,
        cfg: &CifarResNetConfig,
        vb: VarBuilder<'_>,
    ) -> Result<Self> {
        let bn = BatchNormConfig::with_norm(cfg.norm);
        let init = WeightInit::KaimingFanIn;
        let shortcut = match cfg.shortcut {
            _ if stride == 1 && cin == planes => ShortcutPath::Identity,
            Shortcut::A => ShortcutPath::Pad,
            Shortcut::B => ShortcutPath::Projection(
                conv2d_no_bias(
                    cin,
                    planes,
                    1,
                    conv_cfg(stride, 0),
                    init,
                    vb.pp("shortcut.0"),
                )?,
                BatchNorm::new(planes, bn, vb.pp("shortcut.1"))?,
            ),
        };
        Ok(Self {
            conv1: conv2d_no_bias(cin, planes, 3, conv_cfg(stride, 1), init, vb.pp("conv1"))?,
            bn1: BatchNorm::new(planes, bn, vb.pp("bn1"))?,
            conv2: conv2d_no_bias(planes, planes, 3, conv_cfg(1, 1), init, vb.pp("conv2"))?,
            bn2: BatchNorm::new(planes, bn, vb.pp("bn2"))?,
            shortcut,
            planes,
        })
    }

    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let ys = self
            .bn1
            .forward_with(&self.conv1.forward(xs)?, train, Activation::Relu)?;
        let ys = self.bn2.forward(&self.conv2.forward(&ys)?, train)?;
        let short = match &self.shortcut {
            ShortcutPath::Identity => xs.clone(),
            ShortcutPath::Projection(conv, bn) => bn.forward(&conv.forward(xs)?, train)?,
            ShortcutPath::Pad => {
                let (n, c, h, w) = xs.dims4()?;
                // x[:, :, ::2, ::2] (h and w are even on CIFAR: 32 → 16 → 8).
                let sub = xs
                    .reshape((n, c, h / 2, 2, w / 2, 2))?
                    .narrow(3, 0, 1)?
                    .narrow(5, 0, 1)?
                    .reshape((n, c, h / 2, w / 2))?;
                let pad = (self.planes - c) / 2;
                sub.pad_with_zeros(1, pad, self.planes - c - pad)?
            }
        };
        add_relu(&ys, &short)
    }
}

/// He et al.'s CIFAR ResNet of depth `6n + 2`.
///
/// ```
/// use bigbatch_models::{CifarResNet, CifarResNetConfig, Network, VarStore};
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let vars = VarStore::new(0);
/// let net = CifarResNet::new(&CifarResNetConfig::resnet20(), vars.var_builder(DType::F32, &Device::Cpu))?;
/// assert_eq!(vars.elem_count(), 269_722);
/// let x = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu)?;
/// assert_eq!(net.forward(&x, false)?.dims(), [1, 10]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct CifarResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<BasicBlock>,
    linear: Linear,
}

impl CifarResNet {
    /// Builds the network.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] unless `depth = 6n + 2` with `n ≥ 1`; a candle
    /// error if `vb` holds tensors of the wrong shape.
    pub fn new(cfg: &CifarResNetConfig, vb: VarBuilder<'_>) -> Result<Self> {
        if cfg.depth < 8 || !(cfg.depth - 2).is_multiple_of(6) {
            return Err(Error::InvalidConfig {
                what: "CifarResNet",
                reason: format!("depth {} is not 6n + 2 with n ≥ 1", cfg.depth),
            });
        }
        let n = (cfg.depth - 2) / 6;
        let bn = BatchNormConfig::with_norm(cfg.norm);
        let init = WeightInit::KaimingFanIn;
        let mut blocks = Vec::with_capacity(3 * n);
        let mut cin = 16;
        for (stage, planes) in [16, 32, 64].into_iter().enumerate() {
            for j in 0..n {
                let stride = if stage > 0 && j == 0 { 2 } else { 1 };
                let vb = vb.pp(format!("layer{}.{j}", stage + 1));
                blocks.push(BasicBlock::new(cin, planes, stride, cfg, vb)?);
                cin = planes;
            }
        }
        Ok(Self {
            conv1: conv2d_no_bias(3, 16, 3, conv_cfg(1, 1), init, vb.pp("conv1"))?,
            bn1: BatchNorm::new(16, bn, vb.pp("bn1"))?,
            blocks,
            linear: linear_with(64, cfg.num_classes, init, vb.pp("linear"))?,
        })
    }
}

impl Network for CifarResNet {
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let (_, c, h, w) = xs.dims4()?;
        if c != 3 || h % 4 != 0 || w % 4 != 0 {
            return Err(Error::InputShape {
                model: "CIFAR ResNet",
                expected: "(batch, 3, H, W) with H, W multiples of 4".into(),
                found: xs.dims().to_vec(),
            });
        }
        let mut xs = self
            .bn1
            .forward_with(&self.conv1.forward(xs)?, train, Activation::Relu)?;
        for block in &self.blocks {
            xs = block.forward(&xs, train)?;
        }
        self.linear.forward(&global_avg_pool(&xs)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::VarStore;
    use crate::testing::{assert_trains, param_shapes};

    fn build(cfg: &CifarResNetConfig, seed: u64) -> Result<(VarStore, CifarResNet)> {
        let vars = VarStore::new(seed);
        let net = CifarResNet::new(cfg, vars.var_builder(DType::F32, &Device::Cpu))?;
        Ok((vars, net))
    }

    #[test]
    fn parameter_counts_match_he_et_al() -> Result<()> {
        // Option A, 10 classes: 432 + 32 (stem) + n·4,672 + (13,952 + (n−1)·18,560)
        // + (55,552 + (n−1)·73,984) + 650; option B adds 2,752.
        for (depth, a) in [(8, 75_290), (20, 269_722), (32, 464_154), (56, 853_018)] {
            let n = (depth - 2) / 6;
            assert_eq!(
                a,
                432 + 32 + n * 4_672 + 13_952 + (n - 1) * 18_560 + 55_552 + (n - 1) * 73_984 + 650
            );
            let (vars, _) = build(&CifarResNetConfig::with_depth(depth), 0)?;
            assert_eq!(vars.elem_count(), a, "ResNet-{depth} A");
            let cfg = CifarResNetConfig {
                shortcut: Shortcut::B,
                ..CifarResNetConfig::with_depth(depth)
            };
            let (vars, _) = build(&cfg, 0)?;
            assert_eq!(vars.elem_count(), a + 2_752, "ResNet-{depth} B");
        }
        let (vars, _) = build(
            &CifarResNetConfig {
                shortcut: Shortcut::B,
                ..CifarResNetConfig::resnet20()
            },
            0,
        )?;
        assert_eq!(vars.elem_count(), 272_474);
        assert!(
            param_shapes(&vars)
                .contains(&("layer2.0.shortcut.0.weight".into(), vec![32, 16, 1, 1]))
        );
        Ok(())
    }

    #[test]
    fn rejects_bad_depths_and_inputs() -> Result<()> {
        for depth in [0, 7, 9, 21] {
            assert!(matches!(
                build(&CifarResNetConfig::with_depth(depth), 0),
                Err(Error::InvalidConfig { .. })
            ));
        }
        let (_, net) = build(&CifarResNetConfig::resnet8(), 0)?;
        let x = Tensor::zeros((1, 1, 32, 32), DType::F32, &Device::Cpu)?;
        assert!(matches!(
            net.forward(&x, false),
            Err(Error::InputShape { .. })
        ));
        Ok(())
    }

    #[test]
    fn same_seed_same_function() -> Result<()> {
        let x = crate::testing::random(&[2, 3, 8, 8], 1)?;
        let (_, a) = build(&CifarResNetConfig::resnet8(), 9)?;
        let (_, b) = build(&CifarResNetConfig::resnet8(), 9)?;
        let (_, c) = build(&CifarResNetConfig::resnet8(), 10)?;
        let ya = a.forward(&x, true)?.flatten_all()?.to_vec1::<f32>()?;
        assert_eq!(ya, b.forward(&x, true)?.flatten_all()?.to_vec1::<f32>()?);
        assert_ne!(ya, c.forward(&x, true)?.flatten_all()?.to_vec1::<f32>()?);
        Ok(())
    }

    #[test]
    fn resnet8_trains_with_both_shortcuts() -> Result<()> {
        for shortcut in [Shortcut::A, Shortcut::B] {
            let cfg = CifarResNetConfig {
                shortcut,
                norm: Norm::Ghost {
                    virtual_batch_size: 8,
                },
                ..CifarResNetConfig::resnet8()
            };
            let (vars, net) = build(&cfg, 5)?;
            assert_trains(&net, &vars, (3, 8, 8), 10, 0.1, 30)?;
        }
        Ok(())
    }
}
