//! Where a result came from.

use serde::{Deserialize, Serialize};

/// Everything needed to tell where a result came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The seed of initialisation and data order.
    pub seed: u64,
    /// `git rev-parse HEAD` of the source tree, with `-dirty` if it had changes.
    pub git_revision: Option<String>,
    /// CPU threads the tensor engine used.
    pub threads: usize,
    /// The device, e.g. `cpu` or `cuda:0`.
    pub device: String,
    /// The bigbatch version that produced the record.
    pub bigbatch_version: String,
    /// SHA-256 of every data file read.
    pub datasets: Vec<FileDigest>,
}

/// A data file and its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// The file's name (not the full path, so records compare across machines).
    pub file: String,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}
