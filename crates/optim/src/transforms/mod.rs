//! The small transforms that named optimizers are chained from, one per file.

mod scale;
mod trace;

pub use scale::{Scale, ScaleByLearningRate, scale, scale_by_learning_rate};
pub use trace::{Trace, trace};
