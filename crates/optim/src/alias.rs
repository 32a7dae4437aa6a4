//! Named optimizers, each one [`chain`] whose order is the spec.
//!
//! | optimizer | chain (left to right) | reference |
//! |---|---|---|
//! | [`sgd`] | learning rate | Robbins & Monro 1951 |
//! | [`momentum`] | trace → learning rate | Polyak 1964 (PyTorch `SGD(momentum)`) |
//! | [`nesterov`] | Nesterov trace → learning rate | Sutskever et al. 2013 |
//! | [`adagrad`] | rss → learning rate | Duchi et al. 2011 (PyTorch `Adagrad`) |
//! | [`rmsprop`] | rms → trace → learning rate | Tieleman & Hinton 2012 (PyTorch `RMSprop`) |
//! | [`adam`] | adam → learning rate | Kingma & Ba 2015 |
//! | [`adamw`] | adam → masked decay → learning rate | Loshchilov & Hutter 2019 |
//! | [`lars`] | masked decay → masked LARS ratio → learning rate → trace | You et al. 2017; MLPerf |
//! | [`lamb`] | adam → masked decay → masked LAMB ratio → learning rate | You et al. 2020 |
//!
//! An L2 penalty (PyTorch's `weight_decay` for `SGD`, `Adagrad`, `RMSprop`,
//! `Adam`) is [`crate::add_decayed_weights`] chained *before* one of these:
//! `chain((add_decayed_weights(λ), momentum(η, μ)))`.

use crate::mask::{self, Mask, Masked, masked};
use crate::{
    AdamConfig, AddDecayedWeights, Chain, RmsConfig, ScaleByAdam, ScaleByLearningRate, ScaleByRms,
    ScaleByRss, ScaleByTrustRatio, Schedule, Trace, TrustRatioConfig, add_decayed_weights, chain,
    scale_by_adam, scale_by_learning_rate, scale_by_rms, scale_by_rss, scale_by_trust_ratio, trace,
};

/// The chain built by [`sgd`].
pub type Sgd<S> = Chain<(ScaleByLearningRate<S>,)>;
/// The chain built by [`momentum`] and [`nesterov`].
pub type Momentum<S> = Chain<(Trace, ScaleByLearningRate<S>)>;
/// The chain built by [`adagrad`].
pub type Adagrad<S> = Chain<(ScaleByRss, ScaleByLearningRate<S>)>;
/// The chain built by [`rmsprop`].
pub type Rmsprop<S> = Chain<(ScaleByRms, Trace, ScaleByLearningRate<S>)>;
/// The chain built by [`adam`].
pub type Adam<S> = Chain<(ScaleByAdam, ScaleByLearningRate<S>)>;
/// The chain built by [`adamw`].
pub type AdamW<S> = Chain<(
    ScaleByAdam,
    Masked<AddDecayedWeights>,
    ScaleByLearningRate<S>,
)>;
/// The chain built by [`lamb`] (and by [`crate::layerwise`] over [`adamw`]).
pub type Lamb<S> = Chain<(
    ScaleByAdam,
    Masked<AddDecayedWeights>,
    Masked<ScaleByTrustRatio>,
    ScaleByLearningRate<S>,
)>;
/// The chain built by [`lars`].
pub type Lars<S> = Chain<(
    Masked<AddDecayedWeights>,
    Masked<ScaleByTrustRatio>,
    Masked<ScaleByTrustRatio>,
    ScaleByLearningRate<S>,
    Trace,
)>;

/// Plain stochastic gradient descent: `w ← w − η(t)·g`.
///
/// ```
/// use bigbatch_optim::{sgd, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[2f64], &Device::Cpu)?);
/// let tx = sgd(0.5);
/// let (u, _) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [-1.]);
/// # Ok(()) }
/// ```
pub fn sgd<S: Schedule>(learning_rate: S) -> Sgd<S> {
    chain((scale_by_learning_rate(learning_rate),))
}

/// Heavy-ball momentum (Polyak 1964), PyTorch's `SGD(momentum=μ)` convention:
///
/// `m ← g + μ·m`, `w ← w − η(t)·m`
///
/// # Errors
/// `init` fails with [`crate::Error::InvalidHyperparameter`] unless `0 ≤ μ < 1`.
///
/// ```
/// use bigbatch_optim::{momentum, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[1f64], &Device::Cpu)?);
/// let tx = momentum(0.1, 0.5);
/// let (_, s) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// let (u, _) = tx.update(g.clone(), s, &g)?;
/// assert!((u.get("w").unwrap().to_vec1::<f64>()?[0] + 0.15).abs() < 1e-15);
/// # Ok(()) }
/// ```
pub fn momentum<S: Schedule>(learning_rate: S, beta: f64) -> Momentum<S> {
    chain((trace(beta, false), scale_by_learning_rate(learning_rate)))
}

/// Nesterov momentum (Sutskever et al. 2013), PyTorch's `SGD(nesterov=True)` convention:
///
/// `m ← g + μ·m`, `w ← w − η(t)·(g + μ·m)`
///
/// # Errors
/// `init` fails with [`crate::Error::InvalidHyperparameter`] unless `0 ≤ μ < 1`.
///
/// ```
/// use bigbatch_optim::{nesterov, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[1f64], &Device::Cpu)?);
/// let tx = nesterov(0.1, 0.5);
/// let (u, _) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// assert!((u.get("w").unwrap().to_vec1::<f64>()?[0] + 0.15).abs() < 1e-15);
/// # Ok(()) }
/// ```
pub fn nesterov<S: Schedule>(learning_rate: S, beta: f64) -> Momentum<S> {
    chain((trace(beta, true), scale_by_learning_rate(learning_rate)))
}

/// Hyperparameters of [`adagrad`]; the defaults are PyTorch's.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdagradConfig {
    /// The initial sum of squares `s₀` (0 in PyTorch, 0.1 in optax).
    pub initial_accumulator_value: f64,
    /// Added to `√s` (1e-10).
    pub eps: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        Self {
            initial_accumulator_value: 0.0,
            eps: 1e-10,
        }
    }
}

/// AdaGrad (Duchi, Hazan & Singer 2011), PyTorch's `Adagrad` (without `lr_decay`:
/// use a schedule):
///
/// `s ← s + g²`, `w ← w − η(t)·g/(√s + ε)`
///
/// # Errors
/// `init` fails with [`crate::Error::InvalidHyperparameter`] if `s₀` or `ε` is negative.
///
/// ```
/// use bigbatch_optim::{adagrad, AdagradConfig, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[4f64], &Device::Cpu)?);
/// let tx = adagrad(0.1, AdagradConfig { eps: 0.0, ..AdagradConfig::default() });
/// let (u, _) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [-0.1]);
/// # Ok(()) }
/// ```
pub fn adagrad<S: Schedule>(learning_rate: S, cfg: AdagradConfig) -> Adagrad<S> {
    chain((
        scale_by_rss(cfg.initial_accumulator_value, cfg.eps),
        scale_by_learning_rate(learning_rate),
    ))
}

/// RMSprop (Tieleman & Hinton 2012; centered: Graves 2013), PyTorch's `RMSprop`:
///
/// ```text
/// v ← α·v + (1 − α)·g²,  m ← α·m + (1 − α)·g (centered)
/// b ← μ·b + g/(√(v − m²) + ε)   (√v uncentered; b = the update when μ = 0)
/// w ← w − η(t)·b
/// ```
///
/// PyTorch puts `ε` outside the root; optax's `rmsprop` puts it inside
/// (`eps_in_sqrt` in [`RmsConfig`]).
///
/// # Errors
/// `init` fails with [`crate::Error::InvalidHyperparameter`] unless `α, μ ∈ [0, 1)`
/// and `ε ≥ 0`.
///
/// ```
/// use bigbatch_optim::{rmsprop, RmsConfig, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[3f64], &Device::Cpu)?);
/// let tx = rmsprop(0.1, RmsConfig { decay: 0.75, eps: 0.0, ..RmsConfig::default() }, 0.0);
/// let (u, _) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// assert!((u.get("w").unwrap().to_vec1::<f64>()?[0] + 0.2).abs() < 1e-15); // 3/√2.25
/// # Ok(()) }
/// ```
pub fn rmsprop<S: Schedule>(learning_rate: S, cfg: RmsConfig, momentum: f64) -> Rmsprop<S> {
    chain((
        scale_by_rms(cfg),
        trace(momentum, false),
        scale_by_learning_rate(learning_rate),
    ))
}

/// Adam (Kingma & Ba 2015), PyTorch's `Adam` and optax's `adam`:
///
/// `w ← w − η(t)·m̂/(√(v̂ + ε_root) + ε)`, moments as in [`crate::scale_by_adam`].
///
/// # Errors
/// `init` fails with [`crate::Error::InvalidHyperparameter`] for an invalid [`AdamConfig`].
///
/// ```
/// use bigbatch_optim::{adam, AdamConfig, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[-7f64], &Device::Cpu)?);
/// let tx = adam(0.01, AdamConfig { eps: 0.0, eps_root: 1e-300, ..AdamConfig::default() });
/// let (u, _) = tx.update(g.clone(), tx.init(&g)?, &g)?;
/// assert!((u.get("w").unwrap().to_vec1::<f64>()?[0] - 0.01).abs() < 1e-15);
/// # Ok(()) }
/// ```
pub fn adam<S: Schedule>(learning_rate: S, cfg: AdamConfig) -> Adam<S> {
    chain((scale_by_adam(cfg), scale_by_learning_rate(learning_rate)))
}

/// AdamW: Adam with decoupled weight decay (Loshchilov & Hutter 2019),
/// PyTorch's `AdamW` and optax's `adamw`:
///
/// `w ← w − η(t)·(m̂/(√v̂ + ε) + λ·w·[mask])`
///
/// Weight decay applies to the parameters `mask` selects ([`mask::all`] in
/// PyTorch; [`mask::exclude_bias_and_norm`] in most large-batch recipes).
///
/// # Errors
/// `init` fails with [`crate::Error::InvalidHyperparameter`] for an invalid
/// [`AdamConfig`] or `λ < 0`.
///
/// ```
/// use bigbatch_optim::{adamw, mask, AdamConfig, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut w = Tree::new();
/// w.insert("w", Tensor::new(&[[2f64]], &Device::Cpu)?);
/// let tx = adamw(0.1, AdamConfig::default(), 0.5, mask::all());
/// let (u, _) = tx.update(w.zeros_like()?, tx.init(&w)?, &w)?; // zero gradient: decay only
/// assert_eq!(u.get("w").unwrap().to_vec2::<f64>()?, [[-0.1]]);
/// # Ok(()) }
/// ```
pub fn adamw<S: Schedule>(
    learning_rate: S,
    cfg: AdamConfig,
    weight_decay: f64,
    mask: Mask,
) -> AdamW<S> {
    chain((
        scale_by_adam(cfg),
        masked(add_decayed_weights(weight_decay), mask),
        scale_by_learning_rate(learning_rate),
    ))
}

/// Hyperparameters of [`lars`]; the defaults are optax's `lars` (and You et al. 2017's `η`).
///
/// The MLPerf ResNet-50 reference exempts biases and batch-norm parameters
/// from both decay and adaptation:
///
/// ```
/// use bigbatch_optim::{mask, LarsConfig};
/// let mlperf = LarsConfig {
///     weight_decay: 5e-5,
///     weight_decay_mask: mask::exclude_bias_and_norm(),
///     trust_ratio_mask: mask::exclude_bias_and_norm(),
///     ..LarsConfig::default()
/// };
/// assert_eq!(mlperf.eta, 0.001);
/// ```
#[derive(Clone, Debug)]
pub struct LarsConfig {
    /// Momentum `μ` (0.9).
    pub momentum: f64,
    /// Nesterov momentum (false).
    pub nesterov: bool,
    /// Weight decay `λ` (0).
    pub weight_decay: f64,
    /// Trust coefficient `η` (0.001).
    pub eta: f64,
    /// Added to the ratio's denominator (0).
    pub eps: f64,
    /// Lower bound on the trust ratio (none).
    pub min_ratio: Option<f64>,
    /// Upper bound on the trust ratio (none).
    pub max_ratio: Option<f64>,
    /// Parameters that get weight decay ([`mask::all`]).
    pub weight_decay_mask: Mask,
    /// Parameters that get a trust ratio; the others use the global rate ([`mask::all`]).
    pub trust_ratio_mask: Mask,
}

impl Default for LarsConfig {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            eta: 0.001,
            eps: 0.0,
            min_ratio: None,
            max_ratio: None,
            weight_decay_mask: mask::all(),
            trust_ratio_mask: mask::all(),
        }
    }
}

/// LARS, layer-wise adaptive rate scaling (You, Gitman & Ginsburg 2017,
/// Algorithm 1), in the form of the MLPerf ResNet-50 reference and optax's `lars`:
///
/// ```text
/// u = g + λw                                (masked: weight decay)
/// r = η‖w‖ / (‖g‖ + λ‖w‖ + ε)               (masked: trust ratio; 1 if a norm is 0)
/// m ← μ·m + η(t)·r·u                        (learning rate, then momentum)
/// w ← w − m                                 (Nesterov: w − (η(t)·r·u + μ·m))
/// ```
///
/// A parameter exempt from decay gets the ratio with `λ = 0`. Two masked trust
/// ratios implement that: one with `λ` for decayed parameters, one without.
///
/// # Errors
/// `init` fails with [`crate::Error::InvalidHyperparameter`] unless `μ ∈ [0, 1)`,
/// `λ, ε ≥ 0`, `η > 0` and the bounds are ordered.
///
/// ```
/// use bigbatch_optim::{lars, LarsConfig, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut w = Tree::new();
/// w.insert("w", Tensor::new(&[3f64, 4.], &Device::Cpu)?);
/// let mut g = Tree::new();
/// g.insert("w", Tensor::new(&[0f64, 1.], &Device::Cpu)?);
/// let tx = lars(1.0, LarsConfig { eta: 0.2, ..LarsConfig::default() });
/// let (u, _) = tx.update(g, tx.init(&w)?, &w)?; // r = 0.2·5/1 = 1
/// assert_eq!(u.get("w").unwrap().to_vec1::<f64>()?, [0., -1.]);
/// # Ok(()) }
/// ```
pub fn lars<S: Schedule>(learning_rate: S, cfg: LarsConfig) -> Lars<S> {
    let ratio = |weight_decay| {
        scale_by_trust_ratio(TrustRatioConfig {
            eps: cfg.eps,
            ..TrustRatioConfig::lars(cfg.eta, weight_decay)
                .with_bounds(cfg.min_ratio, cfg.max_ratio)
        })
    };
    let decayed = cfg
        .trust_ratio_mask
        .clone()
        .and(cfg.weight_decay_mask.clone());
    let undecayed = cfg
        .trust_ratio_mask
        .and(cfg.weight_decay_mask.clone().not());
    chain((
        masked(add_decayed_weights(cfg.weight_decay), cfg.weight_decay_mask),
        masked(ratio(cfg.weight_decay), decayed),
        masked(ratio(0.0), undecayed),
        scale_by_learning_rate(learning_rate),
        trace(cfg.momentum, cfg.nesterov),
    ))
}

/// Hyperparameters of [`lamb`]; the defaults are optax's `lamb`.
///
/// ```
/// use bigbatch_optim::{mask, LambConfig};
/// let cfg = LambConfig { weight_decay: 0.01, weight_decay_mask: mask::exclude_bias_and_norm(), ..LambConfig::default() };
/// assert_eq!(cfg.adam.eps, 1e-6);
/// ```
#[derive(Clone, Debug)]
pub struct LambConfig {
    /// Adam's moments (`β₁ = 0.9`, `β₂ = 0.999`, `ε = 1e-6`).
    pub adam: AdamConfig,
    /// Decoupled weight decay `λ` (0).
    pub weight_decay: f64,
    /// Parameters that get weight decay ([`mask::all`]).
    pub weight_decay_mask: Mask,
    /// The trust ratio: LAMB form, optionally bounded.
    pub trust_ratio: TrustRatioConfig,
    /// Parameters that get a trust ratio ([`mask::all`]).
    pub trust_ratio_mask: Mask,
}

impl Default for LambConfig {
    fn default() -> Self {
        Self {
            adam: AdamConfig {
                eps: 1e-6,
                ..AdamConfig::default()
            },
            weight_decay: 0.0,
            weight_decay_mask: mask::all(),
            trust_ratio: TrustRatioConfig::lamb(),
            trust_ratio_mask: mask::all(),
        }
    }
}

/// LAMB, layer-wise adaptive moments (You et al. 2020, "Large batch
/// optimization for deep learning: training BERT in 76 minutes", Algorithm 2),
/// as optax's `lamb`:
///
/// ```text
/// u = m̂/(√v̂ + ε) + λw                       (Adam moments, masked decay)
/// r = ‖w‖ / ‖u‖                             (masked; 1 if a norm is 0; optionally bounded)
/// w ← w − η(t)·r·u
/// ```
///
/// With the trust ratio masked off everywhere this is exactly [`adamw`].
///
/// # Errors
/// `init` fails with [`crate::Error::InvalidHyperparameter`] for an invalid
/// [`AdamConfig`], `λ < 0`, or disordered bounds.
///
/// ```
/// use bigbatch_optim::{lamb, LambConfig, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut w = Tree::new();
/// w.insert("w", Tensor::new(&[3f64, 4.], &Device::Cpu)?);
/// let tx = lamb(0.1, LambConfig::default());
/// let (u, _) = tx.update(w.clone(), tx.init(&w)?, &w)?;
/// // First Adam step ≈ sign(g) = (1, 1), rescaled to norm ‖w‖ = 5.
/// let u = u.get("w").unwrap().to_vec1::<f64>()?;
/// assert!((u[0] + 0.1 * 5. / 2f64.sqrt()).abs() < 1e-6);
/// # Ok(()) }
/// ```
pub fn lamb<S: Schedule>(learning_rate: S, cfg: LambConfig) -> Lamb<S> {
    chain((
        scale_by_adam(cfg.adam),
        masked(add_decayed_weights(cfg.weight_decay), cfg.weight_decay_mask),
        masked(scale_by_trust_ratio(cfg.trust_ratio), cfg.trust_ratio_mask),
        scale_by_learning_rate(learning_rate),
    ))
}
