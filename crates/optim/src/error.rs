//! The one error type of `bigbatch-optim`.

/// Everything that can go wrong while building or applying an optimizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A spec (optimizer, schedule, mask) is invalid; the error names the field.
    #[error(transparent)]
    Spec(#[from] bigbatch_spec::Error),
    /// Two trees that must hold the same names do not.
    #[error("parameter trees differ: `{name}` is in one but not the other")]
    TreeMismatch {
        /// The name found on only one side.
        name: String,
    },
    /// A hyperparameter is outside its valid range.
    #[error("invalid hyperparameter `{name}` = {value}: {reason}")]
    InvalidHyperparameter {
        /// Which hyperparameter.
        name: &'static str,
        /// The value given.
        value: f64,
        /// What the valid range is.
        reason: &'static str,
    },
    /// A saved optimizer state lacks an entry the optimizer needs.
    #[error("optimizer state file {path} has no tensor `{key}`")]
    MissingState {
        /// The state file.
        path: std::path::PathBuf,
        /// The missing key.
        key: String,
    },
    /// A saved optimizer state does not fit the optimizer it is loaded into.
    #[error("optimizer state does not fit: {reason}")]
    StateMismatch {
        /// What does not fit.
        reason: String,
    },
    /// A tensor handed to a helper (a loss, an accumulator) has the wrong shape or dtype.
    #[error("`{name}` should be {expected}, found shape {found:?}")]
    BadInput {
        /// Which argument.
        name: &'static str,
        /// What was expected, in words.
        expected: &'static str,
        /// The shape found.
        found: Vec<usize>,
    },
    /// A transform without a fused form was asked to run fused.
    #[error("`{transform}` has no fused form")]
    NotFusable {
        /// The transform's type.
        transform: &'static str,
    },
    /// A gradient [`crate::Accumulator`] was read before any micro-batch was added.
    #[error("no micro-batch has been accumulated")]
    NothingAccumulated,
    /// Reading or writing a state file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Returns [`Error::InvalidHyperparameter`] unless `ok`.
pub(crate) fn ensure(ok: bool, name: &'static str, value: f64, reason: &'static str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidHyperparameter {
            name,
            value,
            reason,
        })
    }
}

/// Checks that `value` is in `[0, 1)` (a decay rate).
pub(crate) fn ensure_unit(name: &'static str, value: f64) -> Result<()> {
    ensure(
        (0.0..1.0).contains(&value),
        name,
        value,
        "must be in [0, 1)",
    )
}

/// Checks that `value` is finite and non-negative.
pub(crate) fn ensure_non_negative(name: &'static str, value: f64) -> Result<()> {
    ensure(
        value.is_finite() && value >= 0.0,
        name,
        value,
        "must be finite and >= 0",
    )
}

/// Checks that `value` is finite.
pub(crate) fn ensure_finite(name: &'static str, value: f64) -> Result<()> {
    ensure(value.is_finite(), name, value, "must be finite")
}

/// Checks that a step count is at least 1.
pub(crate) fn ensure_steps(name: &'static str, steps: u64) -> Result<()> {
    ensure(steps >= 1, name, steps as f64, "must be >= 1")
}
