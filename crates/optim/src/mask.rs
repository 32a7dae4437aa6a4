//! Parameter masks: predicates on `(name, shape)`, and the [`masked`] transform.
//!
//! Large-batch recipes treat biases and normalisation parameters apart: the
//! MLPerf ResNet-50 LARS reference skips `batch_normalization` and `bias`
//! variables both in weight decay and in the layer-wise adaptation, and LAMB
//! (You et al. 2020) excludes them from weight decay. A [`Mask`] names the
//! parameters a transform applies to; [`masked`] resolves it once, at `init`,
//! and passes the other parameters' updates through untouched (optax's
//! `masked`).
//!
//! ```
//! use bigbatch_optim::{mask, masked, add_decayed_weights, Transform, Tree};
//! use candle_core::{Device, Tensor};
//! # fn main() -> Result<(), bigbatch_optim::Error> {
//! let mut params = Tree::new();
//! params.insert("fc.weight", Tensor::new(&[[1f32, 2.]], &Device::Cpu)?);
//! params.insert("fc.bias", Tensor::new(&[1f32], &Device::Cpu)?);
//! let tx = masked(add_decayed_weights(0.5), mask::exclude_bias_and_norm());
//! let state = tx.init(&params)?;
//! let (u, _) = tx.update(params.zeros_like()?, state, &params)?;
//! assert_eq!(u.get("fc.weight").unwrap().to_vec2::<f32>()?, [[0.5, 1.]]);
//! assert_eq!(u.get("fc.bias").unwrap().to_vec1::<f32>()?, [0.]);
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::fuse::{FuseVisitor, Kernel};
use crate::{OptState, Plan, Result, Transform, Tree};

type Predicate = dyn Fn(&str, &[usize]) -> bool + Send + Sync;

/// Which parameters a transform applies to: a predicate on `(name, shape)`.
///
/// Build one from a closure with [`Mask::new`] or take a preset
/// ([`all`], [`none`], [`exclude_bias_and_norm`], [`bias_and_norm`]).
///
/// ```
/// use bigbatch_optim::mask::{self, Mask};
/// let m = Mask::new(|name, _| name.starts_with("layer4"));
/// assert!(m.matches("layer4.0.conv1.weight", &[512, 1024, 1, 1]));
/// assert!(!mask::exclude_bias_and_norm().matches("bn1.weight", &[64]));
/// assert!(m.clone().and(mask::exclude_bias_and_norm()).not().matches("layer4.0.bn1.bias", &[512]));
/// ```
#[derive(Clone)]
pub struct Mask(Arc<Predicate>);

impl Mask {
    /// A mask from a predicate: `true` means the transform applies.
    pub fn new(predicate: impl Fn(&str, &[usize]) -> bool + Send + Sync + 'static) -> Self {
        Mask(Arc::new(predicate))
    }

    /// Whether the parameter `name` of shape `shape` is selected.
    pub fn matches(&self, name: &str, shape: &[usize]) -> bool {
        (self.0)(name, shape)
    }

    /// The names selected among `params`, resolved once (what [`masked`] does at `init`).
    pub fn select(&self, params: &Tree) -> BTreeSet<String> {
        params
            .iter()
            .filter(|(name, t)| self.matches(name, t.dims()))
            .map(|(name, _)| name.to_owned())
            .collect()
    }

    /// Parameters selected by both masks.
    pub fn and(self, other: Mask) -> Mask {
        Mask::new(move |name, shape| self.matches(name, shape) && other.matches(name, shape))
    }

    /// Parameters not selected by this mask.
    #[allow(clippy::should_implement_trait)]
    pub fn not(self) -> Mask {
        Mask::new(move |name, shape| !self.matches(name, shape))
    }
}

impl std::fmt::Debug for Mask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Mask(..)")
    }
}

impl Default for Mask {
    /// Selects every parameter, like [`all`].
    fn default() -> Self {
        all()
    }
}

/// Selects every parameter.
pub fn all() -> Mask {
    Mask::new(|_, _| true)
}

/// Selects no parameter: a transform masked with it is the identity.
pub fn none() -> Mask {
    Mask::new(|_, _| false)
}

/// Whether a parameter is a bias or a normalisation scale/shift: rank ≤ 1.
///
/// In convolutional and transformer models every bias and every batch-norm or
/// layer-norm `γ`/`β` is a vector and every weight has rank ≥ 2, so the rank
/// alone identifies them without depending on naming conventions.
pub fn is_bias_or_norm(_name: &str, shape: &[usize]) -> bool {
    shape.len() <= 1
}

/// Selects weights only, excluding biases and normalisation parameters
/// (rank ≤ 1), as the MLPerf LARS reference and LAMB do for weight decay and
/// for the trust ratio.
pub fn exclude_bias_and_norm() -> Mask {
    Mask::new(|name, shape| !is_bias_or_norm(name, shape))
}

/// Selects biases and normalisation parameters only (rank ≤ 1).
pub fn bias_and_norm() -> Mask {
    Mask::new(is_bias_or_norm)
}

/// Applies a transform to the parameters a [`Mask`] selects; see [`masked`].
#[derive(Clone, Debug)]
pub struct Masked<T> {
    inner: T,
    mask: Mask,
}

/// The state of a [`Masked`] transform: the names resolved at `init`, and the
/// inner state over those parameters only.
#[derive(Clone, Debug)]
pub struct MaskedState<S> {
    selected: Arc<BTreeSet<String>>,
    /// The inner transform's state, over the selected parameters.
    pub inner: S,
}

impl<S> MaskedState<S> {
    /// The parameter names the mask selected at `init`.
    pub fn selected(&self) -> &BTreeSet<String> {
        &self.selected
    }
}

/// Applies `inner` to the parameters `mask` selects and passes the other
/// updates through unchanged:
///
/// `u_i ↦ inner(u)_i` if `mask(name_i, shape_i)`, else `u_i`.
///
/// The mask is resolved once at `init`, and `inner` only ever sees (and only
/// keeps state for) the selected parameters. This is optax's `masked`.
///
/// ```
/// use bigbatch_optim::{mask, masked, scale, Transform, Tree};
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_optim::Error> {
/// let mut p = Tree::new();
/// p.insert("w", Tensor::new(&[[1f32]], &Device::Cpu)?);
/// p.insert("b", Tensor::new(&[1f32], &Device::Cpu)?);
/// let tx = masked(scale(3.), mask::bias_and_norm());
/// let (u, _) = tx.update(p.clone(), tx.init(&p)?, &p)?;
/// assert_eq!(u.get("b").unwrap().to_vec1::<f32>()?, [3.]);
/// assert_eq!(u.get("w").unwrap().to_vec2::<f32>()?, [[1.]]);
/// # Ok(()) }
/// ```
pub fn masked<T: Transform>(inner: T, mask: Mask) -> Masked<T> {
    Masked { inner, mask }
}

impl<T: Transform> Transform for Masked<T> {
    type State = MaskedState<T::State>;

    fn init(&self, params: &Tree) -> Result<Self::State> {
        let selected = self.mask.select(params);
        let inner = self.inner.init(&params.subset(&selected))?;
        Ok(MaskedState {
            selected: Arc::new(selected),
            inner,
        })
    }

    fn update(
        &self,
        updates: Tree,
        state: Self::State,
        params: &Tree,
    ) -> Result<(Tree, Self::State)> {
        updates.check_same_names(params)?;
        let (chosen, mut rest) = updates.partition(&state.selected);
        let (chosen, inner) =
            self.inner
                .update(chosen, state.inner, &params.subset(&state.selected))?;
        rest.extend(chosen);
        Ok((
            rest,
            MaskedState {
                selected: state.selected,
                inner,
            },
        ))
    }

    fn fusable(&self) -> bool {
        self.inner.fusable_member()
    }

    fn fuse_kernel<V: FuseVisitor>(
        &self,
        state: Self::State,
        plan: &mut Plan,
        v: V,
    ) -> Result<(Self::State, V::Out)> {
        // The inner members apply to the selection; the rest of the chain
        // (what `v` goes on with) to whatever applied before.
        let outer = plan.select(Some(state.selected.clone()));
        let v = Unmasked { outer, v };
        let (inner, out) = self.inner.fuse_kernel(state.inner, plan, v)?;
        Ok((
            MaskedState {
                selected: state.selected,
                inner,
            },
            out,
        ))
    }
}

/// Restores the selection that applied before a [`Masked`] transform's
/// members, then goes on with the chain.
struct Unmasked<V> {
    outer: Option<Arc<BTreeSet<String>>>,
    v: V,
}

impl<V: FuseVisitor> FuseVisitor for Unmasked<V> {
    type Out = V::Out;

    fn visit<K: Kernel>(self, plan: &mut Plan, kernel: K) -> Result<V::Out> {
        plan.select(self.outer);
        self.v.visit(plan, kernel)
    }
}

/// Saved transparently: the inner state under the same prefix (the selection
/// is recomputed by `init`).
impl<S: OptState> OptState for MaskedState<S> {
    fn save(&self, prefix: &str, out: &mut Tree) -> Result<()> {
        self.inner.save(prefix, out)
    }

    fn load(&mut self, prefix: &str, saved: &Tree) -> Result<()> {
        self.inner.load(prefix, saved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{scale, trace};
    use candle_core::{Device, Tensor};

    fn params() -> Tree {
        let d = Device::Cpu;
        let mut p = Tree::new();
        p.insert(
            "conv.weight",
            Tensor::ones((2, 1, 3, 3), candle_core::DType::F32, &d).unwrap(),
        );
        p.insert(
            "bn.weight",
            Tensor::ones(2, candle_core::DType::F32, &d).unwrap(),
        );
        p.insert(
            "bn.bias",
            Tensor::ones(2, candle_core::DType::F32, &d).unwrap(),
        );
        p.insert(
            "fc.weight",
            Tensor::ones((3, 2), candle_core::DType::F32, &d).unwrap(),
        );
        p.insert(
            "fc.bias",
            Tensor::ones(3, candle_core::DType::F32, &d).unwrap(),
        );
        p
    }

    #[test]
    fn presets_select_by_rank() {
        let p = params();
        let names = |m: Mask| m.select(&p).into_iter().collect::<Vec<_>>();
        assert_eq!(names(exclude_bias_and_norm()), ["conv.weight", "fc.weight"]);
        assert_eq!(names(bias_and_norm()), ["bn.bias", "bn.weight", "fc.bias"]);
        assert_eq!(names(all()).len(), 5);
        assert!(names(none()).is_empty());
        assert_eq!(
            names(exclude_bias_and_norm().and(Mask::new(|n, _| n.starts_with("fc")))),
            ["fc.weight"]
        );
    }

    #[test]
    fn inner_state_covers_selected_only() -> Result<()> {
        let p = params();
        let tx = masked(trace(0.9, false), exclude_bias_and_norm());
        let state = tx.init(&p)?;
        assert_eq!(
            state.inner.names().collect::<Vec<_>>(),
            ["conv.weight", "fc.weight"]
        );
        let (u, state) = tx.update(p.clone(), state, &p)?;
        assert_eq!(u.len(), 5);
        let mut saved = Tree::new();
        state.save("s", &mut saved)?;
        assert_eq!(
            saved.names().collect::<Vec<_>>(),
            ["s.conv.weight", "s.fc.weight"]
        );
        Ok(())
    }

    #[test]
    fn masked_none_is_identity() -> Result<()> {
        let p = params();
        let tx = masked(scale(7.), none());
        let (u, _) = tx.update(p.clone(), tx.init(&p)?, &p)?;
        for ((_, a), (_, b)) in u.iter().zip(p.iter()) {
            assert_eq!(
                a.flatten_all()?.to_vec1::<f32>()?,
                b.flatten_all()?.to_vec1::<f32>()?
            );
        }
        Ok(())
    }

    #[test]
    fn mismatched_names_are_an_error() -> Result<()> {
        let p = params();
        let tx = masked(scale(7.), all());
        let mut g = p.clone();
        g.remove("fc.bias");
        let state = tx.init(&p)?;
        assert!(matches!(
            tx.update(g, state, &p),
            Err(crate::Error::TreeMismatch { .. })
        ));
        Ok(())
    }
}
