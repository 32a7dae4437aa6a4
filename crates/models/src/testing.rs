//! Helpers shared by the models' unit tests.

use candle_core::{DType, Device, Tensor};
use candle_nn::Optimizer;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Network, Result, VarStore};

/// `(name, shape)` of every trainable parameter, sorted.
pub(crate) fn param_shapes(vars: &VarStore) -> Vec<(String, Vec<usize>)> {
    vars.vars()
        .into_iter()
        .map(|(k, v)| (k, v.dims().to_vec()))
        .collect()
}

/// A fixed pseudo-random tensor with entries in `[-1, 1)`.
pub(crate) fn random(shape: &[usize], seed: u64) -> Result<Tensor> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
    Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
}

/// The central difference `(f(t + h·e_j) − f(t − h·e_j)) / 2h` of a scalar
/// function of an `f64` tensor along element `j` of its flattening.
pub(crate) fn central_difference(
    t: &Tensor,
    j: usize,
    h: f64,
    f: impl Fn(&Tensor) -> Result<f64>,
) -> Result<f64> {
    let flat = t.flatten_all()?.to_vec1::<f64>()?;
    let at = |d: f64| -> Result<f64> {
        let mut v = flat.clone();
        v[j] += d;
        f(&Tensor::from_vec(v, t.dims(), &Device::Cpu)?)
    };
    Ok((at(h)? - at(-h)?) / (2.0 * h))
}

/// Trains `net` with plain SGD for `steps` steps on one fixed batch of 16
/// random inputs `(16, ..input)` with labels `i mod classes`, and asserts that
/// the training loss (mean of the last three steps) falls below 70 % of where
/// it started (mean of the first three), robust to dropout noise.
pub(crate) fn assert_trains(
    net: &dyn Network,
    vars: &VarStore,
    input: (usize, usize, usize),
    classes: usize,
    lr: f64,
    steps: usize,
) -> Result<()> {
    let (c, h, w) = input;
    let x = random(&[16, c, h, w], 11)?;
    let labels: Vec<u32> = (0..16).map(|i| (i % classes) as u32).collect();
    let y = Tensor::new(labels.as_slice(), &Device::Cpu)?;
    let params = vars.vars().into_iter().map(|(_, v)| v).collect();
    let mut sgd = candle_nn::SGD::new(params, lr)?;
    let mut losses = Vec::new();
    for _ in 0..steps {
        let logits = net.forward(&x, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        losses.push(loss.to_dtype(DType::F64)?.to_scalar::<f64>()?);
        sgd.backward_step(&loss)?;
    }
    let first = losses[..3].iter().sum::<f64>() / 3.0;
    let last = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(
        last.is_finite() && last < 0.7 * first,
        "loss {first} -> {last}: {losses:?}"
    );
    Ok(())
}
