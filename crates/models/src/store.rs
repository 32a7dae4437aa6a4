//! [`VarStore`]: a model's variables, created reproducibly from a seed and
//! checkpointed through safetensors.
//!
//! candle's CPU random generator cannot be seeded, so variables are drawn here
//! instead: each one from its own ChaCha stream keyed by `(seed, name)`. A
//! parameter's initial value therefore depends only on the seed and its name,
//! not on the order in which layers are built.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::{Error, Result};

/// Named variables of a model, created from a seed on first use.
///
/// ```
/// use bigbatch_models::{LeNet5, LeNet5Config, VarStore};
/// use candle_core::{DType, Device};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// let a = VarStore::new(7);
/// LeNet5::new(&LeNet5Config::default(), a.var_builder(DType::F32, &Device::Cpu))?;
/// let b = VarStore::new(7);
/// LeNet5::new(&LeNet5Config::default(), b.var_builder(DType::F32, &Device::Cpu))?;
/// let (wa, wb) = (a.get("fc1.weight").unwrap(), b.get("fc1.weight").unwrap());
/// assert_eq!(wa.as_tensor().to_vec2::<f32>()?, wb.as_tensor().to_vec2::<f32>()?);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct VarStore {
    seed: u64,
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
}

impl VarStore {
    /// An empty store whose variables will be drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            vars: Arc::default(),
        }
    }

    /// A [`VarBuilder`] that creates variables in this store.
    pub fn var_builder(&self, dtype: DType, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), dtype, device.clone())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Var>> {
        // A poisoned lock only means another thread panicked while inserting;
        // the map itself is still consistent.
        self.vars.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The variable named `name`.
    pub fn get(&self, name: &str) -> Option<Var> {
        self.lock().get(name).cloned()
    }

    /// All variables in sorted name order.
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The total number of scalars.
    pub fn elem_count(&self) -> usize {
        self.lock().values().map(|v| v.elem_count()).sum()
    }

    /// Writes every variable to a safetensors file, atomically (temp file + rename).
    ///
    /// # Errors
    /// [`Error::Io`] naming the file, or a candle error.
    pub fn save(&self, path: &Path) -> Result<()> {
        let tensors: std::collections::HashMap<String, Tensor> = self
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect();
        let tmp = path.with_extension("safetensors.tmp");
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Overwrites every variable with the tensor of the same name in a
    /// safetensors file.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::MissingTensor`] or
    /// [`Error::TensorShape`] naming the tensor that does not fit.
    pub fn load(&self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let saved = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)?;
        let vars = self.lock();
        for (name, var) in vars.iter() {
            let t = saved.get(name).ok_or_else(|| Error::MissingTensor {
                path: path.to_owned(),
                name: name.clone(),
            })?;
            if t.dims() != var.dims() {
                return Err(Error::TensorShape {
                    path: path.to_owned(),
                    name: name.clone(),
                    expected: var.dims().to_vec(),
                    found: t.dims().to_vec(),
                });
            }
        }
        for (name, var) in vars.iter() {
            if let Some(t) = saved.get(name) {
                var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)?;
            }
        }
        Ok(())
    }

    fn draw(&self, shape: &Shape, name: &str, init: Init) -> Result<Vec<f64>> {
        let n = shape.elem_count();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ fnv1a(name));
        let bad = |what: &str| candle_core::Error::Msg(format!("{name}: bad {what} init"));
        let values = match init {
            Init::Const(c) => vec![c; n],
            Init::Uniform { lo, up } => {
                let d = Uniform::new_inclusive(lo, up).map_err(|_| bad("uniform"))?;
                d.sample_iter(&mut rng).take(n).collect()
            }
            Init::Randn { mean, stdev } => {
                let d = Normal::new(mean, stdev).map_err(|_| bad("normal"))?;
                d.sample_iter(&mut rng).take(n).collect()
            }
            Init::Kaiming {
                dist,
                fan,
                non_linearity,
            } => {
                let fan = match fan {
                    FanInOut::FanIn | FanInOut::FanOut => fan.for_shape(shape),
                };
                let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
                match dist {
                    NormalOrUniform::Uniform => {
                        let bound = 3f64.sqrt() * std;
                        let d =
                            Uniform::new_inclusive(-bound, bound).map_err(|_| bad("kaiming"))?;
                        d.sample_iter(&mut rng).take(n).collect()
                    }
                    NormalOrUniform::Normal => {
                        let d = Normal::new(0., std).map_err(|_| bad("kaiming"))?;
                        d.sample_iter(&mut rng).take(n).collect()
                    }
                }
            }
        };
        Ok(values)
    }
}

/// FNV-1a, to key each variable's random stream by its name.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl SimpleBackend for VarStore {
    fn get(
        &self,
        shape: Shape,
        name: &str,
        init: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        if let Some(var) = self.get(name) {
            if var.shape() != &shape {
                candle_core::bail!(
                    "variable `{name}` exists with shape {:?}, requested {shape:?}",
                    var.shape()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let values = self
            .draw(&shape, name, init)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let t = Tensor::from_vec(values, shape, &Device::Cpu)?
            .to_dtype(dtype)?
            .to_device(dev)?;
        let var = Var::from_tensor(&t)?;
        self.lock().insert(name.to_owned(), var.clone());
        Ok(var.as_tensor().clone())
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        match self.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!("no variable `{name}` in the store"),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_depend_on_seed_and_name_only() -> Result<()> {
        let shape = Shape::from((3, 4));
        let init = Init::Uniform { lo: -1., up: 1. };
        let a = VarStore::new(1).draw(&shape, "w", init)?;
        assert_eq!(a, VarStore::new(1).draw(&shape, "w", init)?);
        assert_ne!(a, VarStore::new(2).draw(&shape, "w", init)?);
        assert_ne!(a, VarStore::new(1).draw(&shape, "v", init)?);
        assert!(a.iter().all(|x| (-1.0..=1.0).contains(x)));
        Ok(())
    }

    #[test]
    fn kaiming_normal_has_the_right_spread() -> Result<()> {
        // fan_in = 50·3·3 = 450; ReLU gain √2, so std = √(2/450).
        let shape = Shape::from((200, 50, 3, 3));
        let init = candle_nn::init::DEFAULT_KAIMING_NORMAL;
        let x = VarStore::new(0).draw(&shape, "conv.weight", init)?;
        let n = x.len() as f64;
        let mean = x.iter().sum::<f64>() / n;
        let var = x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
        let expected = 2.0 / 450.0;
        assert!(
            (var / expected - 1.0).abs() < 0.02,
            "var {var} vs {expected}"
        );
        assert!(mean.abs() < 3.0 * (expected / n).sqrt());
        Ok(())
    }

    #[test]
    fn checkpoint_round_trip_is_exact_and_errors_name_the_tensor() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Io {
            path: "tempdir".into(),
            source: e,
        })?;
        let path = dir.path().join("model.safetensors");
        let a = VarStore::new(3);
        let vb = a.var_builder(DType::F32, &Device::Cpu);
        vb.get_with_hints(
            (2, 3),
            "w",
            Init::Randn {
                mean: 0.,
                stdev: 1.,
            },
        )?;
        a.save(&path)?;
        let b = VarStore::new(4);
        let vb = b.var_builder(DType::F32, &Device::Cpu);
        vb.get_with_hints(
            (2, 3),
            "w",
            Init::Randn {
                mean: 0.,
                stdev: 1.,
            },
        )?;
        b.load(&path)?;
        let (wa, wb) = (a.get("w").unwrap(), b.get("w").unwrap());
        assert_eq!(
            wa.as_tensor().to_vec2::<f32>()?,
            wb.as_tensor().to_vec2::<f32>()?
        );

        let c = VarStore::new(5);
        let vb = c.var_builder(DType::F32, &Device::Cpu);
        vb.get_with_hints((3, 3), "w", Init::Const(0.))?;
        let err = c.load(&path).unwrap_err();
        assert!(
            matches!(err, Error::TensorShape { ref name, .. } if name == "w"),
            "{err}"
        );
        vb.get_with_hints(1, "extra", Init::Const(0.))?;
        let d = VarStore::new(5);
        d.var_builder(DType::F32, &Device::Cpu)
            .get_with_hints(1, "extra", Init::Const(0.))?;
        let err = d.load(&path).unwrap_err();
        assert!(matches!(err, Error::MissingTensor { ref name, .. } if name == "extra"));
        assert!(err.to_string().contains("model.safetensors"));
        Ok(())
    }
}
