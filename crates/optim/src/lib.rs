//! Composable optimizers for candle, shaped like optax.
//!
//! A [`Transform`] maps gradients to updates through an explicit state;
//! named optimizers ([`sgd`], [`momentum`], [`nesterov`], [`adagrad`],
//! [`rmsprop`], [`adam`], [`adamw`], [`lars`], [`lamb`]) are [`chain`]s of
//! small transforms whose order is the algorithm, and [`layerwise`] adds a
//! (bounded) trust ratio to any of them. [`mask`] chooses which parameters a
//! transform touches; [`schedule`] holds learning-rate schedules.
//! [`Optimizer`] binds a transform to a model's [`Params`] for use in a
//! training loop, and saves its state to safetensors. Fusion is a property
//! of the transforms: each elementwise one states its per-element update
//! once, and any chain of them (every named optimizer, every
//! [`OptimizerSpec`]) runs on f32 CPU parameters as in-place passes over each
//! parameter ([`Plan`]), equal to the composed chain.
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

mod accumulate;
mod alias;
mod error;
mod fuse;
mod layerwise;
mod loss;
pub mod mask;
mod num;
mod optimizer;
mod params;
pub mod schedule;
mod spec;
mod state;
mod transform;
mod transforms;
mod tree;

pub use accumulate::Accumulator;
pub use alias::{
    Adagrad, AdagradConfig, Adam, AdamW, Lamb, LambConfig, Lars, LarsConfig, Momentum, Rmsprop,
    Sgd, adagrad, adam, adamw, lamb, lars, momentum, nesterov, rmsprop, sgd,
};
pub use bigbatch_spec::{
    Decay, Horizon, Length, MaskSpec, Method, OptimizerSpec, ParamKind, ScheduleSpec,
    TrustRatioSpec,
};
pub use error::{Error, Result};
pub use fuse::Plan;
pub use layerwise::{Layerwise, layerwise};
pub use loss::{softmax_cross_entropy, softmax_cross_entropy_composed};
pub use mask::{Mask, Masked, MaskedState, masked};
pub use optimizer::Optimizer;
pub use params::Params;
pub use schedule::Schedule;
pub use spec::{BuildOptimizer, BuildSchedule};
pub use state::{OptState, key};
pub use transform::{Boxed, BoxedState, Chain, Identity, Transform, boxed, chain, identity};
pub use transforms::*;
pub use tree::Tree;
