//! [`Optimizer`]: a transform and its state, applied to a model's [`Params`].

use std::path::Path;
use std::sync::Arc;

use candle_core::DType;

use crate::fused::FusedUpdate;
use crate::{
    Boxed, BoxedState, Error, Fused, OptState, Params, Result, Schedule, Transform, Tree, boxed,
};

/// A transform bound to its state: the stateful convenience a training loop wants.
///
/// ```
/// use bigbatch_optim::{momentum, Optimizer, Params};
/// use candle_core::{Device, Var};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let w = Var::new(&[3f32], &Device::Cpu)?;
/// let params = Params::new([("w".to_string(), w.clone())]);
/// let mut opt = Optimizer::new(momentum(0.1, 0.5), &params)?;
/// for _ in 0..100 {
///     let loss = w.as_tensor().sqr()?.sum_all()?;
///     opt.step(&params, params.grads(&loss.backward()?)?)?;
/// }
/// assert!(w.as_tensor().to_vec1::<f32>()?[0].abs() < 1e-3);
/// # Ok(()) }
/// ```
///
/// [`Optimizer::fused`] runs the named optimizers as in-place passes over
/// each parameter on the CPU (see [`Fused`]): same updates, same state
/// file, a fraction of the memory traffic.
#[derive(Debug)]
pub struct Optimizer {
    engine: Engine,
    steps: u64,
}

/// How updates are computed: the composed transform, or its fused form.
#[derive(Debug)]
enum Engine {
    Composed { transform: Boxed, state: BoxedState },
    Fused(Box<FusedUpdate>),
}

impl Optimizer {
    /// Initialises `transform`'s state for `params`.
    ///
    /// # Errors
    /// A candle error from allocating state.
    pub fn new(transform: impl Transform + 'static, params: &Params) -> Result<Self> {
        let transform = boxed(transform);
        let state = transform.init(&params.tree())?;
        Ok(Self {
            engine: Engine::Composed { transform, state },
            steps: 0,
        })
    }

    /// The named optimizer `rule` with learning rate `learning_rate`, run in
    /// place: one pass over each parameter, its gradient and its state per
    /// step (two for LARS and LAMB, which need norms first), when every
    /// parameter is an f32 tensor on the CPU; otherwise the
    /// composed chain [`Fused::chain`]. Either way the updates and the saved
    /// state are those of the chain ([`crate::sgd`], [`crate::momentum`], …).
    ///
    /// ```
    /// use bigbatch_optim::{Fused, Optimizer, Params};
    /// use candle_core::{Device, Var};
    /// # fn main() -> Result<(), bigbatch_optim::Error> {
    /// let w = Var::new(&[3f32], &Device::Cpu)?;
    /// let params = Params::new([("w".to_string(), w.clone())]);
    /// let rule = Fused::Momentum { beta: 0.5, nesterov: false };
    /// let mut opt = Optimizer::fused(rule, 0.1, &params)?;
    /// for _ in 0..100 {
    ///     let loss = w.as_tensor().sqr()?.sum_all()?;
    ///     opt.step(&params, params.grads(&loss.backward()?)?)?;
    /// }
    /// assert!(w.as_tensor().to_vec1::<f32>()?[0].abs() < 1e-3);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] as the chain's `init` reports it; a
    /// candle error from allocating state.
    pub fn fused(
        rule: Fused,
        learning_rate: impl Schedule + 'static,
        params: &Params,
    ) -> Result<Self> {
        let schedule: Arc<dyn Schedule> = Arc::new(learning_rate);
        let in_place = params
            .iter()
            .all(|(_, v)| v.device().is_cpu() && v.dtype() == DType::F32);
        if !in_place {
            return Self::new(rule.chain(schedule), params);
        }
        Ok(Self {
            engine: Engine::Fused(Box::new(FusedUpdate::new(rule, schedule, &params.tree())?)),
            steps: 0,
        })
    }

    /// Whether updates run in place ([`Optimizer::fused`] on the CPU).
    pub fn is_fused(&self) -> bool {
        matches!(self.engine, Engine::Fused(_))
    }

    /// The number of updates applied so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Transforms `grads` and adds the result to `params`.
    ///
    /// # Errors
    /// [`Error::TreeMismatch`] if `grads` and `params` disagree on names, or a candle error.
    pub fn step(&mut self, params: &Params, grads: Tree) -> Result<()> {
        match &mut self.engine {
            Engine::Composed { transform, state } => {
                let values = params.tree();
                let (updates, next) = transform.update(grads, state.clone(), &values)?;
                params.apply(&updates)?;
                *state = next;
            }
            Engine::Fused(fused) => fused.step(params, &grads)?,
        }
        self.steps += 1;
        Ok(())
    }

    /// The state as one flat tree (`steps` plus the transform's tensors under `state.`).
    ///
    /// # Errors
    /// A candle error building counter tensors.
    pub fn state_tree(&self) -> Result<Tree> {
        let mut out = Tree::new();
        self.steps.save("steps", &mut out)?;
        match &self.engine {
            Engine::Composed { state, .. } => state.save("state", &mut out)?,
            Engine::Fused(fused) => fused.save("state", &mut out)?,
        }
        Ok(out)
    }

    /// Restores the state from a tree written by [`Optimizer::state_tree`].
    ///
    /// # Errors
    /// [`Error::StateMismatch`] if a tensor is missing or misshapen.
    pub fn load_state_tree(&mut self, saved: &Tree) -> Result<()> {
        let mut steps = 0;
        steps.load("steps", saved)?;
        match &mut self.engine {
            Engine::Composed { state, .. } => {
                let mut loaded = state.clone();
                loaded.load("state", saved)?;
                *state = loaded;
            }
            Engine::Fused(fused) => {
                let mut loaded = fused.clone();
                loaded.load("state", saved)?;
                *fused = loaded;
            }
        }
        self.steps = steps;
        Ok(())
    }

    /// Saves the state to a safetensors file, atomically (temp file + rename).
    ///
    /// # Errors
    /// [`Error::Io`] or a candle error.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tree = self.state_tree()?;
        let tensors: std::collections::HashMap<String, candle_core::Tensor> =
            tree.into_iter().collect();
        let tmp = path.with_extension("safetensors.tmp");
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Loads the state from a safetensors file written by [`Optimizer::save`].
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::StateMismatch`] if it
    /// does not fit this optimizer.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        if !path.exists() {
            return Err(Error::Io {
                path: path.to_owned(),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            });
        }
        let saved: Tree = candle_core::safetensors::load(path, &candle_core::Device::Cpu)?
            .into_iter()
            .collect();
        self.load_state_tree(&saved)
    }
}
