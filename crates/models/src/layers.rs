//! Layer constructors with PyTorch's default initialisation.
//!
//! candle-nn's `linear` and `conv2d` draw weights from a Kaiming *normal* with
//! ReLU gain; PyTorch's `nn.Linear` and `nn.Conv2d` use `kaiming_uniform_(a=√5)`,
//! i.e. `U(−1/√fan_in, 1/√fan_in)` for weights and biases alike. The papers'
//! reference implementations are PyTorch (or match it), so bigbatch's layers do
//! too: same init, same parameter names.
//!
//! torchvision's ResNets re-initialise convolutions with
//! `kaiming_normal_(mode="fan_out", nonlinearity="relu")` and the CIFAR ResNets
//! of He et al. 2016 (as reimplemented in PyTorch) with
//! `kaiming_normal_(mode="fan_in")`; [`WeightInit`] selects between these.
//! Batch norm lives in [`crate::norm`].

use candle_core::Tensor;
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Conv2d, Conv2dConfig, Init, Linear, VarBuilder};

use crate::Result;

/// `U(−1/√fan_in, 1/√fan_in)`: PyTorch's default for weights and biases.
fn pytorch_default(fan_in: usize) -> Init {
    let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}

/// How a convolution's or dense layer's weight is drawn (biases always use
/// PyTorch's default `U(±1/√fan_in)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WeightInit {
    /// PyTorch's default: `U(−1/√fan_in, 1/√fan_in)`.
    #[default]
    PyTorch,
    /// He et al. 2015, `N(0, 2/fan_in)`: PyTorch's `kaiming_normal_()`.
    KaimingFanIn,
    /// He et al. 2015, `N(0, 2/fan_out)`: torchvision's ResNet convolutions.
    KaimingFanOut,
}

impl WeightInit {
    fn init(self, fan_in: usize) -> Init {
        let kaiming = |fan| Init::Kaiming {
            dist: NormalOrUniform::Normal,
            fan,
            non_linearity: NonLinearity::ReLU,
        };
        match self {
            Self::PyTorch => pytorch_default(fan_in),
            Self::KaimingFanIn => kaiming(FanInOut::FanIn),
            Self::KaimingFanOut => kaiming(FanInOut::FanOut),
        }
    }
}

/// A dense layer `y = x Wᵀ + b` with `weight` `(out, in)` and `bias` `(out)`,
/// initialised as PyTorch's `nn.Linear`.
///
/// # Errors
/// A candle error if `vb` holds a tensor of another shape under the same name.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder<'_>) -> Result<Linear> {
    let init = pytorch_default(in_dim);
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = vb.get_with_hints(out_dim, "bias", init)?;
    Ok(Linear::new(weight, Some(bias)))
}

/// A 2-D convolution with `weight` `(out, in/groups, k, k)` and `bias` `(out)`,
/// initialised as PyTorch's `nn.Conv2d`.
///
/// # Errors
/// A candle error if `vb` holds a tensor of another shape under the same name.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    cfg: Conv2dConfig,
    vb: VarBuilder<'_>,
) -> Result<Conv2d> {
    let groups = cfg.groups.max(1);
    let init = pytorch_default(in_channels / groups * kernel_size * kernel_size);
    let weight = vb.get_with_hints(
        (out_channels, in_channels / groups, kernel_size, kernel_size),
        "weight",
        init,
    )?;
    let bias = vb.get_with_hints(out_channels, "bias", init)?;
    Ok(Conv2d::new(weight, Some(bias), cfg))
}

/// A dense layer with the weight drawn by `init` and PyTorch's default bias.
///
/// # Errors
/// A candle error if `vb` holds a tensor of another shape under the same name.
pub fn linear_with(
    in_dim: usize,
    out_dim: usize,
    init: WeightInit,
    vb: VarBuilder<'_>,
) -> Result<Linear> {
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", init.init(in_dim))?;
    let bias = vb.get_with_hints(out_dim, "bias", pytorch_default(in_dim))?;
    Ok(Linear::new(weight, Some(bias)))
}

/// A 2-D convolution without bias (`bias=False`, as before a batch norm),
/// weight `(out, in/groups, k, k)` drawn by `init`.
///
/// # Errors
/// A candle error if `vb` holds a tensor of another shape under the same name.
pub fn conv2d_no_bias(
    in_channels: usize,
    out_channels: usize,
    kernel_size: usize,
    cfg: Conv2dConfig,
    init: WeightInit,
    vb: VarBuilder<'_>,
) -> Result<Conv2d> {
    let groups = cfg.groups.max(1);
    let fan_in = in_channels / groups * kernel_size * kernel_size;
    let weight = vb.get_with_hints(
        (out_channels, in_channels / groups, kernel_size, kernel_size),
        "weight",
        init.init(fan_in),
    )?;
    Ok(Conv2d::new(weight, None, cfg))
}

/// A `Conv2dConfig` with the given stride and padding.
pub fn conv_cfg(stride: usize, padding: usize) -> Conv2dConfig {
    Conv2dConfig {
        stride,
        padding,
        ..Default::default()
    }
}

/// Inverted dropout with drop probability `p` when `train` (scaled by
/// `1/(1−p)`), the identity otherwise.
///
/// The mask comes from candle's device RNG, which cannot be seeded: runs with
/// dropout are not bit-reproducible from the seed (everything else is).
///
/// # Errors
/// A candle error if `p` is outside `[0, 1)`.
pub fn dropout(xs: &Tensor, p: f32, train: bool) -> Result<Tensor> {
    if train && p > 0.0 {
        Ok(candle_nn::ops::dropout(xs, p)?)
    } else {
        Ok(xs.clone())
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::VarStore;

    #[test]
    fn weights_and_biases_lie_in_the_pytorch_bound() -> Result<()> {
        let vars = VarStore::new(0);
        let vb = vars.var_builder(DType::F32, &Device::Cpu);
        conv2d(6, 16, 5, Conv2dConfig::default(), vb.pp("c"))?;
        linear(400, 120, vb.pp("l"))?;
        for (name, fan_in) in [
            ("c.weight", 150.0),
            ("c.bias", 150.0),
            ("l.weight", 400.0),
            ("l.bias", 400.0),
        ] {
            let v = vars
                .get(name)
                .expect(name)
                .as_tensor()
                .flatten_all()?
                .to_vec1::<f32>()?;
            let bound = 1.0 / f64::sqrt(fan_in);
            let max = v.iter().fold(0f64, |m, x| m.max(f64::from(x.abs())));
            assert!(max <= bound + 1e-7, "{name}: {max} > {bound}");
            // A uniform sample this large reaches close to its bound.
            assert!(max > 0.9 * bound, "{name}: {max} far below {bound}");
        }
        Ok(())
    }
}
