//! Epochs to steps, and learning-rate scaling rules across batch sizes.

use crate::Result;
use crate::error::{ensure, ensure_non_negative};

/// How many optimizer steps an epoch is, for a dataset and batch size: the one
/// place where schedules specified in epochs become schedules in steps.
///
/// `steps_per_epoch = ⌈N/B⌉` (or `⌊N/B⌋` when the last partial batch is dropped).
///
/// ```
/// use bigbatch_optim::schedule::{join, Linear, Piecewise, Schedule, StepsPerEpoch};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// // Goyal et al. 2017: 5 warmup epochs, then ÷10 at epochs 30, 60, 80 (ImageNet, B = 8192).
/// let e = StepsPerEpoch::new(1_281_167, 8192, true)?;
/// assert_eq!(e.steps_per_epoch(), 156);
/// let warmup = e.steps(5.0)?;
/// let decay = Piecewise::step_decay(3.2, 0.1, vec![e.steps(25.0)?, e.steps(55.0)?, e.steps(75.0)?])?;
/// let s = join(vec![Box::new(Linear::warmup(3.2, warmup)?), Box::new(decay)], vec![warmup])?;
/// assert_eq!(s.at(e.steps(5.0)?), 3.2);
/// assert!((s.at(e.steps(30.0)?) - 0.32).abs() < 1e-12);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepsPerEpoch {
    steps_per_epoch: u64,
}

impl StepsPerEpoch {
    /// Steps per epoch for `dataset_size` examples in batches of `batch_size`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if `batch_size = 0`, or if an
    /// epoch would have no step (`dataset_size = 0`, or fewer examples than a
    /// batch with `drop_last`).
    pub fn new(dataset_size: u64, batch_size: u64, drop_last: bool) -> Result<Self> {
        ensure(
            batch_size > 0,
            "batch_size",
            batch_size as f64,
            "must be > 0",
        )?;
        let steps_per_epoch = if drop_last {
            dataset_size / batch_size
        } else {
            dataset_size.div_ceil(batch_size)
        };
        ensure(
            steps_per_epoch > 0,
            "dataset_size",
            dataset_size as f64,
            "an epoch must hold at least one batch",
        )?;
        Ok(Self { steps_per_epoch })
    }

    /// Steps in one epoch.
    pub fn steps_per_epoch(&self) -> u64 {
        self.steps_per_epoch
    }

    /// `epochs` (fractional allowed) in steps, rounded to the nearest step.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if `epochs` is negative or not finite.
    pub fn steps(&self, epochs: f64) -> Result<u64> {
        ensure_non_negative("epochs", epochs)?;
        Ok((epochs * self.steps_per_epoch as f64).round() as u64)
    }
}

/// How a learning rate tuned at a base batch size scales to another batch size.
///
/// ```
/// use bigbatch_optim::schedule::ScalingRule;
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// assert_eq!(ScalingRule::Linear.scale(0.1, 256, 8192)?, 3.2);
/// assert_eq!(ScalingRule::Sqrt.scale(0.1, 256, 1024)?, 0.2);
/// # Ok(()) }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalingRule {
    /// `η = η₀·B/B₀` (Krizhevsky 2014; Goyal et al. 2017).
    Linear,
    /// `η = η₀·√(B/B₀)` (Krizhevsky 2014; Hoffer et al. 2017; You et al. 2020 for LAMB).
    Sqrt,
}

impl ScalingRule {
    /// The learning rate for `batch_size`, given `base_lr` tuned at `base_batch_size`.
    ///
    /// # Errors
    /// [`crate::Error::InvalidHyperparameter`] if a batch size is 0 or
    /// `base_lr` is negative or not finite.
    pub fn scale(self, base_lr: f64, base_batch_size: u64, batch_size: u64) -> Result<f64> {
        ensure_non_negative("base_lr", base_lr)?;
        ensure(base_batch_size > 0, "base_batch_size", 0.0, "must be > 0")?;
        ensure(batch_size > 0, "batch_size", 0.0, "must be > 0")?;
        let k = batch_size as f64 / base_batch_size as f64;
        Ok(match self {
            ScalingRule::Linear => base_lr * k,
            ScalingRule::Sqrt => base_lr * k.sqrt(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Error;

    #[test]
    fn epochs_round_and_validate() -> Result<()> {
        let e = StepsPerEpoch::new(1000, 300, false)?;
        assert_eq!(e.steps_per_epoch(), 4);
        assert_eq!(e.steps(2.5)?, 10);
        assert_eq!(StepsPerEpoch::new(1000, 300, true)?.steps_per_epoch(), 3);
        assert!(matches!(
            StepsPerEpoch::new(100, 300, true),
            Err(Error::InvalidHyperparameter {
                name: "dataset_size",
                ..
            })
        ));
        assert!(matches!(
            StepsPerEpoch::new(100, 0, true),
            Err(Error::InvalidHyperparameter {
                name: "batch_size",
                ..
            })
        ));
        assert!(matches!(
            e.steps(-1.0),
            Err(Error::InvalidHyperparameter { name: "epochs", .. })
        ));
        assert!(matches!(
            ScalingRule::Linear.scale(0.1, 0, 10),
            Err(Error::InvalidHyperparameter {
                name: "base_batch_size",
                ..
            })
        ));
        Ok(())
    }
}
