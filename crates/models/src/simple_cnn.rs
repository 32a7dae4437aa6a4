//! The MNIST "simple CNN": Shallue, Lee, Antognini, Sohl-Dickstein, Frostig and
//! Dahl, "Measuring the effects of data parallelism on neural network
//! training", JMLR 2019 (32 and 64 channels); and the Google Cloud TPU MNIST
//! model (`tensorflow/tpu`, `models/official/mnist/mnist.py`: dense 1024,
//! dropout 0.4) that You et al. 2020 train under the name "LeNet".
//!
//! Two 5×5 "same" convolutions, each followed by ReLU and 2×2 max pooling,
//! then a dense layer of 1024 units with ReLU, optional dropout, and the
//! output layer. On 28×28 inputs with channels `(c₁, c₂)` the parameter count
//! is `25c₁+c₁ + 25c₁c₂+c₂ + 49c₂·1024+1024 + 1024·10+10`; for (32, 64) that is
//! 832 + 51,264 + 3,212,288 + 10,250 = 3,274,634.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::layers::{Conv2d, Linear, conv_cfg, conv2d, dropout, linear};
use crate::ops::{Activation, Pool2dConfig, max_pool2d, relu};
use crate::{Error, Network, Result};

/// Configuration of [`SimpleCnn`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimpleCnnConfig {
    /// Input channels (1 for MNIST).
    pub in_channels: usize,
    /// Side of the square input (28 for MNIST; a multiple of 4).
    pub image_size: usize,
    /// Output channels of the two convolutions.
    pub channels: [usize; 2],
    /// Units of the hidden dense layer.
    pub hidden: usize,
    /// Dropout probability after the dense layer (`None`: no dropout).
    pub dropout: Option<f32>,
    /// Output classes.
    pub num_classes: usize,
}

impl SimpleCnnConfig {
    /// Shallue et al. 2019's simple CNN on MNIST: 32 and 64 channels, dense
    /// 1024, no dropout. 3,274,634 parameters.
    pub fn shallue() -> Self {
        Self {
            in_channels: 1,
            image_size: 28,
            channels: [32, 64],
            hidden: 1024,
            dropout: None,
            num_classes: 10,
        }
    }

    /// The TPU MNIST model You et al. train as "LeNet": 32 and 64 channels,
    /// dense 1024, dropout 0.4. 3,274,634 parameters.
    pub fn tpu_mnist() -> Self {
        Self {
            dropout: Some(0.4),
            ..Self::shallue()
        }
    }

    /// The narrower TPU variant with 32 channels in both convolutions.
    /// 1,643,370 parameters (832 + 25,632 + 1,606,656 + 10,250).
    pub fn tpu_mnist_32() -> Self {
        Self {
            channels: [32, 32],
            ..Self::tpu_mnist()
        }
    }
}

impl Default for SimpleCnnConfig {
    /// [`SimpleCnnConfig::shallue`].
    fn default() -> Self {
        Self::shallue()
    }
}

/// The simple CNN, parameters `conv1`, `conv2`, `fc1`, `fc2`.
///
/// ```
/// use bigbatch_models::{Network, SimpleCnn, SimpleCnnConfig, VarStore};
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let vars = VarStore::new(0);
/// let net = SimpleCnn::new(&SimpleCnnConfig::tpu_mnist(), vars.var_builder(DType::F32, &Device::Cpu))?;
/// assert_eq!(vars.elem_count(), 3_274_634);
/// let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu)?;
/// assert_eq!(net.forward(&x, false)?.dims(), [2, 10]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SimpleCnn {
    cfg: SimpleCnnConfig,
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    fc2: Linear,
}

impl SimpleCnn {
    /// Builds the network with PyTorch's default initialisation.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the image side is not a multiple of 4; a
    /// candle error if `vb` holds tensors of the wrong shape.
    pub fn new(cfg: &SimpleCnnConfig, vb: VarBuilder<'_>) -> Result<Self> {
        if !cfg.image_size.is_multiple_of(4) || cfg.image_size == 0 {
            return Err(Error::InvalidConfig {
                what: "SimpleCnn",
                reason: format!(
                    "image size {} is not a positive multiple of 4",
                    cfg.image_size
                ),
            });
        }
        let [c1, c2] = cfg.channels;
        let side = cfg.image_size / 4;
        Ok(Self {
            cfg: cfg.clone(),
            conv1: conv2d(cfg.in_channels, c1, 5, conv_cfg(1, 2), vb.pp("conv1"))?,
            conv2: conv2d(c1, c2, 5, conv_cfg(1, 2), vb.pp("conv2"))?,
            fc1: linear(c2 * side * side, cfg.hidden, vb.pp("fc1"))?,
            fc2: linear(cfg.hidden, cfg.num_classes, vb.pp("fc2"))?,
        })
    }
}

impl Network for SimpleCnn {
    fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let c = &self.cfg;
        if xs.dims() != [xs.dim(0)?, c.in_channels, c.image_size, c.image_size] {
            return Err(Error::InputShape {
                model: "SimpleCnn",
                expected: format!("(batch, {}, {s}, {s})", c.in_channels, s = c.image_size),
                found: xs.dims().to_vec(),
            });
        }
        let pool = Pool2dConfig::new(2, 2, 0);
        let xs = max_pool2d(&relu(&self.conv1.forward(xs)?)?, pool)?;
        let xs = max_pool2d(&relu(&self.conv2.forward(&xs)?)?, pool)?;
        let xs = self
            .fc1
            .forward_with(&xs.flatten_from(1)?, Activation::Relu)?;
        let xs = dropout(&xs, c.dropout.unwrap_or(0.0), train)?;
        self.fc2.forward(&xs)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::VarStore;
    use crate::testing::{assert_trains, param_shapes};

    #[test]
    fn parameter_counts_match_the_formula() -> Result<()> {
        for (cfg, count) in [
            (SimpleCnnConfig::shallue(), 3_274_634),
            (SimpleCnnConfig::tpu_mnist(), 3_274_634),
            (SimpleCnnConfig::tpu_mnist_32(), 1_643_370),
        ] {
            let vars = VarStore::new(0);
            SimpleCnn::new(&cfg, vars.var_builder(DType::F32, &Device::Cpu))?;
            assert_eq!(vars.elem_count(), count, "{cfg:?}");
        }
        let vars = VarStore::new(0);
        SimpleCnn::new(
            &SimpleCnnConfig::shallue(),
            vars.var_builder(DType::F32, &Device::Cpu),
        )?;
        let names: Vec<String> = param_shapes(&vars).into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            names,
            [
                "conv1.bias",
                "conv1.weight",
                "conv2.bias",
                "conv2.weight",
                "fc1.bias",
                "fc1.weight",
                "fc2.bias",
                "fc2.weight"
            ]
        );
        Ok(())
    }

    #[test]
    fn trains_on_a_small_batch() -> Result<()> {
        let cfg = SimpleCnnConfig {
            image_size: 8,
            channels: [8, 16],
            hidden: 64,
            // Dropout masks cannot be seeded: train without, so the test is
            // deterministic; `dropout_acts_in_training_only` covers dropout.
            dropout: None,
            ..SimpleCnnConfig::tpu_mnist()
        };
        let vars = VarStore::new(1);
        let net = SimpleCnn::new(&cfg, vars.var_builder(DType::F32, &Device::Cpu))?;
        assert_trains(&net, &vars, (1, 8, 8), 10, 0.3, 50)
    }

    #[test]
    fn dropout_acts_in_training_only() -> Result<()> {
        let cfg = SimpleCnnConfig {
            image_size: 8,
            channels: [2, 2],
            hidden: 64,
            ..SimpleCnnConfig::tpu_mnist()
        };
        let vars = VarStore::new(1);
        let net = SimpleCnn::new(&cfg, vars.var_builder(DType::F32, &Device::Cpu))?;
        let x = crate::testing::random(&[2, 1, 8, 8], 0)?;
        let eval = |net: &SimpleCnn| -> Result<Vec<f32>> {
            Ok(net.forward(&x, false)?.flatten_all()?.to_vec1::<f32>()?)
        };
        assert_eq!(eval(&net)?, eval(&net)?);
        let train = net.forward(&x, true)?.flatten_all()?.to_vec1::<f32>()?;
        // 64 units dropped with p = 0.4: all kept has probability 0.6⁶⁴ per example.
        assert_ne!(train, eval(&net)?);
        Ok(())
    }
}
