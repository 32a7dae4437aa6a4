//! You et al. 2020 ("Large batch optimization for deep learning: training BERT
//! in 76 minutes"), Table 3: each base optimizer, its layer-wise version, and
//! its layer-wise version with a bounded ratio, one line each.

use bigbatch_optim::{
    AdagradConfig, AdamConfig, Optimizer, Params, RmsConfig, TrustRatioConfig as R, adagrad, adam,
    layerwise, mask, rmsprop, sgd,
};
use candle_core::{DType, Device, Var};

/// Builds one optimizer of the grid for a model's parameters.
type Build = Box<dyn Fn(&Params) -> anyhow::Result<Optimizer>>;

#[test]
fn every_table3_variant_builds_and_steps() -> anyhow::Result<()> {
    let bound = R::lamb().with_bounds(Some(0.0), Some(10.0));
    let (lr, a, r, m) = (
        0.1,
        AdagradConfig::default(),
        RmsConfig::default(),
        AdamConfig::default(),
    );
    let all = mask::all;
    let grid: Vec<(&str, Build)> = vec![
        ("sgd", Box::new(move |p| Ok(Optimizer::new(sgd(lr), p)?))),
        (
            "sgd+lw",
            Box::new(move |p| Ok(Optimizer::new(layerwise(sgd(lr), R::lamb(), all()), p)?)),
        ),
        (
            "sgd+lw+bound",
            Box::new(move |p| Ok(Optimizer::new(layerwise(sgd(lr), bound, all()), p)?)),
        ),
        (
            "adagrad",
            Box::new(move |p| Ok(Optimizer::new(adagrad(lr, a), p)?)),
        ),
        (
            "adagrad+lw",
            Box::new(move |p| {
                Ok(Optimizer::new(
                    layerwise(adagrad(lr, a), R::lamb(), all()),
                    p,
                )?)
            }),
        ),
        (
            "adagrad+lw+bound",
            Box::new(move |p| Ok(Optimizer::new(layerwise(adagrad(lr, a), bound, all()), p)?)),
        ),
        (
            "rmsprop",
            Box::new(move |p| Ok(Optimizer::new(rmsprop(lr, r, 0.0), p)?)),
        ),
        (
            "rmsprop+lw",
            Box::new(move |p| {
                Ok(Optimizer::new(
                    layerwise(rmsprop(lr, r, 0.0), R::lamb(), all()),
                    p,
                )?)
            }),
        ),
        (
            "rmsprop+lw+bound",
            Box::new(move |p| {
                Ok(Optimizer::new(
                    layerwise(rmsprop(lr, r, 0.0), bound, all()),
                    p,
                )?)
            }),
        ),
        (
            "adam",
            Box::new(move |p| Ok(Optimizer::new(adam(lr, m), p)?)),
        ),
        (
            "adam+lw",
            Box::new(move |p| Ok(Optimizer::new(layerwise(adam(lr, m), R::lamb(), all()), p)?)),
        ),
        (
            "adam+lw+bound",
            Box::new(move |p| Ok(Optimizer::new(layerwise(adam(lr, m), bound, all()), p)?)),
        ),
    ];
    for (name, build) in grid {
        let w = Var::ones((4, 3), DType::F32, &Device::Cpu)?;
        let params = Params::new([("w".to_string(), w.clone())]);
        let mut opt = build(&params)?;
        let before = w.as_tensor().sum_all()?.to_scalar::<f32>()?;
        for _ in 0..3 {
            let loss = w.as_tensor().sqr()?.sum_all()?;
            opt.step(&params, params.grads(&loss.backward()?)?)?;
        }
        let after = w.as_tensor().sum_all()?.to_scalar::<f32>()?;
        assert!(
            after.is_finite() && after < before,
            "{name}: {before} -> {after}"
        );
    }
    Ok(())
}

#[test]
fn the_layerwise_ratio_normalises_the_step() -> anyhow::Result<()> {
    // With the ratio, the first step of SGD has norm η‖w‖ whatever the gradient scale.
    let w = Var::ones((4, 3), DType::F64, &Device::Cpu)?;
    let params = Params::new([("w".to_string(), w.clone())]);
    let mut opt = Optimizer::new(layerwise(sgd(0.1), R::lamb(), mask::all()), &params)?;
    let loss = w.as_tensor().sqr()?.sum_all()?.affine(1e6, 0.)?;
    opt.step(&params, params.grads(&loss.backward()?)?)?;
    let moved = (w.as_tensor() - 1.0)?
        .sqr()?
        .sum_all()?
        .sqrt()?
        .to_scalar::<f64>()?;
    assert!((moved - 0.1 * 12f64.sqrt()).abs() < 1e-12);
    Ok(())
}
