//! 2-D max and average pooling with any kernel, stride and padding, forward
//! and backward, with PyTorch's semantics (`torch.nn.functional.max_pool2d`,
//! `avg_pool2d` with `count_include_pad=True`, `ceil_mode=False`).
//!
//! candle 0.11's own pooling ops refuse to differentiate unless the kernel size
//! equals the stride and take no padding, and its max-pool backward splits the
//! gradient among tied maxima. Keskar et al.'s C1/C3 (3×3 stride-2 pooling)
//! and ResNet-50's stem (3×3, stride 2, padding 1; He et al. 2016) need more,
//! so the CPU kernels here are [`CustomOp1`]s:
//!
//! - output side `⌊(H + 2p − k)/s⌋ + 1`;
//! - max pooling pads with −∞ and gives the whole gradient to the *first*
//!   maximum of each window in row-major scan order (PyTorch's rule: a value
//!   replaces the running maximum if it is strictly larger or NaN);
//! - average pooling pads with zeros and always divides by `k²`.
//!
//! On other devices the same functions fall back to [`max_pool2d_composed`] and
//! [`avg_pool2d_composed`], built from candle ops (gather the `k²` shifted
//! windows, then `argmax` + `gather` or `mean`), which autodiff differentiates
//! with the same tie rule. They are also the reference the kernels are tested
//! against.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor, WithDType};
use rayon::prelude::*;

use super::contiguous;
use crate::{Error, Result};

/// Kernel size, stride and padding of a square pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dConfig {
    /// Side of the window.
    pub kernel_size: usize,
    /// Step between windows.
    pub stride: usize,
    /// Implicit padding on each side (at most half the kernel, as in PyTorch).
    pub padding: usize,
}

impl Pool2dConfig {
    /// A `k×k` window moving by `stride` with `padding` on each side.
    pub fn new(kernel_size: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel_size,
            stride,
            padding,
        }
    }

    /// Output side for an input side `n`, or an error if the window does not fit.
    fn out_size(&self, n: usize) -> Result<usize> {
        let Self {
            kernel_size: k,
            stride: s,
            padding: p,
        } = *self;
        if k == 0 || s == 0 || 2 * p > k {
            return Err(Error::InvalidConfig {
                what: "pool2d",
                reason: format!("kernel {k}, stride {s}, padding {p}: need k, s ≥ 1 and p ≤ k/2"),
            });
        }
        if n + 2 * p < k {
            return Err(Error::InvalidConfig {
                what: "pool2d",
                reason: format!("input side {n} with padding {p} is smaller than kernel {k}"),
            });
        }
        Ok((n + 2 * p - k) / s + 1)
    }
}

/// Max pooling of `(N, C, H, W)` with PyTorch's semantics (see the module docs).
///
/// ```
/// use bigbatch_models::ops::{max_pool2d, Pool2dConfig};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let x = Tensor::arange(0f32, 16., &Device::Cpu)?.reshape((1, 1, 4, 4))?;
/// let y = max_pool2d(&x, Pool2dConfig::new(3, 2, 1))?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [5., 7., 13., 15.]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidConfig`] if the window does not fit, a candle error for a
/// non-4-D or non-float input.
pub fn max_pool2d(xs: &Tensor, cfg: Pool2dConfig) -> Result<Tensor> {
    check(xs, cfg)?;
    if xs.device().is_cpu() {
        let op = MaxPool2d {
            cfg,
            argmax: Mutex::new(None),
        };
        Ok(xs.contiguous()?.apply_op1(op)?)
    } else {
        max_pool2d_composed(xs, cfg)
    }
}

/// Average pooling of `(N, C, H, W)`, zero padding counted in the divisor
/// (PyTorch's `count_include_pad=True`).
///
/// ```
/// use bigbatch_models::ops::{avg_pool2d, Pool2dConfig};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let x = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let y = avg_pool2d(&x, Pool2dConfig::new(2, 1, 1))?;
/// // Corners see one input and three zeros of padding.
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [0.25, 0.5, 0.25, 0.5, 1., 0.5, 0.25, 0.5, 0.25]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`max_pool2d`].
pub fn avg_pool2d(xs: &Tensor, cfg: Pool2dConfig) -> Result<Tensor> {
    check(xs, cfg)?;
    if xs.device().is_cpu() {
        Ok(xs.contiguous()?.apply_op1(AvgPool2d(cfg))?)
    } else {
        avg_pool2d_composed(xs, cfg)
    }
}

fn check(xs: &Tensor, cfg: Pool2dConfig) -> Result<(usize, usize)> {
    let (_, _, h, w) = xs.dims4()?;
    Ok((cfg.out_size(h)?, cfg.out_size(w)?))
}

/// The `k²` shifted windows of `xs` padded with `pad`: `(N, C, H', W', k²)`.
fn windows(xs: &Tensor, cfg: Pool2dConfig, pad: f64) -> Result<Tensor> {
    let (n, c, h, w) = xs.dims4()?;
    let (oh, ow) = check(xs, cfg)?;
    let p = cfg.padding;
    let xp = if p == 0 {
        xs.clone()
    } else {
        let (dt, dev) = (xs.dtype(), xs.device());
        let side = Tensor::full(pad, (n, c, h, p), dev)?.to_dtype(dt)?;
        let xs = Tensor::cat(&[&side, xs, &side], 3)?;
        let top = Tensor::full(pad, (n, c, p, w + 2 * p), dev)?.to_dtype(dt)?;
        Tensor::cat(&[&top, &xs, &top], 2)?
    };
    let index = |start: usize, len: usize| -> Result<Tensor> {
        let idx: Vec<u32> = (0..len).map(|i| (start + i * cfg.stride) as u32).collect();
        Ok(Tensor::from_vec(idx, len, xs.device())?)
    };
    let mut shifted = Vec::with_capacity(cfg.kernel_size * cfg.kernel_size);
    for a in 0..cfg.kernel_size {
        let rows = xp.index_select(&index(a, oh)?, 2)?;
        for b in 0..cfg.kernel_size {
            shifted.push(rows.index_select(&index(b, ow)?, 3)?);
        }
    }
    Ok(Tensor::stack(&shifted, 4)?)
}

/// [`max_pool2d`] composed from candle ops (any device, autodiff backward,
/// same first-maximum tie rule; NaNs are not propagated).
///
/// # Errors
/// As [`max_pool2d`].
pub fn max_pool2d_composed(xs: &Tensor, cfg: Pool2dConfig) -> Result<Tensor> {
    let win = windows(xs, cfg, f64::NEG_INFINITY)?;
    let first_max = win.argmax_keepdim(4)?;
    Ok(win.gather(&first_max, 4)?.squeeze(4)?)
}

/// [`avg_pool2d`] composed from candle ops (any device, autodiff backward).
///
/// # Errors
/// As [`max_pool2d`].
pub fn avg_pool2d_composed(xs: &Tensor, cfg: Pool2dConfig) -> Result<Tensor> {
    Ok(windows(xs, cfg, 0.0)?.mean(4)?)
}

/// Geometry shared by the kernels: `(planes, H, W, H', W')`.
fn geometry(shape: &Shape, cfg: Pool2dConfig) -> candle_core::Result<[usize; 5]> {
    let (n, c, h, w) = shape.dims4()?;
    let out = |s| {
        cfg.out_size(s)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))
    };
    if u32::try_from(h * w).is_err() {
        candle_core::bail!("pool2d: a {h}×{w} plane is too large to index with u32");
    }
    Ok([n * c, h, w, out(h)?, out(w)?])
}

/// The clipped window `[start, end)` of output index `o` along a side of `n`,
/// and its unclipped start.
fn span(o: usize, n: usize, cfg: Pool2dConfig) -> (usize, usize) {
    let start = (o * cfg.stride) as isize - cfg.padding as isize;
    let end = (start + cfg.kernel_size as isize).min(n as isize);
    (start.max(0) as usize, end.max(0) as usize)
}

fn is_nan<T: WithDType>(v: T) -> bool {
    v.partial_cmp(&v).is_none()
}

/// For each output, the flat in-plane index of the first maximum of its
/// window (PyTorch's scan) and the maximum itself.
fn max_pool_plane<T: WithDType>(
    plane: &[T],
    [_, h, w, oh, ow]: [usize; 5],
    cfg: Pool2dConfig,
    mut visit: impl FnMut(usize, usize, T),
) {
    if cfg.padding == 0 && cfg.kernel_size == 2 {
        // Whole 2×2 windows (LeNet, VGG): unrolled, same scan and tie rule.
        let s = cfg.stride;
        for oy in 0..oh {
            let (r0, r1) = (oy * s * w, (oy * s + 1) * w);
            for ox in 0..ow {
                let x0 = ox * s;
                let mut best = r0 + x0;
                let mut max = plane[best];
                for i in [r0 + x0 + 1, r1 + x0, r1 + x0 + 1] {
                    let v = plane[i];
                    if v > max || is_nan(v) {
                        max = v;
                        best = i;
                    }
                }
                visit(oy * ow + ox, best, max);
            }
        }
        return;
    }
    for oy in 0..oh {
        let (y0, y1) = span(oy, h, cfg);
        for ox in 0..ow {
            let (x0, x1) = span(ox, w, cfg);
            let mut best = y0 * w + x0;
            let mut max = T::from_f64(f64::NEG_INFINITY);
            for y in y0..y1 {
                for x in x0..x1 {
                    let v = plane[y * w + x];
                    if v > max || is_nan(v) {
                        max = v;
                        best = y * w + x;
                    }
                }
            }
            visit(oy * ow + ox, best, max);
        }
    }
}

/// Planes per parallel task: all of them on one thread or for a small pass
/// (a rayon hand-off costs a few microseconds), else an even split.
fn planes_per_task([planes, h, w, _, _]: [usize; 5]) -> usize {
    super::items_per_task(planes, planes * h * w, PARALLEL_ELEMENTS)
}

/// Passes over fewer input elements stay on one thread.
const PARALLEL_ELEMENTS: usize = 1 << 16;

/// The maxima and, for the backward pass, the flat in-plane index of each.
fn max_fwd<T: WithDType>(x: &[T], g: [usize; 5], cfg: Pool2dConfig) -> (Vec<T>, Vec<u32>) {
    let [planes, h, w, oh, ow] = g;
    let mut out = vec![T::from_f64(0.0); planes * oh * ow];
    let mut argmax = vec![0u32; planes * oh * ow];
    let per = planes_per_task(g);
    x.par_chunks(per * h * w)
        .zip(out.par_chunks_mut(per * oh * ow))
        .zip(argmax.par_chunks_mut(per * oh * ow))
        .for_each(|((x, out), argmax)| {
            let planes = x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow));
            for ((plane, dst), at) in planes.zip(argmax.chunks_exact_mut(oh * ow)) {
                if cfg == Pool2dConfig::new(2, 2, 0) {
                    super::simd(
                        #[inline(always)]
                        || max_pool_2x2(plane, w, dst, at),
                    );
                    continue;
                }
                max_pool_plane(plane, g, cfg, |o, i, v| {
                    dst[o] = v;
                    // In range: `geometry` checks that a plane's index fits.
                    at[o] = i as u32;
                });
            }
        });
    (out, argmax)
}

/// Non-overlapping 2×2 windows (LeNet-5, VGG): [`max_pool_plane`]'s scan and
/// tie rule, written as selects over whole output rows so that it vectorises.
#[inline(always)]
fn max_pool_2x2<T: WithDType>(plane: &[T], w: usize, dst: &mut [T], at: &mut [u32]) {
    let ow = w / 2;
    if ow == 0 {
        return;
    }
    let rows = plane.chunks_exact(2 * w);
    let outs = dst.chunks_exact_mut(ow).zip(at.chunks_exact_mut(ow));
    for (oy, (pair, (dst, at))) in rows.zip(outs).enumerate() {
        let (r0, r1) = pair.split_at(w);
        let windows = r0.chunks_exact(2).zip(r1.chunks_exact(2));
        for (ox, ((top, bottom), (d, i))) in
            windows.zip(dst.iter_mut().zip(at.iter_mut())).enumerate()
        {
            // Offsets 0, 1, w, w + 1 within the window, in scan order.
            let (mut max, mut k) = (top[0], 0);
            for (v, kv) in [(top[1], 1), (bottom[0], w), (bottom[1], w + 1)] {
                if v > max || is_nan(v) {
                    max = v;
                    k = kv;
                }
            }
            *d = max;
            // In range: `geometry` checks that a plane's index fits in u32.
            *i = (2 * oy * w + 2 * ox + k) as u32;
        }
    }
}

/// `∂L/∂x`: each output's gradient added at its window's recorded maximum.
fn max_bwd<T: WithDType>(grad: &[T], argmax: &[u32], g: [usize; 5]) -> Vec<T> {
    let [planes, h, w, oh, ow] = g;
    let mut dx = vec![T::from_f64(0.0); planes * h * w];
    let per = planes_per_task(g);
    dx.par_chunks_mut(per * h * w)
        .zip(grad.par_chunks(per * oh * ow))
        .zip(argmax.par_chunks(per * oh * ow))
        .for_each(|((dx, grad), argmax)| {
            let planes = dx.chunks_exact_mut(h * w).zip(grad.chunks_exact(oh * ow));
            for ((dst, gy), at) in planes.zip(argmax.chunks_exact(oh * ow)) {
                for (&gv, &i) in gy.iter().zip(at) {
                    dst[i as usize] += gv;
                }
            }
        });
    dx
}

fn avg_fwd<T: WithDType>(x: &[T], g: [usize; 5], cfg: Pool2dConfig) -> Vec<T> {
    let [planes, h, w, oh, ow] = g;
    let scale = T::from_f64(1.0 / (cfg.kernel_size * cfg.kernel_size) as f64);
    let mut out = vec![T::from_f64(0.0); planes * oh * ow];
    for (plane, dst) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
        for oy in 0..oh {
            let (y0, y1) = span(oy, h, cfg);
            for ox in 0..ow {
                let (x0, x1) = span(ox, w, cfg);
                let mut sum = T::from_f64(0.0);
                for y in y0..y1 {
                    for v in &plane[y * w + x0..y * w + x1] {
                        sum += *v;
                    }
                }
                dst[oy * ow + ox] = sum * scale;
            }
        }
    }
    out
}

fn avg_bwd<T: WithDType>(grad: &[T], g: [usize; 5], cfg: Pool2dConfig) -> Vec<T> {
    let [planes, h, w, oh, ow] = g;
    let scale = T::from_f64(1.0 / (cfg.kernel_size * cfg.kernel_size) as f64);
    let mut dx = vec![T::from_f64(0.0); planes * h * w];
    for (gy, dst) in grad.chunks_exact(oh * ow).zip(dx.chunks_exact_mut(h * w)) {
        for oy in 0..oh {
            let (y0, y1) = span(oy, h, cfg);
            for ox in 0..ow {
                let (x0, x1) = span(ox, w, cfg);
                let share = gy[oy * ow + ox] * scale;
                for y in y0..y1 {
                    for d in &mut dst[y * w + x0..y * w + x1] {
                        *d += share;
                    }
                }
            }
        }
    }
    dx
}

/// Applies a kernel generic over the float type to a CPU storage.
macro_rules! dispatch {
    ($storage:expr, |$x:ident| $body:expr) => {
        match $storage {
            CpuStorage::F32($x) => CpuStorage::F32($body),
            CpuStorage::F64($x) => CpuStorage::F64($body),
            CpuStorage::F16($x) => CpuStorage::F16($body),
            CpuStorage::BF16($x) => CpuStorage::BF16($body),
            _ => candle_core::bail!("pool2d: only float dtypes are supported"),
        }
    };
}

/// Max-pooling forward kernel. It keeps the index of each window's maximum
/// (as PyTorch's `max_pool2d_with_indices` does) for its backward,
/// [`MaxPool2dBackward`], which then scatters the gradient without rescanning
/// the input.
struct MaxPool2d {
    cfg: Pool2dConfig,
    argmax: Mutex<Option<Arc<Vec<u32>>>>,
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "bigbatch-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = geometry(l.shape(), self.cfg)?;
        let (n, c, _, _) = l.shape().dims4()?;
        let argmax;
        let out = dispatch!(s, |x| {
            let (out, at) = max_fwd(contiguous("pool2d", x, l)?, g, self.cfg);
            argmax = at;
            out
        });
        *self.argmax.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(argmax));
        Ok((out, Shape::from((n, c, g[3], g[4]))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let argmax = self
            .argmax
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(argmax) = argmax else {
            candle_core::bail!("max-pool2d backward before its forward pass");
        };
        let op = MaxPool2dBackward {
            cfg: self.cfg,
            input: arg.shape().clone(),
            argmax,
        };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// `∂L/∂x` of max pooling from `∂L/∂y` and the forward pass's maxima.
struct MaxPool2dBackward {
    cfg: Pool2dConfig,
    input: Shape,
    argmax: Arc<Vec<u32>>,
}

impl CustomOp1 for MaxPool2dBackward {
    fn name(&self) -> &'static str {
        "bigbatch-max-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = geometry(&self.input, self.cfg)?;
        if l.shape().elem_count() != self.argmax.len() {
            candle_core::bail!("max-pool2d backward: gradient {:?}", l.shape());
        }
        let dx = dispatch!(s, |d| max_bwd(contiguous("pool2d", d, l)?, &self.argmax, g));
        Ok((dx, self.input.clone()))
    }
}

/// Average-pooling forward kernel; its backward is [`AvgPool2dBackward`].
struct AvgPool2d(Pool2dConfig);

impl CustomOp1 for AvgPool2d {
    fn name(&self) -> &'static str {
        "bigbatch-avg-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = geometry(l.shape(), self.0)?;
        let (n, c, _, _) = l.shape().dims4()?;
        let out = dispatch!(s, |x| avg_fwd(contiguous("pool2d", x, l)?, g, self.0));
        Ok((out, Shape::from((n, c, g[3], g[4]))))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let op = AvgPool2dBackward {
            cfg: self.0,
            input: arg.shape().clone(),
        };
        Ok(Some(grad_res.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// `∂L/∂x` of average pooling from `∂L/∂y` (linear, so the input is not needed).
struct AvgPool2dBackward {
    cfg: Pool2dConfig,
    input: Shape,
}

impl CustomOp1 for AvgPool2dBackward {
    fn name(&self) -> &'static str {
        "bigbatch-avg-pool2d-backward"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = geometry(&self.input, self.cfg)?;
        let dx = dispatch!(s, |d| avg_bwd(contiguous("pool2d", d, l)?, g, self.cfg));
        Ok((dx, self.input.clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    type PoolFn = fn(&Tensor, Pool2dConfig) -> Result<Tensor>;
    const POOLS: [(&str, PoolFn, PoolFn); 2] = [
        ("max", max_pool2d, max_pool2d_composed),
        ("avg", avg_pool2d, avg_pool2d_composed),
    ];

    /// Random shapes and configs: batch 1, odd sides, padding, stride > kernel.
    fn cases() -> Vec<([usize; 4], Pool2dConfig)> {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let mut cases = vec![
            ([1, 1, 5, 5], Pool2dConfig::new(3, 2, 1)),
            ([2, 3, 7, 6], Pool2dConfig::new(2, 2, 0)),
            ([1, 2, 4, 5], Pool2dConfig::new(1, 3, 0)),
        ];
        for _ in 0..12 {
            let k = rng.random_range(1..=4);
            let s = rng.random_range(1..=3);
            let p = rng.random_range(0..=k / 2);
            let h = rng.random_range(k.max(1)..=8);
            let w = rng.random_range(k.max(1)..=8);
            let n = rng.random_range(1..=2);
            let c = rng.random_range(1..=3);
            cases.push(([n, c, h, w], Pool2dConfig::new(k, s, p)));
        }
        // Large enough for the planes to split over threads (when there are
        // several), into uneven parts.
        cases.push(([5, 7, 48, 40], Pool2dConfig::new(2, 2, 0)));
        cases.push(([3, 11, 45, 45], Pool2dConfig::new(3, 2, 1)));
        cases
    }

    fn random(shape: [usize; 4], seed: u64, ties: bool) -> Result<Tensor> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|_| {
                if ties {
                    f64::from(rng.random_range(0..3u8))
                } else {
                    rng.random_range(-2.0..2.0)
                }
            })
            .collect();
        Ok(Tensor::from_vec(v, shape.to_vec(), &Device::Cpu)?)
    }

    fn grad_of(f: PoolFn, x: &Tensor, cfg: Pool2dConfig, w: &Tensor) -> Result<(Tensor, Tensor)> {
        let xv = Var::from_tensor(x)?;
        let y = f(xv.as_tensor(), cfg)?;
        let grads = (&y * w)?.sum_all()?.backward()?;
        Ok((y.detach(), grads.get(xv.as_tensor()).expect("grad").clone()))
    }

    fn assert_close(a: &Tensor, b: &Tensor, tol: f64, what: &str) -> Result<()> {
        assert_eq!(a.dims(), b.dims(), "{what}");
        let d = (a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
        assert!(d <= tol, "{what}: max |diff| {d}");
        Ok(())
    }

    #[test]
    fn kernels_agree_with_the_composed_reference_including_ties() -> Result<()> {
        for (i, (shape, cfg)) in cases().into_iter().enumerate() {
            for ties in [false, true] {
                let x = random(shape, i as u64, ties)?;
                for (name, fast, slow) in POOLS {
                    let oh = cfg.out_size(shape[2])?;
                    let ow = cfg.out_size(shape[3])?;
                    let w = random([shape[0], shape[1], oh, ow], 100 + i as u64, false)?;
                    let (ya, ga) = grad_of(fast, &x, cfg, &w)?;
                    let (yb, gb) = grad_of(slow, &x, cfg, &w)?;
                    let what = format!("{name} {shape:?} {cfg:?} ties={ties}");
                    assert_close(&ya, &yb, 1e-12, &what)?;
                    assert_close(&ga, &gb, 1e-12, &what)?;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let h = 1e-6;
        for (i, (shape, cfg)) in cases().into_iter().take(6).enumerate() {
            // Distinct values, so max pooling is differentiable at x.
            let x = random(shape, 50 + i as u64, false)?;
            for (name, fast, _) in POOLS {
                let oh = cfg.out_size(shape[2])?;
                let ow = cfg.out_size(shape[3])?;
                let w = random([shape[0], shape[1], oh, ow], 7, false)?;
                let (_, g) = grad_of(fast, &x, cfg, &w)?;
                let g = g.flatten_all()?.to_vec1::<f64>()?;
                let flat = x.flatten_all()?.to_vec1::<f64>()?;
                let loss = |v: Vec<f64>| -> Result<f64> {
                    let x = Tensor::from_vec(v, shape.to_vec(), &Device::Cpu)?;
                    Ok((fast(&x, cfg)? * &w)?.sum_all()?.to_scalar::<f64>()?)
                };
                for j in 0..flat.len() {
                    let (mut plus, mut minus) = (flat.clone(), flat.clone());
                    plus[j] += h;
                    minus[j] -= h;
                    let fd = (loss(plus)? - loss(minus)?) / (2.0 * h);
                    assert!(
                        (fd - g[j]).abs() < 1e-6,
                        "{name} {shape:?} {cfg:?} [{j}]: {fd} vs {}",
                        g[j]
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn ties_send_the_whole_gradient_to_the_first_maximum() -> Result<()> {
        let x = Tensor::ones((1, 1, 2, 2), DType::F32, &Device::Cpu)?;
        let xv = Var::from_tensor(&x)?;
        let y = max_pool2d(xv.as_tensor(), Pool2dConfig::new(2, 2, 0))?;
        let g = y.sum_all()?.backward()?;
        let g = g
            .get(xv.as_tensor())
            .expect("grad")
            .flatten_all()?
            .to_vec1::<f32>()?;
        assert_eq!(g, [1., 0., 0., 0.]);
        Ok(())
    }

    #[test]
    fn max_pool_propagates_nan_like_pytorch() -> Result<()> {
        let x = Tensor::new(&[[[[1f32, f32::NAN], [3., 2.]]]], &Device::Cpu)?;
        let y = max_pool2d(&x, Pool2dConfig::new(2, 2, 0))?;
        assert!(y.flatten_all()?.to_vec1::<f32>()?[0].is_nan());
        Ok(())
    }

    #[test]
    fn rejects_windows_that_do_not_fit() -> Result<()> {
        let x = Tensor::zeros((1, 1, 2, 2), DType::F32, &Device::Cpu)?;
        for cfg in [
            Pool2dConfig::new(3, 1, 0),
            Pool2dConfig::new(2, 1, 2),
            Pool2dConfig::new(2, 0, 0),
        ] {
            assert!(matches!(
                max_pool2d(&x, cfg),
                Err(Error::InvalidConfig { .. })
            ));
            assert!(matches!(
                avg_pool2d(&x, cfg),
                Err(Error::InvalidConfig { .. })
            ));
        }
        Ok(())
    }
}
