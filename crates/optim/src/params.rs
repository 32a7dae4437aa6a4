//! [`Params`]: the trainable variables of a model, by name.

use std::collections::BTreeMap;

use candle_core::Var;
use candle_core::backprop::GradStore;

use crate::{ParamKind, Result, Tree};

/// A model's trainable [`Var`]s by name, in sorted order.
///
/// This is the bridge between candle's autodiff and the functional transforms:
/// [`Params::tree`] reads the current values, [`Params::grads`] collects gradients
/// from a backward pass, and [`Params::apply`] adds updates in place.
///
/// ```
/// use bigbatch_optim::Params;
/// use candle_core::{Device, Var};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let w = Var::new(&[1f32, 2.], &Device::Cpu)?;
/// let params = Params::new([("w".to_string(), w.clone())]);
/// let loss = w.as_tensor().sqr()?.sum_all()?;
/// let grads = params.grads(&loss.backward()?)?;
/// assert_eq!(grads.get("w").unwrap().to_vec1::<f32>()?, [2., 4.]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Params {
    vars: BTreeMap<String, Var>,
    kinds: BTreeMap<String, ParamKind>,
}

impl Params {
    /// Collects named variables.
    pub fn new(vars: impl IntoIterator<Item = (String, Var)>) -> Self {
        Self {
            vars: vars.into_iter().collect(),
            kinds: BTreeMap::new(),
        }
    }

    /// The same variables, each with the [`ParamKind`] its model declared
    /// (what optimizer masks select by; see [`bigbatch_spec::MaskSpec`]).
    /// Kinds of names not among the variables are ignored.
    ///
    /// ```
    /// use bigbatch_optim::{ParamKind, Params};
    /// use candle_core::{Device, Var};
    /// # fn main() -> Result<(), bigbatch_optim::Error> {
    /// let b = Var::new(&[0f32], &Device::Cpu)?;
    /// let params = Params::new([("fc.bias".to_string(), b)])
    ///     .with_kinds([("fc.bias".to_string(), ParamKind::Bias)]);
    /// assert_eq!(params.kind("fc.bias"), Some(ParamKind::Bias));
    /// assert!(params.kinds_known());
    /// # Ok(()) }
    /// ```
    pub fn with_kinds(mut self, kinds: impl IntoIterator<Item = (String, ParamKind)>) -> Self {
        self.kinds = kinds
            .into_iter()
            .filter(|(name, _)| self.vars.contains_key(name))
            .collect();
        self
    }

    /// The kind of the variable `name`, if declared.
    pub fn kind(&self, name: &str) -> Option<ParamKind> {
        self.kinds.get(name).copied()
    }

    /// Whether every variable has a declared kind.
    pub fn kinds_known(&self) -> bool {
        self.kinds.len() == self.vars.len()
    }

    /// The number of variables.
    pub fn len(&self) -> usize {
        self.vars.len()
    }

    /// Whether there are no variables.
    pub fn is_empty(&self) -> bool {
        self.vars.is_empty()
    }

    /// The variable named `name`.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.vars.get(name)
    }

    /// `(name, variable)` pairs in sorted name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The total number of scalars.
    pub fn elem_count(&self) -> usize {
        self.vars.values().map(|v| v.elem_count()).sum()
    }

    /// The current values, detached from the autodiff graph.
    pub fn tree(&self) -> Tree {
        self.iter()
            .map(|(name, v)| (name.to_owned(), v.as_tensor().detach()))
            .collect()
    }

    /// The gradient of every variable from a backward pass; a variable the loss
    /// does not depend on gets zeros.
    ///
    /// # Errors
    /// A candle error from allocating zeros.
    pub fn grads(&self, store: &GradStore) -> Result<Tree> {
        self.iter()
            .map(|(name, v)| {
                let g = match store.get(v.as_tensor()) {
                    // Detached: a gradient from `backward` still refers to the
                    // forward graph, and optimizer state built from it (a momentum
                    // trace) would keep every past step's graph alive.
                    Some(g) => g.detach(),
                    None => v.as_tensor().zeros_like()?,
                };
                Ok((name.to_owned(), g))
            })
            .collect()
    }

    /// Adds `updates` to the variables in place: `w ← w + u`.
    ///
    /// # Errors
    /// [`crate::Error::TreeMismatch`] if the names differ, or a candle error
    /// (shape mismatch).
    pub fn apply(&self, updates: &Tree) -> Result<()> {
        self.tree().check_same_names(updates)?;
        for ((_, var), (_, u)) in self.iter().zip(updates.iter()) {
            var.set(&(var.as_tensor() + u)?)?;
        }
        Ok(())
    }

    /// Overwrites the variables with `values` (same names and shapes).
    ///
    /// # Errors
    /// [`crate::Error::TreeMismatch`] if the names differ, or a candle error
    /// (shape mismatch).
    pub fn assign(&self, values: &Tree) -> Result<()> {
        self.tree().check_same_names(values)?;
        for ((_, var), (_, v)) in self.iter().zip(values.iter()) {
            var.set(v)?;
        }
        Ok(())
    }
}
