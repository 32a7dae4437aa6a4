//! The networks of the large-batch training literature, in candle.
//!
//! Every model implements [`Network`]: a forward pass with an explicit `train`
//! flag, parameter names that follow the PyTorch reference, and a typed config.

mod error;
pub mod layers;
mod lenet;
mod network;
mod store;

pub use error::{Error, Result};
pub use lenet::{LeNet5, LeNet5Config};
pub use network::Network;
pub use store::VarStore;
