//! Measurements on trained networks: weights kept on disk with what they are
//! the weights of, and a gradient oracle over a registered model and a data
//! split, with an explicit batch-norm policy, through which
//! `bigbatch-noise`'s estimators measure a network we trained.

use std::path::{Path, PathBuf};

use bigbatch_data::{Batches, ImageClassification, Normalization};
use bigbatch_models::{BatchNormConfig, Norm};
use bigbatch_noise::GradientOracle;
use bigbatch_optim::Tree;
use bigbatch_record::{WeightsInfo, WeightsRef};
use bigbatch_spec::BatchNormPolicy;
use candle_core::{D, DType, Device, Tensor, Var};

use crate::train::BatchBuffers;
use crate::{Error, Model, Result, build_model, on_pool};

/// The tensors' file inside a weights directory.
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// Writes `model`'s parameters and batch-norm statistics to
/// `dir/weights.safetensors` (PyTorch state-dict names) and `info` to
/// `dir/weights.json`, each atomically, creating `dir`.
///
/// # Errors
/// [`Error::Io`] naming the directory, or the model crate's write errors.
pub fn save_weights(dir: &Path, model: &Model, info: &WeightsInfo) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    bigbatch_models::save_checkpoint(&dir.join(WEIGHTS_FILE), &model.vars, info)?;
    Ok(())
}

/// Weights saved by [`save_weights`], their sidecar read and their file digested.
#[derive(Clone, Debug)]
pub struct SavedWeights {
    /// The weights directory.
    pub dir: PathBuf,
    /// What they are the weights of.
    pub info: WeightsInfo,
    /// SHA-256 of the tensors' file.
    pub sha256: String,
}

impl SavedWeights {
    /// Reads the sidecar of the weights in `dir` and digests their file.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Model`] naming the missing or unreadable
    /// file; a sidecar of another schema version.
    pub fn read(dir: &Path) -> Result<Self> {
        let file = dir.join(WEIGHTS_FILE);
        if !file.is_file() {
            return Err(Error::Io {
                path: file,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no weights here (bigbatch train --save-init/--save-final DIR writes them)",
                ),
            });
        }
        let info = bigbatch_models::load_config(&file)?;
        let sha256 = bigbatch_data::sha256_file(&file)?;
        Ok(Self {
            dir: dir.to_owned(),
            info,
            sha256,
        })
    }

    /// What a measurement record says it read.
    pub fn reference(&self) -> WeightsRef {
        WeightsRef {
            path: self.dir.display().to_string(),
            sha256: self.sha256.clone(),
            step: self.info.step,
        }
    }

    /// The model of the sidecar with these weights loaded, its batch-norm
    /// layers (if any) normalising whole batches.
    ///
    /// # Errors
    /// [`bigbatch_models::Error::MissingTensor`] or
    /// [`bigbatch_models::Error::TensorShape`] naming the tensor (and both
    /// shapes) for weights of another model.
    pub fn load(&self, device: &Device) -> Result<Model> {
        let model = build_model(self.info.model, 0, Norm::Batch, device)?;
        model.vars.load(&self.dir.join(WEIGHTS_FILE))?;
        Ok(model)
    }

    /// Checks that `other` holds weights of the same model.
    ///
    /// # Errors
    /// [`Error::WeightsOfAnotherModel`] naming both directories and models.
    pub fn check_same_model(&self, other: &SavedWeights) -> Result<()> {
        if self.info.model != other.info.model {
            return Err(Error::WeightsOfAnotherModel {
                a: self.dir.clone(),
                a_model: self.info.model,
                b: other.dir.clone(),
                b_model: other.info.model,
            });
        }
        Ok(())
    }
}

/// A copy of every parameter and buffer of `model`, by name.
///
/// # Errors
/// Candle errors copying.
pub fn state_tree(model: &Model) -> Result<Tree> {
    copies(model.vars.state())
}

/// A copy of the trainable parameters of `model`, by name.
///
/// # Errors
/// Candle errors copying.
pub fn param_tree(model: &Model) -> Result<Tree> {
    copies(model.vars.vars())
}

fn copies(vars: Vec<(String, Var)>) -> Result<Tree> {
    vars.into_iter()
        .map(|(name, var)| Ok((name, var.as_tensor().copy()?)))
        .collect()
}

/// Mean loss and accuracy of one evaluation, and the mean gradient if asked.
#[derive(Debug)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// The mean gradient of the trainable parameters (when asked).
    pub grads: Option<Tree>,
}

/// A registered model on a data split, as `bigbatch-noise` observes it: the
/// mean cross-entropy and its gradient at given weights over given examples,
/// with batch-norm statistics as [`BatchNormPolicy`] says. The oracle sets
/// the model's weights to those it is asked about; a train-mode forward pass
/// never moves the running statistics (they are put back).
pub struct NetworkOracle<'a> {
    model: &'a Model,
    set: &'a ImageClassification,
    /// Where `recompute` draws its batches.
    train: &'a ImageClassification,
    normalization: &'a Normalization,
    device: &'a Device,
    policy: BatchNormPolicy,
    batch_size: usize,
    buffers: BatchBuffers,
}

impl<'a> NetworkOracle<'a> {
    /// An oracle over the examples of `set`, evaluating `batch_size` at a
    /// time (under [`BatchNormPolicy::Train`] each such batch is a
    /// batch-norm batch), re-estimating statistics from `train` under
    /// [`BatchNormPolicy::Recompute`].
    ///
    /// # Errors
    /// [`bigbatch_spec::Error::OutOfRange`] for a batch size of 0, or of 1
    /// under the train policy on a model with batch norm.
    pub fn new(
        model: &'a Model,
        set: &'a ImageClassification,
        train: &'a ImageClassification,
        normalization: &'a Normalization,
        device: &'a Device,
        policy: BatchNormPolicy,
        batch_size: usize,
    ) -> Result<Self> {
        let least = match (policy, model.batch_norm) {
            (BatchNormPolicy::Eval, _) | (_, None) => 1,
            _ => 2,
        };
        if batch_size < least {
            return Err(bigbatch_spec::Error::OutOfRange {
                field: "measurement batch size".into(),
                value: batch_size as f64,
                expected: ">= 1 (>= 2 when batch norm uses batch statistics)",
            }
            .into());
        }
        Ok(Self {
            model,
            set,
            train,
            normalization,
            device,
            policy,
            batch_size,
            buffers: BatchBuffers::default(),
        })
    }

    /// The batch-norm policy every result of this oracle ran under.
    pub fn policy(&self) -> BatchNormPolicy {
        self.policy
    }

    /// Sets the model's tensors named in `weights` (parameters, and
    /// statistics if it holds them), then re-estimates the statistics under
    /// [`BatchNormPolicy::Recompute`].
    ///
    /// # Errors
    /// [`Error::WeightsMismatch`] naming a tensor of another shape; candle errors.
    pub fn set_weights(&mut self, weights: &Tree) -> Result<()> {
        for (name, var) in self.model.vars.state() {
            if let Some(t) = weights.get(&name) {
                if t.dims() != var.dims() {
                    return Err(Error::WeightsMismatch {
                        name,
                        expected: var.dims().to_vec(),
                        found: t.dims().to_vec(),
                    });
                }
                var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
            }
        }
        if let BatchNormPolicy::Recompute { batches } = self.policy {
            self.recompute_statistics(batches)?;
        }
        Ok(())
    }

    /// Running statistics as the average of the batch statistics of
    /// `batches` sequential training batches of the oracle's batch size
    /// (PyTorch's cumulative average, `momentum=None`). Every registered
    /// model updates its statistics with PyTorch's momentum
    /// ([`BatchNormConfig::default`]); started from zero before each batch,
    /// one update leaves `momentum` times that batch's statistics.
    fn recompute_statistics(&mut self, batches: usize) -> Result<()> {
        let stats: Vec<(String, Var)> = self
            .model
            .vars
            .buffers()
            .into_iter()
            .filter(|(name, _)| name.ends_with("running_mean") || name.ends_with("running_var"))
            .collect();
        if stats.is_empty() {
            return Ok(());
        }
        let counters = self.save_buffers(|name| {
            !BatchNormPolicy::is_statistic(name) || name.ends_with("num_batches_tracked")
        })?;
        let momentum = BatchNormConfig::default().momentum;
        let mut sums: Vec<Tensor> = stats
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<_>>()?;
        let mut seen = 0usize;
        let (model, train, normalization, device) =
            (self.model, self.train, self.normalization, self.device);
        let buffers = &mut self.buffers;
        on_pool(|| -> Result<()> {
            for indices in Batches::sequential(train.len(), self.batch_size).take(batches) {
                for (_, var) in &stats {
                    var.set(&var.as_tensor().zeros_like()?)?;
                }
                let (xs, _) = buffers.load(train, &indices, normalization, device)?;
                model.net.forward(&xs, true)?;
                for (sum, (_, var)) in sums.iter_mut().zip(&stats) {
                    *sum = (&*sum + var.as_tensor())?;
                }
                seen += 1;
            }
            Ok(())
        })?;
        let scale = 1.0 / (momentum * seen.max(1) as f64);
        for (sum, (_, var)) in sums.iter().zip(&stats) {
            var.set(&sum.affine(scale, 0.0)?)?;
        }
        restore(&counters)
    }

    /// Copies of the buffers whose name passes `keep`, to put back after a
    /// train-mode pass has moved them.
    fn save_buffers(&self, keep: impl Fn(&str) -> bool) -> Result<Vec<(Var, Tensor)>> {
        let mut saved = Vec::new();
        for (name, var) in self.model.vars.buffers() {
            if keep(&name) {
                let copy = var.as_tensor().copy()?;
                saved.push((var, copy));
            }
        }
        Ok(saved)
    }

    /// Mean loss and accuracy over `examples` at the model's current
    /// weights, with the mean gradient if `with_grad`.
    ///
    /// # Errors
    /// [`Error::NonFiniteMeasurement`] for a NaN or infinite loss; candle errors.
    pub fn evaluate(&mut self, examples: &[usize], with_grad: bool) -> Result<Evaluation> {
        let train_mode = self.policy == BatchNormPolicy::Train && self.model.batch_norm.is_some();
        let saved = match train_mode {
            true => self.save_buffers(|_| true)?,
            false => Vec::new(),
        };
        let (model, set, normalization, device) =
            (self.model, self.set, self.normalization, self.device);
        let params = model.params();
        let buffers = &mut self.buffers;
        let mut accumulator = bigbatch_optim::Accumulator::new();
        let (mut loss_sum, mut correct) = (0.0, 0u64);
        on_pool(|| -> Result<()> {
            for chunk in examples.chunks(self.batch_size) {
                let (xs, ys) = buffers.load(set, chunk, normalization, device)?;
                let logits = model.net.forward(&xs, train_mode)?;
                let loss = bigbatch_optim::softmax_cross_entropy(&logits, &ys, 0.0)?;
                loss_sum += f64::from(loss.to_scalar::<f32>()?) * chunk.len() as f64;
                let hits = logits.argmax(D::Minus1)?.eq(&ys)?.to_dtype(DType::U32)?;
                correct += u64::from(hits.sum_all()?.to_scalar::<u32>()?);
                if with_grad {
                    accumulator.add(&params.grads(&loss.backward()?)?, chunk.len())?;
                }
            }
            Ok(())
        })?;
        restore(&saved)?;
        let n = examples.len().max(1) as f64;
        let loss = loss_sum / n;
        if !loss.is_finite() {
            return Err(Error::NonFiniteMeasurement {
                what: "loss",
                examples: examples.len(),
            });
        }
        Ok(Evaluation {
            loss,
            accuracy: correct as f64 / n,
            grads: with_grad.then(|| accumulator.take()).transpose()?,
        })
    }
}

/// Puts saved buffer values back.
fn restore(saved: &[(Var, Tensor)]) -> Result<()> {
    for (var, value) in saved {
        var.set(value)?;
    }
    Ok(())
}

impl GradientOracle for NetworkOracle<'_> {
    fn num_examples(&self) -> usize {
        self.set.len()
    }

    fn loss_and_grad(
        &mut self,
        params: &Tree,
        examples: &[usize],
    ) -> bigbatch_noise::Result<(f64, Tree)> {
        let run = |oracle: &mut Self| -> Result<(f64, Tree)> {
            oracle.set_weights(params)?;
            let e = oracle.evaluate(examples, true)?;
            Ok((e.loss, e.grads.unwrap_or_default()))
        };
        run(self).map_err(|e| bigbatch_noise::Error::Evaluation(Box::new(e)))
    }
}
