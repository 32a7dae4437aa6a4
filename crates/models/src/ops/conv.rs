//! 2-D convolution (cross-correlation, as `torch.nn.functional.conv2d`) with
//! any stride, zero padding and groups, forward and backward, on the CPU.
//!
//! candle 0.11's CPU convolution differentiates through a direct-loop
//! transposed convolution, which dominates a training step. The kernels here
//! are im2col + `gemm` (Chellapilla, Puri and Simard, "High performance
//! convolutional neural networks for document processing", 2006), for each
//! image `n` and group `g`:
//!
//! ```text
//! forward   Y[n,g]  = W[g] · col(X[n,g])                 (O/G × P) = (O/G × K)(K × P)
//! input     dX[n,g] = col⁻¹(W[g]ᵀ · dY[n,g])             col2im of (K × O/G)(O/G × P)
//! weight    dW[g]  += dY[n,g] · col(X[n,g])ᵀ              (O/G × K) = (O/G × P)(P × K)
//! ```
//!
//! with `K = C/G·k²` and `P = H'·W'` output positions, `H' = ⌊(H + 2p − k)/s⌋ + 1`.
//! A 1×1 convolution with stride 1 and no padding skips im2col (`col(X) = X`).
//! Work is split over the batch across candle's thread count
//! (`RAYON_NUM_THREADS`, [`candle_core::utils::get_num_threads`]) with
//! single-threaded `gemm` calls inside; problems too small to pay for a thread
//! hand-off run on the calling thread, so two threads never lose to one.
//!
//! Only `f32` and `f64` on the CPU take these kernels; other dtypes and devices
//! fall back to [`conv2d_composed`] (candle's own `conv2d`, cuDNN on CUDA
//! builds), which is also the reference the kernels are tested against.

use std::mem::MaybeUninit;

use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor, WithDType};
use gemm::Parallelism;
use rayon::prelude::*;

use super::matmul::{Mat, matmul};
use super::{bias_operand, contiguous, on_cpu_kernels};
use crate::{Error, Result};

/// Stride, zero padding and groups of a square-kernel 2-D convolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvConfig {
    /// Step between output positions (≥ 1).
    pub stride: usize,
    /// Implicit zeros on each side (any amount).
    pub padding: usize,
    /// Channel groups (≥ 1, dividing the input and output channels).
    pub groups: usize,
}

impl Default for ConvConfig {
    /// Stride 1, no padding, one group.
    fn default() -> Self {
        Self {
            stride: 1,
            padding: 0,
            groups: 1,
        }
    }
}

impl ConvConfig {
    /// A one-group convolution with the given stride and padding.
    pub fn new(stride: usize, padding: usize) -> Self {
        Self {
            stride,
            padding,
            groups: 1,
        }
    }
}

/// Shapes of one convolution, derived once from the input and weight dims.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    oh: usize,
    ow: usize,
    cfg: ConvConfig,
}

impl Geometry {
    /// Checks `x` `(N, C, H, W)` against `w` `(O, C/G, k, k)`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] saying which dimension does not fit.
    fn new(x: &[usize], weight: &[usize], cfg: ConvConfig) -> Result<Self> {
        let invalid = |reason| Error::InvalidConfig {
            what: "conv2d",
            reason,
        };
        let (&[n, c, h, w], &[o, cg, k, k2]) = (x, weight) else {
            return Err(invalid(format!(
                "need a 4-D input and weight, got {x:?} and {weight:?}"
            )));
        };
        let ConvConfig {
            stride: s,
            padding: p,
            groups,
        } = cfg;
        if s == 0 || groups == 0 || k == 0 || k != k2 {
            return Err(invalid(format!(
                "stride {s}, groups {groups}, kernel {k}×{k2}: need stride, groups ≥ 1 and a square kernel"
            )));
        }
        if !c.is_multiple_of(groups) || !o.is_multiple_of(groups) || c / groups != cg {
            return Err(invalid(format!(
                "input {x:?}, weight {weight:?}, groups {groups}: channels must split into groups"
            )));
        }
        if h + 2 * p < k || w + 2 * p < k {
            return Err(invalid(format!(
                "input side {h}×{w} with padding {p} is smaller than kernel {k}"
            )));
        }
        Ok(Self {
            n,
            c,
            h,
            w,
            o,
            k,
            oh: (h + 2 * p - k) / s + 1,
            ow: (w + 2 * p - k) / s + 1,
            cfg,
        })
    }

    fn from_layouts(x: &Shape, weight: &Shape, cfg: ConvConfig) -> candle_core::Result<Self> {
        Self::new(x.dims(), weight.dims(), cfg).map_err(|e| candle_core::Error::Msg(e.to_string()))
    }

    /// Input channels per group.
    fn cg(&self) -> usize {
        self.c / self.cfg.groups
    }
    /// Output channels per group.
    fn og(&self) -> usize {
        self.o / self.cfg.groups
    }
    /// Rows of the im2col matrix: `C/G · k²`.
    fn kk(&self) -> usize {
        self.cg() * self.k * self.k
    }
    /// Output positions per channel.
    fn p(&self) -> usize {
        self.oh * self.ow
    }
    /// Elements of one input image and one output image.
    fn image(&self) -> (usize, usize) {
        (self.c * self.h * self.w, self.o * self.p())
    }
    /// Whether the columns are laid out on the input's own grid: stride 1
    /// and `W' ≤ W` (padding up to half the kernel), where window offset
    /// `(a, b)` reads the input plane shifted by one flat offset.
    fn on_input_grid(&self) -> bool {
        self.cfg.stride == 1 && self.ow <= self.w
    }
    /// Width of the grid the im2col rows and the `gemm` outputs use: `W` on
    /// the input's grid (columns `W'..W` are zero in the columns and dropped
    /// from the outputs), else `W'`.
    fn gw(&self) -> usize {
        if self.on_input_grid() {
            self.w
        } else {
            self.ow
        }
    }
    /// Positions of that grid, `H'·gw`.
    fn gp(&self) -> usize {
        self.oh * self.gw()
    }
    /// On the input's grid, `col[i] = x[i + shift]` for window offset
    /// `(a, b)` wherever the window is inside the image.
    fn shift(&self, a: usize, b: usize) -> Option<isize> {
        let p = self.cfg.padding as isize;
        self.on_input_grid()
            .then(|| (a as isize - p) * self.w as isize + (b as isize - p))
    }
    /// Whether `col(X) = X` (1×1, stride 1, no padding).
    fn direct(&self) -> bool {
        self.k == 1 && self.cfg.stride == 1 && self.cfg.padding == 0
    }
    /// Multiply-adds of one pass over the batch.
    fn macs(&self) -> usize {
        self.n * self.o * self.p() * self.kk()
    }
    fn out_shape(&self) -> Shape {
        Shape::from((self.n, self.o, self.oh, self.ow))
    }

    /// Images per task: the batch split evenly over the threads when the pass
    /// is large enough to pay for the hand-off, else the whole batch.
    fn images_per_task(&self) -> usize {
        super::items_per_task(self.n, self.macs(), PARALLEL_MACS)
    }

    /// `gemm`'s own threading: only when the batch alone cannot feed the
    /// threads (a single large image).
    fn gemm_parallelism(&self) -> Parallelism {
        let threads = candle_core::utils::get_num_threads();
        if threads > 1 && self.n == 1 && self.macs() >= PARALLEL_MACS {
            Parallelism::Rayon(threads)
        } else {
            Parallelism::None
        }
    }
}

/// Passes below this many multiply-adds stay on one thread (a rayon hand-off
/// costs a few microseconds; this is about 50 µs of single-core work).
const PARALLEL_MACS: usize = 1 << 21;

/// `Y = conv2d(X, W) + b`: `x` `(N, C, H, W)`, `weight` `(O, C/G, k, k)`,
/// an optional `bias` `(O)`, result `(N, O, H', W')` with
/// `H' = ⌊(H + 2p − k)/s⌋ + 1`,
/// `Y[n,o,i,j] = b[o] + Σ_{c,a,b} W[o,c,a,b] · X[n, g(o)·C/G + c, s·i + a − p, s·j + b − p]`
/// (zero outside the input). One graph node, differentiable in all three.
///
/// ```
/// use bigbatch_models::ops::{ConvConfig, conv2d};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let x = Tensor::arange(0f32, 9., &Device::Cpu)?.reshape((1, 1, 3, 3))?;
/// let w = Tensor::ones((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu)?;
/// let y = conv2d(&x, &w, None, ConvConfig::new(1, 0))?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [8., 12., 20., 24.]);
/// let b = Tensor::new(&[0.5f32], &Device::Cpu)?;
/// let y = conv2d(&x, &w, Some(&b), ConvConfig::new(1, 0))?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [8.5, 12.5, 20.5, 24.5]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidConfig`] if the shapes do not fit (non-4-D, channels not
/// divisible by the groups, kernel larger than the padded input, zero stride,
/// a bias that is not `(O)`); a candle error otherwise.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: ConvConfig,
) -> Result<Tensor> {
    check(x, weight, bias, cfg)?;
    if !on_cpu_kernels(x, [weight].into_iter().chain(bias)) {
        return conv2d_composed(x, weight, bias, cfg);
    }
    let op = Conv2dOp {
        cfg,
        bias: bias.is_some(),
    };
    // Without a bias the op never reads its zero vector.
    let bias = bias_operand(bias, weight.dim(0)?, x)?;
    Ok(x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias, op)?)
}

/// [`conv2d`] as candle's own `Tensor::conv2d` and a broadcast add (any
/// device and dtype, candle's autodiff backward).
///
/// # Errors
/// As [`conv2d`].
pub fn conv2d_composed(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    cfg: ConvConfig,
) -> Result<Tensor> {
    check(x, weight, bias, cfg)?;
    let y = x.conv2d(weight, cfg.padding, cfg.stride, 1, cfg.groups)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, b.elem_count(), 1, 1))?)?,
        None => y,
    })
}

/// The typed error for shapes that do not fit.
fn check(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>, cfg: ConvConfig) -> Result<()> {
    let invalid = |reason| Error::InvalidConfig {
        what: "conv2d",
        reason,
    };
    let g = Geometry::new(x.dims(), weight.dims(), cfg)?;
    match bias {
        Some(b) if b.dims() != [g.o] => Err(invalid(format!(
            "bias of shape {:?} for {} output channels",
            b.dims(),
            g.o
        ))),
        _ => Ok(()),
    }
}

/// Unfolds one group of one image, `x` `(C/G, H, W)`, into `col`
/// `(C/G·k², H'·gw)` (see [`Geometry::gw`]), zeros where the window hangs
/// over the edge and in the grid's extra columns.
fn im2col<T: WithDType>(x: &[T], col: &mut [T], g: &Geometry) {
    let (h, w, k, oh, ow) = (g.h, g.w, g.k, g.oh, g.ow);
    let (s, p) = (g.cfg.stride, g.cfg.padding);
    let (zero, gw) = (T::zero(), g.gw());
    let mut rows = col.chunks_exact_mut(oh * gw);
    for plane in x.chunks_exact(h * w) {
        for a in 0..k {
            for b in 0..k {
                let Some(row) = rows.next() else { return };
                if let Some(shift) = g.shift(a, b) {
                    // One shifted copy of the plane, then the border zeroed.
                    let (ys, xs) = (valid_range(a, h, oh, s, p), valid_range(b, w, ow, s, p));
                    let span = clipped(ys, gw, shift, plane.len());
                    if !span.is_empty() {
                        let from = span.start.wrapping_add_signed(shift);
                        row[span.clone()].copy_from_slice(&plane[from..from + span.len()]);
                    }
                    zero_outside(row, ys, xs, gw);
                    continue;
                }
                let (lo, hi) = valid_range(b, w, ow, s, p);
                for (oy, dst) in row.chunks_exact_mut(ow).enumerate() {
                    let iy = (oy * s + a) as isize - p as isize;
                    if iy < 0 || iy >= h as isize {
                        dst.fill(zero);
                        continue;
                    }
                    let src = &plane[iy as usize * w..][..w];
                    dst[..lo].fill(zero);
                    dst[hi..].fill(zero);
                    if lo == hi {
                        continue;
                    }
                    gather(&mut dst[lo..hi], &src[lo * s + b - p..], s);
                }
            }
        }
    }
}

/// Adds `col` `(C/G·k², H'·gw)` back onto the image group `dx` `(C/G, H, W)`:
/// the adjoint of [`im2col`]. `col` is scratch: its entries that fall outside
/// the image are zeroed on the way.
fn col2im<T: WithDType>(col: &mut [T], dx: &mut [T], g: &Geometry) {
    let (h, w, k, oh, ow) = (g.h, g.w, g.k, g.oh, g.ow);
    let (s, p) = (g.cfg.stride, g.cfg.padding);
    let gw = g.gw();
    let mut rows = col.chunks_exact_mut(oh * gw);
    for plane in dx.chunks_exact_mut(h * w) {
        for a in 0..k {
            for b in 0..k {
                let Some(row) = rows.next() else { return };
                if let Some(shift) = g.shift(a, b) {
                    // Zero what falls outside, then one shifted add of the
                    // plane: a zeroed entry lands on a valid pixel or is cut.
                    let (ys, xs) = (valid_range(a, h, oh, s, p), valid_range(b, w, ow, s, p));
                    zero_outside(row, ys, xs, gw);
                    let span = clipped(ys, gw, shift, plane.len());
                    if !span.is_empty() {
                        let to = span.start.wrapping_add_signed(shift);
                        for (d, v) in plane[to..to + span.len()].iter_mut().zip(&row[span]) {
                            *d += *v;
                        }
                    }
                    continue;
                }
                let (lo, hi) = valid_range(b, w, ow, s, p);
                if lo >= hi {
                    continue;
                }
                for (oy, src) in row.chunks_exact(ow).enumerate() {
                    let iy = (oy * s + a) as isize - p as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[iy as usize * w..][..w];
                    scatter_add(&mut dst[lo * s + b - p..], &src[lo..hi], s);
                }
            }
        }
    }
}

/// `dst[j] = src[j·s]`. Strides 1 and 2 (every strided layer of our models)
/// get loops the compiler vectorises.
#[inline(always)]
fn gather<T: WithDType>(dst: &mut [T], src: &[T], s: usize) {
    let Some(last) = dst.len().checked_sub(1) else {
        return;
    };
    match s {
        1 => dst.copy_from_slice(&src[..dst.len()]),
        2 => {
            for (d, pair) in dst[..last].iter_mut().zip(src.chunks_exact(2)) {
                *d = pair[0];
            }
            dst[last] = src[2 * last];
        }
        _ => {
            for (d, v) in dst.iter_mut().zip(src.iter().step_by(s)) {
                *d = *v;
            }
        }
    }
}

/// `dst[j·s] += src[j]`: the adjoint of [`gather`].
#[inline(always)]
fn scatter_add<T: WithDType>(dst: &mut [T], src: &[T], s: usize) {
    let Some(last) = src.len().checked_sub(1) else {
        return;
    };
    match s {
        1 => {
            for (d, v) in dst[..src.len()].iter_mut().zip(src) {
                *d += *v;
            }
        }
        2 => {
            for (pair, v) in dst.chunks_exact_mut(2).zip(&src[..last]) {
                pair[0] += *v;
            }
            dst[2 * last] += src[last];
        }
        _ => {
            for (d, v) in dst.iter_mut().step_by(s).zip(src) {
                *d += *v;
            }
        }
    }
}

/// The flat output positions `[ys.0·ow, ys.1·ow)` of the valid rows, cut so
/// that `i + shift` stays inside a plane of `len` elements. Whatever is cut
/// lies in a column outside the image (a valid position maps inside). Empty,
/// possibly with a start past the plane, when nothing is inside.
fn clipped(ys: (usize, usize), ow: usize, shift: isize, len: usize) -> std::ops::Range<usize> {
    let (first, past) = match usize::try_from(shift) {
        Ok(up) => (0, len.saturating_sub(up)),
        Err(_) => (shift.unsigned_abs(), len),
    };
    let start = (ys.0 * ow).max(first);
    let end = (ys.1 * ow).min(past);
    start..end.max(start)
}

/// Zeros the rows outside `[ys.0, ys.1)` and, within them, the columns
/// outside `[xs.0, xs.1)` of an `(H', ow)` plane.
fn zero_outside<T: WithDType>(row: &mut [T], ys: (usize, usize), xs: (usize, usize), ow: usize) {
    let zero = T::zero();
    row[..ys.0 * ow].fill(zero);
    row[ys.1 * ow..].fill(zero);
    // Column by column down the rows: a few columns, and no `memset` call
    // per row for one or two elements.
    let rows = &mut row[ys.0 * ow..ys.1 * ow];
    if rows.is_empty() {
        return;
    }
    for j in (0..xs.0).chain(xs.1..ow) {
        for v in rows[j..].iter_mut().step_by(ow) {
            *v = zero;
        }
    }
}

/// The output columns `[lo, hi)` whose input column `j·s + b − p` lies in `[0, w)`.
fn valid_range(b: usize, w: usize, ow: usize, s: usize, p: usize) -> (usize, usize) {
    // j·s + b ≥ p  ⇔  j ≥ ⌈(p − b)/s⌉;  j·s + b − p < w  ⇔  j < ⌈(w + p − b)/s⌉.
    let lo = p.saturating_sub(b).div_ceil(s).min(ow);
    let hi = if w + p > b {
        (w + p - b).div_ceil(s).min(ow)
    } else {
        0
    };
    (lo, hi.max(lo))
}

/// A new `(N, out_image)` buffer filled by `f(xs_chunk, out_chunk)` over
/// chunks of whole images, in parallel when the geometry says it pays. Each
/// task zeroes its own chunk just before `f` (so the zeroing is threaded and
/// the chunk is in cache when `f` writes it), instead of one serial `memset`
/// of the whole buffer up front.
fn for_image_chunks<T: WithDType, F>(
    g: &Geometry,
    xs: &[T],
    x_image: usize,
    out_image: usize,
    f: F,
) -> Vec<T>
where
    F: Fn(&[T], &mut [T]) + Sync + Send,
{
    let len = g.n * out_image;
    let mut out = Vec::with_capacity(len);
    let run = |x: &[T], o: &mut [MaybeUninit<T>]| {
        o.fill(MaybeUninit::new(T::zero()));
        // SAFETY: every element of `o` was initialised just above, and
        // `MaybeUninit<T>` has the layout of `T`.
        let o = unsafe { &mut *(o as *mut [MaybeUninit<T>] as *mut [T]) };
        f(x, o);
    };
    let spare = &mut out.spare_capacity_mut()[..len];
    let per = g.images_per_task();
    if per >= g.n {
        run(xs, spare);
    } else {
        xs.par_chunks(per * x_image)
            .zip(spare.par_chunks_mut(per * out_image))
            .for_each(|(x, o)| run(x, o));
    }
    // SAFETY: the chunks of `spare` cover its `len` elements (`xs` holds `N`
    // images, as many chunks as `spare`), and each was initialised by `run`.
    unsafe { out.set_len(len) };
    out
}

/// The `(k²·c, p)` column matrix of one group's input: the input itself for a
/// direct (1×1, stride 1, no padding) convolution, else its im2col in `col`.
fn columns<'a, T: WithDType>(xg: &'a [T], col: &'a mut [T], g: &Geometry) -> &'a [T] {
    if g.direct() {
        xg
    } else {
        im2col(xg, col, g);
        col
    }
}

/// `(rows, W')` output rows laid out on the `(rows, gw)` grid, the extra
/// columns zero: `src` itself when the grid has no extra columns.
fn widen<'a, T: WithDType>(src: &'a [T], grid: &'a mut [T], g: &Geometry) -> &'a [T] {
    let (ow, gw) = (g.ow, g.gw());
    if gw == ow {
        return src;
    }
    for (dst, row) in grid.chunks_exact_mut(gw).zip(src.chunks_exact(ow)) {
        dst[..ow].copy_from_slice(row);
    }
    for j in ow..gw {
        for v in grid[j..].iter_mut().step_by(gw) {
            *v = T::zero();
        }
    }
    grid
}

/// The `W'` real columns of `(rows, gw)` grid rows, into `(rows, W')`.
fn narrow<T: WithDType>(grid: &[T], dst: &mut [T], g: &Geometry) {
    let (ow, gw) = (g.ow, g.gw());
    for (dst, row) in dst.chunks_exact_mut(ow).zip(grid.chunks_exact(gw)) {
        dst.copy_from_slice(&row[..ow]);
    }
}

/// Scratch for one group's outputs on the grid, when it is wider than `W'`.
fn grid_scratch<T: WithDType>(g: &Geometry) -> Vec<T> {
    vec![T::zero(); if g.gw() == g.ow { 0 } else { g.og() * g.gp() }]
}

fn forward<T: WithDType>(x: &[T], weight: &[T], bias: Option<&[T]>, g: &Geometry) -> Vec<T> {
    let (x_image, out_image) = g.image();
    let (cg, og, kk, p, gp) = (g.cg(), g.og(), g.kk(), g.p(), g.gp());
    let par = g.gemm_parallelism();
    for_image_chunks(g, x, x_image, out_image, |xs, ys| {
        let mut col = vec![T::zero(); if g.direct() { 0 } else { kk * gp }];
        let mut grid = grid_scratch(g);
        for (xi, yi) in xs.chunks_exact(x_image).zip(ys.chunks_exact_mut(out_image)) {
            for grp in 0..g.cfg.groups {
                let xg = &xi[grp * cg * g.h * g.w..][..cg * g.h * g.w];
                let rhs = columns(xg, &mut col, g);
                let wg = &weight[grp * og * kk..][..og * kk];
                let dst = &mut yi[grp * og * p..][..og * p];
                let (lhs, rhs) = (Mat::rows(wg, kk), Mat::rows(rhs, gp));
                if grid.is_empty() {
                    matmul([og, p, kk], dst, lhs, rhs, false, par);
                } else {
                    matmul([og, gp, kk], &mut grid, lhs, rhs, false, par);
                    narrow(&grid, dst, g);
                }
            }
            // The bias, on each plane while it is still in cache.
            if let Some(bias) = bias {
                for (plane, &b) in yi.chunks_exact_mut(p).zip(bias) {
                    plane.iter_mut().for_each(|v| *v += b);
                }
            }
        }
    })
}

fn backward_input<T: WithDType>(dy: &[T], weight: &[T], g: &Geometry) -> Vec<T> {
    let (x_image, out_image) = g.image();
    let (cg, og, kk, p, gp) = (g.cg(), g.og(), g.kk(), g.p(), g.gp());
    let par = g.gemm_parallelism();
    for_image_chunks(g, dy, out_image, x_image, |dys, dxs| {
        let mut dcol = vec![T::zero(); if g.direct() { 0 } else { kk * gp }];
        let mut grid = grid_scratch(g);
        for (dyi, dxi) in dys
            .chunks_exact(out_image)
            .zip(dxs.chunks_exact_mut(x_image))
        {
            for grp in 0..g.cfg.groups {
                let dyg = widen(&dyi[grp * og * p..][..og * p], &mut grid, g);
                let wg = &weight[grp * og * kk..][..og * kk];
                let dxg = &mut dxi[grp * cg * g.h * g.w..][..cg * g.h * g.w];
                let lhs = Mat::transposed(wg, kk);
                if g.direct() {
                    matmul([kk, p, og], dxg, lhs, Mat::rows(dyg, p), false, par);
                } else {
                    matmul([kk, gp, og], &mut dcol, lhs, Mat::rows(dyg, gp), false, par);
                    col2im(&mut dcol, dxg, g);
                }
            }
        }
    })
}

fn backward_weight<T: WithDType>(x: &[T], dy: &[T], g: &Geometry) -> Vec<T> {
    let (x_image, out_image) = g.image();
    let (cg, og, kk, p, gp) = (g.cg(), g.og(), g.kk(), g.p(), g.gp());
    let size = g.o * kk;
    let par = g.gemm_parallelism();
    // Each group's block is accumulated transposed, `dWᵀ += col · dYᵀ`
    // `(k²·C/G, O/G)`: gemm then packs the short `dY` and streams the long
    // columns, where `dW += dY · colᵀ` would gather every column (stride
    // `H'·W'`) into its packed layout for every image.
    let partial = |xs: &[T], dys: &[T]| -> Vec<T> {
        let mut dwt = vec![T::zero(); size];
        let mut col = vec![T::zero(); if g.direct() { 0 } else { kk * gp }];
        let mut grid = grid_scratch(g);
        for (xi, dyi) in xs.chunks_exact(x_image).zip(dys.chunks_exact(out_image)) {
            for grp in 0..g.cfg.groups {
                let xg = &xi[grp * cg * g.h * g.w..][..cg * g.h * g.w];
                let cols = columns(xg, &mut col, g);
                let dyg = widen(&dyi[grp * og * p..][..og * p], &mut grid, g);
                let dst = &mut dwt[grp * og * kk..][..og * kk];
                matmul(
                    [kk, og, gp],
                    dst,
                    Mat::rows(cols, gp),
                    Mat::transposed(dyg, gp),
                    true,
                    par,
                );
            }
        }
        dwt
    };
    let per = g.images_per_task();
    let dwt = if per >= g.n {
        partial(x, dy)
    } else {
        let parts: Vec<Vec<T>> = x
            .par_chunks(per * x_image)
            .zip(dy.par_chunks(per * out_image))
            .map(|(xs, dys)| partial(xs, dys))
            .collect();
        let mut parts = parts.into_iter();
        let mut dwt = parts.next().unwrap_or_else(|| vec![T::zero(); size]);
        for part in parts {
            for (d, v) in dwt.iter_mut().zip(&part) {
                *d += *v;
            }
        }
        dwt
    };
    // Each group's `(k²·C/G, O/G)` block back to `(O/G, k²·C/G)`.
    let mut dw = vec![T::zero(); size];
    for (src, dst) in dwt.chunks_exact(og * kk).zip(dw.chunks_exact_mut(og * kk)) {
        for (r, row) in dst.chunks_exact_mut(kk).enumerate() {
            for (c, d) in row.iter_mut().enumerate() {
                *d = src[c * og + r];
            }
        }
    }
    dw
}

/// Applies a kernel generic over `f32`/`f64` to two CPU storages.
macro_rules! dispatch2 {
    ($name:literal, $s1:expr, $l1:expr, $s2:expr, $l2:expr, |$a:ident, $b:ident| $body:expr) => {
        match ($s1, $s2) {
            (CpuStorage::F32($a), CpuStorage::F32($b)) => {
                let ($a, $b) = (
                    contiguous("conv2d", $a, $l1)?,
                    contiguous("conv2d", $b, $l2)?,
                );
                CpuStorage::F32($body)
            }
            (CpuStorage::F64($a), CpuStorage::F64($b)) => {
                let ($a, $b) = (
                    contiguous("conv2d", $a, $l1)?,
                    contiguous("conv2d", $b, $l2)?,
                );
                CpuStorage::F64($body)
            }
            _ => candle_core::bail!(concat!($name, ": only f32 and f64 of one dtype")),
        }
    };
}

/// Forward kernel over `(input, weight, bias)`; backward through
/// [`Conv2dBackwardInput`] and [`Conv2dBackwardWeight`].
struct Conv2dOp {
    cfg: ConvConfig,
    /// Whether the third operand is a real bias (else a zero vector left unread).
    bias: bool,
}

impl Conv2dOp {
    fn run<T: WithDType>(
        &self,
        g: &Geometry,
        (x, lx): (&[T], &Layout),
        (w, lw): (&[T], &Layout),
        (b, lb): (&[T], &Layout),
    ) -> candle_core::Result<Vec<T>> {
        let bias = if self.bias {
            Some(contiguous("conv2d", b, lb)?)
        } else {
            None
        };
        Ok(forward(
            contiguous("conv2d", x, lx)?,
            contiguous("conv2d", w, lw)?,
            bias,
            g,
        ))
    }
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "bigbatch-conv2d"
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
        let g = Geometry::from_layouts(l1.shape(), l2.shape(), self.cfg)?;
        if l3.shape().dims() != [g.o] {
            candle_core::bail!("conv2d: bias {:?} for {} channels", l3.shape(), g.o);
        }
        let out = match (s1, s2, s3) {
            (CpuStorage::F32(x), CpuStorage::F32(w), CpuStorage::F32(b)) => {
                CpuStorage::F32(self.run(&g, (x, l1), (w, l2), (b, l3))?)
            }
            (CpuStorage::F64(x), CpuStorage::F64(w), CpuStorage::F64(b)) => {
                CpuStorage::F64(self.run(&g, (x, l1), (w, l2), (b, l3))?)
            }
            _ => candle_core::bail!("conv2d: only f32 and f64 of one dtype"),
        };
        Ok((out, g.out_shape()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        // Only what the graph tracks: a first layer's input is data, and its
        // gradient (a transposed convolution) would be computed for nothing.
        let dx = x.track_op().then(|| {
            let op = Conv2dBackwardInput {
                cfg: self.cfg,
                input: x.shape().clone(),
            };
            grad.apply_op2_no_bwd(weight, &op)
        });
        let dw = weight.track_op().then(|| {
            let op = Conv2dBackwardWeight {
                cfg: self.cfg,
                weight: weight.shape().clone(),
            };
            x.apply_op2_no_bwd(&grad, &op)
        });
        let db = (self.bias && bias.track_op()).then(|| super::bias::channel_sum(&grad));
        Ok((dx.transpose()?, dw.transpose()?, db.transpose()?))
    }
}

/// `∂L/∂X` from `(∂L/∂Y, W)`.
struct Conv2dBackwardInput {
    cfg: ConvConfig,
    input: Shape,
}

impl CustomOp2 for Conv2dBackwardInput {
    fn name(&self) -> &'static str {
        "bigbatch-conv2d-backward-input"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geometry::from_layouts(&self.input, l2.shape(), self.cfg)?;
        if l1.shape() != &g.out_shape() {
            candle_core::bail!("conv2d backward: gradient {:?}", l1.shape());
        }
        let dx = dispatch2!("conv2d backward", s1, l1, s2, l2, |dy, w| {
            backward_input(dy, w, &g)
        });
        Ok((dx, self.input.clone()))
    }
}

/// `∂L/∂W` from `(X, ∂L/∂Y)`.
struct Conv2dBackwardWeight {
    cfg: ConvConfig,
    weight: Shape,
}

impl CustomOp2 for Conv2dBackwardWeight {
    fn name(&self) -> &'static str {
        "bigbatch-conv2d-backward-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geometry::from_layouts(l1.shape(), &self.weight, self.cfg)?;
        if l2.shape() != &g.out_shape() {
            candle_core::bail!("conv2d backward: gradient {:?}", l2.shape());
        }
        let dw = dispatch2!("conv2d backward", s1, l1, s2, l2, |x, dy| {
            backward_weight(x, dy, &g)
        });
        Ok((dw, self.weight.clone()))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::testing::central_difference;

    type ConvFn = fn(&Tensor, &Tensor, ConvConfig) -> Result<Tensor>;

    /// `(input dims, out channels, kernel, config)`: the models' layers, edge
    /// cases (batch 1, odd sides, stride 2 and 3, padding above k/2, groups,
    /// 1×1) and random draws.
    fn cases() -> Vec<([usize; 4], usize, usize, ConvConfig)> {
        let cfg = |stride, padding, groups| ConvConfig {
            stride,
            padding,
            groups,
        };
        let mut cases = vec![
            ([2, 1, 12, 12], 6, 5, cfg(1, 2, 1)), // LeNet conv1
            ([1, 6, 7, 7], 16, 5, cfg(1, 0, 1)),  // LeNet conv2, batch 1
            ([3, 4, 9, 7], 8, 3, cfg(2, 1, 1)),   // ResNet down-sampling, odd sides
            ([2, 4, 9, 9], 6, 1, cfg(2, 0, 1)),   // projection shortcut
            ([2, 4, 5, 6], 6, 1, cfg(1, 0, 1)),   // direct 1×1
            ([1, 4, 5, 5], 4, 3, cfg(1, 3, 2)),   // padding > k/2, groups
            ([2, 6, 6, 5], 6, 3, cfg(1, 1, 6)),   // depthwise
            ([1, 2, 3, 3], 3, 5, cfg(3, 2, 1)),   // kernel larger than input
            ([2, 3, 10, 10], 4, 4, cfg(2, 1, 1)), // even kernel (VAE)
            ([5, 2, 4, 4], 2, 2, cfg(1, 0, 2)),
            // Stride 1, "same" padding: the shifted-plane im2col and col2im.
            ([2, 3, 8, 8], 4, 3, cfg(1, 1, 1)), // ResNet 3×3
            ([1, 2, 1, 6], 3, 3, cfg(1, 1, 1)), // a single row
            ([2, 2, 5, 3], 4, 5, cfg(1, 2, 2)), // kernel wider than the input, groups
            ([1, 1, 2, 2], 1, 7, cfg(1, 3, 1)), // every window mostly padding
        ];
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..10 {
            let groups = [1, 1, 2, 3][rng.random_range(0..4)];
            let k: usize = rng.random_range(1..=5);
            let p = rng.random_range(0..=k);
            let s = rng.random_range(1..=3);
            let h = rng.random_range(k.saturating_sub(2 * p).max(1)..=11);
            let w = rng.random_range(k.saturating_sub(2 * p).max(1)..=11);
            let c = groups * rng.random_range(1..=3);
            let o = groups * rng.random_range(1..=3);
            cases.push(([rng.random_range(1..=4), c, h, w], o, k, cfg(s, p, groups)));
        }
        cases
    }

    fn random(shape: &[usize], seed: u64) -> Result<Tensor> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    fn plain(x: &Tensor, w: &Tensor, cfg: ConvConfig) -> Result<Tensor> {
        conv2d(x, w, None, cfg)
    }

    fn plain_composed(x: &Tensor, w: &Tensor, cfg: ConvConfig) -> Result<Tensor> {
        conv2d_composed(x, w, None, cfg)
    }

    /// Output and the gradients of `Σ y ⊙ r` with respect to input and weight.
    fn run(f: ConvFn, x: &Tensor, w: &Tensor, cfg: ConvConfig) -> Result<(Tensor, Tensor, Tensor)> {
        let (xv, wv) = (Var::from_tensor(x)?, Var::from_tensor(w)?);
        let y = f(xv.as_tensor(), wv.as_tensor(), cfg)?;
        let r = random(y.dims(), 99)?.to_dtype(y.dtype())?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        let get = |v: &Var| grads.get(v.as_tensor()).expect("grad").clone();
        Ok((y.detach(), get(&xv), get(&wv)))
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f64> {
        assert_eq!(a.dims(), b.dims());
        let d = (a.to_dtype(DType::F64)? - b.to_dtype(DType::F64)?)?;
        Ok(d.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?)
    }

    /// An independent reference composed from candle primitives whose
    /// autodiff is exact: zero padding, the `k²` strided windows stacked into
    /// the im2col tensor, a batched matmul per group.
    fn conv2d_unfolded(x: &Tensor, w: &Tensor, cfg: ConvConfig) -> Result<Tensor> {
        let (n, c, h, wd) = x.dims4()?;
        let (o, cg, k, _) = w.dims4()?;
        let (s, p, groups) = (cfg.stride, cfg.padding, cfg.groups);
        let (oh, ow) = ((h + 2 * p - k) / s + 1, (wd + 2 * p - k) / s + 1);
        let xp = x.pad_with_zeros(2, p, p)?.pad_with_zeros(3, p, p)?;
        let index = |start: usize, len: usize| -> Result<Tensor> {
            let idx: Vec<u32> = (0..len).map(|i| (start + i * s) as u32).collect();
            Ok(Tensor::from_vec(idx, len, x.device())?)
        };
        let mut windows = Vec::new();
        for a in 0..k {
            let rows = xp.index_select(&index(a, oh)?, 2)?;
            for b in 0..k {
                windows.push(rows.index_select(&index(b, ow)?, 3)?);
            }
        }
        let cols = Tensor::stack(&windows, 2)?.reshape((n, groups, cg * k * k, oh * ow))?;
        let w = w.reshape((1, groups, o / groups, cg * k * k))?;
        let y = w.broadcast_matmul(&cols)?;
        debug_assert_eq!(c, cg * groups);
        Ok(y.reshape((n, o, oh, ow))?)
    }

    #[test]
    fn kernels_agree_with_composed_references_in_values_and_gradients() -> Result<()> {
        for (i, (shape, o, k, cfg)) in cases().into_iter().enumerate() {
            let x = random(&shape, i as u64)?;
            let w = random(&[o, shape[1] / cfg.groups, k, k], 50 + i as u64)?;
            for (dtype, tol) in [(DType::F64, 1e-12), (DType::F32, 1e-4)] {
                let (x, w) = (x.to_dtype(dtype)?, w.to_dtype(dtype)?);
                let what = format!("{shape:?} o={o} k={k} {cfg:?} {dtype:?}");
                let a = run(plain, &x, &w, cfg)?;
                let b = run(conv2d_unfolded, &x, &w, cfg)?;
                assert!(max_diff(&a.0, &b.0)? < tol, "y {what}");
                assert!(max_diff(&a.1, &b.1)? < tol, "dx {what}");
                assert!(max_diff(&a.2, &b.2)? < tol, "dw {what}");
                // candle's own convolution (the fallback on other devices):
                // same values; its backward only where it handles the shape
                // (candle 0.11 derives the transposed convolution's output
                // padding from the height alone).
                let y = conv2d_composed(&x, &w, None, cfg)?;
                assert!(max_diff(&a.0, &y)? < tol, "candle y {what}");
                if let Ok(c) = run(plain_composed, &x, &w, cfg) {
                    assert!(max_diff(&a.1, &c.1)? < tol, "candle dx {what}");
                    assert!(max_diff(&a.2, &c.2)? < tol, "candle dw {what}");
                }
            }
        }
        Ok(())
    }

    #[test]
    fn bias_is_fused_exactly_as_a_broadcast_add() -> Result<()> {
        let mut compared = 0;
        for (i, (shape, o, k, cfg)) in cases().into_iter().enumerate().take(12) {
            let x = Var::from_tensor(&random(&shape, i as u64)?)?;
            let w = Var::from_tensor(&random(&[o, shape[1] / cfg.groups, k, k], 7)?)?;
            let b = Var::from_tensor(&random(&[o], 8)?)?;
            let run = |f: fn(&Tensor, &Tensor, Option<&Tensor>, ConvConfig) -> Result<Tensor>| {
                let y = f(x.as_tensor(), w.as_tensor(), Some(b.as_tensor()), cfg)?;
                let r = random(y.dims(), 99)?;
                let g = (&y * &r)?.sum_all()?.backward()?;
                let get = |v: &Var| g.get(v.as_tensor()).expect("grad").clone();
                Ok::<_, Error>([y.detach(), get(&x), get(&w), get(&b)])
            };
            let fused = run(conv2d)?;
            // candle's backward only where it handles the shape (see above).
            let Ok(composed) = run(conv2d_composed) else {
                continue;
            };
            let what = format!("{shape:?} o={o} k={k} {cfg:?}");
            for (j, (a, c)) in fused.iter().zip(&composed).enumerate() {
                assert!(max_diff(a, c)? < 1e-12, "operand {j} {what}");
            }
            compared += 1;
        }
        assert!(compared >= 8, "only {compared} shapes compared");
        let x = random(&[1, 2, 4, 4], 0)?;
        let w = random(&[3, 2, 3, 3], 1)?;
        let wrong = random(&[2], 2)?;
        assert!(matches!(
            conv2d(&x, &w, Some(&wrong), ConvConfig::new(1, 1)),
            Err(Error::InvalidConfig { .. })
        ));
        Ok(())
    }

    #[test]
    fn untracked_operands_get_no_gradient_and_change_nothing_else() -> Result<()> {
        let x = random(&[2, 3, 6, 6], 4)?;
        let w = random(&[4, 3, 3, 3], 5)?;
        let cfg = ConvConfig::new(1, 1);
        let (_, _, dw_full) = run(plain, &x, &w, cfg)?;
        // `x` as data (a first layer): only the weight's gradient exists.
        let wv = Var::from_tensor(&w)?;
        let y = conv2d(&x, wv.as_tensor(), None, cfg)?;
        let r = random(y.dims(), 99)?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        assert!(grads.get(&x).is_none());
        let dw = grads.get(wv.as_tensor()).expect("dw");
        assert_eq!(max_diff(dw, &dw_full)?, 0.0);
        Ok(())
    }

    #[test]
    fn batches_split_over_threads_give_the_same_result() -> Result<()> {
        // Large enough to take the threaded path whenever more than one thread
        // is configured; the reference is candle's own convolution.
        let x = random(&[6, 8, 20, 20], 1)?.to_dtype(DType::F32)?;
        let w = random(&[16, 8, 3, 3], 2)?.to_dtype(DType::F32)?;
        let cfg = ConvConfig::new(1, 1);
        let a = run(plain, &x, &w, cfg)?;
        let b = run(plain_composed, &x, &w, cfg)?;
        assert!(max_diff(&a.0, &b.0)? < 1e-4);
        assert!(max_diff(&a.1, &b.1)? < 1e-4);
        assert!(max_diff(&a.2, &b.2)? < 1e-3);
        Ok(())
    }

    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let h = 1e-6;
        for (i, (shape, o, k, cfg)) in cases().into_iter().take(8).enumerate() {
            let x = random(&shape, 10 + i as u64)?;
            let w = random(&[o, shape[1] / cfg.groups, k, k], 20 + i as u64)?;
            let (y, dx, dw) = run(plain, &x, &w, cfg)?;
            let r = random(y.dims(), 99)?;
            let loss = |x: &Tensor, w: &Tensor| -> Result<f64> {
                Ok((conv2d(x, w, None, cfg)? * &r)?
                    .sum_all()?
                    .to_scalar::<f64>()?)
            };
            for (which, t, g) in [("x", &x, &dx), ("w", &w, &dw)] {
                let flat = t.flatten_all()?.to_vec1::<f64>()?;
                let g = g.flatten_all()?.to_vec1::<f64>()?;
                // Every element for small tensors, a stride through large ones.
                for j in (0..flat.len()).step_by(flat.len().div_ceil(40)) {
                    let fd = central_difference(t, j, h, |t2| {
                        if which == "x" {
                            loss(t2, &w)
                        } else {
                            loss(&x, t2)
                        }
                    })?;
                    assert!(
                        (fd - g[j]).abs() < 1e-6 * (1.0 + fd.abs()),
                        "{which}[{j}] {shape:?} {cfg:?}: {fd} vs {}",
                        g[j]
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn rejects_shapes_that_do_not_fit() -> Result<()> {
        let x = random(&[1, 4, 3, 3], 0)?;
        for (w, cfg) in [
            (&[2, 4, 5, 5][..], ConvConfig::new(1, 0)), // kernel > input
            (&[2, 3, 1, 1][..], ConvConfig::new(1, 0)), // channel mismatch
            (
                &[3, 2, 1, 1][..],
                ConvConfig {
                    groups: 2,
                    ..ConvConfig::default()
                },
            ), // outputs not divisible by groups
            (&[2, 4, 1, 1][..], ConvConfig::new(0, 0)), // zero stride
            (&[2, 4, 2, 3][..], ConvConfig::new(1, 0)), // non-square kernel
        ] {
            let w = random(w, 1)?;
            assert!(
                matches!(conv2d(&x, &w, None, cfg), Err(Error::InvalidConfig { .. })),
                "{w:?} {cfg:?}"
            );
        }
        Ok(())
    }
}
