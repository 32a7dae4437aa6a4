//! The one training loop: every experiment in bigbatch runs through [`train`].

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Instant;

use bigbatch_data::{Batches, ImageClassification, Normalization};
use bigbatch_models::Norm;
use bigbatch_noise::{NoiseScaleConfig, NoiseScaleStep, NoiseScaleTracker};
use bigbatch_optim::{Accumulator, BuildOptimizer, Tree};
use bigbatch_record::{Provenance, RunRecord, Schema};
use bigbatch_spec::{RunSpec, TrainConfig};
use candle_core::{D, DType, Device, Tensor};

use crate::checkpoint::{self, LoopState};
use crate::{Data, Error, EvalPoint, Model, Result, Status};

/// The batch statistics a model's batch-norm layers must use for `cfg`:
/// ghost batch norm with `cfg.ghost_batch_size`, else the whole (micro-)batch.
pub fn batch_norm(cfg: &TrainConfig) -> Norm {
    match cfg.ghost_batch_size {
        None => Norm::Batch,
        Some(virtual_batch_size) => Norm::Ghost { virtual_batch_size },
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

impl Outcome {
    /// The record of this run of `spec`.
    pub fn into_record(self, spec: &RunSpec, provenance: Provenance) -> RunRecord {
        let (workload, model, config) = (spec.workload, spec.model(), spec.train.clone());
        let examples_to_target = self.steps_to_target.map(|s| s * config.batch_size as u64);
        RunRecord {
            schema: Schema,
            workload,
            model,
            config,
            provenance,
            status: self.status,
            curve: self.curve,
            steps_to_target: self.steps_to_target,
            examples_to_target,
            noise_scale: self.noise_scale,
            wall_seconds: self.wall_seconds,
        }
    }
}

/// What [`train`] returns: the curve and how it ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// One point per evaluation.
    pub curve: Vec<EvalPoint>,
    /// Completed, reached the target, or diverged at a step.
    pub status: Status,
    /// The first evaluation step that met the target, if any.
    pub steps_to_target: Option<u64>,
    /// With noise-scale tracking, one entry per step: the raw and smoothed
    /// `B_simple` (empty otherwise).
    pub noise_scale: Vec<NoiseScaleStep>,
    /// Seconds spent (across resumptions).
    pub wall_seconds: f64,
}

/// Where and how often [`train_resumable`] saves the state it resumes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpointing {
    /// The checkpoint file (safetensors; replaced atomically at each save).
    pub path: PathBuf,
    /// Save after every this many steps.
    pub every_steps: u64,
}

/// How many times candle's elementwise workers spin after an op before they
/// sleep, unless `CANDLE_BARRIER_POOL_SPIN_LIMIT` says otherwise.
pub const CANDLE_SPIN_LIMIT: u32 = 100;

/// Shortens the spin of candle's elementwise thread pool to
/// [`CANDLE_SPIN_LIMIT`] unless the user set `CANDLE_BARRIER_POOL_SPIN_LIMIT`.
///
/// candle's workers spin 25,000 times after each elementwise op (the gradient
/// additions of the backward pass) before they sleep, while our kernels run
/// on rayon's threads on the same cores: with two threads on two cores the
/// spinning takes a core from them (an MLP step at batch 128 is a third
/// faster with a short spin; `crates/bench/PERF.md`, entry 21). candle reads
/// the variable once, when its pool starts.
///
/// # Safety
/// Sets a process environment variable: call it before the program starts
/// any thread (first thing in `main`), as [`std::env::set_var`] requires.
pub unsafe fn quiet_candle_pool() {
    const VAR: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(VAR).is_none() {
        // SAFETY: the caller guarantees no other thread exists yet.
        unsafe { std::env::set_var(VAR, CANDLE_SPIN_LIMIT.to_string()) };
    }
}

/// Runs `f` on a thread of rayon's global pool (inline if this thread is
/// one) and waits for it.
///
/// The CPU kernels split their loops with rayon. Called from a thread outside
/// the pool, each parallel loop hands its work to the pool and sleeps until it
/// is done: a wake-up of tens of microseconds per op, and per parameter tensor
/// in the optimizer, which at one thread and a small batch is a tenth of a
/// training step. From inside the pool the loops start where they are. The
/// training loop runs each step's gradient computation and update, and each
/// evaluation, this way.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Trains `model` on `data` as `cfg` says, evaluating on `data.test`.
///
/// Each epoch visits the training set in the order [`Batches::shuffled`] gives
/// for `(cfg.seed, epoch)`, dropping the partial last batch. Each batch is
/// split into micro-batches of at most `cfg.micro_batch_size` examples whose
/// gradients are averaged by size ([`Accumulator`]) into one optimizer step, so
/// a batch larger than memory trains exactly like one big batch (for models
/// without batch norm). With `cfg.ghost_batch_size` the model's batch-norm
/// layers normalise each group of that many examples alone (ghost batch norm,
/// Hoffer et al. 2017), independent of the micro-batch size; the model must be
/// built with [`batch_norm`]. The loss is [`bigbatch_optim::softmax_cross_entropy`]
/// with `cfg.label_smoothing`. A non-finite loss, or one above
/// `cfg.divergence_factor` times the first, ends the run with
/// [`Status::Diverged`] rather than an error. With `cfg.target`, the run stops
/// at the first evaluation meeting it ([`Status::ReachedTarget`]), and that
/// step is the steps-to-target of Shallue et al. (2019).
///
/// # Errors
/// [`Error::Spec`] for an invalid configuration, [`Error::BatchNormMismatch`]
/// for a model whose batch norm is not [`batch_norm`]`(cfg)`; tensor errors otherwise.
pub fn train(
    model: &Model,
    data: &Data,
    cfg: &TrainConfig,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<Outcome> {
    train_resumable(model, data, cfg, device, observer, None)
}

/// [`train`], saving a checkpoint (model parameters and buffers, optimizer
/// state, loop state: step, curve, noise-scale averages) every
/// `checkpointing.every_steps` steps, and resuming from that checkpoint if it
/// exists when called. Data order is a function of `(seed, epoch)`, so a
/// resumed run continues bit-identically (for models without dropout, whose
/// masks come from candle's unseedable RNG).
///
/// # Errors
/// As [`train`]; [`Error::Checkpoint`] for a checkpoint that does not belong
/// to this model, optimizer or configuration.
pub fn train_resumable(
    model: &Model,
    data: &Data,
    cfg: &TrainConfig,
    device: &Device,
    observer: &mut dyn Observer,
    checkpointing: Option<&Checkpointing>,
) -> Result<Outcome> {
    train_until(model, data, cfg, device, observer, checkpointing, None)
}

/// [`train_resumable`], stopped early with [`Status::Pruned`] after step
/// `stop_after` if the target is not met by then. The schedule and every
/// step before it are those of the full run: a sweep prunes a trial that can
/// no longer beat its batch size's best this way.
///
/// # Errors
/// As [`train_resumable`].
pub fn train_until(
    model: &Model,
    data: &Data,
    cfg: &TrainConfig,
    device: &Device,
    observer: &mut dyn Observer,
    checkpointing: Option<&Checkpointing>,
    stop_after: Option<u64>,
) -> Result<Outcome> {
    check(model, data, cfg, checkpointing)?;
    let mut run = Run::new(model, data, cfg, device, checkpointing)?;
    observer.started(run.total_steps);
    let steps_per_epoch = run.steps_per_epoch.max(1);
    let mut epoch = run.state.step / steps_per_epoch;
    let mut skip = (run.state.step % steps_per_epoch) as usize;
    loop {
        let batches = Batches::shuffled(run.train.len(), cfg.batch_size, cfg.seed, epoch, true);
        for indices in batches.skip(std::mem::take(&mut skip)) {
            let step = run.state.step + 1;
            let gradients = run.gradients(&indices)?;
            let first = *run.state.first_loss.get_or_insert(gradients.loss);
            if let Some(status) = decide_after_step(cfg, step, gradients.loss, first) {
                return Ok(run.finish(status));
            }
            let noise = run.update(step, gradients)?;
            observer.stepped(step, run.last_loss);
            let evaluation = if step == run.next_eval || step == run.total_steps {
                run.next_eval = cfg.next_eval(step);
                let point = run.evaluate(step, noise)?;
                observer.evaluated(&point);
                Some(point)
            } else {
                None
            };
            if let Some(status) = decide_after_eval(cfg, step, run.total_steps, evaluation.as_ref())
            {
                run.test_at_the_end()?;
                return Ok(run.finish(status));
            }
            if stop_after.is_some_and(|cap| step >= cap) {
                return Ok(run.finish(Status::Pruned { step }));
            }
            run.checkpoint(step)?;
        }
        epoch += 1;
    }
}

/// Whether a step's loss ends the run: not finite, or above
/// `cfg.divergence_factor` times the first step's loss (the step is not applied).
pub fn decide_after_step(
    cfg: &TrainConfig,
    step: u64,
    loss: f64,
    first_loss: f64,
) -> Option<Status> {
    (!loss.is_finite() || loss > cfg.divergence_factor * first_loss)
        .then_some(Status::Diverged { step })
}

/// Whether the run ends after `step`: its evaluation met the target, or the
/// budget of `total_steps` is spent.
pub fn decide_after_eval(
    cfg: &TrainConfig,
    step: u64,
    total_steps: u64,
    evaluation: Option<&EvalPoint>,
) -> Option<Status> {
    let met = cfg.target.zip(evaluation).is_some_and(|(t, p)| t.is_met(p));
    if met {
        Some(Status::ReachedTarget { step })
    } else if step >= total_steps {
        Some(Status::Completed)
    } else {
        None
    }
}

/// Checks that the configuration fits the data, the model and the checkpointing.
fn check(
    model: &Model,
    data: &Data,
    cfg: &TrainConfig,
    checkpointing: Option<&Checkpointing>,
) -> Result<()> {
    cfg.validate_for(data.train.len())?;
    let wanted = batch_norm(cfg);
    let fits = match model.batch_norm {
        Some(norm) => norm == wanted,
        None => cfg.ghost_batch_size.is_none(),
    };
    if !fits {
        return Err(Error::BatchNormMismatch {
            model: model.batch_norm,
            config: wanted,
        });
    }
    if checkpointing.is_some_and(|c| c.every_steps == 0) {
        return Err(bigbatch_spec::Error::OutOfRange {
            field: "checkpointing.every_steps".into(),
            value: 0.0,
            expected: ">= 1",
        }
        .into());
    }
    Ok(())
}

/// One step's gradients before the update.
struct Gradients {
    /// The batch's mean loss.
    loss: f64,
    /// The batch's mean gradient.
    grads: Tree,
    /// Each micro-batch's size and gradient, for noise-scale tracking.
    micro: Vec<(usize, Tree)>,
}

/// The seed of the validation split: one split of a data set for every run,
/// whatever the run's own seed.
pub const VALIDATION_SEED: u64 = 0;

/// A run in progress: what the loop's parts share.
struct Run<'a> {
    model: &'a Model,
    data: &'a Data,
    /// The examples trained on: `data.train` less the validation split.
    train: Cow<'a, ImageClassification>,
    /// The validation split held out of `data.train`, if the run has one.
    validation: Option<ImageClassification>,
    /// The step of the next evaluation ([`TrainConfig::next_eval`]).
    next_eval: u64,
    cfg: &'a TrainConfig,
    device: &'a Device,
    checkpointing: Option<&'a Checkpointing>,
    params: bigbatch_optim::Params,
    optimizer: bigbatch_optim::Optimizer,
    state: LoopState,
    batch: BatchBuffers,
    steps_per_epoch: u64,
    total_steps: u64,
    last_loss: f64,
    start: Instant,
}

impl<'a> Run<'a> {
    /// The optimizer built from the spec, and the state resumed from the
    /// checkpoint if there is one.
    fn new(
        model: &'a Model,
        data: &'a Data,
        cfg: &'a TrainConfig,
        device: &'a Device,
        checkpointing: Option<&'a Checkpointing>,
    ) -> Result<Self> {
        let params = model.params();
        let horizon = cfg.horizon(data.train.len());
        let (train, validation) = match cfg.validation_examples {
            Some(n) => {
                let (train, validation) = data.train.stratified_split(n, VALIDATION_SEED)?;
                (Cow::Owned(train), Some(validation))
            }
            None => (Cow::Borrowed(&data.train), None),
        };
        let mut optimizer = cfg.optimizer.build(&params, &cfg.schedule, &horizon)?;
        let mut state = LoopState::new(cfg, NoiseScaleTracker::new(NoiseScaleConfig::default())?);
        if let Some(c) = checkpointing.filter(|c| c.path.exists()) {
            state = checkpoint::load(&c.path, cfg, model, &mut optimizer)?;
            tracing::info!(step = state.step, path = %c.path.display(), "resuming from checkpoint");
        }
        let next_eval = cfg.first_eval_after(state.step);
        Ok(Self {
            model,
            data,
            train,
            validation,
            next_eval,
            cfg,
            device,
            checkpointing,
            params,
            optimizer,
            state,
            batch: BatchBuffers::default(),
            steps_per_epoch: horizon.steps_per_epoch,
            total_steps: horizon.total_steps,
            last_loss: f64::NAN,
            start: Instant::now(),
        })
    }

    /// Forward and backward over the batch's micro-batches, gradients
    /// averaged by size ([`Accumulator`]); stops at a non-finite loss.
    fn gradients(&mut self, indices: &[usize]) -> Result<Gradients> {
        let (model, data, cfg, device) = (self.model, self.data, self.cfg, self.device);
        let train = &*self.train;
        let micro = cfg.micro_batch_size.unwrap_or(cfg.batch_size);
        let (params, batch) = (&self.params, &mut self.batch);
        let mut accumulator = Accumulator::new();
        let mut micro_grads: Vec<(usize, Tree)> = Vec::new();
        let mut loss_value = 0.0;
        on_pool(|| -> Result<()> {
            for chunk in indices.chunks(micro) {
                let (xs, ys) = batch.load(train, chunk, &data.normalization, device)?;
                let logits = model.net.forward(&xs, true)?;
                let loss =
                    bigbatch_optim::softmax_cross_entropy(&logits, &ys, cfg.label_smoothing)?;
                let value = f64::from(loss.to_scalar::<f32>()?);
                loss_value += value * chunk.len() as f64 / indices.len() as f64;
                if !value.is_finite() {
                    break;
                }
                let grads = params.grads(&loss.backward()?)?;
                accumulator.add(&grads, chunk.len())?;
                if cfg.track_noise_scale {
                    micro_grads.push((chunk.len(), grads));
                }
            }
            Ok(())
        })?;
        let grads = if loss_value.is_finite() {
            accumulator.take()?
        } else {
            Tree::new()
        };
        Ok(Gradients {
            loss: loss_value,
            grads,
            micro: micro_grads,
        })
    }

    /// Applies the optimizer update of `step` and tracks the noise scale.
    fn update(&mut self, step: u64, g: Gradients) -> Result<Option<NoiseScaleStep>> {
        let (optimizer, params) = (&mut self.optimizer, &self.params);
        on_pool(|| optimizer.step(params, g.grads))?;
        self.state.step = step;
        self.state.loss_sum += g.loss;
        self.state.loss_count += 1;
        self.last_loss = g.loss;
        if !self.cfg.track_noise_scale {
            return Ok(None);
        }
        let n = self.state.tracker.observe(&g.micro)?;
        self.state.noise_scale.push(n);
        Ok(Some(n))
    }

    /// Evaluates after `step` on the validation split if the run has one,
    /// else on the test split, and appends the point to the curve.
    fn evaluate(&mut self, step: u64, noise: Option<NoiseScaleStep>) -> Result<EvalPoint> {
        let data = self.data;
        let on = |set| {
            evaluate(
                self.model,
                set,
                &data.normalization,
                self.cfg.eval_batch_size,
                self.device,
            )
        };
        let (validation, test) = match &self.validation {
            Some(v) => (Some(on(v)?), None),
            None => (None, Some(on(&data.test)?)),
        };
        let point = EvalPoint {
            step,
            epoch: step as f64 / self.steps_per_epoch as f64,
            examples: step * self.cfg.batch_size as u64,
            train_loss: self.state.loss_sum / self.state.loss_count.max(1) as f64,
            test_loss: test.map(|t| t.0),
            test_accuracy: test.map(|t| t.1),
            validation_loss: validation.map(|v| v.0),
            validation_accuracy: validation.map(|v| v.1),
            b_simple: noise.map(|n| n.raw.b_simple),
            b_simple_smoothed: noise.map(|n| n.smoothed.b_simple),
        };
        self.state.curve.push(point.clone());
        (self.state.loss_sum, self.state.loss_count) = (0.0, 0);
        Ok(point)
    }

    /// With a validation split, measures the test split once, at the
    /// evaluation that ends the run (the curve's last point).
    fn test_at_the_end(&mut self) -> Result<()> {
        if self.validation.is_none() {
            return Ok(());
        }
        let (loss, accuracy) = evaluate(
            self.model,
            &self.data.test,
            &self.data.normalization,
            self.cfg.eval_batch_size,
            self.device,
        )?;
        if let Some(last) = self.state.curve.last_mut() {
            last.test_loss = Some(loss);
            last.test_accuracy = Some(accuracy);
        }
        Ok(())
    }

    /// Saves a checkpoint if one is due after `step`.
    fn checkpoint(&self, step: u64) -> Result<()> {
        if let Some(c) = self
            .checkpointing
            .filter(|c| step.is_multiple_of(c.every_steps))
        {
            let mut saved = self.state.clone();
            saved.wall_seconds += self.start.elapsed().as_secs_f64();
            checkpoint::save(&c.path, &saved, self.model, &self.optimizer)?;
        }
        Ok(())
    }

    /// The outcome of a run that ended with `status`.
    fn finish(self, status: Status) -> Outcome {
        let steps_to_target = match status {
            Status::ReachedTarget { step } => Some(step),
            _ => None,
        };
        Outcome {
            curve: self.state.curve,
            status,
            steps_to_target,
            noise_scale: self.state.noise_scale,
            wall_seconds: self.state.wall_seconds + self.start.elapsed().as_secs_f64(),
        }
    }
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
    on_pool(|| -> Result<()> {
        for indices in Batches::sequential(set.len(), batch_size) {
            let (xs, ys) = batch.load(set, &indices, normalization, device)?;
            let logits = model.net.forward(&xs, false)?;
            let loss = bigbatch_optim::softmax_cross_entropy(&logits, &ys, 0.0)?;
            loss_sum += f64::from(loss.to_scalar::<f32>()?) * indices.len() as f64;
            let hits = logits
                .argmax(D::Minus1)?
                .eq(&ys)?
                .to_dtype(DType::U32)?
                .sum_all()?;
            correct += u64::from(hits.to_scalar::<u32>()?);
        }
        Ok(())
    })?;
    let n = set.len().max(1) as f64;
    Ok((loss_sum / n, correct as f64 / n))
}

/// Reused host buffers for assembling a batch.
#[derive(Default)]
pub(crate) struct BatchBuffers {
    inputs: Vec<f32>,
    labels: Vec<u32>,
}

impl BatchBuffers {
    /// The examples `indices` of `set`, normalised, as `(inputs, labels)` on `device`.
    pub(crate) fn load(
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

#[cfg(test)]
mod tests {
    use super::*;
    use bigbatch_spec::{Budget, Metric, OptimizerSpec, Target};

    /// Plays the loop's stop decisions over scripted per-step losses and
    /// per-evaluation accuracies (evaluating every `every` steps).
    fn play(
        cfg: &TrainConfig,
        total: u64,
        losses: &[f64],
        accuracy: impl Fn(u64) -> f64,
    ) -> Status {
        let mut first = None;
        let mut next_eval = cfg.first_eval_after(0);
        for (i, &loss) in losses.iter().enumerate() {
            let step = i as u64 + 1;
            let first = *first.get_or_insert(loss);
            if let Some(s) = decide_after_step(cfg, step, loss, first) {
                return s;
            }
            let due = step == next_eval;
            if due {
                next_eval = cfg.next_eval(step);
            }
            let point = due.then(|| EvalPoint {
                step,
                epoch: 0.0,
                examples: 0,
                train_loss: loss,
                test_loss: Some(loss),
                test_accuracy: Some(accuracy(step)),
                validation_loss: None,
                validation_accuracy: None,
                b_simple: None,
                b_simple_smoothed: None,
            });
            if let Some(s) = decide_after_eval(cfg, step, total, point.as_ref()) {
                return s;
            }
        }
        panic!("the script ran out before a decision")
    }

    fn cfg(target: Option<f64>) -> TrainConfig {
        let mut cfg = TrainConfig::new(8, Budget::Steps(10), OptimizerSpec::default());
        cfg.eval_every_steps = 2;
        cfg.target = target.map(|threshold| Target {
            metric: Metric::TestAccuracy,
            threshold,
        });
        cfg
    }

    #[test]
    fn the_target_is_met_at_the_first_evaluation_reaching_it() {
        let losses = [2.3; 10];
        // Accuracy 0.1·step: 0.6 first reached at step 6, an evaluation step.
        let s = play(&cfg(Some(0.55)), 10, &losses, |step| 0.1 * step as f64);
        assert_eq!(s, Status::ReachedTarget { step: 6 });
        // Reached between evaluations (0.5 at step 5): counted at step 6.
        let s = play(&cfg(Some(0.5)), 10, &losses, |step| 0.1 * step as f64);
        assert_eq!(s, Status::ReachedTarget { step: 6 });
    }

    #[test]
    fn steps_to_target_is_the_first_evaluation_at_or_after_the_crossing_at_every_cadence() {
        // Accuracy crosses the target at step `c` exactly; whatever the
        // cadence, the run reports the first evaluation step ≥ c, and the
        // evaluation before it lies before c: c ∈ (previous, reported].
        for every in [1u64, 3, 10, 64] {
            for growth in [None, Some(1.05), Some(1.1), Some(1.5), Some(3.0)] {
                for c in [1u64, 2, 7, 50, 333] {
                    let mut cfg = cfg(Some(0.5));
                    cfg.eval_every_steps = every;
                    cfg.eval_growth = growth;
                    let losses = vec![2.3; 2000];
                    let s = play(
                        &cfg,
                        2000,
                        &losses,
                        |step| if step >= c { 0.9 } else { 0.1 },
                    );
                    let evals: Vec<u64> =
                        std::iter::successors(Some(cfg.next_eval(0)), |&e| Some(cfg.next_eval(e)))
                            .take_while(|&e| e <= 2000)
                            .collect();
                    let want = evals.iter().copied().find(|&e| e >= c);
                    assert_eq!(
                        s,
                        Status::ReachedTarget {
                            step: want.unwrap_or(0)
                        }
                    );
                    let previous = evals.iter().copied().take_while(|&e| e < c).last();
                    let reported = want.unwrap_or(0);
                    assert!(previous.unwrap_or(0) < c && c <= reported);
                    // The gap is at most `every`, and with growth g at most
                    // max(1, (g − 1)·previous) + 1 steps: the relative resolution.
                    let gap = reported - previous.unwrap_or(0);
                    assert!(gap <= every, "every {every} growth {growth:?}: gap {gap}");
                    if let (Some(g), Some(p)) = (growth, previous) {
                        assert!(gap as f64 <= ((g - 1.0) * p as f64).ceil().max(1.0) + 1.0);
                    }
                }
            }
        }
    }

    #[test]
    fn the_budget_ends_a_run_that_never_meets_its_target() {
        let s = play(&cfg(Some(0.99)), 10, &[2.3; 10], |_| 0.5);
        assert_eq!(s, Status::Completed);
        let s = play(&cfg(None), 7, &[2.3; 10], |_| 0.5);
        assert_eq!(s, Status::Completed);
    }

    #[test]
    fn a_non_finite_or_exploding_loss_diverges_at_its_step() {
        let mut losses = [2.3; 10];
        losses[3] = f64::NAN;
        assert_eq!(
            play(&cfg(None), 10, &losses, |_| 0.1),
            Status::Diverged { step: 4 }
        );
        let mut losses = [2.3; 10];
        losses[4] = 23.1; // > 10 × the first loss
        assert_eq!(
            play(&cfg(None), 10, &losses, |_| 0.1),
            Status::Diverged { step: 5 }
        );
        losses[4] = 22.9;
        assert_eq!(play(&cfg(None), 10, &losses, |_| 0.1), Status::Completed);
    }
}
