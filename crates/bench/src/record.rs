//! Serde result types: what every run writes next to its figures.

use std::path::Path;

use serde::{Deserialize, Serialize};

use bigbatch_noise::NoiseScaleStep;

use crate::{Error, EvalPoint, Outcome, Result, TrainConfig, WorkloadKind};

/// The complete record of one training run, written as `results.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// The workload trained.
    pub workload: WorkloadKind,
    /// The training configuration.
    pub config: TrainConfig,
    /// Where and how the run happened.
    pub provenance: Provenance,
    /// How the run ended.
    pub status: Status,
    /// One point per evaluation, in step order.
    pub curve: Vec<EvalPoint>,
    /// The first evaluation step meeting `config.target` (Shallue et al. 2019).
    #[serde(default)]
    pub steps_to_target: Option<u64>,
    /// Examples to the target, `E = B·S`.
    #[serde(default)]
    pub examples_to_target: Option<u64>,
    /// With noise-scale tracking: every step's raw and smoothed `B_simple`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub noise_scale: Vec<NoiseScaleStep>,
    /// Wall-clock seconds spent training and evaluating.
    pub wall_seconds: f64,
}

impl RunRecord {
    /// The record of a run of `workload` with `config` that ended in `outcome`.
    pub fn new(
        workload: WorkloadKind,
        config: TrainConfig,
        provenance: Provenance,
        outcome: Outcome,
    ) -> Self {
        let examples_to_target = outcome
            .steps_to_target
            .map(|s| s * config.batch_size as u64);
        Self {
            workload,
            config,
            provenance,
            status: outcome.status,
            curve: outcome.curve,
            steps_to_target: outcome.steps_to_target,
            examples_to_target,
            noise_scale: outcome.noise_scale,
            wall_seconds: outcome.wall_seconds,
        }
    }

    /// The last evaluation, if any.
    pub fn final_eval(&self) -> Option<&EvalPoint> {
        self.curve.last()
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    /// The budget was spent.
    Completed,
    /// The evaluation at `step` met the target; training stopped there.
    ReachedTarget {
        /// The steps to target.
        step: u64,
    },
    /// The loss became NaN or infinite, or exploded, at `step`; training stopped there.
    Diverged {
        /// The step whose loss was not finite.
        step: u64,
    },
}

/// Everything needed to tell where a result came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
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

impl Provenance {
    /// The provenance of a run here and now: git revision of the current
    /// directory, this crate's version.
    pub fn collect(seed: u64, threads: usize, device: &str, datasets: Vec<FileDigest>) -> Self {
        Self {
            seed,
            git_revision: git_revision(),
            threads,
            device: device.into(),
            bigbatch_version: env!("CARGO_PKG_VERSION").into(),
            datasets,
        }
    }
}

/// A data file and its SHA-256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileDigest {
    /// The file's name (not the full path, so records compare across machines).
    pub file: String,
    /// Lowercase hex SHA-256.
    pub sha256: String,
}

/// The revision of the git tree in the current directory, if there is one.
pub fn git_revision() -> Option<String> {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let rev = run(&["rev-parse", "HEAD"])?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}

/// Writes `value` as pretty JSON to `path` atomically: a temporary file in the
/// same directory, then a rename, so readers never see half a file.
///
/// # Errors
/// [`Error::Io`] or [`Error::Json`] naming the file.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let json = serde_json::to_vec_pretty(value).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, json).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Reads a JSON file written by [`write_json_atomic`].
///
/// # Errors
/// [`Error::Io`] or [`Error::Json`] naming the file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: path.to_owned(),
        source,
    })
}

/// The device as provenance records it: `cpu`, `cuda:0`, `metal:0`.
pub fn device_label(device: &candle_core::Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
