//! [`GradientOracle`]: how a measurement observes a model.
//!
//! Measurements never own a model or a data loader: the caller (the training
//! loop in `bigbatch-bench`) supplies a closure that evaluates the mean loss and
//! mean gradient at given parameters over given training examples. This keeps
//! exactly one training loop in the project, and lets every estimator here be
//! tested on models with closed-form gradients (linear regression, quadratics).

use bigbatch_optim::Tree;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The mean loss and mean gradient of a model over chosen training examples.
///
/// Implemented for [`FnOracle`] (a closure plus a dataset size); implement it
/// directly to reuse buffers or a device-resident dataset.
pub trait GradientOracle {
    /// The number of training examples that indices may refer to (`0..n`).
    fn num_examples(&self) -> usize;

    /// The mean loss `f(θ) = (1/|I|) Σ_{i∈I} ℓ_i(θ)` and its gradient `∇f(θ)` at
    /// `params` over the examples `examples`, in evaluation mode (no parameter
    /// or statistics update: the measurement must not change the model).
    ///
    /// # Errors
    /// Whatever the model evaluation reports.
    fn loss_and_grad(&mut self, params: &Tree, examples: &[usize]) -> Result<(f64, Tree)>;
}

/// A [`GradientOracle`] from a closure
/// `FnMut(&Tree /*params*/, &[usize] /*example indices*/) -> Result<(f64, Tree)>`.
///
/// ```
/// use bigbatch_noise::{FnOracle, GradientOracle};
/// use bigbatch_optim::Tree;
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// // f(θ) = ½|θ|², the same for every example.
/// let mut oracle = FnOracle::new(10, |p: &Tree, _: &[usize]| {
///     Ok((0.5 * p.squared_norm()?, p.clone()))
/// });
/// assert_eq!(oracle.num_examples(), 10);
/// # Ok(()) }
/// ```
pub struct FnOracle<F> {
    num_examples: usize,
    f: F,
}

impl<F> FnOracle<F>
where
    F: FnMut(&Tree, &[usize]) -> Result<(f64, Tree)>,
{
    /// Wraps `f`, which evaluates examples `0..num_examples`.
    pub fn new(num_examples: usize, f: F) -> Self {
        Self { num_examples, f }
    }
}

impl<F> GradientOracle for FnOracle<F>
where
    F: FnMut(&Tree, &[usize]) -> Result<(f64, Tree)>,
{
    fn num_examples(&self) -> usize {
        self.num_examples
    }

    fn loss_and_grad(&mut self, params: &Tree, examples: &[usize]) -> Result<(f64, Tree)> {
        (self.f)(params, examples)
    }
}

/// Which training examples a measurement evaluates.
///
/// Keskar et al. (2017) evaluate sharpness on the training set; on large data a
/// fixed random subset keeps the measurement affordable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExampleSubset {
    /// Every example `0..n`.
    All,
    /// `count` distinct examples drawn without replacement by a seeded shuffle
    /// (ChaCha8 from `seed`), then sorted; all of them if `count >= n`.
    Random {
        /// How many examples.
        count: usize,
        /// The shuffle seed.
        seed: u64,
    },
}

impl ExampleSubset {
    /// The sorted example indices out of `0..n`.
    ///
    /// ```
    /// use bigbatch_noise::ExampleSubset;
    /// # fn main() -> Result<(), bigbatch_noise::Error> {
    /// assert_eq!(ExampleSubset::All.indices(3)?, [0, 1, 2]);
    /// let s = ExampleSubset::Random { count: 2, seed: 7 }.indices(100)?;
    /// assert_eq!(s.len(), 2);
    /// assert_eq!(s, ExampleSubset::Random { count: 2, seed: 7 }.indices(100)?);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::TooFewPoints`] if the subset would be empty.
    pub fn indices(&self, n: usize) -> Result<Vec<usize>> {
        let out = match *self {
            ExampleSubset::All => (0..n).collect(),
            ExampleSubset::Random { count, seed } => {
                let mut all: Vec<usize> = (0..n).collect();
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                all.shuffle(&mut rng);
                all.truncate(count.min(n));
                all.sort_unstable();
                all
            }
        };
        if out.is_empty() {
            return Err(Error::TooFewPoints {
                what: "examples in the evaluation subset",
                needed: 1,
                got: 0,
            });
        }
        Ok(out)
    }
}
