//! [`Tree`]: tensors by name, in sorted order.
//!
//! Parameters, gradients, updates and optimizer state are all trees with the same
//! names. Iteration is always in sorted name order, so every reduction over a tree
//! (a global norm, a checkpoint) is deterministic.

use std::collections::BTreeMap;

use candle_core::Tensor;

use crate::{Error, Result};

/// Tensors keyed by parameter name (`layer1.0.conv1.weight`), iterated in sorted order.
///
/// ```
/// use bigbatch_optim::Tree;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut t = Tree::new();
/// t.insert("b", Tensor::new(&[1f32, 2.], &Device::Cpu)?);
/// t.insert("a", Tensor::new(&[3f32], &Device::Cpu)?);
/// assert_eq!(t.names().collect::<Vec<_>>(), ["a", "b"]);
/// let doubled = t.map(|_, x| Ok(x.affine(2., 0.)?))?;
/// assert_eq!(doubled.get("a").unwrap().to_vec1::<f32>()?, [6.]);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Tree {
    leaves: BTreeMap<String, Tensor>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the tensor under `name`, returning the old one.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) -> Option<Tensor> {
        self.leaves.insert(name.into(), tensor)
    }

    /// The tensor under `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.leaves.get(name)
    }

    /// Removes and returns the tensor under `name`.
    pub fn remove(&mut self, name: &str) -> Option<Tensor> {
        self.leaves.remove(name)
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.leaves.len()
    }

    /// Whether the tree holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// Names in sorted order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.leaves.keys().map(String::as_str)
    }

    /// `(name, tensor)` pairs in sorted name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.leaves.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The total number of scalars over all tensors.
    pub fn elem_count(&self) -> usize {
        self.leaves.values().map(Tensor::elem_count).sum()
    }

    /// Applies `f` to every tensor, keeping names.
    ///
    /// # Errors
    /// The first error `f` returns.
    pub fn map(&self, mut f: impl FnMut(&str, &Tensor) -> Result<Tensor>) -> Result<Tree> {
        self.iter()
            .map(|(name, t)| Ok((name.to_owned(), f(name, t)?)))
            .collect()
    }

    /// Applies `f` to matching tensors of `self` and `other`.
    ///
    /// # Errors
    /// [`Error::TreeMismatch`] if the two trees do not hold the same names, or the
    /// first error `f` returns.
    pub fn zip_map(
        &self,
        other: &Tree,
        mut f: impl FnMut(&str, &Tensor, &Tensor) -> Result<Tensor>,
    ) -> Result<Tree> {
        self.check_same_names(other)?;
        self.iter()
            .zip(other.leaves.values())
            .map(|((name, a), b)| Ok((name.to_owned(), f(name, a, b)?)))
            .collect()
    }

    /// Checks that `other` holds exactly the names of `self`.
    ///
    /// # Errors
    /// [`Error::TreeMismatch`] naming the first name found on one side only.
    pub fn check_same_names(&self, other: &Tree) -> Result<()> {
        if let Some(name) = self.names().find(|n| other.get(n).is_none()) {
            return Err(Error::TreeMismatch {
                name: name.to_owned(),
            });
        }
        if let Some(name) = other.names().find(|n| self.get(n).is_none()) {
            return Err(Error::TreeMismatch {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    /// Splits the tree in two: the tensors whose name is in `selected`, then the rest.
    ///
    /// Tensors are reference-counted, so nothing is copied.
    pub fn partition(self, selected: &std::collections::BTreeSet<String>) -> (Tree, Tree) {
        let (a, b) = self
            .leaves
            .into_iter()
            .partition(|(name, _)| selected.contains(name));
        (Tree { leaves: a }, Tree { leaves: b })
    }

    /// The tensors whose name is in `selected` (cheap reference-counted clones).
    pub fn subset(&self, selected: &std::collections::BTreeSet<String>) -> Tree {
        self.iter()
            .filter(|(name, _)| selected.contains(*name))
            .map(|(name, t)| (name.to_owned(), t.clone()))
            .collect()
    }

    /// Moves every tensor of `other` into `self`, replacing tensors of the same name.
    pub fn extend(&mut self, other: Tree) {
        self.leaves.extend(other.leaves);
    }

    /// A tree of zeros shaped like `self`.
    ///
    /// # Errors
    /// A candle error from allocation.
    pub fn zeros_like(&self) -> Result<Tree> {
        self.map(|_, t| Ok(t.zeros_like()?))
    }

    /// The squared L2 norm over all tensors, accumulated in sorted order in f64.
    ///
    /// # Errors
    /// A candle error from the reductions.
    pub fn squared_norm(&self) -> Result<f64> {
        let mut total = 0.0;
        for (_, t) in self.iter() {
            total += t
                .to_dtype(candle_core::DType::F64)?
                .sqr()?
                .sum_all()?
                .to_scalar::<f64>()?;
        }
        Ok(total)
    }
}

impl FromIterator<(String, Tensor)> for Tree {
    fn from_iter<I: IntoIterator<Item = (String, Tensor)>>(iter: I) -> Self {
        Tree {
            leaves: iter.into_iter().collect(),
        }
    }
}

impl IntoIterator for Tree {
    type Item = (String, Tensor);
    type IntoIter = std::collections::btree_map::IntoIter<String, Tensor>;

    fn into_iter(self) -> Self::IntoIter {
        self.leaves.into_iter()
    }
}
