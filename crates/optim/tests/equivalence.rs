//! Equivalences between optimizers that must agree by construction.

use bigbatch_optim::{
    AdamConfig, LambConfig, LarsConfig, Transform, Tree, TrustRatioConfig, adam, adamw,
    add_decayed_weights, boxed, chain, identity, lamb, lars, layerwise, mask, momentum,
};
use candle_core::{DType, Device, Tensor};

/// Two tensors, a weight and a bias, with a gradient that depends on them.
fn params() -> anyhow::Result<Tree> {
    let d = Device::Cpu;
    let mut p = Tree::new();
    p.insert(
        "fc.weight",
        Tensor::new(&[[0.5f64, -1.0, 1.5], [2.0, -0.5, 0.25]], &d)?,
    );
    p.insert("fc.bias", Tensor::new(&[0.1f64, -0.2], &d)?);
    Ok(p)
}

fn grad(p: &Tree) -> anyhow::Result<Tree> {
    Ok(p.map(|_, x| Ok((x.affine(1.5, -0.3)? + x.sqr()?.affine(0.2, 0.)?)?))?)
}

/// The parameter trajectory of `tx` over `steps`, flattened.
fn trajectory(tx: &impl Transform, steps: usize) -> anyhow::Result<Vec<Vec<f64>>> {
    let mut p = params()?;
    let mut state = tx.init(&p)?;
    let mut out = Vec::new();
    for _ in 0..steps {
        let (u, s) = tx.update(grad(&p)?, state, &p)?;
        state = s;
        p = p.zip_map(&u, |_, p, u| Ok((p + u)?))?;
        let mut flat = Vec::new();
        for (_, t) in p.iter() {
            flat.extend(t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?);
        }
        out.push(flat);
    }
    Ok(out)
}

fn assert_close(a: &[Vec<f64>], b: &[Vec<f64>], rtol: f64) {
    for (step, (x, y)) in a.iter().zip(b).enumerate() {
        for (u, v) in x.iter().zip(y) {
            assert!((u - v).abs() <= rtol * v.abs(), "step {step}: {u} vs {v}");
        }
    }
}

#[test]
fn lamb_without_trust_ratio_is_adamw() -> anyhow::Result<()> {
    let cfg = AdamConfig::default();
    let no_ratio = LambConfig {
        adam: cfg,
        weight_decay: 0.1,
        trust_ratio_mask: mask::none(),
        ..LambConfig::default()
    };
    let a = trajectory(&lamb(0.01, no_ratio), 5)?;
    let b = trajectory(&adamw(0.01, cfg, 0.1, mask::all()), 5)?;
    assert_eq!(a, b, "bit-identical");
    Ok(())
}

#[test]
fn layerwise_adamw_is_lamb() -> anyhow::Result<()> {
    let cfg = LambConfig {
        weight_decay: 0.1,
        weight_decay_mask: mask::exclude_bias_and_norm(),
        trust_ratio: TrustRatioConfig::lamb().with_bounds(Some(0.5), Some(3.0)),
        ..LambConfig::default()
    };
    let a = trajectory(&lamb(0.01, cfg.clone()), 5)?;
    let b = trajectory(
        &layerwise(
            adamw(0.01, cfg.adam, 0.1, mask::exclude_bias_and_norm()),
            cfg.trust_ratio,
            mask::all(),
        ),
        5,
    )?;
    assert_eq!(a, b, "bit-identical");
    Ok(())
}

/// PyTorch's `SGD(lr, momentum=μ, weight_decay=λ)`: L2 into the gradient, then momentum.
fn momentum_l2(lr: f64, mu: f64, wd: f64) -> impl Transform {
    chain((add_decayed_weights(wd), momentum(lr, mu)))
}

#[test]
fn lars_with_unit_ratio_is_momentum_sgd_with_l2() -> anyhow::Result<()> {
    // Bounds [1, 1] pin the ratio to 1 at every step.
    let pinned = LarsConfig {
        momentum: 0.9,
        weight_decay: 0.01,
        min_ratio: Some(1.0),
        max_ratio: Some(1.0),
        ..LarsConfig::default()
    };
    let a = trajectory(&lars(0.1, pinned), 6)?;
    let b = trajectory(&momentum_l2(0.1, 0.9, 0.01), 6)?;
    // LARS scales by η before the momentum, PyTorch after: equal up to rounding.
    assert_close(&a, &b, 1e-13);

    // One step with η chosen so that η‖w‖/(‖g‖ + λ‖w‖) = 1 for a single tensor.
    let mut w = Tree::new();
    w.insert("w", Tensor::new(&[3f64, 4.], &Device::Cpu)?);
    let g = grad(&w)?;
    let g_norm = g.squared_norm()?.sqrt();
    let eta = (g_norm + 0.01 * 5.0) / 5.0;
    let cfg = LarsConfig {
        eta,
        weight_decay: 0.01,
        ..LarsConfig::default()
    };
    let first_update = |tx: &dyn bigbatch_optim::Transform<State = bigbatch_optim::BoxedState>| -> anyhow::Result<Vec<f64>> {
        let (u, _) = tx.update(g.clone(), tx.init(&w)?, &w)?;
        Ok(u.get("w").expect("w").to_vec1::<f64>()?)
    };
    let a = first_update(&boxed(lars(0.1, cfg)))?;
    let b = first_update(&boxed(momentum_l2(0.1, 0.9, 0.01)))?;
    assert_close(&[a], &[b], 1e-14);
    Ok(())
}

#[test]
fn chain_with_identity_is_the_transform() -> anyhow::Result<()> {
    let t = || adam(0.01, AdamConfig::default());
    let a = trajectory(&chain((identity(), t())), 4)?;
    let b = trajectory(&t(), 4)?;
    let c = trajectory(&chain((t(), identity())), 4)?;
    assert_eq!(a, b);
    assert_eq!(c, b);
    Ok(())
}
