//! Named optimizers, each one [`chain`] whose order is the spec.

use crate::{Chain, ScaleByLearningRate, Schedule, Trace, chain, scale_by_learning_rate, trace};

/// Plain stochastic gradient descent: `w ← w − η(t)·g`.
pub fn sgd<S: Schedule>(learning_rate: S) -> Chain<(ScaleByLearningRate<S>,)> {
    chain((scale_by_learning_rate(learning_rate),))
}

/// Heavy-ball momentum (Polyak 1964), PyTorch's convention:
/// `m ← g + μ·m`, `w ← w − η(t)·m`.
pub fn momentum<S: Schedule>(
    learning_rate: S,
    beta: f64,
) -> Chain<(Trace, ScaleByLearningRate<S>)> {
    chain((trace(beta, false), scale_by_learning_rate(learning_rate)))
}

/// Nesterov momentum (Sutskever et al. 2013), PyTorch's convention:
/// `m ← g + μ·m`, `w ← w − η(t)·(g + μ·m)`.
pub fn nesterov<S: Schedule>(
    learning_rate: S,
    beta: f64,
) -> Chain<(Trace, ScaleByLearningRate<S>)> {
    chain((trace(beta, true), scale_by_learning_rate(learning_rate)))
}
