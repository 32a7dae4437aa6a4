//! [`OptState`]: optimizer state that can be written to and read from a [`Tree`].
//!
//! State is a plain value (a tree of moments, a step counter, a tuple of the
//! states of a chain). Saving flattens it into one tree of tensors under
//! dotted prefixes (`1.mu.fc1.weight`, `2.count`), which is what goes into a
//! safetensors file; loading walks the same structure back. Tensors are stored
//! in their own dtype, so a reload is bit-identical.

use candle_core::{DType, Device, Tensor};

use crate::{Error, Result, Tree};

/// State of a transform: cloneable, and convertible to and from a flat [`Tree`].
pub trait OptState: Clone + Send + Sync + 'static {
    /// Writes every tensor of this state into `out`, keys prefixed by `prefix`.
    ///
    /// # Errors
    /// A candle error while building counter tensors.
    fn save(&self, prefix: &str, out: &mut Tree) -> Result<()>;

    /// Replaces this state with the one saved under `prefix` in `saved`.
    ///
    /// # Errors
    /// [`Error::StateMismatch`] if a key is missing or a shape differs.
    fn load(&mut self, prefix: &str, saved: &Tree) -> Result<()>;
}

/// Joins a prefix and a key with a dot, skipping an empty prefix.
pub fn key(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn saved_tensor<'a>(saved: &'a Tree, key: &str) -> Result<&'a Tensor> {
    saved.get(key).ok_or_else(|| Error::StateMismatch {
        reason: format!("no saved tensor `{key}`"),
    })
}

impl OptState for () {
    fn save(&self, _: &str, _: &mut Tree) -> Result<()> {
        Ok(())
    }

    fn load(&mut self, _: &str, _: &Tree) -> Result<()> {
        Ok(())
    }
}

/// A step counter, saved as a one-element `i64` tensor.
impl OptState for u64 {
    fn save(&self, prefix: &str, out: &mut Tree) -> Result<()> {
        let count = i64::try_from(*self).map_err(|_| Error::StateMismatch {
            reason: format!("step count {self} does not fit in i64"),
        })?;
        out.insert(prefix, Tensor::new(&[count], &Device::Cpu)?);
        Ok(())
    }

    fn load(&mut self, prefix: &str, saved: &Tree) -> Result<()> {
        let t = saved_tensor(saved, prefix)?;
        let values = t.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
        *self = match values.as_slice() {
            [v] if *v >= 0 => *v as u64,
            _ => {
                return Err(Error::StateMismatch {
                    reason: format!("`{prefix}` is not a non-negative step count"),
                });
            }
        };
        Ok(())
    }
}

/// Per-parameter tensors (moments, traces), saved under `prefix.name`.
impl OptState for Tree {
    fn save(&self, prefix: &str, out: &mut Tree) -> Result<()> {
        for (name, t) in self.iter() {
            out.insert(key(prefix, name), t.clone());
        }
        Ok(())
    }

    fn load(&mut self, prefix: &str, saved: &Tree) -> Result<()> {
        let mut loaded = Tree::new();
        for (name, current) in self.iter() {
            let k = key(prefix, name);
            let t = saved_tensor(saved, &k)?;
            if t.dims() != current.dims() {
                return Err(Error::StateMismatch {
                    reason: format!(
                        "`{k}` has shape {:?}, the optimizer expects {:?}",
                        t.dims(),
                        current.dims()
                    ),
                });
            }
            let t = t.to_device(current.device())?.to_dtype(current.dtype())?;
            loaded.insert(name, t);
        }
        *self = loaded;
        Ok(())
    }
}

macro_rules! tuple_state {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: OptState),+> OptState for ($($name,)+) {
            fn save(&self, prefix: &str, out: &mut Tree) -> Result<()> {
                $(self.$idx.save(&key(prefix, stringify!($idx)), out)?;)+
                Ok(())
            }

            fn load(&mut self, prefix: &str, saved: &Tree) -> Result<()> {
                $(self.$idx.load(&key(prefix, stringify!($idx)), saved)?;)+
                Ok(())
            }
        }
    };
}

tuple_state!(A 0);
tuple_state!(A 0, B 1);
tuple_state!(A 0, B 1, C 2);
tuple_state!(A 0, B 1, C 2, D 3);
tuple_state!(A 0, B 1, C 2, D 3, E 4);
tuple_state!(A 0, B 1, C 2, D 3, E 4, F 5);
tuple_state!(A 0, B 1, C 2, D 3, E 4, F 5, G 6);
tuple_state!(A 0, B 1, C 2, D 3, E 4, F 5, G 6, H 7);
