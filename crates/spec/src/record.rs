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
    /// Mean loss on the evaluation set.
    pub test_loss: f64,
    /// Accuracy on the evaluation set, in `[0, 1]`.
    pub test_accuracy: f64,
    /// This step's raw simple noise scale `B_simple`, when tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_simple: Option<f64>,
    /// The smoothed `B_simple` (moving averages of numerator and denominator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b_simple_smoothed: Option<f64>,
}
