//! bigbatch's own kernels, as candle `CustomOp`s, each next to the composed
//! reference version it is tested against.

mod batch_norm;
mod bias;
mod conv;
mod linear;
mod pool;
mod relu;

pub use batch_norm::{BatchNormOutput, batch_norm_train};
pub use bias::{add_channel_bias, add_channel_bias_composed};
pub use conv::{ConvConfig, conv2d, conv2d_composed};
pub use linear::{linear, linear_composed};
pub use pool::{Pool2dConfig, avg_pool2d, avg_pool2d_composed, max_pool2d, max_pool2d_composed};
pub use relu::{add_relu, add_relu_composed, relu, relu_composed};
