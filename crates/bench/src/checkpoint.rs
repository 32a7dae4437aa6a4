//! Checkpoints of the training loop: everything [`crate::train_resumable`]
//! needs to continue a run bit-identically, in one safetensors file.
//!
//! The file holds the model's parameters and buffers under `model/<name>`, the
//! optimizer's state under `optimizer/<key>` (see
//! [`Optimizer::state_tree`]), and the loop's own state (step, curve, running
//! loss, noise-scale averages, the configuration it belongs to) as JSON in
//! the `u8` tensor `loop.json`. One file replaced by an atomic rename means a
//! kill at any moment leaves either the previous checkpoint or the new one.
//!
//! `checksum.sha256` holds the SHA-256 of every other tensor (its dtype,
//! shape and bytes) by name, as JSON. Resuming verifies it and refuses a
//! checkpoint whose sum differs or whose weights or optimizer state hold a
//! non-finite value, naming the tensor: a corrupt checkpoint is an error,
//! never a silent divergence, and the error path never deletes it.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bigbatch_noise::{NoiseScaleStep, NoiseScaleTracker};
use bigbatch_optim::{Optimizer, Tree};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Error, EvalPoint, Model, Result, TrainConfig};

const LOOP_KEY: &str = "loop.json";
const CHECKSUM_KEY: &str = "checksum.sha256";
const MODEL_PREFIX: &str = "model/";
const OPTIMIZER_PREFIX: &str = "optimizer/";

/// The training loop's own state between steps.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct LoopState {
    /// The configuration of the run; a checkpoint resumes only the same run.
    pub config: TrainConfig,
    /// Optimizer steps taken.
    pub step: u64,
    /// The first step's loss (the divergence reference).
    pub first_loss: Option<f64>,
    /// Sum of the training losses since the last evaluation.
    pub loss_sum: f64,
    /// Steps in `loss_sum`.
    pub loss_count: u64,
    /// Evaluations so far.
    pub curve: Vec<EvalPoint>,
    /// The noise-scale moving averages.
    pub tracker: NoiseScaleTracker,
    /// Per-step noise-scale estimates so far.
    pub noise_scale: Vec<NoiseScaleStep>,
    /// Wall-clock seconds spent before this state was saved.
    pub wall_seconds: f64,
}

impl LoopState {
    /// The state before the first step.
    pub fn new(config: &TrainConfig, tracker: NoiseScaleTracker) -> Self {
        Self {
            config: config.clone(),
            step: 0,
            first_loss: None,
            loss_sum: 0.0,
            loss_count: 0,
            curve: Vec::new(),
            tracker,
            noise_scale: Vec::new(),
            wall_seconds: 0.0,
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::Checkpoint {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Writes `state`, the model and the optimizer to `path` atomically.
pub(crate) fn save(
    path: &Path,
    state: &LoopState,
    model: &Model,
    optimizer: &Optimizer,
) -> Result<()> {
    let json = serde_json::to_vec(state).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let len = json.len();
    tensors.insert(LOOP_KEY.into(), Tensor::from_vec(json, len, &Device::Cpu)?);
    for (name, var) in model.vars.state() {
        tensors.insert(format!("{MODEL_PREFIX}{name}"), var.as_tensor().clone());
    }
    for (key, tensor) in optimizer.state_tree()? {
        tensors.insert(format!("{OPTIMIZER_PREFIX}{key}"), tensor);
    }
    let sum = serde_json::to_vec(&checksums(&tensors)?).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })?;
    let len = sum.len();
    tensors.insert(
        CHECKSUM_KEY.into(),
        Tensor::from_vec(sum, len, &Device::Cpu)?,
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_owned(),
            source,
        })?;
    }
    let tmp = path.with_extension("safetensors.tmp");
    candle_core::safetensors::save(&tensors, &tmp)?;
    std::fs::rename(&tmp, path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// Restores the model and optimizer from `path` and returns the loop state.
///
/// # Errors
/// [`Error::Checkpoint`] if the file was written for another configuration,
/// lacks a tensor or holds one of the wrong shape.
pub(crate) fn load(
    path: &Path,
    config: &TrainConfig,
    model: &Model,
    optimizer: &mut Optimizer,
) -> Result<LoopState> {
    let mut tensors = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| bad(path, format!("unreadable safetensors file: {e}")))?;
    let json = tensors
        .remove(LOOP_KEY)
        .ok_or_else(|| {
            bad(
                path,
                format!("no `{LOOP_KEY}` tensor: not a training checkpoint"),
            )
        })?
        .to_vec1::<u8>()?;
    let state: LoopState = serde_json::from_slice(&json).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })?;
    verify(path, &mut tensors)?;
    if state.config != *config {
        return Err(bad(
            path,
            "written for a different training configuration; delete it to start afresh",
        ));
    }
    for (name, var) in model.vars.state() {
        let key = format!("{MODEL_PREFIX}{name}");
        let saved = tensors
            .get(&key)
            .ok_or_else(|| bad(path, format!("missing tensor `{key}`")))?;
        if saved.dims() != var.dims() {
            return Err(bad(
                path,
                format!(
                    "tensor `{key}` has shape {:?}, the model expects {:?}",
                    saved.dims(),
                    var.dims()
                ),
            ));
        }
        var.set(&saved.to_device(var.device())?.to_dtype(var.dtype())?)?;
    }
    let device = model
        .vars
        .state()
        .first()
        .map_or(Device::Cpu, |(_, v)| v.device().clone());
    let tree: Tree = tensors
        .into_iter()
        .filter_map(|(k, t)| {
            k.strip_prefix(OPTIMIZER_PREFIX)
                .map(|k| t.to_device(&device).map(|t| (k.to_owned(), t)))
        })
        .collect::<candle_core::Result<_>>()?;
    optimizer
        .load_state_tree(&tree)
        .map_err(|e| bad(path, format!("optimizer state: {e}")))?;
    Ok(state)
}

/// SHA-256 (hex) of every tensor but the loop state and the checksums
/// themselves, by name: dtype, shape and little-endian bytes.
fn checksums(tensors: &HashMap<String, Tensor>) -> Result<BTreeMap<String, String>> {
    use sha2::{Digest, Sha256};
    tensors
        .iter()
        .filter(|(k, _)| *k != LOOP_KEY && *k != CHECKSUM_KEY)
        .map(|(name, t)| {
            let mut hasher = Sha256::new();
            hasher.update(format!("{:?}{:?}", t.dtype(), t.dims()).as_bytes());
            hasher.update(bytes(t)?);
            Ok((name.clone(), format!("{:x}", hasher.finalize())))
        })
        .collect()
}

/// A tensor's elements as little-endian bytes.
fn bytes(t: &Tensor) -> Result<Vec<u8>> {
    use candle_core::DType;
    let t = t.flatten_all()?;
    Ok(match t.dtype() {
        DType::U8 => t.to_vec1::<u8>()?,
        DType::U32 => t
            .to_vec1::<u32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::I64 => t
            .to_vec1::<i64>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        DType::F32 => t
            .to_vec1::<f32>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        _ => t
            .to_dtype(DType::F64)?
            .to_vec1::<f64>()?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
    })
}

/// Checks every tensor against its stored checksum and that no weight or
/// optimizer state is NaN or infinite, naming the tensor at fault; removes
/// the checksum tensor.
fn verify(path: &Path, tensors: &mut HashMap<String, Tensor>) -> Result<()> {
    let afresh = "the checkpoint is kept; delete it to start afresh";
    let stored = tensors.remove(CHECKSUM_KEY).ok_or_else(|| {
        bad(
            path,
            format!("no `{CHECKSUM_KEY}` tensor: written by an older bigbatch; {afresh}"),
        )
    })?;
    let stored: BTreeMap<String, String> = serde_json::from_slice(&stored.to_vec1::<u8>()?)
        .map_err(|e| bad(path, format!("unreadable `{CHECKSUM_KEY}`: {e}; {afresh}")))?;
    let actual = checksums(tensors)?;
    for (name, sum) in &actual {
        match stored.get(name) {
            Some(s) if s == sum => {}
            Some(_) => {
                return Err(bad(
                    path,
                    format!(
                        "tensor `{name}` does not match its checksum: the file is corrupt; {afresh}"
                    ),
                ));
            }
            None => {
                return Err(bad(
                    path,
                    format!("tensor `{name}` has no checksum; {afresh}"),
                ));
            }
        }
    }
    if let Some(name) = stored.keys().find(|k| !actual.contains_key(*k)) {
        return Err(bad(path, format!("tensor `{name}` is missing; {afresh}")));
    }
    for (name, t) in tensors.iter().filter(|(k, _)| *k != LOOP_KEY) {
        if t.dtype().is_float() {
            let finite = t
                .flatten_all()?
                .to_dtype(candle_core::DType::F64)?
                .to_vec1::<f64>()?
                .iter()
                .all(|x| x.is_finite());
            if !finite {
                return Err(bad(
                    path,
                    format!("tensor `{name}` holds NaN or infinite values; {afresh}"),
                ));
            }
        }
    }
    Ok(())
}
