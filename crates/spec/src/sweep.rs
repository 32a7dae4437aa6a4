//! Sweeps: a plan of many runs, and [`RunSpec`], one run.

use serde::{Deserialize, Serialize};

use crate::{
    Budget, Error, ModelKind, OptimizerSpec, Result, ScheduleSpec, SearchSpace, Target,
    TrainConfig, WorkloadKind,
};

/// One run: a workload trained once with one configuration. What `bigbatch
/// train --config FILE` reads and what a sweep writes for each trial.
///
/// ```toml
/// workload = "mnist-lenet5"
///
/// [train]
/// batch_size = 256
/// budget = { epochs = 30 }
///
/// [train.optimizer]
/// name = "lamb"
/// learning_rate = 0.01
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// What is trained: the data set, its model and target.
    pub workload: WorkloadKind,
    /// Another model of `bigbatch-models` to train on the workload's data
    /// instead of its own (same input shape and classes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelKind>,
    /// How.
    #[serde(default)]
    pub train: TrainConfig,
    /// The point's index in a sweep's quasi-random search, if it came from one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub search_index: Option<u64>,
}

impl RunSpec {
    /// A run of `workload`'s own model with `train`.
    pub fn new(workload: WorkloadKind, train: TrainConfig) -> Self {
        Self {
            workload,
            model: None,
            train,
            search_index: None,
        }
    }

    /// The model trained: `model`, else the workload's.
    pub fn model(&self) -> ModelKind {
        self.model.unwrap_or(self.workload.workload().model)
    }

    /// Checks everything that needs no data: the training configuration,
    /// and that the model fits the workload's data.
    ///
    /// # Errors
    /// As [`TrainConfig::validate`] and [`ModelKind::check_fits`]; a ghost
    /// batch size for a model without batch norm.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        let model = self.model();
        model.check_fits(self.workload.workload().dataset)?;
        if self.train.ghost_batch_size.is_some() && !model.has_batch_norm() {
            return Err(Error::Inconsistent {
                field: "ghost_batch_size".into(),
                problem: format!("{model} has no batch norm"),
            });
        }
        Ok(())
    }

    /// A stable id: 16 hex digits of the FNV-1a hash of the spec's JSON.
    pub fn id(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        let hash = json.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("{hash:016x}")
    }
}

/// The steps budget of a trial at batch size `B`: `examples / B`, clamped to
/// `[min_steps, max_steps]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepBudget {
    /// Training examples a trial may consume.
    pub examples: u64,
    /// At least this many steps.
    pub min_steps: u64,
    /// At most this many steps.
    pub max_steps: u64,
}

impl StepBudget {
    /// The steps at batch size `batch_size`.
    pub fn steps(&self, batch_size: usize) -> u64 {
        (self.examples / batch_size.max(1) as u64).clamp(self.min_steps, self.max_steps)
    }
}

/// A steps-to-target sweep: per batch size, `trials_per_batch_size`
/// quasi-random points of `search` around a base optimizer and schedule,
/// each trained to `target` or until its budget is spent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepPlan {
    /// What is trained.
    pub workload: WorkloadKind,
    /// The batch sizes; those above the training set size are dropped.
    pub batch_sizes: Vec<usize>,
    /// Search points per batch size.
    pub trials_per_batch_size: usize,
    /// The optimizer every trial starts from; `search` sets its fields.
    pub optimizer: OptimizerSpec,
    /// The learning-rate schedule every trial starts from.
    #[serde(default, skip_serializing_if = "is_default")]
    pub schedule: ScheduleSpec,
    /// Label smoothing of every trial.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_smoothing: f64,
    /// The searched fields and their ranges.
    pub search: SearchSpace,
    /// Seed of the quasi-random search.
    pub search_seed: u64,
    /// Seed of initialisation and data order of every trial.
    pub seed: u64,
    /// Steps per trial.
    pub budget: StepBudget,
    /// The target that ends a trial.
    pub target: Target,
    /// Evaluations per trial at a fixed cadence (the resolution of
    /// steps-to-target); with `eval_growth`, the cadence's longest gap is
    /// the budget over this.
    pub evals_per_trial: u64,
    /// Evaluate at geometrically growing steps ([`TrainConfig::eval_growth`]),
    /// so that steps to target have the same relative resolution at every
    /// batch size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_growth: Option<f64>,
    /// Validation examples held out of the training set
    /// ([`TrainConfig::validation_examples`]); the target is then measured on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_examples: Option<usize>,
    /// Examples per evaluation forward pass.
    pub eval_batch_size: usize,
    /// Largest micro-batch (gradient accumulation), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_batch_size: Option<usize>,
    /// Ghost batch norm's virtual batch size, for workloads with batch norm
    /// (batches no larger than it use ordinary batch norm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ghost_batch_size: Option<usize>,
    /// Each trial saves a checkpoint every this many steps (in
    /// `checkpoints/<id>.safetensors`), so a killed trial resumes mid-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_steps: Option<u64>,
    /// Stop a trial at the best steps to target its batch size has reached
    /// so far: past it the trial can no longer be the best, so the best per
    /// batch size (steps to result) is unchanged and the compute is saved.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prune: bool,
    /// Refinement: where a batch size's best trial sits at an edge of the
    /// search range, run more trials there with the range recentred on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refine: Option<Refine>,
    /// The best trial of every batch size is run again with each of these
    /// seeds (initialisation and data order), to show the spread.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seeds: Vec<u64>,
}

/// Refinement rounds of a [`SweepPlan`]'s search.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refine {
    /// At most this many rounds after the first.
    pub rounds: usize,
    /// Trials per batch size in each round.
    pub trials: usize,
    /// A best value within this fraction of its range's width (in the
    /// dimension's scale) of an end is at the edge ([`SearchSpace::edges`]).
    pub margin: f64,
}

fn is_false(x: &bool) -> bool {
    !*x
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

impl SweepPlan {
    /// The planned batch sizes a training set of `train_len` can fill (less
    /// any validation split).
    pub fn batch_sizes_for(&self, train_len: usize) -> Vec<usize> {
        let fit = self.base(1).fit_len(train_len);
        self.batch_sizes
            .iter()
            .copied()
            .filter(|&b| b <= fit)
            .collect()
    }

    /// The configuration every trial of batch size `b` starts from: its step
    /// budget, evaluation cadence (`evals_per_trial` evaluations at a fixed
    /// cadence, or `eval_growth` with gaps of at most the budget over
    /// `evals_per_trial`), target and the plan's options.
    pub fn base(&self, b: usize) -> TrainConfig {
        let steps = self.budget.steps(b);
        let mut base = TrainConfig::new(b, Budget::Steps(steps), self.optimizer.clone());
        base.schedule = self.schedule.clone();
        base.label_smoothing = self.label_smoothing;
        base.seed = self.seed;
        base.eval_every_steps = (steps / self.evals_per_trial.max(1)).max(1);
        base.eval_growth = self.eval_growth;
        base.validation_examples = self.validation_examples;
        base.eval_batch_size = self.eval_batch_size;
        base.target = Some(self.target);
        base.micro_batch_size = self.micro_batch_size.filter(|&m| m < b);
        base.ghost_batch_size = self.ghost_batch_size.filter(|&g| g < b);
        base
    }

    /// `n` trials of batch size `b` from `space` (Halton points rotated by
    /// `seed`), validated for a training set of `train_len`.
    ///
    /// # Errors
    /// An invalid base configuration or search space, naming the field.
    pub fn trials_at(
        &self,
        b: usize,
        space: &SearchSpace,
        n: usize,
        seed: u64,
        train_len: usize,
    ) -> Result<Vec<RunSpec>> {
        space
            .points(&self.base(b), n, seed)?
            .into_iter()
            .map(|p| {
                p.config.validate_for(train_len)?;
                Ok(RunSpec {
                    search_index: Some(p.index),
                    ..RunSpec::new(self.workload, p.config)
                })
            })
            .collect()
    }

    /// The trials, batch size by batch size, for a training set of `train_len`.
    ///
    /// # Errors
    /// An invalid base configuration or search space (naming the field), or
    /// no batch size that fits the training set.
    pub fn trials(&self, train_len: usize) -> Result<Vec<RunSpec>> {
        if let Some(r) = &self.refine {
            crate::error::ensure(
                r.margin > 0.0 && r.margin < 0.5,
                "refine.margin",
                r.margin,
                "in (0, 0.5): a fraction of the range at each end",
            )?;
            crate::error::ensure(r.trials >= 1, "refine.trials", r.trials as f64, ">= 1")?;
        }
        let mut trials = Vec::new();
        for b in self.batch_sizes_for(train_len) {
            trials.extend(self.trials_at(
                b,
                &self.search,
                self.trials_per_batch_size,
                self.search_seed,
                train_len,
            )?);
        }
        if trials.is_empty() {
            return Err(Error::Inconsistent {
                field: "batch_sizes".into(),
                problem: format!(
                    "no batch size of {:?} fits the {train_len} training examples",
                    self.batch_sizes
                ),
            });
        }
        Ok(trials)
    }
}
