//! [`TrainConfig`]: how one run trains. What the training loop reads, what a
//! record stores, what a sweep varies.

use serde::{Deserialize, Serialize};

use crate::error::{ensure, fraction};
use crate::{Error, EvalPoint, Horizon, OptimizerSpec, Result, ScheduleSpec};

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// This many optimizer steps.
    Steps(u64),
    /// This many passes over the training set.
    Epochs(u64),
}

/// An evaluation metric, on the split it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Classification accuracy on the test split; higher is better.
    TestAccuracy,
    /// Classification error `1 − accuracy` on the test split; lower is better.
    TestError,
    /// Accuracy on the validation split held out of the training set
    /// ([`TrainConfig::validation_examples`]).
    ValidationAccuracy,
    /// Error on the validation split (Shallue et al. 2019's goals).
    ValidationError,
}

impl Metric {
    /// The metric's value at an evaluation, if its split was measured there.
    pub fn value(self, point: &EvalPoint) -> Option<f64> {
        match self {
            Metric::TestAccuracy => point.test_accuracy,
            Metric::TestError => point.test_accuracy.map(|a| 1.0 - a),
            Metric::ValidationAccuracy => point.validation_accuracy,
            Metric::ValidationError => point.validation_accuracy.map(|a| 1.0 - a),
        }
    }

    /// Whether larger values are better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::TestAccuracy | Metric::ValidationAccuracy)
    }

    /// Whether it is measured on the validation split.
    pub fn on_validation(self) -> bool {
        matches!(self, Metric::ValidationAccuracy | Metric::ValidationError)
    }

    /// The metric as prose: `"validation error"`.
    pub fn describe(self) -> &'static str {
        match self {
            Metric::TestAccuracy => "test accuracy",
            Metric::TestError => "test error",
            Metric::ValidationAccuracy => "validation accuracy",
            Metric::ValidationError => "validation error",
        }
    }
}

/// A metric threshold that ends a steps-to-target run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// What is measured.
    pub metric: Metric,
    /// The value to reach (at least, for accuracy; at most, for error), a
    /// fraction in `[0, 1]`.
    pub threshold: f64,
}

impl Target {
    /// Whether `point` meets the target.
    ///
    /// ```
    /// use bigbatch_spec::{EvalPoint, Metric, Target};
    /// let t = Target { metric: Metric::TestError, threshold: 0.01 };
    /// # let p = |a| EvalPoint { step: 1, epoch: 0., examples: 1, train_loss: 0.,
    /// #     test_loss: Some(0.), test_accuracy: Some(a), validation_loss: None,
    /// #     validation_accuracy: None, b_simple: None, b_simple_smoothed: None };
    /// assert!(t.is_met(&p(0.995)) && !t.is_met(&p(0.98)));
    /// ```
    ///
    /// A point where the metric's split was not measured never meets it.
    pub fn is_met(&self, point: &EvalPoint) -> bool {
        self.metric.value(point).is_some_and(|v| {
            if self.metric.higher_is_better() {
                v >= self.threshold
            } else {
                v <= self.threshold
            }
        })
    }

    /// Steps to target (Shallue et al. 2019): the step of the first evaluation
    /// in `curve` that meets the target, if any.
    pub fn steps_to_target(&self, curve: &[EvalPoint]) -> Option<u64> {
        curve.iter().find(|p| self.is_met(p)).map(|p| p.step)
    }

    /// Checks the threshold is a fraction.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for `target.threshold` outside `[0, 1]` (or NaN).
    pub fn validate(&self) -> Result<()> {
        fraction("target.threshold", self.threshold)
    }
}

/// How to train: batch size, budget, evaluation cadence, optimizer and its
/// schedule, loss options, seed.
///
/// Every field has a default ([`TrainConfig::default`]), so a config file
/// states only what it changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Examples per optimizer step (128).
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// When to stop (10 epochs).
    #[serde(default = "defaults::budget")]
    pub budget: Budget,
    /// Seed of initialisation and of the per-epoch data order (0).
    #[serde(default)]
    pub seed: u64,
    /// Evaluate every this many steps, and after the last (100). With
    /// `eval_growth`, the longest gap between two evaluations.
    #[serde(default = "defaults::eval_every_steps")]
    pub eval_every_steps: u64,
    /// Evaluate at steps growing geometrically by this factor (`> 1`): after
    /// an evaluation at step `s` the next is at `max(s + 1, ⌈g·s⌉)`, at most
    /// `eval_every_steps` later. Steps to a target are then resolved to the
    /// same relative precision `g − 1` at every batch size (none: a fixed
    /// cadence of `eval_every_steps`). See [`TrainConfig::next_eval`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_growth: Option<f64>,
    /// Hold out this many training examples as a validation split (Shallue et
    /// al. and You et al. train MNIST on 55,000 and validate on 5,000): a
    /// class-stratified sample drawn with one fixed seed, so every run on the
    /// same data holds out the same examples whatever its own seed. The
    /// optimizer never sees them; every evaluation measures them, and the
    /// test split is measured once, at the evaluation that ends the run.
    /// Lengths in epochs count the examples left for training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_examples: Option<usize>,
    /// Examples per evaluation forward pass (memory only; 1000).
    #[serde(default = "defaults::eval_batch_size")]
    pub eval_batch_size: usize,
    /// The optimizer (momentum 0.9, learning rate 0.05).
    #[serde(default)]
    pub optimizer: OptimizerSpec,
    /// How its learning rate moves over the run (constant).
    #[serde(default, skip_serializing_if = "is_default")]
    pub schedule: ScheduleSpec,
    /// Label smoothing `ε ∈ [0, 1)` of the softmax cross-entropy (0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub label_smoothing: f64,
    /// Stop at the first evaluation that meets this target (Shallue et al. 2019).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Split each batch into micro-batches of at most this many examples and
    /// accumulate their gradients into one step (none: the whole batch at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro_batch_size: Option<usize>,
    /// Ghost batch norm (Hoffer et al. 2017): batch-norm layers normalise each
    /// group of this many examples with its own statistics. Models with batch
    /// norm only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ghost_batch_size: Option<usize>,
    /// Track the simple noise scale `B_simple` from the micro-batch gradients
    /// (needs at least two micro-batches per step).
    #[serde(default)]
    pub track_noise_scale: bool,
    /// A training loss above this multiple of the first step's loss marks the
    /// run diverged, as a non-finite loss always does (10).
    #[serde(default = "defaults::divergence_factor")]
    pub divergence_factor: f64,
}

mod defaults {
    use crate::Budget;
    pub fn batch_size() -> usize {
        128
    }
    pub fn budget() -> Budget {
        Budget::Epochs(10)
    }
    pub fn eval_every_steps() -> u64 {
        100
    }
    pub fn eval_batch_size() -> usize {
        1000
    }
    pub fn divergence_factor() -> f64 {
        10.0
    }
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_default<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self::new(
            defaults::batch_size(),
            defaults::budget(),
            OptimizerSpec::default(),
        )
    }
}

impl TrainConfig {
    /// A configuration with the defaults for everything but batch size,
    /// budget and optimizer: seed 0, evaluation every 100 steps with batches
    /// of 1000, constant learning rate, no label smoothing, no target, no
    /// accumulation, no noise-scale tracking, loss explosion at 10× the first
    /// loss.
    pub fn new(batch_size: usize, budget: Budget, optimizer: OptimizerSpec) -> Self {
        Self {
            batch_size,
            budget,
            seed: 0,
            eval_every_steps: defaults::eval_every_steps(),
            eval_growth: None,
            validation_examples: None,
            eval_batch_size: defaults::eval_batch_size(),
            optimizer,
            schedule: ScheduleSpec::default(),
            label_smoothing: 0.0,
            target: None,
            micro_batch_size: None,
            ghost_batch_size: None,
            track_noise_scale: false,
            divergence_factor: defaults::divergence_factor(),
        }
    }

    /// The examples the optimizer trains on, of a training set of
    /// `train_len`: those left after the validation split.
    pub fn fit_len(&self, train_len: usize) -> usize {
        train_len.saturating_sub(self.validation_examples.unwrap_or(0))
    }

    /// Optimizer steps per epoch over a training set of `train_len` (less
    /// the validation split): partial last batches are dropped.
    pub fn steps_per_epoch(&self, train_len: usize) -> u64 {
        (self.fit_len(train_len) / self.batch_size.max(1)) as u64
    }

    /// The evaluation step after an evaluation at `step` (or after the start,
    /// `step = 0`): `eval_every_steps` later on a fixed cadence; with
    /// `eval_growth = g`, `max(step + 1, ⌈g·step⌉)`, at most
    /// `eval_every_steps` later. The run's last step is evaluated as well.
    ///
    /// ```
    /// use bigbatch_spec::{Budget, OptimizerSpec, TrainConfig};
    /// let mut cfg = TrainConfig::new(8, Budget::Steps(100), OptimizerSpec::default());
    /// cfg.eval_every_steps = 10;
    /// assert_eq!(cfg.next_eval(0), 10);
    /// assert_eq!(cfg.next_eval(20), 30);
    /// cfg.eval_growth = Some(1.5);
    /// let steps: Vec<u64> = std::iter::successors(Some(cfg.next_eval(0)), |&s| Some(cfg.next_eval(s)))
    ///     .take(9).collect();
    /// assert_eq!(steps, [1, 2, 3, 5, 8, 12, 18, 27, 37]);
    /// ```
    pub fn next_eval(&self, step: u64) -> u64 {
        let every = self.eval_every_steps.max(1);
        match self.eval_growth {
            None => (step / every + 1) * every,
            Some(g) => {
                let grown = (step as f64 * g).ceil();
                let grown = if grown.is_finite() && grown < u64::MAX as f64 {
                    grown as u64
                } else {
                    u64::MAX
                };
                grown.max(step + 1).min(step + every)
            }
        }
    }

    /// The first evaluation step after `step` on the cadence of
    /// [`TrainConfig::next_eval`] started at step 0 (where a resumed run
    /// picks it up).
    pub fn first_eval_after(&self, step: u64) -> u64 {
        let mut e = self.next_eval(0);
        while e <= step {
            e = self.next_eval(e);
        }
        e
    }

    /// The number of optimizer steps the budget allows.
    pub fn total_steps(&self, train_len: usize) -> u64 {
        match self.budget {
            Budget::Steps(n) => n,
            Budget::Epochs(n) => n * self.steps_per_epoch(train_len),
        }
    }

    /// The run the schedule is laid over, for a training set of `train_len`.
    pub fn horizon(&self, train_len: usize) -> Horizon {
        Horizon {
            total_steps: self.total_steps(train_len),
            steps_per_epoch: self.steps_per_epoch(train_len),
        }
    }

    /// Checks every value that does not depend on the data: ranges of the
    /// optimizer, the loss options, the cadence and the target.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] or [`Error::Inconsistent`] naming the field.
    pub fn validate(&self) -> Result<()> {
        ensure(
            self.batch_size >= 1,
            "batch_size",
            self.batch_size as f64,
            ">= 1",
        )?;
        ensure(
            self.eval_every_steps >= 1,
            "eval_every_steps",
            self.eval_every_steps as f64,
            ">= 1",
        )?;
        ensure(
            self.eval_batch_size >= 1,
            "eval_batch_size",
            self.eval_batch_size as f64,
            ">= 1",
        )?;
        if let Some(g) = self.eval_growth {
            ensure(
                g.is_finite() && g > 1.0,
                "eval_growth",
                g,
                "a finite factor > 1",
            )?;
        }
        if let Some(v) = self.validation_examples {
            ensure(v >= 1, "validation_examples", v as f64, ">= 1")?;
        }
        let budget = match self.budget {
            Budget::Steps(n) | Budget::Epochs(n) => n,
        };
        ensure(budget >= 1, "budget", budget as f64, ">= 1 step or epoch")?;
        for (field, v) in [
            ("micro_batch_size", self.micro_batch_size),
            ("ghost_batch_size", self.ghost_batch_size),
        ] {
            if let Some(v) = v {
                ensure(v >= 1, field, v as f64, ">= 1")?;
            }
        }
        self.optimizer.validate()?;
        self.schedule.validate_values()?;
        ensure(
            (0.0..1.0).contains(&self.label_smoothing),
            "label_smoothing",
            self.label_smoothing,
            "in [0, 1)",
        )?;
        ensure(
            self.divergence_factor > 1.0,
            "divergence_factor",
            self.divergence_factor,
            "> 1",
        )?;
        if let Some(t) = &self.target {
            t.validate()?;
            let validation = self.validation_examples.is_some();
            if t.metric.on_validation() != validation {
                return Err(Error::Inconsistent {
                    field: "target.metric".into(),
                    problem: if validation {
                        format!(
                            "{} is not measured during a run with a validation split \
                             (the test split is measured once, at the end): use a validation metric",
                            t.metric.describe()
                        )
                    } else {
                        format!(
                            "{} needs a validation split (set validation_examples)",
                            t.metric.describe()
                        )
                    },
                });
            }
        }
        if self.track_noise_scale
            && self
                .micro_batch_size
                .is_none_or(|m| m * 2 > self.batch_size)
        {
            return Err(Error::Inconsistent {
                field: "track_noise_scale".into(),
                problem: format!(
                    "needs at least two micro-batches per step (batch {}, micro-batch {:?})",
                    self.batch_size, self.micro_batch_size
                ),
            });
        }
        Ok(())
    }

    /// [`TrainConfig::validate`], then the checks that need the training set
    /// size: the batch fits, the schedule fits the run.
    ///
    /// # Errors
    /// As [`TrainConfig::validate`]; [`Error::OutOfRange`] for a batch larger
    /// than the training set; the schedule's errors.
    pub fn validate_for(&self, train_len: usize) -> Result<()> {
        self.validate()?;
        if let Some(v) = self.validation_examples.filter(|&v| v >= train_len) {
            return Err(Error::Inconsistent {
                field: "validation_examples".into(),
                problem: format!(
                    "{v} leaves none of the {train_len} training examples to train on"
                ),
            });
        }
        let fit_len = self.fit_len(train_len);
        if self.batch_size > fit_len {
            return Err(Error::Inconsistent {
                field: "batch_size".into(),
                problem: format!(
                    "{} is more than the {fit_len} training examples",
                    self.batch_size
                ),
            });
        }
        self.schedule.validate(&self.horizon(train_len))
    }
}
