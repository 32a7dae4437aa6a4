//! Flattening a [`Tree`] to one `f64` vector and back, in sorted name order.
//!
//! The box-constrained optimiser behind sharpness (Keskar et al. 2017,
//! "On Large-Batch Training for Deep Learning", ICLR) works on a flat vector of
//! coordinates; these helpers are the bridge to named candle tensors. The order
//! is the tree's sorted name order, then each tensor's row-major order, so
//! flattening is deterministic.

use bigbatch_optim::Tree;
use candle_core::{DType, Tensor};

use crate::{Error, Result};

/// Concatenates every tensor of `tree` (sorted by name, row-major) into `f64`s.
///
/// ```
/// use bigbatch_noise::flatten;
/// use bigbatch_optim::Tree;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// let mut t = Tree::new();
/// t.insert("b", Tensor::new(&[3f32], &Device::Cpu)?);
/// t.insert("a", Tensor::new(&[[1f32, 2.]], &Device::Cpu)?);
/// assert_eq!(flatten(&t)?, [1., 2., 3.]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// A candle error from the dtype conversion or the copy to the host.
pub fn flatten(tree: &Tree) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(tree.elem_count());
    for (_, t) in tree.iter() {
        out.extend(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?);
    }
    Ok(out)
}

/// Builds a tree shaped like `like` (names, shapes, dtypes, devices) from the
/// flat values `x`, the inverse of [`flatten`].
///
/// ```
/// use bigbatch_noise::{flatten, unflatten};
/// use bigbatch_optim::Tree;
/// use candle_core::{Device, Tensor};
/// # fn main() -> Result<(), bigbatch_noise::Error> {
/// let mut t = Tree::new();
/// t.insert("w", Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu)?);
/// let u = unflatten(&[5., 6., 7., 8.], &t)?;
/// assert_eq!(u.get("w").unwrap().to_vec2::<f32>()?, [[5., 6.], [7., 8.]]);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::LengthMismatch`] if `x.len()` differs from `like.elem_count()`, or
/// a candle error from building the tensors.
pub fn unflatten(x: &[f64], like: &Tree) -> Result<Tree> {
    let n = like.elem_count();
    if x.len() != n {
        return Err(Error::LengthMismatch {
            what: "flat parameter vector",
            expected: n,
            found: x.len(),
        });
    }
    let mut out = Tree::new();
    let mut offset = 0;
    for (name, t) in like.iter() {
        let len = t.elem_count();
        let values = Tensor::from_slice(&x[offset..offset + len], t.shape(), t.device())?
            .to_dtype(t.dtype())?;
        out.insert(name, values);
        offset += len;
    }
    Ok(out)
}

/// `a·x + b·y` leaf by leaf, for two trees with the same names and shapes.
pub(crate) fn lin_comb(a: f64, x: &Tree, b: f64, y: &Tree) -> Result<Tree> {
    Ok(x.zip_map(y, |_, u, v| Ok((u.affine(a, 0.)? + v.affine(b, 0.)?)?))?)
}

/// `Σ_j w_j·t_j` over trees with the same names and shapes.
///
/// # Errors
/// [`Error::TooFewPoints`] if `terms` is empty; tree or candle errors.
pub(crate) fn weighted_sum<'a>(terms: impl IntoIterator<Item = (f64, &'a Tree)>) -> Result<Tree> {
    let mut iter = terms.into_iter();
    let Some((w0, t0)) = iter.next() else {
        return Err(Error::TooFewPoints {
            what: "trees to sum",
            needed: 1,
            got: 0,
        });
    };
    let mut acc = t0.map(|_, t| Ok(t.affine(w0, 0.)?))?;
    for (w, t) in iter {
        acc = acc.zip_map(t, |_, a, b| Ok((a + b.affine(w, 0.)?)?))?;
    }
    Ok(acc)
}

/// The inner product `Σ x·y` over all leaves, accumulated in `f64`.
pub(crate) fn dot(x: &Tree, y: &Tree) -> Result<f64> {
    x.check_same_names(y)?;
    let mut total = 0.0;
    for ((_, a), (_, b)) in x.iter().zip(y.iter()) {
        let a = a.to_dtype(DType::F64)?;
        let b = b.to_dtype(DType::F64)?;
        total += (a * b)?.sum_all()?.to_scalar::<f64>()?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn flatten_roundtrip_keeps_shapes_and_dtypes() -> anyhow::Result<()> {
        let mut t = Tree::new();
        t.insert("z.bias", Tensor::new(&[1f32, -2.], &Device::Cpu)?);
        t.insert(
            "a.weight",
            Tensor::new(&[[0.5f64, 1.5, 2.5]], &Device::Cpu)?,
        );
        let flat = flatten(&t)?;
        assert_eq!(flat, [0.5, 1.5, 2.5, 1., -2.]);
        let back = unflatten(&flat, &t)?;
        assert_eq!(back.get("z.bias").map(|x| x.dtype()), Some(DType::F32));
        assert_eq!(
            back.get("a.weight").map(|x| x.dims().to_vec()),
            Some(vec![1, 3])
        );
        assert_eq!(flatten(&back)?, flat);
        assert!(matches!(
            unflatten(&[1.], &t),
            Err(Error::LengthMismatch {
                expected: 5,
                found: 1,
                ..
            })
        ));
        Ok(())
    }

    #[test]
    fn dot_and_weighted_sum() -> anyhow::Result<()> {
        let mut x = Tree::new();
        x.insert("w", Tensor::new(&[1f32, 2.], &Device::Cpu)?);
        let mut y = Tree::new();
        y.insert("w", Tensor::new(&[3f32, -1.], &Device::Cpu)?);
        assert_eq!(dot(&x, &y)?, 1.);
        let s = weighted_sum([(2., &x), (1., &y)])?;
        assert_eq!(flatten(&s)?, [5., 3.]);
        assert_eq!(flatten(&lin_comb(0., &x, 1., &y)?)?, [3., -1.]);
        Ok(())
    }
}
