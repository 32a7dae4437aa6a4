//! Batch normalisation (Ioffe and Szegedy, "Batch normalization: accelerating
//! deep network training by reducing internal covariate shift", ICML 2015) and
//! ghost batch normalisation (Hoffer, Hubara and Soudry, "Train longer,
//! generalize better: closing the generalization gap in large batch training of
//! neural networks", NeurIPS 2017).
//!
//! In training, each channel is normalised with the mean and biased variance
//! of its batch, `y = γ (x − μ_B)/√(σ²_B + ε) + β`, and the running statistics
//! move towards the batch's (PyTorch's convention, momentum `m = 0.1`):
//! `r_μ ← (1 − m) r_μ + m μ_B`, `r_σ² ← (1 − m) r_σ² + m σ²_B · n/(n − 1)`
//! (the running variance is the unbiased estimate). In evaluation the running
//! statistics replace the batch's.
//!
//! Ghost batch norm splits a large batch into virtual batches of
//! `virtual_batch_size` examples and normalises each with its own statistics,
//! so a model trained with batch 4096 sees the normalisation noise of batch
//! 128. The running statistics are updated once per step with the *mean over
//! virtual batches* of their means and unbiased variances (Hoffer et al.'s
//! reference updates them once per virtual batch; with momentum 0.1 and `k`
//! virtual batches the difference is second order in `m`). When the batch is
//! not a multiple of the virtual size, the last virtual batch is smaller.
//!
//! In training on the CPU (`f32`, `f64`) the layer runs the fused kernel
//! [`crate::ops::batch_norm_train`]; elsewhere, and as the reference it is
//! tested against, it is composed from candle ops
//! ([`BatchNorm::forward_composed`]), whose backward pass is candle's autodiff.

use candle_core::{D, DType, Tensor, Var};
use candle_nn::{Init, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::ops::{Activation, batch_norm_train, relu};
use crate::{Error, Result};

/// Which batch statistics a batch-norm layer normalises with in training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Norm {
    /// Ordinary batch norm: statistics over the whole batch.
    #[default]
    Batch,
    /// Ghost batch norm: statistics over virtual batches of this many examples.
    Ghost {
        /// Examples per virtual batch (at least 1; 2 or more to train).
        virtual_batch_size: usize,
    },
}

/// Configuration of a [`BatchNorm`] layer.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchNormConfig {
    /// Added to the variance before the square root (PyTorch: 1e-5).
    pub eps: f64,
    /// Weight of the current batch in the running statistics (PyTorch: 0.1).
    pub momentum: f64,
    /// Ordinary or ghost batch norm.
    pub norm: Norm,
    /// Initialise the scale γ to 0 instead of 1 (Goyal et al. 2017's
    /// zero-γ trick for the last norm of a residual block).
    pub zero_init_scale: bool,
}

impl Default for BatchNormConfig {
    /// PyTorch's defaults: ε = 1e-5, momentum 0.1, ordinary batch norm, γ = 1.
    fn default() -> Self {
        Self {
            eps: 1e-5,
            momentum: 0.1,
            norm: Norm::Batch,
            zero_init_scale: false,
        }
    }
}

impl BatchNormConfig {
    /// The default configuration with the given [`Norm`].
    pub fn with_norm(norm: Norm) -> Self {
        Self {
            norm,
            ..Self::default()
        }
    }
}

/// Batch norm over dimension 1 of `(N, C)` or `(N, C, H, W)` inputs, with
/// PyTorch's parameter and buffer names: `weight`, `bias`, `running_mean`,
/// `running_var`, `num_batches_tracked`.
///
/// ```
/// use bigbatch_models::VarStore;
/// use bigbatch_models::norm::{BatchNorm, BatchNormConfig};
/// use candle_core::{DType, Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let vars = VarStore::new(0);
/// let bn = BatchNorm::new(3, BatchNormConfig::default(), vars.var_builder(DType::F32, &Device::Cpu).pp("bn"))?;
/// let x = Tensor::arange(0f32, 24., &Device::Cpu)?.reshape((4, 3, 2))?;
/// let y = bn.forward(&x, true)?;
/// // Each channel now has mean 0 over the batch and spatial positions.
/// let means = y.mean_keepdim(2)?.mean_keepdim(0)?.flatten_all()?.to_vec1::<f32>()?;
/// assert!(means.iter().all(|m| m.abs() < 1e-5));
/// assert_eq!(vars.buffers().len(), 3);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct BatchNorm {
    cfg: BatchNormConfig,
    channels: usize,
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    num_batches_tracked: Var,
}

impl BatchNorm {
    /// Creates the layer's parameters (γ = 1 or 0, β = 0) and buffers
    /// (running mean 0, running variance 1, counter 0 as `i64`) through `vb`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a virtual batch size of 0 or a negative
    /// `eps`/`momentum`; a candle error if `vb` holds tensors of other shapes.
    pub fn new(channels: usize, cfg: BatchNormConfig, vb: VarBuilder<'_>) -> Result<Self> {
        if let Norm::Ghost {
            virtual_batch_size: 0,
        } = cfg.norm
        {
            return Err(invalid("virtual batch size must be at least 1"));
        }
        if !(cfg.eps >= 0.0 && (0.0..=1.0).contains(&cfg.momentum)) {
            return Err(invalid("eps must be ≥ 0 and momentum in [0, 1]"));
        }
        let scale = if cfg.zero_init_scale { 0.0 } else { 1.0 };
        let weight = vb.get_with_hints(channels, "weight", Init::Const(scale))?;
        let bias = vb.get_with_hints(channels, "bias", Init::Const(0.0))?;
        let running_mean =
            Var::from_tensor(&vb.get_with_hints(channels, "running_mean", Init::Const(0.0))?)?;
        let running_var =
            Var::from_tensor(&vb.get_with_hints(channels, "running_var", Init::Const(1.0))?)?;
        let num_batches_tracked = Var::from_tensor(&vb.get_with_hints_dtype(
            (),
            "num_batches_tracked",
            Init::Const(0.0),
            DType::I64,
        )?)?;
        Ok(Self {
            cfg,
            channels,
            weight,
            bias,
            running_mean,
            running_var,
            num_batches_tracked,
        })
    }

    /// The layer's configuration.
    pub fn config(&self) -> &BatchNormConfig {
        &self.cfg
    }

    /// The running mean (a copy-free view of the buffer).
    pub fn running_mean(&self) -> Tensor {
        self.running_mean.as_tensor().detach()
    }

    /// The running (unbiased) variance.
    pub fn running_var(&self) -> Tensor {
        self.running_var.as_tensor().detach()
    }

    /// Normalises `xs` of shape `(N, C, ...)`: with batch (or virtual-batch)
    /// statistics and a running-statistics update when `train`, with the
    /// running statistics otherwise.
    ///
    /// # Errors
    /// [`Error::InputShape`] if dimension 1 is not `C` or, in training, a
    /// (virtual) batch has a single value per channel; a candle error.
    pub fn forward(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_with(xs, train, Activation::Identity)
    }

    /// [`BatchNorm::forward`] followed by `act`: in training on the CPU one
    /// fused graph node (the usual `relu(bn(x))` costs no pass of its own).
    ///
    /// # Errors
    /// As [`BatchNorm::forward`].
    pub fn forward_with(&self, xs: &Tensor, train: bool, act: Activation) -> Result<Tensor> {
        let fused = train
            && xs.device().is_cpu()
            && matches!(xs.dtype(), DType::F32 | DType::F64)
            && self.weight.dtype() == xs.dtype();
        if !fused {
            let ys = self.forward_composed(xs, train)?;
            return match act {
                Activation::Identity => Ok(ys),
                Activation::Relu => relu(&ys),
            };
        }
        self.check_input(xs)?;
        let vbs = match self.cfg.norm {
            Norm::Batch => xs.dim(0)?,
            Norm::Ghost { virtual_batch_size } => virtual_batch_size,
        };
        let out = batch_norm_train(xs, &self.weight, &self.bias, self.cfg.eps, vbs.max(1), act)
            .map_err(|e| match e {
                Error::InputShape { .. } => self.too_few(xs),
                other => other,
            })?;
        self.update_running(&out.mean, &out.unbiased_var)?;
        Ok(out.output)
    }

    fn check_input(&self, xs: &Tensor) -> Result<()> {
        let dims = xs.dims();
        if dims.len() < 2 || dims[1] != self.channels {
            return Err(Error::InputShape {
                model: "BatchNorm",
                expected: format!("(batch, {}, ...)", self.channels),
                found: dims.to_vec(),
            });
        }
        Ok(())
    }

    fn too_few(&self, xs: &Tensor) -> Error {
        Error::InputShape {
            model: "BatchNorm",
            expected: "more than one value per channel in each (virtual) batch".into(),
            found: xs.dims().to_vec(),
        }
    }

    /// [`BatchNorm::forward`] composed from candle ops (any device and dtype,
    /// autodiff backward): the reference the fused kernel is tested against.
    ///
    /// # Errors
    /// As [`BatchNorm::forward`].
    pub fn forward_composed(&self, xs: &Tensor, train: bool) -> Result<Tensor> {
        let dims = xs.dims();
        if dims.len() < 2 || dims[1] != self.channels {
            return Err(Error::InputShape {
                model: "BatchNorm",
                expected: format!("(batch, {}, ...)", self.channels),
                found: dims.to_vec(),
            });
        }
        let mut bshape = vec![1; dims.len()];
        bshape[1] = self.channels;
        let xhat = if train {
            self.normalise_batch(xs)?
        } else {
            let mean = self.running_mean().reshape(bshape.as_slice())?;
            let var = self.running_var().reshape(bshape.as_slice())?;
            xs.broadcast_sub(&mean)?
                .broadcast_div(&(var + self.cfg.eps)?.sqrt()?)?
        };
        let w = self.weight.reshape(bshape.as_slice())?;
        let b = self.bias.reshape(bshape.as_slice())?;
        Ok(xhat.broadcast_mul(&w)?.broadcast_add(&b)?)
    }

    /// `(x − μ)/√(σ² + ε)` per virtual batch, updating the running statistics.
    fn normalise_batch(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims();
        let (n, c) = (dims[0], dims[1]);
        let spatial: usize = dims[2..].iter().product();
        let vbs = match self.cfg.norm {
            Norm::Batch => n,
            Norm::Ghost { virtual_batch_size } => virtual_batch_size.min(n),
        };
        if vbs * spatial < 2 {
            return Err(Error::InputShape {
                model: "BatchNorm",
                expected: "more than one value per channel in each (virtual) batch".into(),
                found: dims.to_vec(),
            });
        }
        let x3 = xs.reshape((n, c, spatial))?;
        // Each virtual batch as (k, m, C, S): statistics over dims 1 and 3.
        let (xhat, means, vars) = if n.is_multiple_of(vbs) {
            let k = n / vbs;
            let (xhat, mean, var) = self.normalise(&x3.reshape((k, vbs, c, spatial))?)?;
            (xhat, mean.reshape((k, c))?, var.reshape((k, c))?)
        } else {
            // The last virtual batch is smaller: normalise chunk by chunk.
            let mut parts = Vec::new();
            let (mut means, mut vars) = (Vec::new(), Vec::new());
            let mut start = 0;
            while start < n {
                let len = vbs.min(n - start);
                let chunk = x3.narrow(0, start, len)?.unsqueeze(0)?;
                let (xhat, mean, var) = self.normalise(&chunk)?;
                parts.push(xhat);
                means.push(mean.reshape((1, c))?);
                vars.push(var.reshape((1, c))?);
                start += len;
            }
            (
                Tensor::cat(&parts, 1)?,
                Tensor::cat(&means, 0)?,
                Tensor::cat(&vars, 0)?,
            )
        };
        self.update_running(&means, &vars)?;
        Ok(xhat.reshape(dims)?)
    }

    /// Normalises `(k, m, C, S)` per `(k, C)`; returns `x̂`, the means and the
    /// unbiased variances, each `(k, 1, C, 1)`.
    fn normalise(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (_, m, _, s) = x.dims4()?;
        if m * s < 2 {
            return Err(Error::InputShape {
                model: "BatchNorm",
                expected: "more than one value per channel in each (virtual) batch".into(),
                found: vec![m, x.dim(2)?, s],
            });
        }
        let mean = x.mean_keepdim((1, 3))?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim((1, 3))?;
        let xhat = centred.broadcast_div(&(&var + self.cfg.eps)?.sqrt()?)?;
        let count = (m * s) as f64;
        let unbiased = (var.detach() * (count / (count - 1.0)))?;
        Ok((xhat, mean.detach(), unbiased))
    }

    /// Moves the running statistics towards the mean over virtual batches of
    /// `means` and `vars`, both `(k, C)`, and counts the step.
    fn update_running(&self, means: &Tensor, vars: &Tensor) -> Result<()> {
        let m = self.cfg.momentum;
        let dtype = self.running_mean.dtype();
        let mean = means.mean(0)?.to_dtype(dtype)?;
        let var = vars.mean(0)?.to_dtype(dtype)?;
        let new_mean = ((self.running_mean.as_tensor().detach() * (1.0 - m))? + (mean * m)?)?;
        let new_var = ((self.running_var.as_tensor().detach() * (1.0 - m))? + (var * m)?)?;
        self.running_mean.set(&new_mean)?;
        self.running_var.set(&new_var)?;
        let count = self.num_batches_tracked.as_tensor().to_scalar::<i64>()?;
        let next = Tensor::new(count + 1, self.num_batches_tracked.device())?;
        self.num_batches_tracked.set(&next)?;
        Ok(())
    }
}

fn invalid(reason: &str) -> Error {
    Error::InvalidConfig {
        what: "BatchNorm",
        reason: reason.to_owned(),
    }
}

/// Mean over all dimensions after the first two: global average pooling
/// `(N, C, H, W) → (N, C)`.
///
/// # Errors
/// A candle error if `xs` has fewer than three dimensions.
pub fn global_avg_pool(xs: &Tensor) -> Result<Tensor> {
    Ok(xs.flatten_from(2)?.mean(D::Minus1)?)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::VarStore;

    fn bn(channels: usize, norm: Norm, store: &VarStore, name: &str) -> Result<BatchNorm> {
        BatchNorm::new(
            channels,
            BatchNormConfig::with_norm(norm),
            store.var_builder(DType::F64, &Device::Cpu).pp(name),
        )
    }

    fn input(shape: &[usize], seed: u64) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|i| ((i as u64 * 2_654_435_761 + seed * 97) % 1000) as f64 / 100.0 - 3.0)
            .collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?)
    }

    #[test]
    fn training_output_is_normalised_and_running_stats_follow_pytorch() -> Result<()> {
        let store = VarStore::new(0);
        let layer = bn(2, Norm::Batch, &store, "bn")?;
        // Channel 0 holds 1, 2, 3, 4; channel 1 holds 10, 10, 10, 30.
        let x = Tensor::new(
            &[[1f64, 10.], [2., 10.], [3., 10.], [4., 30.]],
            &Device::Cpu,
        )?;
        let y = layer.forward(&x, true)?;
        // Channel 0: mean 2.5, biased var 1.25.
        let expected0: Vec<f64> = [1., 2., 3., 4.]
            .iter()
            .map(|v| (v - 2.5) / (1.25f64 + 1e-5).sqrt())
            .collect();
        let got0 = y.narrow(1, 0, 1)?.flatten_all()?.to_vec1::<f64>()?;
        for (g, e) in got0.iter().zip(&expected0) {
            assert!((g - e).abs() < 1e-12, "{g} vs {e}");
        }
        // Running mean 0.1·(2.5, 15); running var 0.9 + 0.1·unbiased (5/3, 100).
        let rm = layer.running_mean().to_vec1::<f64>()?;
        let rv = layer.running_var().to_vec1::<f64>()?;
        assert!((rm[0] - 0.25).abs() < 1e-12 && (rm[1] - 1.5).abs() < 1e-12);
        assert!((rv[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-12);
        assert!((rv[1] - (0.9 + 0.1 * 100.0)).abs() < 1e-12);
        let steps = store.get("bn.num_batches_tracked").expect("counter");
        assert_eq!(steps.as_tensor().to_scalar::<i64>()?, 1);
        Ok(())
    }

    #[test]
    fn eval_uses_running_statistics_and_leaves_them_alone() -> Result<()> {
        let store = VarStore::new(0);
        let layer = bn(3, Norm::Batch, &store, "bn")?;
        let x = input(&[4, 3, 2, 2], 1)?;
        for _ in 0..3 {
            layer.forward(&x, true)?;
        }
        let (rm, rv) = (layer.running_mean(), layer.running_var());
        let y = layer.forward(&x, false)?;
        let expected = x
            .broadcast_sub(&rm.reshape((1, 3, 1, 1))?)?
            .broadcast_div(&(rv.reshape((1, 3, 1, 1))? + 1e-5)?.sqrt()?)?;
        assert!(max_abs_diff(&y, &expected)? < 1e-12);
        assert_eq!(layer.running_mean().to_vec1::<f64>()?, rm.to_vec1::<f64>()?);
        // A single example is fine in evaluation.
        layer.forward(&x.narrow(0, 0, 1)?, false)?;
        Ok(())
    }

    #[test]
    fn ghost_with_one_virtual_batch_equals_batch_norm() -> Result<()> {
        let x = input(&[6, 3, 2, 3], 2)?;
        let (sa, sb) = (VarStore::new(0), VarStore::new(0));
        let a = bn(3, Norm::Batch, &sa, "bn")?;
        let b = bn(
            3,
            Norm::Ghost {
                virtual_batch_size: 6,
            },
            &sb,
            "bn",
        )?;
        let c = bn(
            3,
            Norm::Ghost {
                virtual_batch_size: 64,
            },
            &sb,
            "other",
        )?;
        let ya = a.forward(&x, true)?;
        assert!(max_abs_diff(&ya, &b.forward(&x, true)?)? < 1e-12);
        assert!(max_abs_diff(&ya, &c.forward(&x, true)?)? < 1e-12);
        assert!(max_abs_diff(&a.running_var(), &b.running_var())? < 1e-12);
        Ok(())
    }

    #[test]
    fn ghost_with_k_virtual_batches_equals_k_batch_norms() -> Result<()> {
        // Even split (reshape path) and uneven split (chunk path).
        for (n, vbs) in [(6, 2), (7, 3)] {
            let x = input(&[n, 2, 3], 3)?;
            let store = VarStore::new(0);
            let ghost = bn(
                2,
                Norm::Ghost {
                    virtual_batch_size: vbs,
                },
                &store,
                "g",
            )?;
            let y = ghost.forward(&x, true)?;
            let (mut parts, mut means, mut vars) = (Vec::new(), Vec::new(), Vec::new());
            let mut start = 0;
            while start < n {
                let len = vbs.min(n - start);
                let s = VarStore::new(0);
                let plain = bn(2, Norm::Batch, &s, "b")?;
                parts.push(plain.forward(&x.narrow(0, start, len)?, true)?);
                means.push(plain.running_mean());
                vars.push(plain.running_var());
                start += len;
            }
            assert!(max_abs_diff(&y, &Tensor::cat(&parts, 0)?)? < 1e-12);
            // Running stats: the mean over virtual batches of each one's update.
            let k = means.len() as f64;
            let rm = (Tensor::stack(&means, 0)?.sum(0)? / k)?;
            let rv = (Tensor::stack(&vars, 0)?.sum(0)? / k)?;
            assert!(max_abs_diff(&ghost.running_mean(), &rm)? < 1e-12);
            assert!(max_abs_diff(&ghost.running_var(), &rv)? < 1e-12);
        }
        Ok(())
    }

    #[test]
    fn fused_kernel_equals_the_composed_layer() -> Result<()> {
        let cases: [(&[usize], Norm); 7] = [
            (&[1, 3, 4, 5], Norm::Batch),
            (&[4, 3], Norm::Batch),
            (&[2, 3, 5, 5], Norm::Batch),
            (
                &[5, 2, 3, 1],
                Norm::Ghost {
                    virtual_batch_size: 2,
                },
            ),
            (
                &[6, 4, 2, 3],
                Norm::Ghost {
                    virtual_batch_size: 3,
                },
            ),
            (
                &[3, 1, 7],
                Norm::Ghost {
                    virtual_batch_size: 8,
                },
            ),
            (&[33, 5, 9, 9], Norm::Batch),
        ];
        for ((i, (shape, norm)), act) in cases
            .into_iter()
            .enumerate()
            .flat_map(|c| [(c, Activation::Identity), (c, Activation::Relu)])
        {
            for dtype in [DType::F64, DType::F32] {
                let tol = if dtype == DType::F64 { 1e-10 } else { 2e-4 };
                let x = input(shape, i as u64)?.to_dtype(dtype)?;
                let r = input(shape, 40 + i as u64)?.to_dtype(dtype)?;
                let mut results = Vec::new();
                for fused in [true, false] {
                    let store = VarStore::new(0);
                    let layer = BatchNorm::new(
                        shape[1],
                        BatchNormConfig::with_norm(norm),
                        store.var_builder(dtype, &Device::Cpu).pp("bn"),
                    )?;
                    // Non-trivial γ and β.
                    let c = shape[1];
                    let gamma = (Tensor::arange(1.0, 1.0 + c as f64, &Device::Cpu)? * 0.5)?;
                    let vars = store.vars();
                    vars[1].1.set(&gamma.to_dtype(dtype)?)?;
                    vars[0].1.set(&(gamma * 0.1)?.to_dtype(dtype)?)?;
                    let xv = Var::from_tensor(&x)?;
                    let y = if fused {
                        layer.forward_with(xv.as_tensor(), true, act)?
                    } else {
                        // candle's own ReLU: the two differ only at exactly 0.
                        let y = layer.forward_composed(xv.as_tensor(), true)?;
                        match act {
                            Activation::Identity => y,
                            Activation::Relu => y.relu()?,
                        }
                    };
                    let grads = (&y * &r)?.sum_all()?.backward()?;
                    let mut out = vec![y.detach(), grads.get(xv.as_tensor()).expect("dx").clone()];
                    for (_, v) in &vars {
                        out.push(grads.get(v.as_tensor()).expect("dparam").clone());
                    }
                    out.push(layer.running_mean());
                    out.push(layer.running_var());
                    results.push(out);
                }
                for (k, (a, b)) in results[0].iter().zip(&results[1]).enumerate() {
                    let d = max_abs_diff(&a.to_dtype(DType::F64)?, &b.to_dtype(DType::F64)?)?;
                    let scale = b
                        .abs()?
                        .flatten_all()?
                        .max(0)?
                        .to_dtype(DType::F64)?
                        .to_scalar::<f64>()?;
                    assert!(
                        d <= tol * (1.0 + scale),
                        "{shape:?} {norm:?} {act:?} {dtype:?} output {k}: {d}"
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn gradient_matches_finite_differences() -> Result<()> {
        for act in [Activation::Identity, Activation::Relu] {
            gradient_matches_finite_differences_with(act)?;
        }
        Ok(())
    }

    fn gradient_matches_finite_differences_with(act: Activation) -> Result<()> {
        let store = VarStore::new(0);
        let layer = bn(
            2,
            Norm::Ghost {
                virtual_batch_size: 3,
            },
            &store,
            "bn",
        )?;
        let x = input(&[6, 2, 2, 1], 4)?;
        // A fixed random-looking projection makes the loss depend on every output.
        let w = input(&[6, 2, 2, 1], 9)?;
        let loss = |x: &Tensor| -> Result<Tensor> {
            Ok((layer.forward_with(x, true, act)? * &w)?.sum_all()?)
        };
        let xv = Var::from_tensor(&x)?;
        let grads = loss(xv.as_tensor())?.backward()?;
        let g = grads
            .get(xv.as_tensor())
            .expect("grad")
            .flatten_all()?
            .to_vec1::<f64>()?;
        let flat = x.flatten_all()?.to_vec1::<f64>()?;
        let h = 1e-6;
        for i in 0..flat.len() {
            let mut plus = flat.clone();
            plus[i] += h;
            let mut minus = flat.clone();
            minus[i] -= h;
            let f = |v: Vec<f64>| -> Result<f64> {
                Ok(loss(&Tensor::from_vec(v, x.dims(), &Device::Cpu)?)?.to_scalar::<f64>()?)
            };
            let fd = (f(plus)? - f(minus)?) / (2.0 * h);
            assert!(
                (fd - g[i]).abs() < 1e-5 * (1.0 + fd.abs()),
                "{act:?} {i}: {fd} vs {}",
                g[i]
            );
        }
        Ok(())
    }

    #[test]
    fn rejects_bad_configs_and_inputs() -> Result<()> {
        let store = VarStore::new(0);
        let err = bn(
            2,
            Norm::Ghost {
                virtual_batch_size: 0,
            },
            &store,
            "a",
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { .. }));
        let layer = bn(
            2,
            Norm::Ghost {
                virtual_batch_size: 1,
            },
            &store,
            "b",
        )?;
        let x = input(&[4, 2], 0)?;
        assert!(matches!(
            layer.forward(&x, true),
            Err(Error::InputShape { .. })
        ));
        assert!(matches!(
            layer.forward(&input(&[4, 3], 0)?, false),
            Err(Error::InputShape { .. })
        ));
        // Buffers are not trainable.
        assert_eq!(store.vars().len(), 2);
        assert_eq!(store.buffers().len(), 3);
        Ok(())
    }
}
