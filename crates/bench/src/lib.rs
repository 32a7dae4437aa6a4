//! The training harness behind every bigbatch experiment.
//!
//! [`train`] is the one training loop, driven by a [`TrainConfig`] from
//! `bigbatch-spec` (whose types are re-exported here); [`WorkloadExt`] loads
//! a [`WorkloadKind`]'s data and builds its model; [`RunRecord`] is what a
//! run writes. A [`SweepPlan`] turns quasi-random points of its search space
//! into [`RunSpec`]s that [`run_sweep`] runs as independent, resumable
//! processes. The `bigbatch` binary wraps them in a command line that
//! `cargo xtask` drives.

mod checkpoint;
mod error;
mod measure;
mod record;
mod sweep;
mod train;
mod workload;

pub use bigbatch_record::{
    BatchSizeSummary, BestTrial, FileDigest, Measured, MeasurementRecord, Provenance, RunRecord,
    Status, SweepSummary, TrialResult, WeightsInfo, read_json, write_json_atomic,
};
pub use bigbatch_spec::{
    Budget, EvalPoint, Metric, OptimizerSpec, RunSpec, ScheduleSpec, StepBudget, SweepPlan, Target,
    TrainConfig, WorkloadKind,
};
pub use error::{Error, Result};
pub use measure::{
    Evaluation, NetworkOracle, SavedWeights, WEIGHTS_FILE, param_tree, save_weights, state_tree,
};
pub use record::{device_label, git_revision, provenance};
pub use sweep::{
    SweepDir, SweepProgress, previous_eval, run_plan, run_sweep, run_trial, slurm_script,
    stale_reason, summarize,
};
pub use train::{
    CANDLE_SPIN_LIMIT, Checkpointing, Observer, Outcome, batch_norm, decide_after_eval,
    decide_after_step, evaluate, on_pool, quiet_candle_pool, train, train_resumable, train_until,
};
pub use workload::{Data, Model, WorkloadExt, build_model};
