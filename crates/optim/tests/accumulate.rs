//! Gradient accumulation (k micro-batches = one batch of k·b) and the loss helper.

use bigbatch_optim::{
    Accumulator, Error, Optimizer, Params, Tree, momentum, softmax_cross_entropy,
};
use candle_core::{DType, Device, Tensor, Var};

/// A two-layer tanh MLP (no batch norm), 3 → 4 → 2, with fixed weights.
struct Mlp {
    params: Params,
}

impl Mlp {
    fn new() -> anyhow::Result<Self> {
        let d = Device::Cpu;
        let w1: Vec<f64> = (0..12).map(|i| ((i as f64) * 0.7).sin() * 0.5).collect();
        let w2: Vec<f64> = (0..8).map(|i| ((i as f64) * 1.3).cos() * 0.5).collect();
        let params = Params::new([
            (
                "fc1.weight".to_string(),
                Var::from_tensor(&Tensor::from_vec(w1, (3, 4), &d)?)?,
            ),
            (
                "fc1.bias".to_string(),
                Var::new(&[0.1f64, -0.1, 0.05, 0.0], &d)?,
            ),
            (
                "fc2.weight".to_string(),
                Var::from_tensor(&Tensor::from_vec(w2, (4, 2), &d)?)?,
            ),
            ("fc2.bias".to_string(), Var::new(&[0.02f64, -0.03], &d)?),
        ]);
        Ok(Self { params })
    }

    fn var(&self, name: &str) -> &Tensor {
        self.params.get(name).expect("parameter").as_tensor()
    }

    /// Mean squared error over the rows of `x`.
    fn loss(&self, x: &Tensor, y: &Tensor) -> anyhow::Result<Tensor> {
        let h = x
            .matmul(self.var("fc1.weight"))?
            .broadcast_add(self.var("fc1.bias"))?
            .tanh()?;
        let out = h
            .matmul(self.var("fc2.weight"))?
            .broadcast_add(self.var("fc2.bias"))?;
        Ok((out - y)?.sqr()?.sum(1)?.mean_all()?)
    }

    fn grads(&self, x: &Tensor, y: &Tensor) -> anyhow::Result<Tree> {
        Ok(self.params.grads(&self.loss(x, y)?.backward()?)?)
    }
}

fn data(n: usize) -> anyhow::Result<(Tensor, Tensor)> {
    let d = Device::Cpu;
    let x: Vec<f64> = (0..n * 3)
        .map(|i| ((i * 7 % 11) as f64 - 5.0) / 5.0)
        .collect();
    let y: Vec<f64> = (0..n * 2)
        .map(|i| ((i * 5 % 7) as f64 - 3.0) / 3.0)
        .collect();
    Ok((
        Tensor::from_vec(x, (n, 3), &d)?,
        Tensor::from_vec(y, (n, 2), &d)?,
    ))
}

fn max_abs_diff(a: &Tree, b: &Tree) -> anyhow::Result<f64> {
    let mut worst: f64 = 0.0;
    for ((_, x), (_, y)) in a.iter().zip(b.iter()) {
        let d = (x - y)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f64>()?;
        worst = worst.max(d);
    }
    Ok(worst)
}

#[test]
fn micro_batches_equal_the_big_batch() -> anyhow::Result<()> {
    let model = Mlp::new()?;
    let (x, y) = data(12)?;
    let big = model.grads(&x, &y)?;
    // Equal micro-batches (4 × 3) and uneven ones (5 + 5 + 2).
    for sizes in [vec![3, 3, 3, 3], vec![5, 5, 2]] {
        let mut acc = Accumulator::new();
        let mut start = 0;
        for b in sizes {
            let (xb, yb) = (x.narrow(0, start, b)?, y.narrow(0, start, b)?);
            acc.add(&model.grads(&xb, &yb)?, b)?;
            start += b;
        }
        assert_eq!(acc.examples(), 12);
        let mean = acc.take()?;
        assert!(max_abs_diff(&mean, &big)? < 1e-14);
    }
    Ok(())
}

#[test]
fn accumulated_steps_equal_big_batch_steps() -> anyhow::Result<()> {
    let (x, y) = data(8)?;
    let run = |k: usize| -> anyhow::Result<Tree> {
        let model = Mlp::new()?;
        let mut opt = Optimizer::new(momentum(0.1, 0.9), &model.params)?;
        for _ in 0..5 {
            let mut acc = Accumulator::new();
            let b = 8 / k;
            for i in 0..k {
                acc.add(
                    &model.grads(&x.narrow(0, i * b, b)?, &y.narrow(0, i * b, b)?)?,
                    b,
                )?;
            }
            opt.step(&model.params, acc.take()?)?;
        }
        Ok(model.params.tree())
    };
    let big = run(1)?;
    for k in [2, 4, 8] {
        assert!(max_abs_diff(&run(k)?, &big)? < 1e-13, "k = {k}");
    }
    Ok(())
}

#[test]
fn accumulator_errors() -> anyhow::Result<()> {
    let mut acc = Accumulator::new();
    assert!(matches!(acc.take(), Err(Error::NothingAccumulated)));
    let model = Mlp::new()?;
    let g = model.params.tree();
    assert!(matches!(
        acc.add(&g, 0),
        Err(Error::InvalidHyperparameter {
            name: "batch_size",
            ..
        })
    ));
    acc.add(&g, 1)?;
    let mut other = g.clone();
    other.remove("fc2.bias");
    assert!(matches!(
        acc.add(&other, 1),
        Err(Error::TreeMismatch { .. })
    ));
    Ok(())
}

#[test]
fn cross_entropy_without_smoothing_is_candle_nn() -> anyhow::Result<()> {
    let d = Device::Cpu;
    let logits = Tensor::new(
        &[
            [1.5f32, -0.3, 2.2, 0.0],
            [30.0, 31.0, -5.0, 2.0],
            [0.1, 0.2, 0.3, 0.4],
        ],
        &d,
    )?;
    let labels = Tensor::new(&[2u32, 0, 3], &d)?;
    let ours = softmax_cross_entropy(&logits, &labels, 0.0)?.to_scalar::<f32>()?;
    let theirs = candle_nn::loss::cross_entropy(&logits, &labels)?.to_scalar::<f32>()?;
    assert!(
        (ours - theirs).abs() <= 1e-6 * theirs.abs(),
        "{ours} vs {theirs}"
    );
    // Full smoothing is the mean negative log-likelihood of the uniform target.
    let uniform = softmax_cross_entropy(&logits, &labels, 1.0)?.to_scalar::<f32>()?;
    let log_p = candle_nn::ops::log_softmax(&logits, 1)?;
    let want = log_p.mean_all()?.neg()?.to_scalar::<f32>()?;
    assert!((uniform - want).abs() <= 1e-6 * want.abs());
    assert_eq!(logits.dtype(), DType::F32);
    Ok(())
}
