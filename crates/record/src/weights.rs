//! Saved weights and the measurements taken on them.

use bigbatch_spec::{BatchNormPolicy, EvalPoint, ModelKind, RunSpec};
use serde::{Deserialize, Serialize};

use crate::{HessianNoiseScale, Interval, NoiseScaleEstimate, Provenance, Schema};

/// The JSON sidecar of a weights file written by `bigbatch train
/// --save-init/--save-final/--save-every` (`DIR/weights.safetensors` beside
/// `DIR/weights.json`): what the tensors are the weights of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightsInfo {
    /// The schema version; another version is refused when read.
    pub schema: Schema,
    /// The model the tensors belong to (PyTorch state-dict names).
    pub model: ModelKind,
    /// The run that produced them.
    pub spec: RunSpec,
    /// Optimizer steps taken (0: the initialisation).
    pub step: u64,
    /// The last evaluation at or before `step`, if any.
    #[serde(default)]
    pub metrics: Option<EvalPoint>,
    /// Where and how the run happened.
    pub provenance: Provenance,
}

/// A weights file a measurement read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsRef {
    /// The weights directory as given.
    pub path: String,
    /// SHA-256 of its `weights.safetensors`.
    pub sha256: String,
    /// The step its sidecar states.
    pub step: u64,
}

/// The record `bigbatch measure` writes: one measurement on saved weights.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeasurementRecord {
    /// The schema version; another version is refused when read.
    pub schema: Schema,
    /// The model measured.
    pub model: ModelKind,
    /// The weights read, in the order the measurement names them.
    pub weights: Vec<WeightsRef>,
    /// The batch statistics the model used while measured (none for
    /// [`Measured::Distance`], which evaluates nothing).
    #[serde(default)]
    pub batch_norm: Option<BatchNormPolicy>,
    /// Where and how the measurement ran (the data it read, its seed).
    pub provenance: Provenance,
    /// What was measured.
    pub result: Measured,
    /// Wall-clock seconds the measurement took.
    pub wall_seconds: f64,
}

/// The result of one `bigbatch measure` command.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Measured {
    /// `measure distance`: `‖W₁ − W₀‖` in total and per tensor.
    Distance(WeightDistance),
    /// `measure interpolate`: losses and accuracies along `(1−α)·A + α·B`.
    Interpolation {
        /// One row per `α`, in the order asked.
        points: Vec<InterpolationRow>,
    },
    /// `measure noise-scale`: `B_simple` over repeats, `B_noise` with
    /// Hessian-vector products.
    NoiseScale(NoiseScaleMeasurement),
    /// `measure sharpness`: one result per `ε`.
    Sharpness {
        /// One row per `ε`, in the order asked.
        results: Vec<SharpnessRow>,
    },
}

/// The distance of one tensor from its initial value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerDistance {
    /// The tensor name.
    pub name: String,
    /// `‖w_t − w_0‖`.
    pub distance: f64,
    /// `‖w_0‖`.
    pub init_norm: f64,
}

/// Distances of the weights from their initialisation, per tensor and in total.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightDistance {
    /// `‖w_t − w_0‖` over all tensors.
    pub total: f64,
    /// Per tensor, in sorted name order.
    pub per_layer: Vec<LayerDistance>,
}

/// Train and test loss and accuracy of the interpolated weights at one `α`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InterpolationRow {
    /// `α`: 0 is the first model, 1 the second.
    pub alpha: f64,
    /// Mean cross-entropy on the training examples evaluated.
    pub train_loss: f64,
    /// Accuracy on them.
    pub train_accuracy: f64,
    /// Mean cross-entropy on the test split.
    pub test_loss: f64,
    /// Accuracy on it.
    pub test_accuracy: f64,
}

/// Keskar et al.'s sharpness at one box size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SharpnessRow {
    /// The box size `ε`.
    pub epsilon: f64,
    /// The subspace dimension (`None`: the full parameter space).
    pub subspace_dim: Option<usize>,
    /// Training examples the loss was evaluated on.
    pub examples: usize,
    /// `φ = 100·(max f − f(x))/(1 + f(x))`.
    pub sharpness: f64,
    /// `f(x)`.
    pub loss: f64,
    /// The largest loss found in the box.
    pub max_loss: f64,
    /// Quasi-Newton iterations done.
    pub iterations: usize,
    /// Loss-and-gradient evaluations done.
    pub evaluations: usize,
}

/// The gradient noise scale of saved weights (McCandlish et al. 2018,
/// Appendix A): the two-batch estimator repeated on fresh examples.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NoiseScaleMeasurement {
    /// The small batch `b`.
    pub small_batch: usize,
    /// The big batch `B`.
    pub big_batch: usize,
    /// One unbiased estimate per repeat, each on fresh examples.
    pub repeats: Vec<NoiseScaleEstimate>,
    /// The mean of the repeats' `|G|²` estimates.
    pub g_sq: f64,
    /// The mean of the repeats' `tr(Σ)` estimates.
    pub trace_sigma: f64,
    /// `B_simple = tr(Σ)/|G|²` from the means; `None` when the `|G|²`
    /// estimate is not positive (too few or too small samples).
    pub b_simple: Option<f64>,
    /// A 90% percentile-bootstrap interval of `B_simple` over the repeats
    /// (none for fewer than two repeats or an undefined `B_simple`).
    pub b_simple_interval: Option<Interval>,
    /// `B_noise` and the quadratic model's quantities, if measured.
    pub hessian: Option<HessianNoiseScale>,
}
