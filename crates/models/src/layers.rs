//! Layer constructors with PyTorch's default initialisation.
//!
//! candle-nn's `linear` and `conv2d` draw weights from a Kaiming *normal* with
//! ReLU gain; PyTorch's `nn.Linear` and `nn.Conv2d` use `kaiming_uniform_(a=√5)`,
//! i.e. `U(−1/√fan_in, 1/√fan_in)` for weights and biases alike. The papers'
//! reference implementations are PyTorch (or match it), so bigbatch's layers do
//! too: same init, same parameter names.

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
