//! The small transforms that named optimizers are chained from, one per file.

mod adam;
mod clip;
mod decay;
mod rms;
mod rss;
mod scale;
mod trace;
mod trust_ratio;

pub use adam::{AdamConfig, AdamState, ScaleByAdam, scale_by_adam};
pub use clip::{Clip, ClipByGlobalNorm, clip, clip_by_global_norm};
pub use decay::{AddDecayedWeights, add_decayed_weights};
pub use rms::{RmsConfig, RmsState, ScaleByRms, scale_by_rms};
pub use rss::{ScaleByRss, scale_by_rss};
pub use scale::{Scale, ScaleByLearningRate, scale, scale_by_learning_rate};
pub use trace::{Trace, trace};
pub use trust_ratio::{ScaleByTrustRatio, TrustRatio, TrustRatioConfig, scale_by_trust_ratio};
