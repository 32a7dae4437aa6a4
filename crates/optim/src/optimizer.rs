//! [`Optimizer`]: a transform and its state, applied to a model's [`Params`].

use std::path::Path;

use crate::{Boxed, BoxedState, Error, OptState, Params, Result, Transform, Tree, boxed};

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
#[derive(Debug)]
pub struct Optimizer {
    transform: Boxed,
    state: BoxedState,
    steps: u64,
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
            transform,
            state,
            steps: 0,
        })
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
        let values = params.tree();
        let (updates, state) = self.transform.update(grads, self.state.clone(), &values)?;
        params.apply(&updates)?;
        self.state = state;
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
        self.state.save("state", &mut out)?;
        Ok(out)
    }

    /// Restores the state from a tree written by [`Optimizer::state_tree`].
    ///
    /// # Errors
    /// [`Error::StateMismatch`] if a tensor is missing or misshapen.
    pub fn load_state_tree(&mut self, saved: &Tree) -> Result<()> {
        let mut state = self.state.clone();
        state.load("state", saved)?;
        let mut steps = 0;
        steps.load("steps", saved)?;
        self.state = state;
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
