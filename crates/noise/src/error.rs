//! The one error type of `bigbatch-noise`.
//!
//! Every measurement validates its inputs and reports what is wrong with
//! structured fields, so a caller (the training loop in `bigbatch-bench`) can
//! tell "not enough data yet" from "invalid configuration".

/// Everything that can go wrong while measuring a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A tree operation failed inside `bigbatch-optim` (e.g. mismatched names).
    #[error(transparent)]
    Optim(#[from] bigbatch_optim::Error),
    /// The model behind a [`crate::GradientOracle`] failed to evaluate (a
    /// network oracle's data, model or engine error).
    #[error("evaluating the model: {0}")]
    Evaluation(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An estimator needs more points (micro-batches, runs, examples) than given.
    #[error("{what}: needs at least {needed}, got {got}")]
    TooFewPoints {
        /// What is being counted.
        what: &'static str,
        /// The minimum needed.
        needed: usize,
        /// How many were given.
        got: usize,
    },
    /// The two batch sizes of a two-batch estimator are not `0 < small < big`.
    #[error("invalid batch sizes: need 0 < small ({small}) < big ({big})")]
    InvalidBatchSizes {
        /// The small batch size.
        small: f64,
        /// The big batch size.
        big: f64,
    },
    /// A configuration value is outside its valid range.
    #[error("invalid configuration `{name}` = {value}: {reason}")]
    InvalidConfig {
        /// Which setting.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What the valid range is.
        reason: &'static str,
    },
    /// Two inputs that must have the same length do not.
    #[error("length mismatch in {what}: expected {expected}, found {found}")]
    LengthMismatch {
        /// Which input.
        what: &'static str,
        /// The expected length.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// An input or an intermediate value is NaN or infinite.
    #[error("non-finite value in {what}")]
    NonFinite {
        /// Where it was found.
        what: &'static str,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
