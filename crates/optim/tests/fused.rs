//! `Optimizer::fused` against the composed chains it stands for: the same
//! parameters and the same state after several steps under a decaying
//! schedule, interchangeable checkpoints, typed errors that leave the
//! parameters untouched, and the composed fallback off the fast path.

use std::sync::Arc;

use bigbatch_optim::schedule::Polynomial;
use bigbatch_optim::{
    AdamConfig, Error, Fused, LambConfig, LarsConfig, Optimizer, Params, Schedule, Tree,
    TrustRatioConfig, mask,
};
use candle_core::{DType, Device, Tensor, Var};

/// Shapes of a small convnet, plus one tensor spanning several rayon chunks
/// (2^15 elements each) with a ragged end.
const SHAPES: [(&str, &[usize]); 4] = [
    ("conv.weight", &[8, 3, 3, 3]),
    ("conv.bias", &[8]),
    ("fc.weight", &[10, 7_001]),
    ("fc.bias", &[10]),
];

/// Deterministic values in about [-scale, scale], different per `seed`.
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| {
            let h = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ seed.wrapping_mul(0xBF58_476D);
            ((h >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect()
}

fn params(dtype: DType) -> anyhow::Result<Params> {
    let vars = SHAPES.iter().enumerate().map(|(i, (name, shape))| {
        let n = shape.iter().product();
        let t =
            Tensor::from_vec(values(n, i as u64, 0.5), *shape, &Device::Cpu)?.to_dtype(dtype)?;
        Ok(((*name).to_string(), Var::from_tensor(&t)?))
    });
    Ok(Params::new(vars.collect::<anyhow::Result<Vec<_>>>()?))
}

/// The gradient of step `step`: fixed pseudo-random values, so both
/// optimizers see the same sequence.
fn grads(params: &Params, step: u64) -> anyhow::Result<Tree> {
    let mut tree = Tree::new();
    for (i, (name, var)) in params.iter().enumerate() {
        let v = values(var.elem_count(), 100 * step + i as u64, 0.1);
        let g = Tensor::from_vec(v, var.dims(), &Device::Cpu)?.to_dtype(var.dtype())?;
        tree.insert(name, g);
    }
    Ok(tree)
}

fn flat(tree: &Tree) -> anyhow::Result<Vec<(String, Vec<f64>)>> {
    tree.iter()
        .map(|(name, t)| {
            let v = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            Ok((name.to_owned(), v))
        })
        .collect()
}

/// Same names, and every value within `rtol` of the largest magnitude in its
/// tensor (`rtol = 0`: bit for bit, up to the sign of zero).
fn assert_close(a: &Tree, b: &Tree, rtol: f64, what: &str) -> anyhow::Result<()> {
    let (a, b) = (flat(a)?, flat(b)?);
    assert_eq!(
        a.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        b.iter().map(|(n, _)| n).collect::<Vec<_>>(),
        "{what}: names"
    );
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let scale = x.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
        let worst = x.iter().zip(y).fold(0f64, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            worst <= rtol * scale,
            "{what}: `{name}` differs by {worst:e} (scale {scale:e})"
        );
    }
    Ok(())
}

fn schedule() -> anyhow::Result<Arc<dyn Schedule>> {
    // A decaying rate, so a step counted twice or not at all shows.
    Ok(Arc::new(Polynomial::new(0.05, 0.005, 1.0, 6)?))
}

/// Every rule, with the tolerance of its comparison with the chain: 0 (bit
/// for bit) where the arithmetic is the same, rounding-level where the fused
/// form takes norms in f64 over the gradient itself (LARS, LAMB) and the
/// chain in f32 (LARS: over `(g + λw) − λw`).
fn rules() -> Vec<(&'static str, Fused, f64)> {
    let lars = LarsConfig {
        eta: 0.02,
        weight_decay: 0.01,
        weight_decay_mask: mask::exclude_bias_and_norm(),
        trust_ratio_mask: mask::exclude_bias_and_norm(),
        ..LarsConfig::default()
    };
    let lamb = LambConfig {
        weight_decay: 0.01,
        weight_decay_mask: mask::exclude_bias_and_norm(),
        trust_ratio_mask: mask::Mask::new(|name, _| name != "conv.bias"),
        trust_ratio: TrustRatioConfig::lamb().with_bounds(Some(0.0), Some(10.0)),
        ..LambConfig::default()
    };
    let eps_root = AdamConfig {
        eps: 0.0,
        eps_root: 1e-8,
        ..AdamConfig::default()
    };
    let exact = vec![
        ("sgd", Fused::Sgd),
        (
            "momentum",
            Fused::Momentum {
                beta: 0.9,
                nesterov: false,
            },
        ),
        (
            "nesterov",
            Fused::Momentum {
                beta: 0.9,
                nesterov: true,
            },
        ),
        (
            "momentum 0",
            Fused::Momentum {
                beta: 0.0,
                nesterov: false,
            },
        ),
        ("adam", Fused::Adam(AdamConfig::default())),
        ("adam eps_root", Fused::Adam(eps_root)),
        (
            "adamw",
            Fused::AdamW {
                cfg: AdamConfig::default(),
                weight_decay: 0.1,
                mask: mask::exclude_bias_and_norm(),
            },
        ),
    ];
    let mut all: Vec<_> = exact.into_iter().map(|(l, r)| (l, r, 0.0)).collect();
    all.extend([
        ("lars", Fused::Lars(lars.clone()), 1e-6),
        (
            "lars nesterov, bounded",
            Fused::Lars(LarsConfig {
                nesterov: true,
                min_ratio: Some(0.05),
                max_ratio: Some(0.2),
                ..lars.clone()
            }),
            1e-6,
        ),
        (
            "lars without momentum",
            Fused::Lars(LarsConfig {
                momentum: 0.0,
                ..lars
            }),
            1e-6,
        ),
        ("lamb", Fused::Lamb(lamb.clone()), 1e-6),
        (
            "lamb, no decay",
            Fused::Lamb(LambConfig {
                weight_decay: 0.0,
                ..lamb
            }),
            1e-6,
        ),
    ]);
    all
}

#[test]
fn fused_updates_equal_the_composed_chains() -> anyhow::Result<()> {
    for (label, rule, rtol) in rules() {
        let (fast, slow) = (params(DType::F32)?, params(DType::F32)?);
        let mut fused = Optimizer::fused(rule.clone(), schedule()?, &fast)?;
        let mut chain = Optimizer::new(rule.chain(schedule()?), &slow)?;
        assert!(fused.is_fused() && !chain.is_fused(), "{label}");
        for step in 0..6 {
            fused.step(&fast, grads(&fast, step)?)?;
            chain.step(&slow, grads(&slow, step)?)?;
        }
        assert_close(&fast.tree(), &slow.tree(), rtol, label)?;
        assert_close(&fused.state_tree()?, &chain.state_tree()?, rtol, label)?;
        // And the parameters really moved.
        let start = params(DType::F32)?;
        let moved = (fast.tree().get("fc.weight").expect("w")
            - start.tree().get("fc.weight").expect("w"))?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
        assert!(moved > 1e-4, "{label}: moved {moved}");
    }
    Ok(())
}

#[test]
fn checkpoints_move_between_fused_and_composed() -> anyhow::Result<()> {
    for (label, rule, rtol) in rules() {
        // Reference: six composed steps.
        let reference = params(DType::F32)?;
        let mut chain = Optimizer::new(rule.chain(schedule()?), &reference)?;
        for step in 0..6 {
            chain.step(&reference, grads(&reference, step)?)?;
        }
        // Three fused steps, save, three composed steps from the saved state.
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("opt.safetensors");
        let p = params(DType::F32)?;
        let mut fused = Optimizer::fused(rule.clone(), schedule()?, &p)?;
        for step in 0..3 {
            fused.step(&p, grads(&p, step)?)?;
        }
        fused.save(&path)?;
        let mut resumed = Optimizer::new(rule.chain(schedule()?), &p)?;
        resumed.load(&path)?;
        for step in 3..6 {
            resumed.step(&p, grads(&p, step)?)?;
        }
        assert_close(&p.tree(), &reference.tree(), rtol, label)?;

        // And back: composed steps, then fused ones from the composed state.
        let q = params(DType::F32)?;
        let mut chain = Optimizer::new(rule.chain(schedule()?), &q)?;
        for step in 0..3 {
            chain.step(&q, grads(&q, step)?)?;
        }
        let mut fused = Optimizer::fused(rule.clone(), schedule()?, &q)?;
        fused.load_state_tree(&chain.state_tree()?)?;
        for step in 3..6 {
            fused.step(&q, grads(&q, step)?)?;
        }
        assert_close(&q.tree(), &reference.tree(), rtol, label)?;
    }
    Ok(())
}

#[test]
fn saved_and_loaded_states_are_not_updated_behind_the_callers_back() -> anyhow::Result<()> {
    let rule = Fused::Adam(AdamConfig::default());
    let p = params(DType::F32)?;
    let mut fused = Optimizer::fused(rule, schedule()?, &p)?;
    fused.step(&p, grads(&p, 0)?)?;
    let saved = fused.state_tree()?;
    let before = flat(&saved)?;
    // Loading from `saved` must not make the optimizer write into it either.
    fused.load_state_tree(&saved)?;
    fused.step(&p, grads(&p, 1)?)?;
    assert_eq!(flat(&saved)?, before);
    assert_ne!(flat(&fused.state_tree()?)?, before);
    Ok(())
}

#[test]
fn bad_gradients_are_typed_errors_and_change_nothing() -> anyhow::Result<()> {
    let rule = Fused::Momentum {
        beta: 0.9,
        nesterov: false,
    };
    let p = params(DType::F32)?;
    let mut fused = Optimizer::fused(rule, 0.1, &p)?;
    let before = flat(&p.tree())?;

    let mut missing = grads(&p, 0)?;
    missing.remove("fc.bias");
    let err = fused.step(&p, missing).expect_err("missing gradient");
    assert!(matches!(err, Error::TreeMismatch { .. }), "{err}");

    let mut misshapen = grads(&p, 0)?;
    misshapen.insert("fc.bias", Tensor::zeros(11, DType::F32, &Device::Cpu)?);
    let err = fused.step(&p, misshapen).expect_err("wrong shape");
    assert!(matches!(err, Error::BadInput { .. }), "{err}");

    assert_eq!(flat(&p.tree())?, before);
    assert_eq!(fused.steps(), 0);

    // Hyperparameters are the chain's, validated the same way.
    let bad = Fused::Momentum {
        beta: 1.0,
        nesterov: false,
    };
    let err = Optimizer::fused(bad, 0.1, &p).expect_err("momentum 1");
    assert!(matches!(err, Error::InvalidHyperparameter { .. }), "{err}");
    Ok(())
}

#[test]
fn other_dtypes_run_the_composed_chain() -> anyhow::Result<()> {
    let rule = Fused::Adam(AdamConfig::default());
    let (wide, reference) = (params(DType::F64)?, params(DType::F64)?);
    let mut fused = Optimizer::fused(rule.clone(), schedule()?, &wide)?;
    let mut chain = Optimizer::new(rule.chain(schedule()?), &reference)?;
    assert!(!fused.is_fused());
    for step in 0..3 {
        fused.step(&wide, grads(&wide, step)?)?;
        chain.step(&reference, grads(&reference, step)?)?;
    }
    assert_close(&wide.tree(), &reference.tree(), 0.0, "f64 fallback")?;
    Ok(())
}
