//! LeNet-5: LeCun, Bottou, Bengio and Haffner, "Gradient-based learning applied
//! to document recognition", Proc. IEEE 1998.
//!
//! The common modern form on 28×28 MNIST: a 5×5 convolution to 6 channels with
//! padding 2, ReLU, 2×2 max pooling, a 5×5 convolution to 16 channels, ReLU,
//! 2×2 max pooling, then dense layers 400 → 120 → 84 → 10 with ReLU between.
//! 61,706 parameters. You et al. 2020 train it on MNIST up to full batch.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::layers::{Conv2d, Linear, conv_cfg, conv2d, linear};
use crate::ops::{Activation, Pool2dConfig, max_pool2d, relu};

use crate::{Error, Network, Result};

/// Configuration of [`LeNet5`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeNet5Config {
    /// Input channels (1 for MNIST).
    pub in_channels: usize,
    /// Side of the square input image (28 for MNIST).
    pub image_size: usize,
    /// Output classes.
    pub num_classes: usize,
}

impl Default for LeNet5Config {
    /// MNIST: one 28×28 channel, 10 classes.
    fn default() -> Self {
        Self {
            in_channels: 1,
            image_size: 28,
            num_classes: 10,
        }
    }
}

/// LeNet-5 with PyTorch-style parameter names
/// (`conv1.weight`, `conv2.bias`, `fc1.weight`, …, `fc3.bias`).
///
/// ```
/// use bigbatch_models::{LeNet5, LeNet5Config, Network, VarStore};
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let vars = VarStore::new(0);
/// let net = LeNet5::new(&LeNet5Config::default(), vars.var_builder(DType::F32, &Device::Cpu))?;
/// assert_eq!(vars.elem_count(), 61_706);
/// let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
/// assert_eq!(net.forward(&x, false)?.dims(), [2, 10]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct LeNet5 {
    cfg: LeNet5Config,
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

impl LeNet5 {
    /// Builds the network, creating or loading its weights through `vb`
    /// (PyTorch's default initialisation, see [`crate::layers`]).
    ///
    /// # Errors
    /// A candle error if `vb` holds tensors of the wrong shape.
    pub fn new(cfg: &LeNet5Config, vb: VarBuilder<'_>) -> Result<Self> {
        let padded = conv_cfg(1, 2);
        let side = ((cfg.image_size) / 2 - 4) / 2;
        Ok(Self {
            cfg: cfg.clone(),
            conv1: conv2d(cfg.in_channels, 6, 5, padded, vb.pp("conv1"))?,
            conv2: conv2d(6, 16, 5, conv_cfg(1, 0), vb.pp("conv2"))?,
            fc1: linear(16 * side * side, 120, vb.pp("fc1"))?,
            fc2: linear(120, 84, vb.pp("fc2"))?,
            fc3: linear(84, cfg.num_classes, vb.pp("fc3"))?,
        })
    }
}

impl Network for LeNet5 {
    fn forward(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        let c = &self.cfg;
        if xs.dims() != [xs.dim(0)?, c.in_channels, c.image_size, c.image_size] {
            return Err(Error::InputShape {
                model: "LeNet-5",
                expected: format!("(batch, {}, {s}, {s})", c.in_channels, s = c.image_size),
                found: xs.dims().to_vec(),
            });
        }
        // relu(pool(x)) = pool(relu(x)) (ReLU is monotone; the gradient
        // reaches the same first maximum, or nothing when it is ≤ 0), on a
        // quarter of the values.
        let pool = Pool2dConfig::new(2, 2, 0);
        let xs = relu(&max_pool2d(&self.conv1.forward(xs)?, pool)?)?;
        let xs = relu(&max_pool2d(&self.conv2.forward(&xs)?, pool)?)?;
        let xs = xs.flatten_from(1)?;
        let xs = self.fc1.forward_with(&xs, Activation::Relu)?;
        let xs = self.fc2.forward_with(&xs, Activation::Relu)?;
        self.fc3.forward(&xs)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::VarStore;

    fn build() -> Result<(VarStore, LeNet5)> {
        let vars = VarStore::new(0);
        let net = LeNet5::new(
            &LeNet5Config::default(),
            vars.var_builder(DType::F32, &Device::Cpu),
        )?;
        Ok((vars, net))
    }

    #[test]
    fn parameter_names_shapes_and_count_match_the_reference() -> Result<()> {
        let (vars, _) = build()?;
        let shapes: Vec<(String, Vec<usize>)> = vars
            .vars()
            .into_iter()
            .map(|(k, v)| (k, v.dims().to_vec()))
            .collect();
        let expected: Vec<(String, Vec<usize>)> = [
            ("conv1.bias", vec![6]),
            ("conv1.weight", vec![6, 1, 5, 5]),
            ("conv2.bias", vec![16]),
            ("conv2.weight", vec![16, 6, 5, 5]),
            ("fc1.bias", vec![120]),
            ("fc1.weight", vec![120, 400]),
            ("fc2.bias", vec![84]),
            ("fc2.weight", vec![84, 120]),
            ("fc3.bias", vec![10]),
            ("fc3.weight", vec![10, 84]),
        ]
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
        assert_eq!(shapes, expected);
        // 6·25+6 + 16·6·25+16 + 400·120+120 + 120·84+84 + 84·10+10
        assert_eq!(vars.elem_count(), 61_706);
        Ok(())
    }

    #[test]
    fn rejects_wrong_input_shape() -> Result<()> {
        let (_, net) = build()?;
        let x = Tensor::zeros((2, 3, 32, 32), DType::F32, &Device::Cpu)?;
        assert!(matches!(
            net.forward(&x, true),
            Err(Error::InputShape { .. })
        ));
        Ok(())
    }

    #[test]
    fn loss_falls_on_a_fixed_batch() -> Result<()> {
        let (vars, net) = build()?;
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1., (16, 1, 28, 28), &dev)?;
        let y = Tensor::arange(0u32, 16, &dev)?.affine(1., 0.)?;
        let y = (y.to_dtype(DType::F32)? / 10.)?
            .floor()?
            .to_dtype(DType::U32)?;
        let all = vars.vars().into_iter().map(|(_, v)| v).collect();
        let loss_at = |net: &LeNet5| -> Result<f32> {
            let logits = net.forward(&x, true)?;
            Ok(candle_nn::loss::cross_entropy(&logits, &y)?.to_scalar::<f32>()?)
        };
        let first = loss_at(&net)?;
        let mut sgd = <candle_nn::SGD as candle_nn::Optimizer>::new(all, 0.05)?;
        for _ in 0..30 {
            let logits = net.forward(&x, true)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
            candle_nn::Optimizer::backward_step(&mut sgd, &loss)?;
        }
        let last = loss_at(&net)?;
        assert!(last < 0.5 * first, "loss {first} -> {last}");
        Ok(())
    }
}
