//! Checkpoints: a model's parameters and buffers in safetensors (PyTorch's
//! state-dict names, so `safetensors.torch.load_file` reads them) plus its
//! typed config in a JSON sidecar next to it (`model.safetensors` →
//! `model.json`).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Error, Result, VarStore};

/// The JSON sidecar of the checkpoint at `path`: the same path with extension
/// `json`.
pub fn config_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Writes the weights and batch-norm statistics of `vars` to `path`
/// (safetensors) and `config` to [`config_path`]`(path)` (pretty JSON), each
/// atomically.
///
/// ```
/// use bigbatch_models::{CifarResNet, CifarResNetConfig, VarStore, load_checkpoint, save_checkpoint};
/// use candle_core::{DType, Device};
/// # fn main() -> Result<(), bigbatch_models::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("resnet8.safetensors");
/// let cfg = CifarResNetConfig::resnet8();
/// let vars = VarStore::new(0);
/// CifarResNet::new(&cfg, vars.var_builder(DType::F32, &Device::Cpu))?;
/// save_checkpoint(&path, &vars, &cfg)?;
///
/// let (cfg2, vars2): (CifarResNetConfig, _) = load_checkpoint(&path, 1, |cfg, vb| CifarResNet::new(cfg, vb))?;
/// assert_eq!(cfg2, cfg);
/// let (a, b) = (vars.get("linear.weight").unwrap(), vars2.get("linear.weight").unwrap());
/// assert_eq!(a.to_vec2::<f32>()?, b.to_vec2::<f32>()?);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Io`] or [`Error::Json`] naming the file, or a candle error.
pub fn save_checkpoint<C: Serialize>(path: &Path, vars: &VarStore, config: &C) -> Result<()> {
    vars.save(path)?;
    let json_path = config_path(path);
    let json = serde_json::to_string_pretty(config).map_err(|source| Error::Json {
        path: json_path.clone(),
        source,
    })?;
    let tmp = json_path.with_extension("json.tmp");
    let io = |source| Error::Io {
        path: json_path.clone(),
        source,
    };
    std::fs::write(&tmp, json + "\n").map_err(io)?;
    std::fs::rename(&tmp, &json_path).map_err(io)
}

/// Reads the config sidecar of the checkpoint at `path`.
///
/// # Errors
/// [`Error::Io`] or [`Error::Json`] naming the sidecar.
pub fn load_config<C: DeserializeOwned>(path: &Path) -> Result<C> {
    let json_path = config_path(path);
    let text = std::fs::read_to_string(&json_path).map_err(|source| Error::Io {
        path: json_path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| Error::Json {
        path: json_path,
        source,
    })
}

/// Rebuilds a model from a checkpoint: reads the config, builds the model on
/// the CPU in a fresh [`VarStore`] (`seed` only matters for tensors the
/// checkpoint lacks, which is an error) and loads every parameter and buffer.
///
/// # Errors
/// As [`load_config`] and [`VarStore::load`] ([`Error::MissingTensor`],
/// [`Error::TensorShape`] naming the tensor), or the model's own errors.
pub fn load_checkpoint<C, M>(
    path: &Path,
    seed: u64,
    build: impl FnOnce(&C, candle_nn::VarBuilder<'static>) -> Result<M>,
) -> Result<(C, VarStore)>
where
    C: DeserializeOwned,
{
    let config: C = load_config(path)?;
    let vars = VarStore::new(seed);
    build(
        &config,
        vars.var_builder(candle_core::DType::F32, &candle_core::Device::Cpu),
    )?;
    vars.load(path)?;
    Ok((config, vars))
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};

    use super::*;
    use crate::norm::Norm;
    use crate::{CifarResNet, CifarResNetConfig, Network};

    fn tmp() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|source| Error::Io {
            path: "tempdir".into(),
            source,
        })
    }

    #[test]
    fn round_trip_is_exact_including_batch_norm_statistics() -> Result<()> {
        let dir = tmp()?;
        let path = dir.path().join("net.safetensors");
        let cfg = CifarResNetConfig {
            norm: Norm::Ghost {
                virtual_batch_size: 2,
            },
            ..CifarResNetConfig::resnet8()
        };
        let vars = VarStore::new(0);
        let net = CifarResNet::new(&cfg, vars.var_builder(DType::F32, &Device::Cpu))?;
        let x = crate::testing::random(&[4, 3, 8, 8], 0)?;
        net.forward(&x, true)?; // moves the running statistics
        save_checkpoint(&path, &vars, &cfg)?;

        let (cfg2, vars2) = load_checkpoint(&path, 99, |c: &CifarResNetConfig, vb| {
            CifarResNet::new(c, vb)
        })?;
        assert_eq!(cfg2, cfg);
        let (a, b) = (vars.state(), vars2.state());
        assert_eq!(a.len(), b.len());
        assert!(vars.buffers().len() > 10);
        for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
            assert_eq!(ka, kb);
            let (va, vb) = (
                va.as_tensor().to_dtype(DType::F64)?,
                vb.as_tensor().to_dtype(DType::F64)?,
            );
            let same = va.flatten_all()?.to_vec1::<f64>()? == vb.flatten_all()?.to_vec1::<f64>()?;
            assert!(same, "{ka}");
        }
        assert_eq!(
            vars2
                .get("bn1.num_batches_tracked")
                .expect("counter")
                .dtype(),
            DType::I64
        );
        // The reloaded network computes the same function in eval mode.
        let net2 = CifarResNet::new(&cfg2, vars2.var_builder(DType::F32, &Device::Cpu))?;
        let (ya, yb) = (net.forward(&x, false)?, net2.forward(&x, false)?);
        assert_eq!(
            ya.flatten_all()?.to_vec1::<f32>()?,
            yb.flatten_all()?.to_vec1::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn missing_or_misshapen_tensors_are_named() -> Result<()> {
        let dir = tmp()?;
        let path = dir.path().join("net.safetensors");
        let small = CifarResNetConfig::resnet8();
        let vars = VarStore::new(0);
        CifarResNet::new(&small, vars.var_builder(DType::F32, &Device::Cpu))?;
        save_checkpoint(&path, &vars, &small)?;

        // A deeper network needs tensors the checkpoint lacks.
        let deeper = VarStore::new(0);
        CifarResNet::new(
            &CifarResNetConfig::resnet20(),
            deeper.var_builder(DType::F32, &Device::Cpu),
        )?;
        let err = deeper.load(&path).unwrap_err();
        assert!(
            matches!(err, Error::MissingTensor { ref name, .. } if name.starts_with("layer1.1.")),
            "{err}"
        );

        // More classes: the classifier has the wrong shape.
        let wider = VarStore::new(0);
        let cfg = CifarResNetConfig {
            num_classes: 100,
            ..small
        };
        CifarResNet::new(&cfg, wider.var_builder(DType::F32, &Device::Cpu))?;
        let err = wider.load(&path).unwrap_err();
        assert!(
            matches!(err, Error::TensorShape { ref name, .. } if name == "linear.bias"),
            "{err}"
        );

        // A missing sidecar is an I/O error naming it.
        std::fs::remove_file(config_path(&path)).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let err = load_config::<CifarResNetConfig>(&path).unwrap_err();
        assert!(err.to_string().contains("net.json"), "{err}");
        Ok(())
    }
}
