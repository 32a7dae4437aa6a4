//! The one error type of `bigbatch-models`.

/// Everything that can go wrong while building or running a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor operation failed inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A checkpoint file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A checkpoint file that is not valid safetensors (truncated, corrupt).
    #[error("{path}: not a readable safetensors file ({reason})")]
    CorruptCheckpoint {
        /// The file.
        path: std::path::PathBuf,
        /// What the parser reported.
        reason: String,
    },
    /// A checkpoint lacks a tensor the model needs.
    #[error("{path}: checkpoint has no tensor `{name}`")]
    MissingTensor {
        /// The checkpoint file.
        path: std::path::PathBuf,
        /// The missing tensor.
        name: String,
    },
    /// A checkpoint tensor has the wrong shape.
    #[error("{path}: tensor `{name}` has shape {found:?}, the model expects {expected:?}")]
    TensorShape {
        /// The checkpoint file.
        path: std::path::PathBuf,
        /// The tensor.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The checkpoint's shape.
        found: Vec<usize>,
    },
    /// The input does not have the shape the model was configured for.
    #[error("{model} expects input of shape {expected}, got {found:?}")]
    InputShape {
        /// The model.
        model: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape given.
        found: Vec<usize>,
    },
    /// A model or layer configuration is invalid.
    #[error("{what}: {reason}")]
    InvalidConfig {
        /// The model or layer.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A JSON config sidecar could not be read or written.
    #[error("{path}: {source}")]
    Json {
        /// The sidecar file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
