//! Measurements of large-batch training: gradient noise scale, critical batch
//! size, sharpness and loss landscapes.
//!
//! Measurements only: they observe a model through a [`GradientOracle`] (a
//! closure over parameters and example indices) or through gradients the
//! training loop already computed, so the one training loop stays in
//! `bigbatch-bench`.
//!
//! - [`NoiseScaleTracker`], [`two_batch_estimate`], [`per_example_estimate`]:
//!   the simple noise scale `B_simple = tr(Σ)/|G|²` (McCandlish et al. 2018).
//! - [`hessian_noise_scale`], [`optimal_learning_rate`], [`FiniteDifferenceHvp`],
//!   [`top_hessian_eigenvalue`]: `B_noise = tr(HΣ)/(GᵀHG)` and
//!   `ε_opt(B) = ε_max/(1 + B_noise/B)`.
//! - [`fit_pareto`], [`bootstrap_pareto`]: `S_min`, `E_min` and
//!   `B_crit = E_min/S_min` from `(S/S_min − 1)(E/E_min − 1) = 1`.
//! - [`sharpness`], [`sharpness_of`]: Keskar et al. (2017) sharpness, maximised
//!   by the box-constrained quasi-Newton method [`minimize_box`].
//! - [`interpolate`], [`distance_from_init`], [`gradient_snr`],
//!   [`trust_ratio_stats`]: loss landscape and training diagnostics.
//!
//! ```
//! use bigbatch_noise::two_batch_estimate;
//! # fn main() -> Result<(), bigbatch_noise::Error> {
//! // E|G_B|² = |G|² + tr(Σ)/B with |G|² = 2, tr(Σ) = 100.
//! let e = two_batch_estimate(10., 2. + 10., 100., 2. + 1.)?;
//! assert!((e.b_simple - 50.).abs() < 1e-9);
//! # Ok(()) }
//! ```

mod boxqn;
mod error;
mod flat;
mod gns;
mod hessian;
mod landscape;
mod oracle;
mod pareto;
mod sharpness;

pub use boxqn::{BoxConfig, BoxResult, minimize_box};
pub use error::{Error, Result};
pub use flat::{flatten, unflatten};
pub use gns::{
    NoiseScaleConfig, NoiseScaleEstimate, NoiseScaleStep, NoiseScaleTracker, b_simple_interval,
    micro_batch_estimate, micro_batch_estimate_from_norms, per_example_estimate,
    two_batch_estimate,
};
pub use hessian::{
    FiniteDifferenceHvp, HessianNoiseScale, HessianVectorProduct, PowerIterationConfig, TopEigen,
    hessian_noise_scale, optimal_learning_rate, top_hessian_eigenvalue,
};
pub use landscape::{
    BatchNormPolicy, GradientSnr, InterpolationPoint, LayerDistance, LayerSnr, LayerTrustRatio,
    TrustRatioStats, WeightDistance, distance_from_init, gradient_snr, interpolate,
    interpolation_alphas, trust_ratio_stats,
};
pub use oracle::{ExampleSubset, FnOracle, GradientOracle};
pub use pareto::{
    BootstrapConfig, Interval, ParetoBootstrap, ParetoFit, ParetoPoint, bootstrap_pareto,
    fit_pareto,
};
pub use sharpness::{SharpnessConfig, SharpnessResult, Subspace, sharpness, sharpness_of};
