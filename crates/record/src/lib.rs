//! What bigbatch runs write and what its reports read, declared once.
//!
//! The training code (`bigbatch-bench`) writes these records; `cargo xtask`
//! reads them to render reports, without linking a tensor engine: the crate
//! depends on serde and [`bigbatch_spec`] alone. Every top-level record
//! carries a [`Schema`] version, and reading a record of another version is
//! an error that names the file and both versions, never a silent misread.
//!
//! - [`RunRecord`]: one training run (its spec, [`Provenance`], curve, status).
//! - [`TrialResult`], [`SweepSummary`]: a sweep's results and their reduction.
//! - [`NoiseScaleStep`], [`ParetoBootstrap`]: measurements (McCandlish et al. 2018).
//! - [`WeightsInfo`]: the sidecar of saved weights; [`MeasurementRecord`]:
//!   what `bigbatch measure` writes about them.
//!
//! ```
//! use bigbatch_record::{RunRecord, read_json, write_json_atomic};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("results.json");
//! std::fs::write(&path, r#"{"schema": 7}"#)?;
//! let err = read_json::<RunRecord>(&path).unwrap_err().to_string();
//! assert!(err.contains("results.json") && err.contains("schema version 7"), "{err}");
//! # Ok(()) }
//! ```

mod error;
mod io;
mod measure;
mod provenance;
mod run;
mod schema;
mod sweep;
mod weights;

pub use bigbatch_spec::EvalPoint;
pub use error::{Error, Result};
pub use io::{read_json, write_json_atomic};
pub use measure::{
    HessianNoiseScale, Interval, NoiseScaleEstimate, NoiseScaleStep, ParetoBootstrap, ParetoFit,
    optimal_learning_rate,
};
pub use provenance::{DataUsed, FileDigest, Provenance};
pub use run::{RunRecord, Status};
pub use schema::{SCHEMA_VERSION, Schema};
pub use sweep::{BatchSizeSummary, BestTrial, SeedRun, SweepSummary, TrialResult};
pub use weights::{
    InterpolationRow, LayerDistance, Measured, MeasurementRecord, NoiseScaleMeasurement,
    SharpnessRow, WeightDistance, WeightsInfo, WeightsRef,
};
