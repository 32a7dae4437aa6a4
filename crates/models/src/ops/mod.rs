//! bigbatch's own kernels, as candle `CustomOp`s, each next to the composed
//! reference version it is tested against.

mod batch_norm;
mod bias;
mod conv;
mod linear;
mod matmul;
mod pool;
mod relu;

pub use batch_norm::{BatchNormOutput, batch_norm_train};
pub use bias::{add_channel_bias, add_channel_bias_composed};
pub use conv::{ConvConfig, conv2d, conv2d_composed};
pub use linear::{linear, linear_composed};
pub use pool::{Pool2dConfig, avg_pool2d, avg_pool2d_composed, max_pool2d, max_pool2d_composed};
pub use relu::{Activation, add_relu, add_relu_composed, relu, relu_composed};

/// Runs `f` compiled for the widest SIMD the CPU has (AVX-512, AVX2, else the
/// SSE2 baseline), detected at run time by `pulp`: the elementwise loops and
/// lane sums inside (all `#[inline(always)]` or closures) vectorise at that
/// width. The same IEEE operations run on every path (no fused multiply-add is
/// introduced), so results do not depend on the CPU.
#[inline(always)]
fn simd<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// Whether our CPU kernels apply: `x` on the CPU in `f32` or `f64`, and every
/// other operand on its device in its dtype (else the composed candle ops run).
fn on_cpu_kernels<'a>(
    x: &candle_core::Tensor,
    others: impl IntoIterator<Item = &'a candle_core::Tensor>,
) -> bool {
    x.device().is_cpu()
        && matches!(x.dtype(), candle_core::DType::F32 | candle_core::DType::F64)
        && others
            .into_iter()
            .all(|t| t.dtype() == x.dtype() && t.device().same_device(x.device()))
}

/// The bias operand of a fused op: `bias` itself, or a constant zero vector
/// of `len` values, which the graph does not track (so it gets no gradient).
fn bias_operand(
    bias: Option<&candle_core::Tensor>,
    len: usize,
    like: &candle_core::Tensor,
) -> candle_core::Result<candle_core::Tensor> {
    match bias {
        Some(b) => b.contiguous(),
        None => candle_core::Tensor::zeros(len, like.dtype(), like.device()),
    }
}

/// The contiguous data of a kernel's operand, or an error naming the kernel.
fn contiguous<'a, T>(
    what: &str,
    data: &'a [T],
    layout: &candle_core::Layout,
) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{what}: operands must be contiguous"),
    }
}

/// Items (images, planes) per parallel task: all of them on one thread or
/// when the pass is below `min_work` (a rayon hand-off costs a few
/// microseconds), else an even split over the threads.
fn items_per_task(items: usize, work: usize, min_work: usize) -> usize {
    let threads = candle_core::utils::get_num_threads();
    if threads <= 1 || items <= 1 || work < min_work {
        items.max(1)
    } else {
        items.div_ceil(threads.min(items))
    }
}
