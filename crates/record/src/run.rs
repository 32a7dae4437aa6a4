//! The record of one training run.

use bigbatch_spec::{EvalPoint, ModelKind, TrainConfig, WorkloadKind};
use serde::{Deserialize, Serialize};

use crate::{NoiseScaleStep, Provenance, Schema};

/// The complete record of one training run, written as `results.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// The schema version ([`crate::SCHEMA_VERSION`]); another version is refused when read.
    pub schema: Schema,
    /// The workload trained (data set and target).
    pub workload: WorkloadKind,
    /// The model trained (the workload's own unless the run chose another).
    pub model: ModelKind,
    /// The training configuration.
    pub config: TrainConfig,
    /// Where and how the run happened.
    pub provenance: Provenance,
    /// How the run ended.
    pub status: Status,
    /// One point per evaluation, in step order.
    pub curve: Vec<EvalPoint>,
    /// The first evaluation step meeting `config.target` (Shallue et al. 2019).
    #[serde(default)]
    pub steps_to_target: Option<u64>,
    /// Examples to the target, `E = B·S`.
    #[serde(default)]
    pub examples_to_target: Option<u64>,
    /// With noise-scale tracking: every step's raw and smoothed `B_simple`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noise_scale: Vec<NoiseScaleStep>,
    /// Wall-clock seconds spent training and evaluating.
    pub wall_seconds: f64,
}

impl RunRecord {
    /// The last evaluation, if any.
    pub fn final_eval(&self) -> Option<&EvalPoint> {
        self.curve.last()
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    /// The budget was spent.
    Completed,
    /// The evaluation at `step` met the target; training stopped there.
    ReachedTarget {
        /// The steps to target.
        step: u64,
    },
    /// The loss became NaN or infinite, or exploded, at `step`; training stopped there.
    Diverged {
        /// The step whose loss was not finite.
        step: u64,
    },
    /// Stopped at `step` without meeting the target: the best trial of its
    /// batch size had met it by then, so this one could no longer be the
    /// best (a sweep's pruning, [`SweepPlan::prune`](bigbatch_spec::SweepPlan::prune)).
    Pruned {
        /// The step it stopped at.
        step: u64,
    },
}
