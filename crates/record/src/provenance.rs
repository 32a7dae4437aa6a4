//! Where a result came from.

use bigbatch_spec::{DatasetName, thousands};
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
    /// The host's CPU model (`/proc/cpuinfo`), where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_model: Option<String>,
    /// The bigbatch version that produced the record.
    pub bigbatch_version: String,
    /// SHA-256 of every data file read.
    pub datasets: Vec<FileDigest>,
    /// Which data set, and how much of it, the run trained and evaluated on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataUsed>,
}

/// The data a run used: the data set and its split sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataUsed {
    /// The data set.
    pub dataset: DatasetName,
    /// Training examples.
    pub train_examples: usize,
    /// Evaluation examples.
    pub test_examples: usize,
}

impl DataUsed {
    /// Whether these are the data set's full published splits.
    pub fn is_full(&self) -> bool {
        self.dataset.full_size() == (self.train_examples, self.test_examples)
    }

    /// One line for a report: the data set, the sizes, and whether that is
    /// the full set.
    ///
    /// ```
    /// use bigbatch_record::DataUsed;
    /// use bigbatch_spec::{DatasetName, thousands};
    /// let d = DataUsed { dataset: DatasetName::Mnist, train_examples: 4000, test_examples: 1000 };
    /// assert_eq!(d.describe(), "MNIST: 4,000 training and 1,000 test examples, a subset (the full set has 60,000 and 10,000)");
    /// ```
    pub fn describe(&self) -> String {
        let (train, test) = self.dataset.full_size();
        let extent = if self.is_full() {
            "the full set".to_owned()
        } else {
            format!(
                "a subset (the full set has {} and {})",
                thousands(train),
                thousands(test)
            )
        };
        format!(
            "{}: {} training and {} test examples, {extent}",
            self.dataset.title(),
            thousands(self.train_examples),
            thousands(self.test_examples)
        )
    }
}

/// A data file and its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// The file's name (not the full path, so records compare across machines).
    pub file: String,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}
