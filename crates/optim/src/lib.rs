//! Composable optimizers for candle, shaped like optax.
//!
//! A [`Transform`] maps gradients to updates through an explicit state;
//! named optimizers ([`sgd`], [`momentum`], [`nesterov`], …) are [`chain`]s of
//! small transforms whose order is the algorithm. [`Optimizer`] binds a
//! transform to a model's [`Params`] for use in a training loop.
//!
//! ```
//! use bigbatch_optim::{nesterov, Optimizer, Params};
//! use candle_core::{Device, Var};
//! # fn main() -> Result<(), bigbatch_optim::Error> {
//! let w = Var::new(&[1f32, -2.], &Device::Cpu)?;
//! let params = Params::new([("w".to_string(), w.clone())]);
//! let mut opt = Optimizer::new(nesterov(0.05, 0.9), &params)?;
//! let loss = w.as_tensor().sqr()?.sum_all()?;
//! opt.step(&params, params.grads(&loss.backward()?)?)?;
//! assert_eq!(opt.steps(), 1);
//! # Ok(()) }
//! ```

mod alias;
mod error;
mod optimizer;
mod params;
mod schedule;
mod state;
mod transform;
mod transforms;
mod tree;

pub use alias::{momentum, nesterov, sgd};
pub use error::{Error, Result};
pub use optimizer::Optimizer;
pub use params::Params;
pub use schedule::Schedule;
pub use state::{OptState, key};
pub use transform::{Boxed, BoxedState, Chain, Identity, Transform, boxed, chain, identity};
pub use transforms::*;
pub use tree::Tree;
