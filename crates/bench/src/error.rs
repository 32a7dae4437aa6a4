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
    /// The model's batch norm is not the one the configuration asks for.
    #[error(
        "the model's batch norm is {model:?} but the configuration asks for {config:?} \
         (ghost_batch_size); build the model with batch_norm(cfg)"
    )]
    BatchNormMismatch {
        /// The model's (`None`: it has no batch norm).
        model: Option<bigbatch_models::Norm>,
        /// The configuration's.
        config: bigbatch_models::Norm,
    },
    /// A model the training loop cannot train.
    #[error("{model} is an autoencoder; the training loop trains classifiers")]
    NotAClassifier {
        /// The model.
        model: bigbatch_spec::ModelKind,
    },
    /// A data set the training loop has no loader for yet.
    #[error("the training loop cannot load {dataset} yet (it can be fetched, not trained on)")]
    NoTrainingLoader {
        /// The data set.
        dataset: bigbatch_spec::DatasetName,
    },
    /// A sweep directory already holds another plan.
    #[error("{path} holds a different sweep plan; use a fresh directory")]
    SweepPlanChanged {
        /// The directory's `plan.json`.
        path: PathBuf,
    },
    /// Two weights files a measurement compares hold different models.
    #[error("{a} holds {a_model} weights but {b} holds {b_model}: measure weights of one model")]
    WeightsOfAnotherModel {
        /// The first weights directory.
        a: PathBuf,
        /// Its model.
        a_model: bigbatch_spec::ModelKind,
        /// The second.
        b: PathBuf,
        /// Its model.
        b_model: bigbatch_spec::ModelKind,
    },
    /// A tensor given to a model has another shape than the model's.
    #[error("tensor `{name}`: the model's is {expected:?}, the weights' {found:?}")]
    WeightsMismatch {
        /// The tensor name.
        name: String,
        /// The model's shape.
        expected: Vec<usize>,
        /// The given shape.
        found: Vec<usize>,
    },
    /// A measurement produced NaN or infinity.
    #[error("the measured {what} is not finite (over {examples} examples)")]
    NonFiniteMeasurement {
        /// What was measured.
        what: &'static str,
        /// The sample it was measured on.
        examples: usize,
    },
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
