//! bigbatch's own kernels, as candle `CustomOp`s, each next to the composed
//! reference version it is tested against.

mod conv;
mod pool;

pub use conv::{ConvConfig, conv2d, conv2d_composed};
pub use pool::{Pool2dConfig, avg_pool2d, avg_pool2d_composed, max_pool2d, max_pool2d_composed};
