//! Every [`OptimizerSpec`] variant builds, runs in place, and matches its
//! composed chain; masks select by kind and name; bad specs are
//! refused before any step.

use anyhow::Result;
use bigbatch_optim::{
    BuildOptimizer, Error, MaskSpec, Method, Optimizer, OptimizerSpec, ParamKind, Params,
    ScheduleSpec, TrustRatioSpec,
};
use bigbatch_spec::{Decay, Horizon, Length};
use candle_core::{DType, Device, Tensor, Var};

const HORIZON: Horizon = Horizon {
    total_steps: 20,
    steps_per_epoch: 5,
};

/// A small "network": a conv weight, a dense weight, their biases, a BN scale/shift.
fn params(seed: u64) -> Result<Params> {
    let shapes: [(&str, &[usize], ParamKind); 6] = [
        ("conv1.weight", &[4, 1, 3, 3], ParamKind::Weight),
        ("conv1.bias", &[4], ParamKind::Bias),
        ("bn1.weight", &[4], ParamKind::NormScale),
        ("bn1.bias", &[4], ParamKind::NormShift),
        ("fc.weight", &[3, 16], ParamKind::Weight),
        ("fc.bias", &[3], ParamKind::Bias),
    ];
    let mut vars = Vec::new();
    let mut kinds = Vec::new();
    for (i, (name, shape, kind)) in shapes.iter().enumerate() {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|j| (((j as u64 * 2654435761 + i as u64 * 97 + seed) % 1000) as f32 / 500.0) - 1.0)
            .collect();
        let t = Tensor::from_vec(values, *shape, &Device::Cpu)?;
        vars.push((name.to_string(), Var::from_tensor(&t)?));
        kinds.push((name.to_string(), *kind));
    }
    Ok(Params::new(vars).with_kinds(kinds))
}

/// A gradient that depends on the weights (so steps differ) and on the step.
fn grads(params: &Params, step: usize) -> Result<bigbatch_optim::Tree> {
    params
        .iter()
        .map(|(name, v)| {
            let g = (v.as_tensor().sin()? * 0.5)?.affine(1.0, 0.01 * step as f64)?;
            Ok((name.to_owned(), g))
        })
        .collect()
}

fn every_spec() -> Vec<OptimizerSpec> {
    let mut out = Vec::new();
    for name in Method::NAMES {
        let plain = OptimizerSpec::new(Method::named(name).expect("name")).with_learning_rate(0.05);
        out.push(plain.clone());
        out.push(OptimizerSpec {
            weight_decay: 0.01,
            weight_decay_mask: MaskSpec::weights_only(),
            ..plain.clone()
        });
        out.push(OptimizerSpec {
            trust_ratio: Some(TrustRatioSpec::default()),
            ..plain.clone()
        });
        out.push(OptimizerSpec {
            weight_decay: 0.01,
            trust_ratio: Some(TrustRatioSpec {
                bounds: Some([0.01, 10.0]),
                eps: 0.0,
            }),
            trust_ratio_mask: MaskSpec::weights_only(),
            clip_global_norm: Some(0.5),
            ..plain
        });
    }
    out
}

fn values(params: &Params) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for (_, v) in params.iter() {
        out.extend(v.as_tensor().flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(out)
}

#[test]
fn every_spec_runs_and_matches_its_chain() -> Result<()> {
    let schedule = ScheduleSpec::new(
        Some(Length::Steps(3)),
        Decay::Polynomial {
            power: 2.0,
            final_fraction: 0.0,
            length: None,
        },
    );
    let mut fused = 0;
    for spec in every_spec() {
        let (a, b) = (params(1)?, params(1)?);
        let mut built = spec.build(&a, &schedule, &HORIZON)?;
        let mut chain = Optimizer::composed(spec.chain(&b, &schedule, &HORIZON)?, &b)?;
        fused += usize::from(built.is_fused());
        for step in 0..10 {
            built.step(&a, grads(&a, step)?)?;
            chain.step(&b, grads(&b, step)?)?;
        }
        let (va, vb) = (values(&a)?, values(&b)?);
        assert!(va.iter().all(|x| x.is_finite()), "{spec:?}");
        assert_ne!(va, values(&params(1)?)?, "{spec:?} did not move");
        // Trust ratios and clipping take their norms in f64 in place, in f32
        // in the chain; everything else is the chain's arithmetic.
        let norms = matches!(spec.method, Method::Lars { .. } | Method::Lamb { .. })
            || spec.trust_ratio.is_some()
            || spec.clip_global_norm.is_some();
        for (x, y) in va.iter().zip(&vb) {
            if norms {
                assert!(
                    (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                    "{spec:?}: {x} vs {y}"
                );
            } else {
                assert_eq!(x.to_bits(), y.to_bits(), "{spec:?}: {x} vs {y}");
            }
        }
    }
    // Every optimizer in every form.
    assert_eq!(fused, 9 * 4);
    Ok(())
}

#[test]
fn masks_select_by_kind_and_pattern() -> Result<()> {
    // Weight decay alone (zero gradient) moves only the parameters the mask selects.
    let spec = OptimizerSpec {
        weight_decay: 0.5,
        weight_decay_mask: MaskSpec {
            exclude_kinds: vec![ParamKind::Bias, ParamKind::NormScale, ParamKind::NormShift],
            exclude_names: vec!["fc.*".into()],
        },
        ..OptimizerSpec::new(Method::Sgd).with_learning_rate(0.1)
    };
    let p = params(2)?;
    let before: Vec<(String, Tensor)> = p
        .iter()
        .map(|(n, v)| (n.to_owned(), v.as_tensor().copy().expect("copy")))
        .collect();
    let mut opt = spec.build(&p, &ScheduleSpec::default(), &HORIZON)?;
    let zeros = p.tree().zeros_like()?;
    opt.step(&p, zeros)?;
    for (name, old) in before {
        let moved = p
            .get(&name)
            .expect("param")
            .as_tensor()
            .ne(&old)?
            .to_dtype(DType::U32)?
            .sum_all()?
            .to_scalar::<u32>()?
            > 0;
        assert_eq!(moved, name == "conv1.weight", "{name}");
    }
    Ok(())
}

#[test]
fn bad_specs_are_refused_naming_the_field() -> Result<()> {
    let p = params(3)?;
    let typo = OptimizerSpec {
        weight_decay_mask: MaskSpec {
            exclude_names: vec!["fc2.*".into()],
            ..MaskSpec::default()
        },
        ..OptimizerSpec::default()
    };
    let err = typo
        .build(&p, &ScheduleSpec::default(), &HORIZON)
        .expect_err("typo");
    assert!(
        matches!(
            err,
            Error::Spec(bigbatch_spec::Error::MaskMatchesNothing { .. })
        ),
        "{err}"
    );
    let no_kinds = Params::new(p.iter().map(|(n, v)| (n.to_owned(), v.clone())));
    let by_kind = OptimizerSpec {
        weight_decay: 0.1,
        weight_decay_mask: MaskSpec::weights_only(),
        ..OptimizerSpec::default()
    };
    assert!(
        by_kind
            .build(&no_kinds, &ScheduleSpec::default(), &HORIZON)
            .is_err()
    );
    let long_warmup = ScheduleSpec::new(Some(Length::Epochs(4.0)), Decay::Constant);
    let err = OptimizerSpec::default()
        .build(&p, &long_warmup, &HORIZON)
        .expect_err("warmup = run");
    assert!(err.to_string().contains("schedule.warmup"), "{err}");
    let negative = OptimizerSpec::default().with_learning_rate(-0.1);
    let err = negative
        .build(&p, &ScheduleSpec::default(), &HORIZON)
        .expect_err("lr < 0");
    assert!(err.to_string().contains("optimizer.learning_rate"), "{err}");
    Ok(())
}
