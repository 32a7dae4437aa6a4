//! [`Optimizer`]: a transform and its state, applied to a model's [`Params`].

use std::path::Path;

use candle_core::DType;

use crate::{Boxed, BoxedState, Error, OptState, Params, Result, Transform, Tree, boxed, fuse};

/// A transform bound to its state: the stateful convenience a training loop wants.
///
/// ```
/// use bigbatch_optim::{momentum, Optimizer, Params};
/// use candle_core::{Device, Var};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let w = Var::new(&[3f32], &Device::Cpu)?;
/// let params = Params::new([("w".to_string(), w.clone())]);
/// let mut opt = Optimizer::new(momentum(0.1, 0.5), &params)?;
/// assert!(opt.is_fused()); // f32 on the CPU: in place
/// for _ in 0..100 {
///     let loss = w.as_tensor().sqr()?.sum_all()?;
///     opt.step(&params, params.grads(&loss.backward()?)?)?;
/// }
/// assert!(w.as_tensor().to_vec1::<f32>()?[0].abs() < 1e-3);
/// # Ok(()) }
/// ```
///
/// A transform whose every part fuses ([`Transform::fusable`]: every named
/// optimizer, every [`crate::OptimizerSpec`]) runs in place when the
/// parameters are f32 CPU tensors: one pass over each parameter, its gradient
/// and its state per step (one more per trust ratio or clip, which need norms
/// first), with the composed chain's updates and state (see [`crate::Plan`]).
/// Otherwise, or through [`Optimizer::composed`], each step runs
/// [`Transform::update`] on tensors.
#[derive(Debug)]
pub struct Optimizer {
    transform: Boxed,
    state: BoxedState,
    /// Steps run fused, in place.
    in_place: bool,
    steps: u64,
}

impl Optimizer {
    /// Initialises `transform`'s state for `params`; steps run fused, in
    /// place, if the transform fuses and every parameter is an f32 CPU tensor.
    ///
    /// # Errors
    /// [`Error::InvalidHyperparameter`] as the transform's `init` reports it;
    /// a candle error from allocating state.
    pub fn new(transform: impl Transform + 'static, params: &Params) -> Result<Self> {
        let in_place = transform.fusable()
            && params
                .iter()
                .all(|(_, v)| v.device().is_cpu() && v.dtype() == DType::F32);
        Self::with(transform, params, in_place)
    }

    /// As [`Optimizer::new`], but always composed: every step runs
    /// [`Transform::update`] on tensors (the definition the fused steps are
    /// tested against).
    ///
    /// ```
    /// use bigbatch_optim::{adam, AdamConfig, Optimizer, Params};
    /// use candle_core::{Device, Var};
    /// # fn main() -> Result<(), bigbatch_optim::Error> {
    /// let w = Var::new(&[3f32], &Device::Cpu)?;
    /// let params = Params::new([("w".to_string(), w.clone())]);
    /// let opt = Optimizer::composed(adam(0.1, AdamConfig::default()), &params)?;
    /// assert!(!opt.is_fused());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Optimizer::new`].
    pub fn composed(transform: impl Transform + 'static, params: &Params) -> Result<Self> {
        Self::with(transform, params, false)
    }

    fn with(transform: impl Transform + 'static, params: &Params, in_place: bool) -> Result<Self> {
        let transform = boxed(transform);
        let mut state = transform.init(&params.tree())?;
        if in_place {
            fuse::own(&mut state)?;
        }
        Ok(Self {
            transform,
            state,
            in_place,
            steps: 0,
        })
    }

    /// Whether steps run fused, in place (see [`Optimizer::new`]).
    pub fn is_fused(&self) -> bool {
        self.in_place
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
        if self.in_place {
            fuse::step(&self.transform, &mut self.state, params, &grads)?;
        } else {
            let values = params.tree();
            let (updates, next) = self.transform.update(grads, self.state.clone(), &values)?;
            params.apply(&updates)?;
            self.state = next;
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
        let mut state = Tree::new();
        self.state.save("state", &mut state)?;
        for (name, t) in state {
            // Copies in place: the tensors here are updated by the next step.
            out.insert(name, if self.in_place { t.copy()? } else { t });
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
        let mut loaded = self.state.clone();
        loaded.load("state", saved)?;
        if self.in_place {
            // Updated in place from now on: not through `saved`.
            fuse::own(&mut loaded)?;
        }
        self.state = loaded;
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
