//! The one error type of `bigbatch-optim`.

/// Everything that can go wrong while building or applying an optimizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
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
