//! The training harness behind every bigbatch experiment.
//!
//! [`train`] is the one training loop; [`WorkloadKind`] names what is trained
//! (dataset + model); [`RunRecord`] is what a run writes. The `bigbatch`
//! binary wraps them in a command line that `cargo xtask` drives.

mod error;
mod record;
mod train;
mod workload;

pub use error::{Error, Result};
pub use record::{
    EvalPoint, FileDigest, Provenance, RunRecord, Status, git_revision, read_json,
    write_json_atomic,
};
pub use train::{Budget, Observer, OptimizerConfig, Outcome, TrainConfig, evaluate, train};
pub use workload::{Data, Model, WorkloadKind};
