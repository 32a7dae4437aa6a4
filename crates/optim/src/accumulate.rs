//! [`Accumulator`]: gradient accumulation over micro-batches.

use crate::error::ensure;
use crate::{Error, Result, Tree};

/// Sums micro-batch gradients weighted by micro-batch size and yields their mean,
/// so that `k` micro-batches of `b` examples give the gradient of one batch of
/// `k·b`:
///
/// `ḡ = Σ_i b_i·g_i / Σ_i b_i`, where `g_i` is the mean gradient over micro-batch `i`.
///
/// For a model without batch-dependent layers (no batch norm) this equals the
/// big-batch gradient up to floating-point summation order (Goyal et al. 2017, §2.2).
///
/// ```
/// use bigbatch_optim::{Accumulator, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let grad = |v: f64| -> Result<Tree, bigbatch_optim::Error> {
///     let mut t = Tree::new();
///     t.insert("w", Tensor::new(&[v], &Device::Cpu)?);
///     Ok(t)
/// };
/// let mut acc = Accumulator::new();
/// acc.add(&grad(1.0)?, 3)?; // mean over 3 examples
/// acc.add(&grad(5.0)?, 1)?; // a smaller last micro-batch
/// assert_eq!(acc.examples(), 4);
/// assert_eq!(acc.take()?.get("w").unwrap().to_vec1::<f64>()?, [2.]);
/// assert!(acc.take().is_err()); // reset after take
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Accumulator {
    sum: Option<Tree>,
    examples: usize,
}

impl Accumulator {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the mean gradient `grads` of a micro-batch of `batch_size` examples.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] if `batch_size = 0`;
    /// [`Error::TreeMismatch`] if `grads` names differ from earlier micro-batches.
    pub fn add(&mut self, grads: &Tree, batch_size: usize) -> Result<()> {
        ensure(batch_size > 0, "batch_size", 0.0, "must be > 0")?;
        let weighted = grads.map(|_, g| Ok(g.affine(batch_size as f64, 0.)?))?;
        self.sum = Some(match self.sum.take() {
            None => weighted,
            Some(sum) => sum.zip_map(&weighted, |_, s, g| Ok((s + g)?))?,
        });
        self.examples += batch_size;
        Ok(())
    }

    /// Examples accumulated since the last [`Accumulator::take`].
    pub fn examples(&self) -> usize {
        self.examples
    }

    /// The mean gradient over all accumulated examples, leaving the accumulator empty.
    ///
    /// # Errors
    /// [`Error::NothingAccumulated`] if no micro-batch was added.
    pub fn take(&mut self) -> Result<Tree> {
        let sum = self.sum.take().ok_or(Error::NothingAccumulated)?;
        let n = std::mem::take(&mut self.examples) as f64;
        sum.map(|_, s| Ok(s.affine(1.0 / n, 0.)?))
    }
}
