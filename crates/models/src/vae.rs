//! A small convolutional variational autoencoder for SVHN: Kingma and Welling,
//! "Auto-encoding variational Bayes", ICLR 2014, as used by McCandlish,
//! Kaplan, Amodei and the OpenAI Dota team, "An empirical model of large-batch
//! training", 2018, to measure the gradient noise scale of autoencoder
//! training on SVHN.
//!
//! Encoder: three 4×4 stride-2 convolutions (32 → 16 → 8 → 4 pixels) with ReLU,
//! then dense layers to the posterior mean `μ` and log-variance `log σ²`.
//! Decoder: a dense layer back to the `4×4` feature map, then three ×2
//! nearest-neighbour upsamplings each followed by a 3×3 convolution (ReLU
//! between, logits at the end). Upsample + convolution stands in for
//! transposed convolutions, which candle differentiates less reliably.
//!
//! The loss is the negative ELBO per example with a Bernoulli likelihood on
//! pixel intensities in `[0, 1]`:
//! `L = Σ_pixels BCE(logits, x) + KL(N(μ, σ²) ‖ N(0, I))`, with
//! `KL = −½ Σ (1 + log σ² − μ² − σ²)`, averaged over the batch. The latent
//! sample `z = μ + σ ε` draws `ε` from a ChaCha stream seeded by
//! [`SvhnVaeConfig::noise_seed`], so runs are reproducible from seeds
//! (candle's own RNG cannot be seeded).

use std::sync::Mutex;

use candle_core::Tensor;
use candle_nn::VarBuilder;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::layers::{Conv2d, Linear, conv_cfg, conv2d, linear};
use crate::ops::{Activation, relu};
use crate::{Autoencoder, Error, Result};

/// Configuration of [`SvhnVae`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SvhnVaeConfig {
    /// Image channels (3 for SVHN).
    pub in_channels: usize,
    /// Side of the square input (32 for SVHN; a multiple of 8).
    pub image_size: usize,
    /// Channels of the three encoder convolutions (mirrored in the decoder).
    pub channels: [usize; 3],
    /// Dimension of the latent code.
    pub latent_dim: usize,
    /// Seed of the reparameterisation noise.
    pub noise_seed: u64,
}

impl Default for SvhnVaeConfig {
    /// SVHN: 3×32×32, channels 32/64/128, 32 latent dimensions.
    fn default() -> Self {
        Self {
            in_channels: 3,
            image_size: 32,
            channels: [32, 64, 128],
            latent_dim: 32,
            noise_seed: 0,
        }
    }
}

/// The terms of the negative ELBO for one batch, each averaged over examples.
#[derive(Clone, Debug)]
pub struct Elbo {
    /// `reconstruction + kl`: the scalar to minimise.
    pub loss: Tensor,
    /// Bernoulli negative log-likelihood summed over pixels.
    pub reconstruction: Tensor,
    /// `KL(q(z|x) ‖ p(z))`.
    pub kl: Tensor,
    /// The decoder's logits, shaped like the input.
    pub logits: Tensor,
}

/// The SVHN VAE, parameters `encoder.conv{1,2,3}`, `encoder.fc_mu`,
/// `encoder.fc_logvar`, `decoder.fc`, `decoder.conv{1,2,3}`.
///
/// ```
/// use bigbatch_models::{Autoencoder, SvhnVae, SvhnVaeConfig, VarStore};
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let vars = VarStore::new(0);
/// let vae = SvhnVae::new(&SvhnVaeConfig::default(), vars.var_builder(DType::F32, &Device::Cpu))?;
/// assert_eq!(vars.elem_count(), 457_443);
/// let x = Tensor::full(0.5f32, (2, 3, 32, 32), &Device::Cpu)?;
/// let loss = vae.loss(&x, true)?.to_scalar::<f32>()?;
/// assert!(loss.is_finite() && loss > 0.0);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SvhnVae {
    cfg: SvhnVaeConfig,
    encoder: [Conv2d; 3],
    fc_mu: Linear,
    fc_logvar: Linear,
    decoder_fc: Linear,
    decoder: [Conv2d; 3],
    noise: Mutex<ChaCha8Rng>,
}

impl SvhnVae {
    /// Builds the VAE with PyTorch's default initialisation.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the image side is not a positive multiple
    /// of 8; a candle error if `vb` holds tensors of the wrong shape.
    pub fn new(cfg: &SvhnVaeConfig, vb: VarBuilder<'_>) -> Result<Self> {
        if !cfg.image_size.is_multiple_of(8) || cfg.image_size == 0 {
            return Err(Error::InvalidConfig {
                what: "SvhnVae",
                reason: format!(
                    "image size {} is not a positive multiple of 8",
                    cfg.image_size
                ),
            });
        }
        let [c1, c2, c3] = cfg.channels;
        let flat = c3 * (cfg.image_size / 8).pow(2);
        let (enc, dec) = (vb.pp("encoder"), vb.pp("decoder"));
        let down = |cin, cout, name: &str| conv2d(cin, cout, 4, conv_cfg(2, 1), enc.pp(name));
        let up = |cin, cout, name: &str| conv2d(cin, cout, 3, conv_cfg(1, 1), dec.pp(name));
        Ok(Self {
            cfg: cfg.clone(),
            encoder: [
                down(cfg.in_channels, c1, "conv1")?,
                down(c1, c2, "conv2")?,
                down(c2, c3, "conv3")?,
            ],
            fc_mu: linear(flat, cfg.latent_dim, enc.pp("fc_mu"))?,
            fc_logvar: linear(flat, cfg.latent_dim, enc.pp("fc_logvar"))?,
            decoder_fc: linear(cfg.latent_dim, flat, dec.pp("fc"))?,
            decoder: [
                up(c3, c2, "conv1")?,
                up(c2, c1, "conv2")?,
                up(c1, cfg.in_channels, "conv3")?,
            ],
            noise: Mutex::new(ChaCha8Rng::seed_from_u64(cfg.noise_seed)),
        })
    }

    /// The posterior mean `μ` and log-variance `log σ²`, each `(N, latent)`.
    ///
    /// # Errors
    /// [`Error::InputShape`] if `xs` does not fit the configuration; a candle error.
    pub fn encode(&self, xs: &Tensor) -> Result<(Tensor, Tensor)> {
        let c = &self.cfg;
        if xs.dims() != [xs.dim(0)?, c.in_channels, c.image_size, c.image_size] {
            return Err(Error::InputShape {
                model: "SvhnVae",
                expected: format!("(batch, {}, {s}, {s})", c.in_channels, s = c.image_size),
                found: xs.dims().to_vec(),
            });
        }
        let mut h = xs.clone();
        for conv in &self.encoder {
            h = relu(&conv.forward(&h)?)?;
        }
        let h = h.flatten_from(1)?;
        Ok((self.fc_mu.forward(&h)?, self.fc_logvar.forward(&h)?))
    }

    /// Decoder logits `(N, C, H, W)` for latent codes `(N, latent)`.
    ///
    /// # Errors
    /// A candle error if `z` has the wrong width.
    pub fn decode(&self, z: &Tensor) -> Result<Tensor> {
        let side = self.cfg.image_size / 8;
        let mut h = self
            .decoder_fc
            .forward_with(z, Activation::Relu)?
            .reshape((z.dim(0)?, self.cfg.channels[2], side, side))?;
        for (i, conv) in self.decoder.iter().enumerate() {
            let (_, _, hh, ww) = h.dims4()?;
            h = conv.forward(&h.upsample_nearest2d(2 * hh, 2 * ww)?)?;
            if i + 1 < self.decoder.len() {
                h = relu(&h)?;
            }
        }
        Ok(h)
    }

    /// The negative ELBO with the given standard-normal noise `ε` `(N, latent)`.
    ///
    /// # Errors
    /// As [`SvhnVae::encode`].
    pub fn elbo_with_noise(&self, xs: &Tensor, eps: &Tensor) -> Result<Elbo> {
        let (mu, logvar) = self.encode(xs)?;
        let z = (&mu + (&logvar * 0.5)?.exp()?.mul(eps)?)?;
        let logits = self.decode(&z)?;
        let n = xs.dim(0)? as f64;
        // BCE with logits, stably: max(l, 0) − l x + log(1 + e^{−|l|}).
        let bce =
            ((logits.relu()? - (&logits * xs)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?)?;
        let reconstruction = (bce.sum_all()? / n)?;
        let kl = ((logvar.exp()? + mu.sqr()?)? - (logvar + 1.0)?)?;
        let kl = (kl.sum_all()? * (0.5 / n))?;
        Ok(Elbo {
            loss: (&reconstruction + &kl)?,
            reconstruction,
            kl,
            logits,
        })
    }

    /// The negative ELBO with fresh noise from the seeded stream.
    ///
    /// # Errors
    /// As [`SvhnVae::encode`].
    pub fn elbo(&self, xs: &Tensor) -> Result<Elbo> {
        let n = xs.dim(0)?;
        let d = self.cfg.latent_dim;
        let eps: Vec<f32> = {
            // A poisoned lock only means another thread panicked mid-draw; the
            // generator is still a valid generator.
            let mut rng = self.noise.lock().unwrap_or_else(|e| e.into_inner());
            (0..n * d)
                .map(|_| StandardNormal.sample(&mut *rng))
                .collect()
        };
        let eps = Tensor::from_vec(eps, (n, d), xs.device())?.to_dtype(xs.dtype())?;
        self.elbo_with_noise(xs, &eps)
    }
}

impl Autoencoder for SvhnVae {
    /// The negative ELBO (the VAE has no dropout or batch norm, so `train`
    /// changes nothing).
    fn loss(&self, xs: &Tensor, _train: bool) -> Result<Tensor> {
        Ok(self.elbo(xs)?.loss)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::Optimizer;

    use super::*;
    use crate::VarStore;

    fn tiny() -> SvhnVaeConfig {
        SvhnVaeConfig {
            image_size: 8,
            channels: [4, 8, 8],
            latent_dim: 4,
            ..SvhnVaeConfig::default()
        }
    }

    #[test]
    fn parameter_count_matches_the_formula() -> Result<()> {
        let vars = VarStore::new(0);
        SvhnVae::new(
            &SvhnVaeConfig::default(),
            vars.var_builder(DType::F32, &Device::Cpu),
        )?;
        // Encoder 4·4 convs: 3·32·16+32, 32·64·16+64, 64·128·16+128;
        // μ, log σ²: 2·(2048·32+32); decoder fc 32·2048+2048;
        // 3·3 convs: 128·64·9+64, 64·32·9+32, 32·3·9+3.
        let expected = (1_568 + 32_832 + 131_200) + 2 * 65_568 + 67_584 + (73_792 + 18_464 + 867);
        assert_eq!(vars.elem_count(), expected);
        assert_eq!(expected, 457_443);
        Ok(())
    }

    #[test]
    fn kl_and_reconstruction_follow_the_formulas() -> Result<()> {
        let vars = VarStore::new(1);
        let vae = SvhnVae::new(&tiny(), vars.var_builder(DType::F64, &Device::Cpu))?;
        let x = crate::testing::random(&[2, 3, 8, 8], 3)?
            .to_dtype(DType::F64)?
            .affine(0.5, 0.5)?;
        let eps = crate::testing::random(&[2, 4], 4)?.to_dtype(DType::F64)?;
        let out = vae.elbo_with_noise(&x, &eps)?;
        let (mu, logvar) = vae.encode(&x)?;
        let (mu, logvar) = (
            mu.flatten_all()?.to_vec1::<f64>()?,
            logvar.flatten_all()?.to_vec1::<f64>()?,
        );
        let kl: f64 = mu
            .iter()
            .zip(&logvar)
            .map(|(m, l)| -0.5 * (1.0 + l - m * m - l.exp()))
            .sum::<f64>()
            / 2.0;
        assert!((out.kl.to_scalar::<f64>()? - kl).abs() < 1e-10);
        let p = candle_nn::ops::sigmoid(&out.logits)?
            .flatten_all()?
            .to_vec1::<f64>()?;
        let xv = x.flatten_all()?.to_vec1::<f64>()?;
        let nll: f64 = p
            .iter()
            .zip(&xv)
            .map(|(p, x)| -(x * p.ln() + (1.0 - x) * (1.0 - p).ln()))
            .sum::<f64>()
            / 2.0;
        assert!((out.reconstruction.to_scalar::<f64>()? - nll).abs() < 1e-8);
        Ok(())
    }

    #[test]
    fn same_seeds_same_loss() -> Result<()> {
        let x = crate::testing::random(&[2, 3, 8, 8], 3)?.affine(0.5, 0.5)?;
        let loss = |seed| -> Result<f32> {
            let vars = VarStore::new(seed);
            let vae = SvhnVae::new(&tiny(), vars.var_builder(DType::F32, &Device::Cpu))?;
            Ok(vae.loss(&x, true)?.to_scalar::<f32>()?)
        };
        assert_eq!(loss(1)?, loss(1)?);
        assert_ne!(loss(1)?, loss(2)?);
        Ok(())
    }

    #[test]
    fn loss_falls_when_training() -> Result<()> {
        let vars = VarStore::new(2);
        let vae = SvhnVae::new(&tiny(), vars.var_builder(DType::F32, &Device::Cpu))?;
        // Bright flat colour images (each channel 0.7 or 0.95): structure a
        // tiny VAE can learn within a few dozen steps.
        let colours = crate::testing::random(&[16, 3, 1, 1], 3)?
            .ge(0.0)?
            .to_dtype(DType::F32)?;
        let x = colours.affine(0.25, 0.7)?.repeat((1, 1, 8, 8))?;
        let params = vars.vars().into_iter().map(|(_, v)| v).collect();
        let mut adam = candle_nn::AdamW::new(
            params,
            candle_nn::ParamsAdamW {
                lr: 5e-2,
                weight_decay: 0.0,
                ..Default::default()
            },
        )?;
        let mut losses = Vec::new();
        for _ in 0..30 {
            let loss = vae.loss(&x, true)?;
            losses.push(loss.to_scalar::<f32>()?);
            adam.backward_step(&loss)?;
        }
        let (first, last) = (losses[0], losses[losses.len() - 1]);
        assert!(last < 0.8 * first, "{losses:?}");
        Ok(())
    }
}
