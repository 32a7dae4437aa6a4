//! [`VarStore`]: a model's variables, created reproducibly from a seed and
//! checkpointed through safetensors.
//!
//! candle's CPU random generator cannot be seeded, so variables are drawn here
//! instead: each one from its own ChaCha stream keyed by `(seed, name)`. A
//! parameter's initial value therefore depends only on the seed and its name,
//! not on the order in which layers are built.
//!
//! A store holds two kinds of tensors, named like PyTorch's state dict:
//! trainable *parameters* ([`VarStore::vars`], what an optimizer updates) and
//! non-trainable *buffers* ([`VarStore::buffers`]: batch-norm running
//! statistics). A variable is a buffer when the last segment of its name is
//! one of [`BUFFER_NAMES`] (`bn1.running_mean`, `bn1.running_var`,
//! `bn1.num_batches_tracked`), exactly PyTorch's `register_buffer` names, so
//! layers ask for buffers through the same [`VarBuilder`] as for weights.
//! Checkpoints cover both.

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

/// Last name segments that mark a variable as a non-trainable buffer
/// (PyTorch's batch-norm buffers).
pub const BUFFER_NAMES: [&str; 3] = ["running_mean", "running_var", "num_batches_tracked"];

/// Whether `name` names a buffer rather than a trainable parameter (see
/// [`BUFFER_NAMES`]).
///
/// ```
/// assert!(bigbatch_models::is_buffer("layer1.0.bn1.running_var"));
/// assert!(!bigbatch_models::is_buffer("layer1.0.bn1.weight"));
/// ```
pub fn is_buffer(name: &str) -> bool {
    let last = name.rsplit('.').next().unwrap_or(name);
    BUFFER_NAMES.contains(&last)
}

pub use bigbatch_spec::ParamKind;

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

    /// The trainable parameters in sorted name order (buffers excluded): what
    /// an optimizer updates, PyTorch's `named_parameters()`.
    pub fn vars(&self) -> Vec<(String, Var)> {
        self.lock()
            .iter()
            .filter(|(k, _)| !is_buffer(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The non-trainable buffers (batch-norm running statistics) in sorted
    /// name order, PyTorch's `named_buffers()`.
    pub fn buffers(&self) -> Vec<(String, Var)> {
        self.lock()
            .iter()
            .filter(|(k, _)| is_buffer(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Parameters and buffers together in sorted name order: the state dict
    /// that [`VarStore::save`] writes.
    pub fn state(&self) -> Vec<(String, Var)> {
        self.lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The number of trainable scalars (buffers excluded): the parameter count
    /// the papers report.
    pub fn elem_count(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// The kind of the trainable parameter `name`, or `None` if there is no
    /// such parameter.
    ///
    /// A 1-D `weight` or `bias` whose layer also holds a `running_mean` buffer
    /// belongs to a normalisation layer; any other `*.bias` is a bias; the rest
    /// are weights.
    ///
    /// ```
    /// use bigbatch_models::{CifarResNet, CifarResNetConfig, ParamKind, VarStore};
    /// use candle_core::{DType, Device};
    /// # fn main() -> Result<(), bigbatch_models::Error> {
    /// let vars = VarStore::new(0);
    /// CifarResNet::new(&CifarResNetConfig::resnet8(), vars.var_builder(DType::F32, &Device::Cpu))?;
    /// assert_eq!(vars.param_kind("bn1.weight"), Some(ParamKind::NormScale));
    /// assert_eq!(vars.param_kind("linear.bias"), Some(ParamKind::Bias));
    /// assert_eq!(vars.param_kind("conv1.weight"), Some(ParamKind::Weight));
    /// # Ok(()) }
    /// ```
    pub fn param_kind(&self, name: &str) -> Option<ParamKind> {
        let map = self.lock();
        if is_buffer(name) || !map.contains_key(name) {
            return None;
        }
        let (layer, last) = name.rsplit_once('.').unwrap_or(("", name));
        let running_mean = if layer.is_empty() {
            "running_mean".to_owned()
        } else {
            format!("{layer}.running_mean")
        };
        let norm = map.contains_key(&running_mean);
        Some(match (last, norm) {
            ("weight", true) => ParamKind::NormScale,
            ("bias", true) => ParamKind::NormShift,
            ("bias", false) => ParamKind::Bias,
            _ => ParamKind::Weight,
        })
    }

    /// Every trainable parameter with its kind, in sorted name order: what
    /// optimizer masks select by (`bigbatch_optim::Params::with_kinds`).
    pub fn kinds(&self) -> Vec<(String, ParamKind)> {
        self.vars()
            .into_iter()
            .filter_map(|(name, _)| self.param_kind(&name).map(|k| (name, k)))
            .collect()
    }

    /// An optimizer mask predicate on `(name, shape)` that is true for the
    /// parameters that take weight decay ([`ParamKind::takes_weight_decay`]):
    /// the "no weight decay on batch-norm and bias" option of the large-batch
    /// recipes. Resolved now: build the model first.
    ///
    /// ```
    /// use bigbatch_models::{CifarResNet, CifarResNetConfig, VarStore};
    /// use candle_core::{DType, Device};
    /// # fn main() -> Result<(), bigbatch_models::Error> {
    /// let vars = VarStore::new(0);
    /// CifarResNet::new(&CifarResNetConfig::resnet8(), vars.var_builder(DType::F32, &Device::Cpu))?;
    /// let decay = vars.weight_decay_mask();
    /// assert!(decay("conv1.weight", &[16, 3, 3, 3]));
    /// assert!(!decay("bn1.weight", &[16]) && !decay("linear.bias", &[10]));
    /// # Ok(()) }
    /// ```
    pub fn weight_decay_mask(
        &self,
    ) -> impl Fn(&str, &[usize]) -> bool + Clone + Send + Sync + 'static {
        let decayed: std::collections::BTreeSet<String> = self
            .vars()
            .into_iter()
            .filter(|(k, _)| {
                self.param_kind(k)
                    .is_some_and(ParamKind::takes_weight_decay)
            })
            .map(|(k, _)| k)
            .collect();
        let decayed = Arc::new(decayed);
        move |name: &str, _shape: &[usize]| decayed.contains(name)
    }

    /// Writes every parameter and buffer to a safetensors file, atomically (temp file + rename).
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

    /// Overwrites every parameter and buffer with the tensor of the same name in a
    /// safetensors file.
    ///
    /// # Errors
    /// [`Error::Io`] if the file cannot be read, [`Error::CorruptCheckpoint`]
    /// if it is not safetensors, [`Error::MissingTensor`] or
    /// [`Error::TensorShape`] naming the tensor that does not fit.
    pub fn load(&self, path: &Path) -> Result<()> {
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let saved = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).map_err(|e| {
            Error::CorruptCheckpoint {
                path: path.to_owned(),
                reason: e.to_string(),
            }
        })?;
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
