//! Training-mode batch normalisation (Ioffe and Szegedy 2015) and ghost batch
//! normalisation (Hoffer et al. 2017) as one fused CPU kernel, forward and
//! backward.
//!
//! For `x` `(N, C, ...)` split along the batch into virtual batches of `v`
//! examples (the last one may be smaller), with `m` values per channel in a
//! virtual batch:
//!
//! ```text
//! μ = (1/m) Σ x,   σ² = (1/m) Σ (x − μ)²,   x̂ = (x − μ)/√(σ² + ε),   y = γ x̂ + β
//! ∂L/∂β = Σ dy,    ∂L/∂γ = Σ dy·x̂,          ∂L/∂x = γ/√(σ² + ε) · (dy − mean(dy) − x̂·mean(dy·x̂))
//! ```
//!
//! (sums over everything but the channel, means per virtual batch and channel).
//! With [`Activation::Relu`] the op returns `max(y, 0)` and its backward
//! starts from `dy·[y > 0]`, the mask recomputed from `x` with the forward's
//! own coefficients (bit for bit the forward's `y`), so a layer's ReLU needs
//! neither a pass nor a graph node of its own.
//! Composed from candle ops, the same layer costs a dozen passes over the
//! activations, several of them reductions over non-contiguous dimensions,
//! which candle runs element by element; here it is two passes forward and
//! two backward, statistics accumulated in `f64`. The statistics of the
//! forward pass are kept for the backward pass and returned for the running
//! averages. The composed reference is [`crate::norm::BatchNorm`]'s own path
//! on other devices and dtypes.

use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::contiguous;
use super::relu::Activation;
use crate::{Error, Result};

/// Output of [`batch_norm_train`].
#[derive(Clone, Debug)]
pub struct BatchNormOutput {
    /// `γ x̂ + β`, shaped as the input.
    pub output: Tensor,
    /// Mean of each virtual batch and channel, `(k, C)`, detached.
    pub mean: Tensor,
    /// Unbiased variance `σ² · m/(m − 1)` of each virtual batch and channel,
    /// `(k, C)`, detached (what running statistics average).
    pub unbiased_var: Tensor,
}

/// Normalises `x` `(N, C, ...)` with the statistics of each virtual batch of
/// `virtual_batch_size` examples (the whole batch when it is `N` or more) and
/// applies the per-channel scale `weight` and shift `bias` `(C)`, then `act`.
/// Differentiable in all three inputs (see the module docs).
///
/// ```
/// use bigbatch_models::ops::{Activation, batch_norm_train};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let x = Tensor::new(&[[1f32], [3.]], &Device::Cpu)?;
/// let one = Tensor::new(&[1f32], &Device::Cpu)?;
/// let zero = Tensor::new(&[0f32], &Device::Cpu)?;
/// let out = batch_norm_train(&x, &one, &zero, 0.0, 2, Activation::Identity)?;
/// assert_eq!(out.output.flatten_all()?.to_vec1::<f32>()?, [-1., 1.]);
/// assert_eq!(out.unbiased_var.flatten_all()?.to_vec1::<f32>()?, [2.]);
/// let out = batch_norm_train(&x, &one, &zero, 0.0, 2, Activation::Relu)?;
/// assert_eq!(out.output.flatten_all()?.to_vec1::<f32>()?, [0., 1.]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InputShape`] unless `x` is `(N, C, ...)` with `weight` and `bias`
/// of length `C` and every virtual batch holds at least two values per
/// channel; [`Error::InvalidConfig`] for a virtual batch size of 0, a negative
/// `eps`, or a dtype, device or layout the kernel does not take (`f32`/`f64`
/// on the CPU).
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    virtual_batch_size: usize,
    act: Activation,
) -> Result<BatchNormOutput> {
    let dims = x.dims();
    if virtual_batch_size == 0 || eps.is_nan() || eps < 0.0 {
        return Err(Error::InvalidConfig {
            what: "batch_norm_train",
            reason: format!("virtual batch size {virtual_batch_size}, eps {eps}"),
        });
    }
    if !x.device().is_cpu() || !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(Error::InvalidConfig {
            what: "batch_norm_train",
            reason: format!("needs f32 or f64 on the CPU, got {:?}", x.dtype()),
        });
    }
    let shape_error = || {
        Error::InputShape {
        model: "batch_norm_train",
        expected: "(N, C, ...) with weight and bias (C) and two or more values per channel in each virtual batch".into(),
        found: dims.to_vec(),
    }
    };
    if dims.len() < 2 || dims[1] == 0 || weight.dims() != [dims[1]] || bias.dims() != [dims[1]] {
        return Err(shape_error());
    }
    let g = Geometry {
        n: dims[0],
        c: dims[1],
        s: dims[2..].iter().product(),
        v: virtual_batch_size.min(dims[0]).max(1),
    };
    if g.n == 0 || (0..g.chunks()).any(|j| g.count(j) < 2) {
        return Err(shape_error());
    }
    let stats = Arc::new(Mutex::new(None));
    let op = BatchNormOp {
        g,
        eps,
        relu: act == Activation::Relu,
        stats: Arc::clone(&stats),
    };
    let dtype = x.dtype();
    let output = x.contiguous()?.apply_op3(
        &weight.to_dtype(dtype)?.contiguous()?,
        &bias.to_dtype(dtype)?.contiguous()?,
        op,
    )?;
    let Some(Stats { mean, var, .. }) =
        stats.lock().unwrap_or_else(PoisonError::into_inner).clone()
    else {
        return Err(Error::InvalidConfig {
            what: "batch_norm_train",
            reason: "the kernel did not record statistics".into(),
        });
    };
    let unbiased: Vec<f64> = var
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let m = g.count(i / g.c) as f64;
            v * m / (m - 1.0)
        })
        .collect();
    let k = g.chunks();
    let dev = x.device();
    Ok(BatchNormOutput {
        output,
        mean: Tensor::from_vec(mean, (k, g.c), dev)?.to_dtype(dtype)?,
        unbiased_var: Tensor::from_vec(unbiased, (k, g.c), dev)?.to_dtype(dtype)?,
    })
}

/// `N` examples of `C` channels with `S` values each, in virtual batches of `v`.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    c: usize,
    s: usize,
    v: usize,
}

impl Geometry {
    /// Number of virtual batches.
    fn chunks(&self) -> usize {
        self.n.div_ceil(self.v)
    }
    /// Values per channel in virtual batch `j`.
    fn count(&self, j: usize) -> usize {
        (self.v.min(self.n - j * self.v)) * self.s
    }
    /// Examples per parallel task (the whole batch when small or single-threaded).
    fn images_per_task(&self) -> usize {
        super::items_per_task(self.n, self.n * self.c * self.s, PARALLEL_ELEMENTS)
    }
}

/// Passes over fewer elements stay on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 17;

/// Per (virtual batch, channel): mean and biased variance, `f64`, `(k·C)`,
/// and the forward's `y = x·a + b`.
#[derive(Clone, Debug)]
struct Stats {
    mean: Vec<f64>,
    var: Vec<f64>,
    inv_std: Vec<f64>,
    /// `[a, b]` with `a = γ/σ`, `b = β − μ·a`.
    affine: Vec<[f64; 2]>,
}

/// Per-image, per-channel reductions `f(image, channel) -> [a, b]`, summed
/// over the images of each virtual batch: `(k·C)` pairs. The sums run in
/// image order whatever the thread count, so results do not depend on it.
fn channel_sums<F>(g: &Geometry, f: F) -> Vec<[f64; 2]>
where
    F: Fn(usize, usize) -> [f64; 2] + Sync,
{
    let range = |images: std::ops::Range<usize>| -> Vec<[f64; 2]> {
        images
            .flat_map(|i| (0..g.c).map(move |c| (i, c)))
            .map(|(i, c)| {
                super::simd(
                    #[inline(always)]
                    || f(i, c),
                )
            })
            .collect()
    };
    let per = g.images_per_task();
    let parts: Vec<[f64; 2]> = if per >= g.n {
        range(0..g.n)
    } else {
        (0..g.n.div_ceil(per))
            .into_par_iter()
            .map(|t| range(t * per..((t + 1) * per).min(g.n)))
            .collect::<Vec<_>>()
            .concat()
    };
    let mut sums = vec![[0.0; 2]; g.chunks() * g.c];
    for (i, part) in parts.chunks_exact(g.c).enumerate() {
        let row = &mut sums[(i / g.v) * g.c..][..g.c];
        for (acc, p) in row.iter_mut().zip(part) {
            acc[0] += p[0];
            acc[1] += p[1];
        }
    }
    sums
}

/// Accumulator lanes of the `f64` sums: independent chains the compiler
/// vectorises, in a fixed order (so sums do not depend on the thread count).
const LANES: usize = 8;

/// `[Σ (x − k), Σ (x − k)²]` in `f64`.
#[inline(always)]
fn shifted_moments<T: WithDType>(xs: &[T], k: f64) -> [f64; 2] {
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let blocks = xs.chunks_exact(LANES);
    let rest = blocks.remainder();
    for block in blocks {
        for l in 0..LANES {
            let d = block[l].to_f64() - k;
            s1[l] += d;
            s2[l] += d * d;
        }
    }
    for (l, v) in rest.iter().enumerate() {
        let d = v.to_f64() - k;
        s1[l] += d;
        s2[l] += d * d;
    }
    [s1.iter().sum(), s2.iter().sum()]
}

/// `[Σ dz, Σ dz·(x − μ)]` in `f64`, `dz = dz(dy, x)` (`dy` itself, or
/// masked by the fused ReLU).
#[inline(always)]
fn gradient_sums<T: WithDType>(dy: &[T], x: &[T], mu: f64, dz: impl Fn(T, T) -> T) -> [f64; 2] {
    let (mut s1, mut s2) = ([0f64; LANES], [0f64; LANES]);
    let (db, xb) = (dy.chunks_exact(LANES), x.chunks_exact(LANES));
    let (dr, xr) = (db.remainder(), xb.remainder());
    for (d, x) in db.zip(xb) {
        for l in 0..LANES {
            let d = dz(d[l], x[l]).to_f64();
            s1[l] += d;
            s2[l] += d * (x[l].to_f64() - mu);
        }
    }
    for (l, (&d, &x)) in dr.iter().zip(xr).enumerate() {
        let d = dz(d, x).to_f64();
        s1[l] += d;
        s2[l] += d * (x.to_f64() - mu);
    }
    [s1.iter().sum(), s2.iter().sum()]
}

/// Calls `f(image, c, x values, out values)` per channel, in parallel over
/// images; `f` writes every `out` value (`out` starts uninitialised, so the
/// buffer is written once instead of zeroed first).
fn per_channel_map<T, F>(g: &Geometry, x: &[T], out: &mut [MaybeUninit<T>], f: F)
where
    T: WithDType,
    F: Fn(usize, usize, &[T], &mut [MaybeUninit<T>]) + Sync,
{
    let image = g.c * g.s;
    let run = |first: usize, xs: &[T], os: &mut [MaybeUninit<T>]| {
        for (i, (img, o)) in xs
            .chunks_exact(image)
            .zip(os.chunks_exact_mut(image))
            .enumerate()
        {
            for (c, (vals, dst)) in img
                .chunks_exact(g.s)
                .zip(o.chunks_exact_mut(g.s))
                .enumerate()
            {
                super::simd(
                    #[inline(always)]
                    || f(first + i, c, vals, dst),
                );
            }
        }
    };
    let per = g.images_per_task();
    if per >= g.n {
        run(0, x, out);
    } else {
        x.par_chunks(per * image)
            .zip(out.par_chunks_mut(per * image))
            .enumerate()
            .for_each(|(t, (xs, os))| run(t * per, xs, os));
    }
}

fn forward<T: WithDType>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    g: &Geometry,
    eps: f64,
    relu: bool,
) -> (Vec<T>, Stats) {
    let values = |i: usize, c: usize| &x[(i * g.c + c) * g.s..][..g.s];
    // One pass for both moments, shifted by a value of the same virtual batch
    // and channel (its first) so that Σ(x − K)² − (Σ(x − K))²/m does not
    // cancel the way Σx² − (Σx)²/m would when |μ| ≫ σ.
    let shift = |j: usize, c: usize| x.get((j * g.v * g.c + c) * g.s).map_or(0.0, |v| v.to_f64());
    let sums = channel_sums(
        g,
        #[inline(always)]
        |i, c| shifted_moments(values(i, c), shift(i / g.v, c)),
    );
    let (mut mean, mut var) = (
        Vec::with_capacity(sums.len()),
        Vec::with_capacity(sums.len()),
    );
    for (j, [s1, s2]) in sums.iter().enumerate() {
        let m = g.count(j / g.c) as f64;
        let d = s1 / m;
        mean.push(shift(j / g.c, j % g.c) + d);
        // Rounding can leave a tiny negative for a constant channel; NaN stays.
        let v = s2 / m - d * d;
        var.push(if v < 0.0 { 0.0 } else { v });
    }
    let inv_std: Vec<f64> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    // y = x·a + b with a = γ/σ, b = β − μ·a: one multiply-add per element.
    let affine: Vec<[f64; 2]> = (0..mean.len())
        .map(|j| {
            let c = j % g.c;
            let a = gamma[c].to_f64() * inv_std[j];
            [a, beta[c].to_f64() - mean[j] * a]
        })
        .collect();
    let mut y = Vec::with_capacity(x.len());
    per_channel_map(
        g,
        x,
        &mut y.spare_capacity_mut()[..x.len()],
        #[inline(always)]
        |i, c, vals, dst| {
            let (a, b) = coefficients::<T>(&affine, (i / g.v) * g.c + c);
            if relu {
                for (d, v) in dst.iter_mut().zip(vals) {
                    d.write(super::relu::positive(*v * a + b));
                }
            } else {
                for (d, v) in dst.iter_mut().zip(vals) {
                    d.write(*v * a + b);
                }
            }
        },
    );
    // SAFETY: `per_channel_map` visits every (image, channel) plane of `x`,
    // so the closure wrote all `x.len()` values.
    unsafe { y.set_len(x.len()) };
    let stats = Stats {
        mean,
        var,
        inv_std,
        affine,
    };
    (y, stats)
}

/// The forward's `(a, b)` of `(virtual batch, channel)` index `j`, in `T`.
#[inline(always)]
fn coefficients<T: WithDType>(affine: &[[f64; 2]], j: usize) -> (T, T) {
    let [a, b] = affine[j];
    (T::from_f64(a), T::from_f64(b))
}

/// `dy`, or 0 where the forward's ReLU cut `y = x·a + b` (PyTorch's
/// `threshold_backward`: 0 at `y ≤ 0`, NaN letting `dy` through).
#[inline(always)]
fn through_relu<T: WithDType>(dy: T, x: T, (a, b): (T, T)) -> T {
    if x * a + b <= T::zero() {
        T::zero()
    } else {
        dy
    }
}

/// `[dx (N·C·S), dγ (C), dβ (C)]` packed in one buffer; with `relu`, from
/// `dz = dy·[y > 0]` in place of `dy`.
fn backward<T: WithDType>(
    x: &[T],
    gamma: &[T],
    dy: &[T],
    g: &Geometry,
    st: &Stats,
    relu: bool,
) -> Vec<T> {
    // Σ dz and Σ dz·x̂ per (virtual batch, channel); x̂ = (x − μ)·inv_std.
    let sums = channel_sums(
        g,
        #[inline(always)]
        |i, c| {
            let j = (i / g.v) * g.c + c;
            let at = (i * g.c + c) * g.s;
            let (dy, x) = (&dy[at..][..g.s], &x[at..][..g.s]);
            let [sdy, sdx] = if relu {
                let ab = coefficients::<T>(&st.affine, j);
                gradient_sums(dy, x, st.mean[j], |d, x| through_relu(d, x, ab))
            } else {
                gradient_sums(dy, x, st.mean[j], |d, _| d)
            };
            [sdy, sdx * st.inv_std[j]]
        },
    );
    let mut dparams = vec![T::zero(); 2 * g.c];
    for (j, s) in sums.iter().enumerate() {
        dparams[j % g.c] += T::from_f64(s[1]);
        dparams[g.c + j % g.c] += T::from_f64(s[0]);
    }
    let mut out = Vec::with_capacity(x.len() + 2 * g.c);
    // dx = γ·inv_std·(dy − mean(dy) − x̂·mean(dy·x̂)) = a·dy + b·x + e.
    let coef: Vec<[f64; 3]> = sums
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let m = g.count(j / g.c) as f64;
            let (mu, is) = (st.mean[j], st.inv_std[j]);
            let scale = gamma[j % g.c].to_f64() * is;
            let (mdy, mdyx) = (s[0] / m, s[1] / m);
            // x̂·mdyx = (x − μ)·is·mdyx
            let b = -scale * is * mdyx;
            [scale, b, -scale * mdy - b * mu]
        })
        .collect();
    per_channel_map(
        g,
        dy,
        &mut out.spare_capacity_mut()[..x.len()],
        #[inline(always)]
        |i, c, dys, dst| {
            let j = (i / g.v) * g.c + c;
            let [a, b, e] = coef[j];
            let xs = &x[i * g.c * g.s + c * g.s..][..g.s];
            let (a, b, e) = (T::from_f64(a), T::from_f64(b), T::from_f64(e));
            if relu {
                let ab = coefficients::<T>(&st.affine, j);
                for ((d, &dv), &xv) in dst.iter_mut().zip(dys).zip(xs) {
                    d.write(through_relu(dv, xv, ab) * a + xv * b + e);
                }
            } else {
                for ((d, dv), xv) in dst.iter_mut().zip(dys).zip(xs) {
                    d.write(*dv * a + *xv * b + e);
                }
            }
        },
    );
    // SAFETY: as in `forward`, every value of `dx` was written.
    unsafe { out.set_len(x.len()) };
    out.extend_from_slice(&dparams);
    out
}

/// The fused forward over `(x, γ, β)`; records its statistics for the
/// backward pass and the caller.
struct BatchNormOp {
    g: Geometry,
    eps: f64,
    /// A ReLU fused after the affine map.
    relu: bool,
    stats: Arc<Mutex<Option<Stats>>>,
}

impl BatchNormOp {
    fn stats(&self) -> candle_core::Result<Stats> {
        match &*self.stats.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(s) => Ok(s.clone()),
            None => candle_core::bail!("batch norm backward before forward"),
        }
    }
}

impl CustomOp3 for BatchNormOp {
    fn name(&self) -> &'static str {
        "bigbatch-batch-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (y, stats) = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                let (x, w, b) = (
                    contiguous("batch norm", x, l1)?,
                    contiguous("batch norm", w, l2)?,
                    contiguous("batch norm", b, l3)?,
                );
                let (y, st) = forward(x, w, b, &self.g, self.eps, self.relu);
                (CpuStorage::F32(y), st)
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => {
                let (x, w, b) = (
                    contiguous("batch norm", x, l1)?,
                    contiguous("batch norm", w, l2)?,
                    contiguous("batch norm", b, l3)?,
                );
                let (y, st) = forward(x, w, b, &self.g, self.eps, self.relu);
                (CpuStorage::F64(y), st)
            }
            _ => candle_core::bail!("batch norm: only f32 and f64 of one dtype"),
        };
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = Some(stats);
        Ok((y, l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let op = BatchNormBackward {
            g: self.g,
            relu: self.relu,
            stats: self.stats()?,
        };
        let packed = x.apply_op3_no_bwd(weight, &grad.contiguous()?, &op)?;
        let len = x.elem_count();
        let c = self.g.c;
        let dx = packed.narrow(0, 0, len)?.reshape(x.shape())?;
        let dw = packed.narrow(0, len, c)?;
        let db = packed.narrow(0, len + c, c)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// `[∂L/∂x, ∂L/∂γ, ∂L/∂β]` packed, from `(x, γ, ∂L/∂y)` and the forward statistics.
struct BatchNormBackward {
    g: Geometry,
    relu: bool,
    stats: Stats,
}

impl CustomOp3 for BatchNormBackward {
    fn name(&self) -> &'static str {
        "bigbatch-batch-norm-backward"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let len = l1.shape().elem_count() + 2 * self.g.c;
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(d)) => {
                let (x, w, d) = (
                    contiguous("batch norm", x, l1)?,
                    contiguous("batch norm", w, l2)?,
                    contiguous("batch norm", d, l3)?,
                );
                CpuStorage::F32(backward(x, w, d, &self.g, &self.stats, self.relu))
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(d)) => {
                let (x, w, d) = (
                    contiguous("batch norm", x, l1)?,
                    contiguous("batch norm", w, l2)?,
                    contiguous("batch norm", d, l3)?,
                );
                CpuStorage::F64(backward(x, w, d, &self.g, &self.stats, self.relu))
            }
            _ => candle_core::bail!("batch norm backward: only f32 and f64 of one dtype"),
        };
        Ok((out, Shape::from(len)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    /// μ/σ ≈ 2·10⁶: even in `f64`, `(Σx² − (Σx)²/m)` loses `σ²` to 4·10⁻⁴
    /// here; the shifted one-pass sums must match an exact two-pass reference.
    #[test]
    fn statistics_stay_accurate_far_from_zero() -> Result<()> {
        let (n, c, s) = (6, 3, 5);
        let v: Vec<f32> = (0..n * c * s)
            .map(|i| 1e8 + ((i * 7919) % 23) as f32 * 8.0)
            .collect();
        let x = Tensor::from_vec(v.clone(), (n, c, s), &Device::Cpu)?;
        let (one, zero) = (
            Tensor::ones(c, DType::F32, &Device::Cpu)?,
            Tensor::zeros(c, DType::F32, &Device::Cpu)?,
        );
        for vbs in [n, 4] {
            let out = batch_norm_train(&x, &one, &zero, 1e-5, vbs, Activation::Identity)?;
            let mean = out.mean.to_vec2::<f32>()?;
            let var = out.unbiased_var.to_vec2::<f32>()?;
            for (j, first) in (0..n).step_by(vbs).enumerate() {
                let images = first..(first + vbs).min(n);
                for ch in 0..c {
                    let vals: Vec<f64> = images
                        .clone()
                        .flat_map(|i| v[(i * c + ch) * s..][..s].iter().map(|&x| f64::from(x)))
                        .collect();
                    let m = vals.len() as f64;
                    let mu = vals.iter().sum::<f64>() / m;
                    let var_ref = vals.iter().map(|x| (x - mu) * (x - mu)).sum::<f64>() / (m - 1.0);
                    let ulp = mu * f64::from(f32::EPSILON);
                    assert!((f64::from(mean[j][ch]) - mu).abs() <= ulp, "mean {j} {ch}");
                    let rel = (f64::from(var[j][ch]) - var_ref).abs() / var_ref;
                    assert!(rel < 1e-5, "var {j} {ch}: {} vs {var_ref}", var[j][ch]);
                }
            }
        }
        Ok(())
    }
}
