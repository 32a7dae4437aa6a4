//! What runs measured.

use serde::{Deserialize, Serialize};

/// Metrics at one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Optimizer steps taken so far.
    pub step: u64,
    /// Epochs completed so far (fractional).
    pub epoch: f64,
    /// Training examples consumed so far (`step × batch_size`).
    pub examples: u64,
    /// Mean training loss over the steps since the previous evaluation.
    pub train_loss: f64,
    /// Mean loss on the test split: at every evaluation, or with a
    /// validation split ([`TrainConfig::validation_examples`](crate::TrainConfig::validation_examples))
    /// only at the evaluation that ends the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_loss: Option<f64>,
    /// Accuracy on the test split, in `[0, 1]` (when `test_loss` is measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_accuracy: Option<f64>,
    /// Mean loss on the validation split held out of the training set, when
    /// the run has one (at every evaluation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_loss: Option<f64>,
    /// Accuracy on the validation split, in `[0, 1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation_accuracy: Option<f64>,
    /// This step's raw simple noise scale `B_simple`, when tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_simple: Option<f64>,
    /// The smoothed `B_simple` (moving averages of numerator and denominator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_simple_smoothed: Option<f64>,
}
