//! What sweeps write: one result per trial, one summary per sweep.

use bigbatch_spec::{OptimizerSpec, RunSpec, ScheduleSpec, SweepPlan};
use serde::{Deserialize, Serialize};

use crate::{ParetoBootstrap, Provenance, RunRecord, Schema};

/// What a trial's process writes to `results/<id>.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// The schema version; another version is refused when read.
    pub schema: Schema,
    /// [`RunSpec::id`].
    pub id: String,
    /// The trial.
    pub spec: RunSpec,
    /// The run.
    pub record: RunRecord,
}

/// Per batch size: the trials and the best one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchSizeSummary {
    /// The batch size.
    pub batch_size: usize,
    /// Trials with results.
    pub trials: usize,
    /// Trials that reached the target.
    pub reached: usize,
    /// Trials that diverged.
    pub diverged: usize,
    /// The trial with the fewest steps to target, if any reached it.
    pub best: Option<BestTrial>,
}

/// The best trial of a batch size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BestTrial {
    /// Its id.
    pub id: String,
    /// Steps to target `S`.
    pub steps: u64,
    /// Examples to target `E = B·S`.
    pub examples: u64,
    /// Its optimizer.
    pub optimizer: OptimizerSpec,
    /// Its learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleSpec,
}

/// A sweep's results: best trial per batch size, and the `S_min`/`E_min`/`B_crit`
/// fit (McCandlish et al. 2018) when at least three batch sizes reached the target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSummary {
    /// The schema version; another version is refused when read.
    pub schema: Schema,
    /// The plan, search space included.
    pub plan: SweepPlan,
    /// Trials planned.
    pub trials_planned: usize,
    /// One entry per batch size, ascending.
    pub batch_sizes: Vec<BatchSizeSummary>,
    /// The Pareto fit with 95% bootstrap intervals.
    pub pareto: Option<ParetoBootstrap>,
    /// Provenance of the first result (seed, revision, data digests).
    pub provenance: Option<Provenance>,
}
