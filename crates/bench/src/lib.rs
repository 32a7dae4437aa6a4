//! The training harness behind every bigbatch experiment.
//!
//! [`train`] is the one training loop; [`WorkloadKind`] names what is trained
//! (dataset + model) and [`Workload`] describes it with its [`Target`];
//! [`RunRecord`] is what a run writes. [`SearchSpace`] draws quasi-random
//! ([`halton`]) metaparameters per batch size, and a [`SweepPlan`] turns them
//! into [`TrialSpec`]s that [`run_sweep`] runs as independent, resumable
//! processes. The `bigbatch` binary wraps them in a command line that
//! `cargo xtask` drives.

mod checkpoint;
mod error;
mod record;
mod sweep;
mod train;
mod tune;
mod workload;

pub use error::{Error, Result};
pub use record::{
    EvalPoint, FileDigest, Provenance, RunRecord, Status, device_label, git_revision, read_json,
    write_json_atomic,
};
pub use sweep::{
    BatchSizeSummary, BestTrial, StepBudget, SweepDir, SweepPlan, SweepProgress, SweepSummary,
    TrialResult, TrialSpec, run_sweep, run_trial, slurm_script, summarize,
};
pub use train::{
    Budget, CANDLE_SPIN_LIMIT, Checkpointing, LrSchedule, Observer, OptimizerConfig, Outcome,
    TrainConfig, evaluate, on_pool, quiet_candle_pool, train, train_resumable,
};
pub use tune::{LinearDecaySpace, LinearRange, LogRange, SearchPoint, SearchSpace, halton};
pub use workload::{
    Architecture, Data, DatasetName, Loss, Metric, Model, Target, Workload, WorkloadKind,
};
