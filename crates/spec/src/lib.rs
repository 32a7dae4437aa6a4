//! The typed values every bigbatch layer passes through unchanged.
//!
//! What a user writes (in TOML or JSON, or through the `bigbatch` command
//! line) is one of these; the training loop, the sweeps, `cargo xtask` and
//! the reports read the same values. The crate depends on serde alone, so
//! orchestration code (xtask) uses the very types the training code reads
//! without linking a tensor engine.
//!
//! - [`OptimizerSpec`]: an optimizer by paper name with its hyperparameters,
//!   weight decay and its mask, a (bounded) layer-wise trust ratio on any
//!   base, gradient clipping. `bigbatch-optim` builds it.
//! - [`ScheduleSpec`]: warmup and decay, lengths in steps, epochs or
//!   fractions of the run, converted in one place ([`Horizon`]).
//! - [`TrainConfig`]: one run's batch size, budget, evaluation, optimizer,
//!   schedule and loss options; [`RunSpec`] adds the [`WorkloadKind`].
//! - [`SearchSpace`]: quasi-random search over any numeric field ([`Param`]).
//! - [`SweepPlan`]: runs per batch size, for steps-to-target studies.
//!
//! Every value validates itself and reports the field at fault:
//!
//! ```
//! use bigbatch_spec::{Error, TrainConfig};
//! let cfg: TrainConfig = toml::from_str(r#"
//!     batch_size = 8192
//!     [optimizer]
//!     name = "adam"
//!     b2 = 1.0
//! "#).unwrap();
//! assert!(matches!(cfg.validate(), Err(Error::OutOfRange { field, .. }) if field == "optimizer.b2"));
//! ```

mod error;
mod format;
mod mask;
mod measure;
mod model;
mod optimizer;
mod record;
mod schedule;
mod search;
mod sweep;
mod train;
mod workload;

pub use error::{Error, Result};
pub use format::thousands;
pub use mask::{MaskSpec, ParamKind};
pub use measure::BatchNormPolicy;
pub use model::{ModelKind, Task};
pub use optimizer::{Method, OptimizerSpec, TrustRatioSpec, Value};
pub use record::EvalPoint;
pub use schedule::{Decay, Horizon, Length, ScheduleSpec};
pub use search::{Dimension, Edge, Param, Scale, SearchPoint, SearchSpace, Side, halton};
pub use sweep::{Refine, RunSpec, StepBudget, SweepPlan};
pub use train::{Budget, Metric, Target, TrainConfig};
pub use workload::{DatasetName, Loss, Workload, WorkloadKind};
