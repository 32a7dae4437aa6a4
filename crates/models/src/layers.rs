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
//!
//! Convolutions are [`Conv2d`] layers, which run bigbatch's own CPU kernel
//! ([`crate::ops::conv2d`]) and candle's convolution on other devices.

use candle_core::{Module, Tensor};
use candle_nn::init::{FanInOut, NonLinearity, NormalOrUniform};
use candle_nn::{Init, VarBuilder};

use crate::ops::{Activation, ConvConfig, conv2d as conv2d_op, linear as linear_op};
use crate::{Error, Result};

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

/// A dense layer `y = x Wᵀ + b`: `weight` `(out, in)`, optional `bias`
/// `(out)` (PyTorch's `nn.Linear`). Inputs `(N, in)` run [`crate::ops::linear`];
/// inputs with more dimensions are multiplied over the last one with candle's
/// broadcast matmul.
///
/// ```
/// use bigbatch_models::layers::Linear;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let w = Tensor::new(&[[1f32, 1.], [0., 2.]], &Device::Cpu)?;
/// let layer = Linear::new(w, Some(Tensor::new(&[0f32, 1.], &Device::Cpu)?));
/// let y = layer.forward(&Tensor::new(&[[3f32, 4.]], &Device::Cpu)?)?;
/// assert_eq!(y.to_vec2::<f32>()?, [[7., 9.]]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A layer from its weight `(out, in)` and optional bias `(out)`.
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// The weight `(out, in)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `(out)`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// `xs Wᵀ + b` over the last dimension of `xs`.
    ///
    /// # Errors
    /// [`Error::InputShape`] or a candle error if the last dimension of `xs`
    /// is not `in`.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_with(xs, Activation::Identity)
    }

    /// `act(xs Wᵀ + b)`: for `(N, in)` inputs one fused graph node (a dense
    /// layer followed by a ReLU costs one pass and one gradient, not three).
    ///
    /// # Errors
    /// As [`Linear::forward`].
    pub fn forward_with(&self, xs: &Tensor, act: Activation) -> Result<Tensor> {
        if xs.rank() == 2 {
            return linear_op(xs, &self.weight, self.bias.as_ref(), act);
        }
        let ys = xs.broadcast_matmul(&self.weight.t()?)?;
        let ys = match &self.bias {
            Some(b) => ys.broadcast_add(b)?,
            None => ys,
        };
        Ok(match act {
            Activation::Identity => ys,
            Activation::Relu => crate::ops::relu(&ys)?,
        })
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        Linear::forward(self, xs).map_err(|e| match e {
            Error::Candle(e) => e,
            other => candle_core::Error::wrap(other),
        })
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

/// A 2-D convolution layer: `weight` `(out, in/groups, k, k)`, optional `bias`
/// `(out)`, stride, padding and groups (PyTorch's `nn.Conv2d` with a square
/// kernel). The forward pass is [`crate::ops::conv2d`], bias included.
///
/// ```
/// use bigbatch_models::layers::Conv2d;
/// use bigbatch_models::ops::ConvConfig;
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let w = Tensor::ones((2, 1, 3, 3), DType::F32, &Device::Cpu)?;
/// let b = Tensor::new(&[0f32, 1.], &Device::Cpu)?;
/// let conv = Conv2d::new(w, Some(b), ConvConfig::new(1, 1));
/// let y = conv.forward(&Tensor::ones((1, 1, 4, 4), DType::F32, &Device::Cpu)?)?;
/// assert_eq!(y.dims(), [1, 2, 4, 4]);
/// // An interior output sums nine ones; channel 1 adds its bias.
/// assert_eq!(y.get(0)?.get(1)?.get(1)?.get(1)?.to_scalar::<f32>()?, 10.);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    cfg: ConvConfig,
}

impl Conv2d {
    /// A layer from its weight `(out, in/groups, k, k)` and optional bias `(out)`.
    pub fn new(weight: Tensor, bias: Option<Tensor>, cfg: ConvConfig) -> Self {
        Self { weight, bias, cfg }
    }

    /// The weight `(out, in/groups, k, k)`.
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias `(out)`, if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Stride, padding and groups.
    pub fn config(&self) -> ConvConfig {
        self.cfg
    }

    /// `conv2d(xs, weight) + bias` for `xs` `(N, in, H, W)`: one graph node.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `xs` does not fit the weight, a candle error.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        conv2d_op(xs, &self.weight, self.bias.as_ref(), self.cfg)
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        Conv2d::forward(self, xs).map_err(|e| match e {
            Error::Candle(e) => e,
            other => candle_core::Error::wrap(other),
        })
    }
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
    cfg: ConvConfig,
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
    cfg: ConvConfig,
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

/// A one-group [`ConvConfig`] with the given stride and padding.
pub fn conv_cfg(stride: usize, padding: usize) -> ConvConfig {
    ConvConfig::new(stride, padding)
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
        conv2d(6, 16, 5, ConvConfig::default(), vb.pp("c"))?;
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
