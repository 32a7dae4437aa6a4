//! bigbatch's own kernels, as candle `CustomOp`s, each next to the composed
//! reference version it is tested against.

mod pool;

pub use pool::{Pool2dConfig, avg_pool2d, avg_pool2d_composed, max_pool2d, max_pool2d_composed};
