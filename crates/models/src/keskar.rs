//! The networks of Keskar, Mudigere, Nocedal, Smelyanskiy and Tang, "On
//! large-batch training for deep learning: generalization gap and sharp
//! minima", ICLR 2017 (Table 1 and Appendix B).
//!
//! - **F1** ([`KeskarF1`]): MNIST, fully connected, five hidden layers of 512
//!   units, each dense → batch norm → ReLU. Parameters
//!   `(784·512+512) + 4(512·512+512) + 5·2·512 + (512·10+10)` = 1,462,794.
//! - **C1/C3** ([`KeskarShallow`]): CIFAR-10/100, the shallow convnet (the
//!   TensorFlow CIFAR-10 tutorial model with batch norm in place of local
//!   response normalisation): two blocks of 5×5 convolution to 64 channels
//!   ("same" padding) → batch norm → ReLU → 3×3 stride-2 max pooling
//!   (padding 1, so 32 → 16 → 8), then dense 4096 → 384 → 192 with ReLU and
//!   dropout 0.5, then the classifier. C1 has
//!   `4,864 + 128 + 102,464 + 128 + 1,573,248 + 73,920 + 1,930` = 1,756,682
//!   parameters; C3 (100 classes) 1,774,052.
//! - **C2/C4** ([`KeskarDeep`]): CIFAR-10/100, the VGG-style deep convnet with
//!   batch norm and dropout of Zagoruyko's `cifar.torch` (`vgg_bn_drop`), which
//!   Keskar et al. cite: thirteen 3×3 convolutions (64, 64, M, 128, 128, M,
//!   256×3, M, 512×3, M, 512×3, M) each → batch norm → ReLU, dropout 0.3 or
//!   0.4 inside each block, then dropout 0.5 → dense 512 → batch norm → ReLU →
//!   dropout 0.5 → classifier. C2 has 14,991,946 parameters, C4 15,038,116.
//!
//! Keskar et al.'s code is Keras/Lua Torch and has no PyTorch state dict, so the
//! names follow PyTorch's conventions for the layers: `fc1`/`bn1`, …
//! (F1), `conv1`/`bn1`, … (C1/C3), `features.{i}.conv`/`features.{i}.bn` and
//! `classifier.fc1`/`classifier.bn`/`classifier.fc2` (C2/C4).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::layers::{Conv2d, Linear, conv_cfg, conv2d, dropout, linear};
use crate::norm::{BatchNorm, BatchNormConfig, Norm};
use crate::ops::{Activation, Pool2dConfig, max_pool2d};
use crate::{Error, Network, Result};

fn check_input(model: &'static str, xs: &Tensor, expected: &[usize]) -> Result<()> {
    let dims = xs.dims();
    if dims.is_empty() || &dims[1..] != expected {
        return Err(Error::InputShape {
            model,
            expected: format!("(batch, {expected:?})"),
            found: dims.to_vec(),
        });
    }
    Ok(())
}

/// Configuration of [`KeskarF1`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeskarF1Config {
    /// Input features (784 for flattened MNIST; `(N, 1, 28, 28)` inputs are
    /// flattened).
    pub input_dim: usize,
    /// Units per hidden layer.
    pub hidden: usize,
    /// Number of hidden layers.
    pub depth: usize,
    /// Output classes.
    pub num_classes: usize,
    /// Batch or ghost batch norm.
    pub norm: Norm,
}

impl Default for KeskarF1Config {
    /// F1: 784 → 512×5 → 10 with batch norm.
    fn default() -> Self {
        Self {
            input_dim: 784,
            hidden: 512,
            depth: 5,
            num_classes: 10,
            norm: Norm::Batch,
        }
    }
}

/// Keskar et al.'s F1: a deep fully connected network with batch norm.
///
/// ```
/// use bigbatch_models::{KeskarF1, KeskarF1Config, Network, VarStore};
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let vars = VarStore::new(0);
/// let net = KeskarF1::new(&KeskarF1Config::default(), vars.var_builder(DType::F32, &Device::Cpu))?;
/// assert_eq!(vars.elem_count(), 1_462_794);
/// let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
/// assert_eq!(net.forward(&x, false)?.dims(), [2, 10]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct KeskarF1 {
    cfg: KeskarF1Config,
    hidden: Vec<(Linear, BatchNorm)>,
    out: Linear,
}

impl KeskarF1 {
    /// Builds F1 (`fc1`, `bn1`, …, `fc{depth}`, `bn{depth}`, `fc{depth+1}`).
    ///
    /// # Errors
    /// A candle error if `vb` holds tensors of the wrong shape.
    pub fn new(cfg: &KeskarF1Config, vb: VarBuilder<'_>) -> Result<Self> {
        let bn = BatchNormConfig::with_norm(cfg.norm);
        let mut hidden = Vec::with_capacity(cfg.depth);
        let mut dim = cfg.input_dim;
        for i in 1..=cfg.depth {
            let fc = linear(dim, cfg.hidden, vb.pp(format!("fc{i}")))?;
            hidden.push((fc, BatchNorm::new(cfg.hidden, bn, vb.pp(format!("bn{i}")))?));
            dim = cfg.hidden;
        }
        let out = linear(dim, cfg.num_classes, vb.pp(format!("fc{}", cfg.depth + 1)))?;
        Ok(Self {
            cfg: cfg.clone(),
            hidden,
            out,
        })
    }
}

impl Network for KeskarF1 {
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let xs = xs.flatten_from(1)?;
        check_input("Keskar F1", &xs, &[self.cfg.input_dim])?;
        let mut xs = xs;
        for (fc, bn) in &self.hidden {
            xs = bn.forward_with(&fc.forward(&xs)?, train, Activation::Relu)?;
        }
        self.out.forward(&xs)
    }
}

/// Configuration of [`KeskarShallow`] (C1, C3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeskarShallowConfig {
    /// Side of the square RGB input (32 for CIFAR; a multiple of 4).
    pub image_size: usize,
    /// Output classes: 10 (C1) or 100 (C3).
    pub num_classes: usize,
    /// Dropout probability of the dense layers.
    pub dropout: f32,
    /// Batch or ghost batch norm.
    pub norm: Norm,
}

impl KeskarShallowConfig {
    /// C1: CIFAR-10.
    pub fn c1() -> Self {
        Self {
            image_size: 32,
            num_classes: 10,
            dropout: 0.5,
            norm: Norm::Batch,
        }
    }

    /// C3: CIFAR-100.
    pub fn c3() -> Self {
        Self {
            num_classes: 100,
            ..Self::c1()
        }
    }
}

/// Keskar et al.'s shallow convnet C1/C3.
///
/// ```
/// use bigbatch_models::{KeskarShallow, KeskarShallowConfig, Network, VarStore};
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let vars = VarStore::new(0);
/// let net = KeskarShallow::new(&KeskarShallowConfig::c1(), vars.var_builder(DType::F32, &Device::Cpu))?;
/// assert_eq!(vars.elem_count(), 1_756_682);
/// let x = Tensor::zeros((1, 3, 32, 32), DType::F32, &Device::Cpu)?;
/// assert_eq!(net.forward(&x, false)?.dims(), [1, 10]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct KeskarShallow {
    cfg: KeskarShallowConfig,
    convs: [(Conv2d, BatchNorm); 2],
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl KeskarShallow {
    /// Builds C1/C3 (`conv1`, `bn1`, `conv2`, `bn2`, `fc1`, `fc2`, `fc3`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the image side is not a multiple of 4; a
    /// candle error if `vb` holds tensors of the wrong shape.
    pub fn new(cfg: &KeskarShallowConfig, vb: VarBuilder<'_>) -> Result<Self> {
        if !cfg.image_size.is_multiple_of(4) || cfg.image_size == 0 {
            return Err(Error::InvalidConfig {
                what: "KeskarShallow",
                reason: format!(
                    "image size {} is not a positive multiple of 4",
                    cfg.image_size
                ),
            });
        }
        let bn = BatchNormConfig::with_norm(cfg.norm);
        let block = |i: usize, cin: usize| -> Result<(Conv2d, BatchNorm)> {
            Ok((
                conv2d(cin, 64, 5, conv_cfg(1, 2), vb.pp(format!("conv{i}")))?,
                BatchNorm::new(64, bn, vb.pp(format!("bn{i}")))?,
            ))
        };
        let side = cfg.image_size / 4;
        Ok(Self {
            cfg: cfg.clone(),
            convs: [block(1, 3)?, block(2, 64)?],
            fc1: linear(64 * side * side, 384, vb.pp("fc1"))?,
            fc2: linear(384, 192, vb.pp("fc2"))?,
            fc3: linear(192, cfg.num_classes, vb.pp("fc3"))?,
        })
    }
}

impl Network for KeskarShallow {
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let s = self.cfg.image_size;
        check_input("Keskar C1/C3", xs, &[3, s, s])?;
        let mut xs = xs.clone();
        for (conv, bn) in &self.convs {
            let ys = bn.forward_with(&conv.forward(&xs)?, train, Activation::Relu)?;
            xs = max_pool2d(&ys, Pool2dConfig::new(3, 2, 1))?;
        }
        let p = self.cfg.dropout;
        let xs = self
            .fc1
            .forward_with(&xs.flatten_from(1)?, Activation::Relu)?;
        let xs = self
            .fc2
            .forward_with(&dropout(&xs, p, train)?, Activation::Relu)?;
        self.fc3.forward(&dropout(&xs, p, train)?)
    }
}

/// Configuration of [`KeskarDeep`] (C2, C4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeskarDeepConfig {
    /// Side of the square RGB input (32 for CIFAR; a multiple of 32).
    pub image_size: usize,
    /// Output classes: 10 (C2) or 100 (C4).
    pub num_classes: usize,
    /// Keep the dropout layers (`false` turns every one off).
    pub dropout: bool,
    /// Batch or ghost batch norm.
    pub norm: Norm,
}

impl KeskarDeepConfig {
    /// C2: CIFAR-10.
    pub fn c2() -> Self {
        Self {
            image_size: 32,
            num_classes: 10,
            dropout: true,
            norm: Norm::Batch,
        }
    }

    /// C4: CIFAR-100.
    pub fn c4() -> Self {
        Self {
            num_classes: 100,
            ..Self::c2()
        }
    }
}

/// `vgg_bn_drop`'s layers: output channels (0 = 2×2 max pool) and the dropout
/// after the convolution's ReLU.
const VGG: [(usize, f32); 18] = [
    (64, 0.3),
    (64, 0.0),
    (0, 0.0),
    (128, 0.4),
    (128, 0.0),
    (0, 0.0),
    (256, 0.4),
    (256, 0.4),
    (256, 0.0),
    (0, 0.0),
    (512, 0.4),
    (512, 0.4),
    (512, 0.0),
    (0, 0.0),
    (512, 0.4),
    (512, 0.4),
    (512, 0.0),
    (0, 0.0),
];

/// One entry of the feature stack.
#[derive(Clone, Debug)]
enum VggLayer {
    Conv {
        conv: Conv2d,
        bn: BatchNorm,
        drop: f32,
    },
    Pool,
}

/// Keskar et al.'s VGG-style deep convnet C2/C4.
///
/// ```
/// use bigbatch_models::{KeskarDeep, KeskarDeepConfig, VarStore};
/// use candle_core::{DType, Device};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let vars = VarStore::new(0);
/// KeskarDeep::new(&KeskarDeepConfig::c2(), vars.var_builder(DType::F32, &Device::Cpu))?;
/// assert_eq!(vars.elem_count(), 14_991_946);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct KeskarDeep {
    cfg: KeskarDeepConfig,
    features: Vec<VggLayer>,
    fc1: Linear,
    bn: BatchNorm,
    fc2: Linear,
}

impl KeskarDeep {
    /// Builds C2/C4 (`features.{i}.conv`, `features.{i}.bn` for the i-th
    /// convolution, `classifier.fc1`, `classifier.bn`, `classifier.fc2`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the image side is not a multiple of 32; a
    /// candle error if `vb` holds tensors of the wrong shape.
    pub fn new(cfg: &KeskarDeepConfig, vb: VarBuilder<'_>) -> Result<Self> {
        if !cfg.image_size.is_multiple_of(32) || cfg.image_size == 0 {
            return Err(Error::InvalidConfig {
                what: "KeskarDeep",
                reason: format!(
                    "image size {} is not a positive multiple of 32",
                    cfg.image_size
                ),
            });
        }
        let bn = BatchNormConfig::with_norm(cfg.norm);
        let (mut features, mut cin, mut i) = (Vec::new(), 3, 0);
        for (cout, drop) in VGG {
            if cout == 0 {
                features.push(VggLayer::Pool);
                continue;
            }
            let vb = vb.pp(format!("features.{i}"));
            features.push(VggLayer::Conv {
                conv: conv2d(cin, cout, 3, conv_cfg(1, 1), vb.pp("conv"))?,
                bn: BatchNorm::new(cout, bn, vb.pp("bn"))?,
                drop: if cfg.dropout { drop } else { 0.0 },
            });
            (cin, i) = (cout, i + 1);
        }
        let side = cfg.image_size / 32;
        let vb = vb.pp("classifier");
        Ok(Self {
            cfg: cfg.clone(),
            features,
            fc1: linear(512 * side * side, 512, vb.pp("fc1"))?,
            bn: BatchNorm::new(512, bn, vb.pp("bn"))?,
            fc2: linear(512, cfg.num_classes, vb.pp("fc2"))?,
        })
    }
}

impl Network for KeskarDeep {
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let s = self.cfg.image_size;
        check_input("Keskar C2/C4", xs, &[3, s, s])?;
        let mut xs = xs.clone();
        for layer in &self.features {
            xs = match layer {
                VggLayer::Conv { conv, bn, drop } => {
                    let ys = bn.forward_with(&conv.forward(&xs)?, train, Activation::Relu)?;
                    dropout(&ys, *drop, train)?
                }
                VggLayer::Pool => max_pool2d(&xs, Pool2dConfig::new(2, 2, 0))?,
            };
        }
        let p = if self.cfg.dropout { 0.5 } else { 0.0 };
        let xs = dropout(&xs.flatten_from(1)?, p, train)?;
        let xs = self
            .bn
            .forward_with(&self.fc1.forward(&xs)?, train, Activation::Relu)?;
        self.fc2.forward(&dropout(&xs, p, train)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::VarStore;
    use crate::testing::{assert_trains, param_shapes};

    fn count<T>(build: impl Fn(VarBuilder<'static>) -> Result<T>) -> Result<usize> {
        let vars = VarStore::new(0);
        build(vars.var_builder(DType::F32, &Device::Cpu))?;
        Ok(vars.elem_count())
    }

    #[test]
    fn parameter_counts_match_the_formulas() -> Result<()> {
        // F1: 401,920 + 4·262,656 + 5·1,024 + 5,130.
        assert_eq!(
            count(|vb| KeskarF1::new(&KeskarF1Config::default(), vb))?,
            1_462_794
        );
        // C1: conv 3·64·25+64, bn 128, conv 64·64·25+64, bn 128,
        // dense 4096·384+384, 384·192+192, 192·10+10.
        assert_eq!(
            count(|vb| KeskarShallow::new(&KeskarShallowConfig::c1(), vb))?,
            1_756_682
        );
        assert_eq!(
            count(|vb| KeskarShallow::new(&KeskarShallowConfig::c3(), vb))?,
            1_774_052
        );
        // C2: Σ convs 9·cin·cout + cout (14,710,464 + 4,224 biases) + 13 BNs
        // (2·4,224) + 512·512+512 + bn 1,024 + 512·10+10.
        assert_eq!(
            count(|vb| KeskarDeep::new(&KeskarDeepConfig::c2(), vb))?,
            14_991_946
        );
        assert_eq!(
            count(|vb| KeskarDeep::new(&KeskarDeepConfig::c4(), vb))?,
            15_038_116
        );
        Ok(())
    }

    #[test]
    fn names_follow_the_documented_scheme() -> Result<()> {
        let vars = VarStore::new(0);
        KeskarDeep::new(
            &KeskarDeepConfig::c2(),
            vars.var_builder(DType::F32, &Device::Cpu),
        )?;
        let shapes = param_shapes(&vars);
        assert!(shapes.contains(&("features.12.conv.weight".into(), vec![512, 512, 3, 3])));
        assert!(shapes.contains(&("classifier.bn.weight".into(), vec![512])));
        assert!(vars.get("features.0.bn.running_var").is_some());
        Ok(())
    }

    #[test]
    fn f1_trains_with_ghost_batch_norm() -> Result<()> {
        let cfg = KeskarF1Config {
            input_dim: 12,
            hidden: 16,
            depth: 2,
            norm: Norm::Ghost {
                virtual_batch_size: 8,
            },
            ..KeskarF1Config::default()
        };
        let vars = VarStore::new(2);
        let net = KeskarF1::new(&cfg, vars.var_builder(DType::F32, &Device::Cpu))?;
        assert_trains(&net, &vars, (1, 3, 4), 10, 0.1, 30)
    }

    #[test]
    fn c1_trains() -> Result<()> {
        let cfg = KeskarShallowConfig {
            image_size: 8,
            // Dropout masks cannot be seeded: off, so the test is deterministic.
            dropout: 0.0,
            ..KeskarShallowConfig::c1()
        };
        let vars = VarStore::new(3);
        let net = KeskarShallow::new(&cfg, vars.var_builder(DType::F32, &Device::Cpu))?;
        assert_trains(&net, &vars, (3, 8, 8), 10, 0.05, 30)
    }

    #[test]
    fn c2_runs_forward_and_backward() -> Result<()> {
        // A full-size C2 step on a 2×3×32×32 batch: shapes and finite gradients.
        let vars = VarStore::new(4);
        let net = KeskarDeep::new(
            &KeskarDeepConfig::c2(),
            vars.var_builder(DType::F32, &Device::Cpu),
        )?;
        let x = crate::testing::random(&[2, 3, 32, 32], 0)?;
        let logits = net.forward(&x, true)?;
        assert_eq!(logits.dims(), [2, 10]);
        let grads = logits.sqr()?.sum_all()?.backward()?;
        let all = vars.vars();
        let w = &all[0].1;
        let g = grads
            .get(w.as_tensor())
            .expect("grad")
            .sqr()?
            .sum_all()?
            .to_scalar::<f32>()?;
        assert!(g.is_finite());
        assert_eq!(net.forward(&x, false)?.dims(), [2, 10]);
        Ok(())
    }
}
