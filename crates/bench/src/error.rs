//! The one error type of `bigbatch-bench`'s library.

use std::path::PathBuf;

/// Everything that can go wrong while setting up or running a training job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading a dataset failed.
    #[error(transparent)]
    Data(#[from] bigbatch_data::Error),
    /// Building or running a model failed.
    #[error(transparent)]
    Model(#[from] bigbatch_models::Error),
    /// An optimizer step failed.
    #[error(transparent)]
    Optim(#[from] bigbatch_optim::Error),
    /// A noise-scale or Pareto measurement failed.
    #[error(transparent)]
    Noise(#[from] bigbatch_noise::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSON file could not be encoded or decoded.
    #[error("{path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
    /// A training checkpoint does not fit the run resuming from it.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
    /// A record file could not be read or written; the error names the file.
    #[error(transparent)]
    Record(#[from] bigbatch_record::Error),
    /// A spec value is out of range or inconsistent; the error names the field.
    #[error(transparent)]
    Spec(#[from] bigbatch_spec::Error),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
