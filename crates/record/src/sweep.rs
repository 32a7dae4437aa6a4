//! What sweeps write: one result per trial, one summary per sweep.

use bigbatch_spec::{Edge, OptimizerSpec, RunSpec, ScheduleSpec, SearchSpace, SweepPlan};
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
    /// Trials stopped once they could no longer be the best.
    #[serde(default)]
    pub pruned: usize,
    /// The trial with the fewest steps to target, if any reached it.
    pub best: Option<BestTrial>,
    /// Search rounds run at this batch size (1 without refinement).
    #[serde(default = "one")]
    pub rounds: usize,
    /// The search space of the last round (the plan's, or one recentred on
    /// an earlier best).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search: Option<SearchSpace>,
    /// Where the best trial still sits at an edge of that space after every
    /// round: the true best may lie outside what was searched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<Edge>,
    /// The best trial's configuration run again with other seeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<SeedRun>,
}

fn one() -> usize {
    1
}

/// The best trial of a batch size run with another seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedRun {
    /// The seed (initialisation and data order).
    pub seed: u64,
    /// Its steps to target, if it met the target within the budget.
    pub steps: Option<u64>,
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
    /// The evaluation before the one that met the target (0: none): the
    /// target was first met somewhere in `(previous_eval, steps]`, the
    /// resolution of `steps`.
    #[serde(default)]
    pub previous_eval: u64,
    /// Its test accuracy at the end, when targets are measured on a
    /// validation split (the test split is measured once, at the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
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
