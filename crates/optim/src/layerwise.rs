//! [`layerwise`]: a (bounded) trust ratio added to any named optimizer.
//!
//! You et al. 2020 (Table 3) compare each base optimizer with its layer-wise
//! version, with and without bounds on the ratio. Here the layer-wise version
//! is the same chain with a [`masked`] [`scale_by_trust_ratio`] inserted just
//! before the learning rate, so the ratio sees the optimizer's final direction,
//! as in LAMB. `layerwise(adamw(..), TrustRatioConfig::lamb(), m)` *is* [`crate::lamb`].
//!
//! ```
//! use bigbatch_optim::{adagrad, adam, layerwise, mask, rmsprop, sgd, TrustRatioConfig as R};
//! use bigbatch_optim::{AdagradConfig, AdamConfig, RmsConfig};
//! let bound = R::lamb().with_bounds(Some(0.0), Some(10.0));
//! // You et al. 2020, Table 3: original / + layer-wise / + layer-wise and bound-ratio.
//! let _ = (sgd(0.1), layerwise(sgd(0.1), R::lamb(), mask::all()), layerwise(sgd(0.1), bound, mask::all()));
//! let _ = (adagrad(0.1, AdagradConfig::default()), layerwise(adagrad(0.1, AdagradConfig::default()), R::lamb(), mask::all()), layerwise(adagrad(0.1, AdagradConfig::default()), bound, mask::all()));
//! let _ = (rmsprop(0.01, RmsConfig::default(), 0.0), layerwise(rmsprop(0.01, RmsConfig::default(), 0.0), R::lamb(), mask::all()), layerwise(rmsprop(0.01, RmsConfig::default(), 0.0), bound, mask::all()));
//! let _ = (adam(1e-3, AdamConfig::default()), layerwise(adam(1e-3, AdamConfig::default()), R::lamb(), mask::all()), layerwise(adam(1e-3, AdamConfig::default()), bound, mask::all()));
//! ```

use crate::mask::{Mask, Masked, masked};
use crate::{
    Chain, ScaleByLearningRate, ScaleByTrustRatio, Schedule, Transform, TrustRatioConfig,
    scale_by_trust_ratio,
};

/// A chain that ends in [`ScaleByLearningRate`], so a trust ratio can go just before it.
pub trait Layerwise {
    /// The chain with the trust ratio inserted.
    type Output: Transform;

    /// Inserts `ratio` before the final learning rate.
    fn insert_trust_ratio(self, ratio: Masked<ScaleByTrustRatio>) -> Self::Output;
}

/// Adds a layer-wise trust ratio to `optimizer`, on the parameters `mask`
/// selects, just before its learning rate:
///
/// `w ← w − η(t)·r_l·d_l`, `r_l = trust_ratio(w_l, d_l)`, where `d` is the
/// optimizer's direction (its update before the learning rate).
///
/// # Errors
/// The chain's `init` fails with [`crate::Error::InvalidHyperparameter`] for
/// an invalid [`TrustRatioConfig`] (see [`scale_by_trust_ratio`]).
///
/// ```
/// use bigbatch_optim::{layerwise, mask, momentum, Transform, Tree, TrustRatioConfig};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut w = Tree::new();
/// w.insert("w", Tensor::new(&[6f64, 8.], &Device::Cpu)?);
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[0f64, 2.], &Device::Cpu)?);
/// let tx = layerwise(momentum(0.1, 0.9), TrustRatioConfig::lamb(), mask::all());
/// let (u, _) = tx.update(g, tx.init(&w)?, &w)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [0., -1.]); // 0.1·(10/2)·2
/// # Ok(()) }
/// ```
pub fn layerwise<T: Layerwise>(
    optimizer: T,
    trust_ratio: TrustRatioConfig,
    mask: Mask,
) -> T::Output {
    optimizer.insert_trust_ratio(masked(scale_by_trust_ratio(trust_ratio), mask))
}

macro_rules! layerwise_chain {
    ($($name:ident),*) => {
        impl<$($name: Transform,)* S: Schedule> Layerwise for Chain<($($name,)* ScaleByLearningRate<S>,)> {
            type Output = Chain<($($name,)* Masked<ScaleByTrustRatio>, ScaleByLearningRate<S>)>;

            #[allow(non_snake_case)]
            fn insert_trust_ratio(self, ratio: Masked<ScaleByTrustRatio>) -> Self::Output {
                let ($($name,)* lr,) = self.0;
                Chain(($($name,)* ratio, lr))
            }
        }
    };
}

layerwise_chain!();
layerwise_chain!(A);
layerwise_chain!(A, B);
layerwise_chain!(A, B, C);
layerwise_chain!(A, B, C, D);
layerwise_chain!(A, B, C, D, E);
layerwise_chain!(A, B, C, D, E, F);
