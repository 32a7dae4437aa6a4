//! The one training loop: every experiment in bigbatch runs through [`train`].

use std::time::Instant;

use bigbatch_data::{Batches, ImageClassification, Normalization};
use bigbatch_optim::{Boxed, Optimizer, Params, boxed};
use candle_core::{D, DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Data, Error, EvalPoint, Model, Result, Status};

/// The optimizer of a run, by paper name and hyperparameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum OptimizerConfig {
    /// Plain SGD.
    Sgd {
        /// Step size.
        learning_rate: f64,
    },
    /// Heavy-ball momentum.
    Momentum {
        /// Step size.
        learning_rate: f64,
        /// Momentum coefficient μ.
        momentum: f64,
    },
    /// Nesterov momentum.
    Nesterov {
        /// Step size.
        learning_rate: f64,
        /// Momentum coefficient μ.
        momentum: f64,
    },
}

impl OptimizerConfig {
    /// The transform this configuration names.
    pub fn build(&self) -> Boxed {
        match *self {
            OptimizerConfig::Sgd { learning_rate } => boxed(bigbatch_optim::sgd(learning_rate)),
            OptimizerConfig::Momentum {
                learning_rate,
                momentum,
            } => boxed(bigbatch_optim::momentum(learning_rate, momentum)),
            OptimizerConfig::Nesterov {
                learning_rate,
                momentum,
            } => boxed(bigbatch_optim::nesterov(learning_rate, momentum)),
        }
    }
}

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Budget {
    /// This many optimizer steps.
    Steps(u64),
    /// This many passes over the training set.
    Epochs(u64),
}

/// How to train: batch size, budget, evaluation cadence, optimizer, seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Examples per optimizer step.
    pub batch_size: usize,
    /// When to stop.
    pub budget: Budget,
    /// Seed of initialisation and of the per-epoch data order.
    pub seed: u64,
    /// Evaluate every this many steps (and always after the last step).
    pub eval_every_steps: u64,
    /// Examples per evaluation forward pass (memory only; no effect on results).
    pub eval_batch_size: usize,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
}

impl TrainConfig {
    /// Optimizer steps per epoch: partial last batches are dropped.
    pub fn steps_per_epoch(&self, train_len: usize) -> u64 {
        (train_len / self.batch_size.max(1)) as u64
    }

    /// The number of optimizer steps the budget allows.
    pub fn total_steps(&self, train_len: usize) -> u64 {
        match self.budget {
            Budget::Steps(n) => n,
            Budget::Epochs(n) => n * self.steps_per_epoch(train_len),
        }
    }

    /// Checks the configuration against the training set size.
    ///
    /// # Errors
    /// [`Error::Config`] saying which value is out of range.
    pub fn validate(&self, train_len: usize) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(msg));
        if self.batch_size == 0 || self.batch_size > train_len {
            return bad(format!(
                "batch size {} must be between 1 and the {train_len} training examples",
                self.batch_size
            ));
        }
        if self.eval_every_steps == 0 || self.eval_batch_size == 0 {
            return bad("eval_every_steps and eval_batch_size must be positive".into());
        }
        if matches!(self.budget, Budget::Steps(0) | Budget::Epochs(0)) {
            return bad("the budget must be positive".into());
        }
        Ok(())
    }
}

/// Watches a run: progress bars, logs. Every method has a do-nothing default.
pub trait Observer {
    /// Training starts; `total_steps` will be taken unless it diverges.
    fn started(&mut self, _total_steps: u64) {}
    /// Step `step` (1-based) finished with mini-batch loss `loss`.
    fn stepped(&mut self, _step: u64, _loss: f64) {}
    /// An evaluation finished.
    fn evaluated(&mut self, _point: &EvalPoint) {}
}

impl Observer for () {}

/// What [`train`] returns: the curve and how it ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// One point per evaluation.
    pub curve: Vec<EvalPoint>,
    /// Completed, or diverged at a step.
    pub status: Status,
    /// Seconds spent.
    pub wall_seconds: f64,
}

/// Trains `model` on `data` as `cfg` says, evaluating on `data.test`.
///
/// Each epoch visits the training set in the order [`Batches::shuffled`] gives
/// for `(cfg.seed, epoch)`, dropping the partial last batch. A non-finite loss
/// ends the run with [`Status::Diverged`] rather than an error.
///
/// # Errors
/// [`Error::Config`] for an invalid configuration; tensor errors otherwise.
pub fn train(
    model: &Model,
    data: &Data,
    cfg: &TrainConfig,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    cfg.validate(data.train.len())?;
    let start = Instant::now();
    let params = Params::new(model.vars.vars());
    let mut optimizer = Optimizer::new(cfg.optimizer.build(), &params)?;
    let steps_per_epoch = cfg.steps_per_epoch(data.train.len());
    let total_steps = cfg.total_steps(data.train.len());
    observer.started(total_steps);

    let mut batch = BatchBuffers::default();
    let mut curve = Vec::new();
    let (mut loss_sum, mut loss_count) = (0.0, 0u64);
    let mut step = 0u64;
    'epochs: for epoch in 0.. {
        for indices in Batches::shuffled(data.train.len(), cfg.batch_size, cfg.seed, epoch, true) {
            let (xs, ys) = batch.load(&data.train, &indices, &data.normalization, device)?;
            let logits = model.net.forward(&xs, true)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &ys)?;
            let loss_value = f64::from(loss.to_scalar::<f32>()?);
            step += 1;
            if !loss_value.is_finite() {
                return Ok(Outcome {
                    curve,
                    status: Status::Diverged { step },
                    wall_seconds: start.elapsed().as_secs_f64(),
                });
            }
            optimizer.step(&params, params.grads(&loss.backward()?)?)?;
            observer.stepped(step, loss_value);
            loss_sum += loss_value;
            loss_count += 1;
            if step.is_multiple_of(cfg.eval_every_steps) || step == total_steps {
                let (test_loss, test_accuracy) = evaluate(
                    model,
                    &data.test,
                    &data.normalization,
                    cfg.eval_batch_size,
                    device,
                )?;
                let point = EvalPoint {
                    step,
                    epoch: step as f64 / steps_per_epoch as f64,
                    examples: step * cfg.batch_size as u64,
                    train_loss: loss_sum / loss_count.max(1) as f64,
                    test_loss,
                    test_accuracy,
                };
                observer.evaluated(&point);
                curve.push(point);
                (loss_sum, loss_count) = (0.0, 0);
            }
            if step == total_steps {
                break 'epochs;
            }
        }
    }
    Ok(Outcome {
        curve,
        status: Status::Completed,
        wall_seconds: start.elapsed().as_secs_f64(),
    })
}

/// Mean cross-entropy and accuracy of `model` on all of `set`, in eval mode.
///
/// # Errors
/// Tensor errors.
pub fn evaluate(
    model: &Model,
    set: &ImageClassification,
    normalization: &Normalization,
    batch_size: usize,
    device: &Device,
) -> Result<(f64, f64)> {
    let mut batch = BatchBuffers::default();
    let (mut loss_sum, mut correct) = (0.0, 0u64);
    for indices in Batches::sequential(set.len(), batch_size) {
        let (xs, ys) = batch.load(set, &indices, normalization, device)?;
        let logits = model.net.forward(&xs, false)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &ys)?;
        loss_sum += f64::from(loss.to_scalar::<f32>()?) * indices.len() as f64;
        let hits = logits
            .argmax(D::Minus1)?
            .eq(&ys)?
            .to_dtype(DType::U32)?
            .sum_all()?;
        correct += u64::from(hits.to_scalar::<u32>()?);
    }
    let n = set.len().max(1) as f64;
    Ok((loss_sum / n, correct as f64 / n))
}

/// Reused host buffers for assembling a batch.
#[derive(Default)]
struct BatchBuffers {
    inputs: Vec<f32>,
    labels: Vec<u32>,
}

impl BatchBuffers {
    fn load(
        &mut self,
        set: &ImageClassification,
        indices: &[usize],
        normalization: &Normalization,
        device: &Device,
    ) -> Result<(Tensor, Tensor)> {
        set.batch_into(indices, normalization, &mut self.inputs, &mut self.labels);
        let s = set.shape();
        let xs = Tensor::from_slice(
            &self.inputs,
            (indices.len(), s.channels, s.height, s.width),
            device,
        )?;
        let ys = Tensor::from_slice(&self.labels, indices.len(), device)?;
        Ok((xs, ys))
    }
}
