//! Fused steps against the composed chains they run: for every named
//! optimizer and every [`OptimizerSpec`] shape (nine optimizers × plain,
//! masked weight decay, layer-wise trust ratio, bounded trust ratio,
//! clipping), the same parameters and the same state after several steps
//! under a decaying schedule; the same bits on one thread and on several;
//! interchangeable checkpoints; typed errors that leave the parameters
//! untouched; and the composed path where fusion does not apply.

use std::sync::Arc;

use bigbatch_optim::schedule::Polynomial;
use bigbatch_optim::{
    AdagradConfig, AdamConfig, BuildOptimizer, Error, LambConfig, LarsConfig, MaskSpec, Method,
    Optimizer, OptimizerSpec, ParamKind, Params, RmsConfig, Schedule, Transform, Tree,
    TrustRatioConfig, TrustRatioSpec, adagrad, adam, adamw, boxed, chain, clip, lamb, lars, mask,
    masked, momentum, nesterov, rmsprop, scale, scale_by_learning_rate, sgd, trace,
};
use bigbatch_spec::{Decay, Horizon, Length, ScheduleSpec};
use candle_core::{DType, Device, Tensor, Var};

/// Shapes of a small convnet, plus one tensor spanning several rayon chunks
/// (2^15 elements each) with a ragged end.
const SHAPES: [(&str, &[usize], ParamKind); 4] = [
    ("conv.weight", &[8, 3, 3, 3], ParamKind::Weight),
    ("conv.bias", &[8], ParamKind::Bias),
    ("fc.weight", &[10, 7_001], ParamKind::Weight),
    ("fc.bias", &[10], ParamKind::Bias),
];

const STEPS: u64 = 6;

/// The tolerance where norms are involved: the fused step sums them in f64,
/// the composed one in f32, so a trust ratio or a clip factor differs in its
/// last bits. Everything else is compared bit for bit (up to the sign of an
/// exact zero: candle's `affine(a, 0)` adds `+0`, the in-place loops do not).
const NORMS: f64 = 1e-6;

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
    let vars = SHAPES.iter().enumerate().map(|(i, (name, shape, _))| {
        let n = shape.iter().product();
        let t =
            Tensor::from_vec(values(n, i as u64, 0.5), *shape, &Device::Cpu)?.to_dtype(dtype)?;
        Ok(((*name).to_string(), Var::from_tensor(&t)?))
    });
    let kinds = SHAPES
        .iter()
        .map(|(name, _, kind)| ((*name).to_string(), *kind));
    Ok(Params::new(vars.collect::<anyhow::Result<Vec<_>>>()?).with_kinds(kinds))
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

/// Every f32 of a tree, as bits.
fn bits(tree: &Tree) -> anyhow::Result<Vec<(String, Vec<u32>)>> {
    tree.iter()
        .map(|(name, t)| {
            let v = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            Ok((name.to_owned(), v.iter().map(|x| x.to_bits()).collect()))
        })
        .collect()
}

/// Same names, and every value within `rtol` of the largest magnitude in its
/// tensor; `rtol = 0` means bit for bit, up to the sign of zero (and NaN
/// for NaN).
fn assert_close(a: &Tree, b: &Tree, rtol: f64, what: &str) -> anyhow::Result<()> {
    if rtol == 0.0 {
        let (a, b) = (bits(a)?, bits(b)?);
        assert_eq!(a.len(), b.len(), "{what}: names");
        for ((name, x), (other, y)) in a.iter().zip(&b) {
            assert_eq!(name, other, "{what}: names");
            let same = |p: u32, q: u32| {
                let (a, b) = (f32::from_bits(p), f32::from_bits(q));
                p == q || a == b || (a.is_nan() && b.is_nan())
            };
            let first = x.iter().zip(y).position(|(&p, &q)| !same(p, q));
            assert!(
                first.is_none() && x.len() == y.len(),
                "{what}: `{name}` not bit for bit from element {first:?}: {:?} vs {:?}",
                first.map(|i| f32::from_bits(x[i])),
                first.map(|i| f32::from_bits(y[i])),
            );
        }
        return Ok(());
    }
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

/// Same names and the same bits everywhere, the sign of zero included.
fn assert_same_bits(a: &Tree, b: &Tree, what: &str) -> anyhow::Result<()> {
    let (a, b) = (bits(a)?, bits(b)?);
    assert_eq!(a.len(), b.len(), "{what}: names");
    for ((name, x), (other, y)) in a.iter().zip(&b) {
        assert_eq!(name, other, "{what}: names");
        let first = x.iter().zip(y).position(|(p, q)| p != q);
        assert!(
            first.is_none() && x.len() == y.len(),
            "{what}: `{name}` differs from element {first:?}"
        );
    }
    Ok(())
}

fn schedule() -> Arc<dyn Schedule> {
    // A decaying rate, so a step counted twice or not at all shows.
    Arc::new(Polynomial::new(0.05, 0.005, 1.0, STEPS).expect("valid schedule"))
}

type Make = Box<dyn Fn(&Params) -> anyhow::Result<bigbatch_optim::Boxed> + Send + Sync>;

/// An optimizer to compare, fused and composed.
struct Case {
    label: String,
    make: Make,
    /// 0 (bit for bit) or [`NORMS`].
    rtol: f64,
}

fn case(
    label: &str,
    rtol: f64,
    make: impl Fn() -> bigbatch_optim::Boxed + Send + Sync + 'static,
) -> Case {
    Case {
        label: label.to_owned(),
        make: Box::new(move |_| Ok(make())),
        rtol,
    }
}

/// The named optimizers and chains of the other elementwise transforms.
fn named() -> Vec<Case> {
    let lars_cfg = LarsConfig {
        eta: 0.02,
        weight_decay: 0.01,
        weight_decay_mask: mask::exclude_bias_and_norm(),
        trust_ratio_mask: mask::exclude_bias_and_norm(),
        ..LarsConfig::default()
    };
    let lamb_cfg = LambConfig {
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
    let centered = RmsConfig {
        centered: true,
        ..RmsConfig::default()
    };
    let optax_rms = RmsConfig {
        eps_in_sqrt: true,
        initial_scale: 0.1,
        ..RmsConfig::default()
    };
    let (l1, l2, l3) = (lars_cfg.clone(), lars_cfg.clone(), lars_cfg);
    let (m1, m2) = (lamb_cfg.clone(), lamb_cfg);
    vec![
        case("sgd", 0.0, || boxed(sgd(schedule()))),
        case("momentum", 0.0, || boxed(momentum(schedule(), 0.9))),
        case("nesterov", 0.0, || boxed(nesterov(schedule(), 0.9))),
        case("momentum 0", 0.0, || boxed(momentum(schedule(), 0.0))),
        case("adagrad", 0.0, || {
            boxed(adagrad(schedule(), AdagradConfig::default()))
        }),
        case("rmsprop", 0.0, || {
            boxed(rmsprop(schedule(), RmsConfig::default(), 0.0))
        }),
        case("rmsprop centered, momentum", 0.0, move || {
            boxed(rmsprop(schedule(), centered, 0.9))
        }),
        case("rmsprop eps in sqrt", 0.0, move || {
            boxed(rmsprop(schedule(), optax_rms, 0.5))
        }),
        case("adam", 0.0, || {
            boxed(adam(schedule(), AdamConfig::default()))
        }),
        case("adam eps_root", 0.0, move || {
            boxed(adam(schedule(), eps_root))
        }),
        case("adamw", 0.0, || {
            boxed(adamw(
                schedule(),
                AdamConfig::default(),
                0.1,
                mask::exclude_bias_and_norm(),
            ))
        }),
        case("masked nesterov trace, clip, scale", 0.0, || {
            boxed(chain((
                clip(0.05),
                masked(trace(0.9, true), mask::exclude_bias_and_norm()),
                scale(0.5),
                scale_by_learning_rate(schedule()),
            )))
        }),
        case("lars", NORMS, move || boxed(lars(schedule(), l1.clone()))),
        case("lars nesterov, bounded", NORMS, move || {
            boxed(lars(
                schedule(),
                LarsConfig {
                    nesterov: true,
                    min_ratio: Some(0.05),
                    max_ratio: Some(0.2),
                    ..l2.clone()
                },
            ))
        }),
        case("lars without momentum", NORMS, move || {
            boxed(lars(
                schedule(),
                LarsConfig {
                    momentum: 0.0,
                    ..l3.clone()
                },
            ))
        }),
        case("lamb", NORMS, move || boxed(lamb(schedule(), m1.clone()))),
        case("lamb, no decay", NORMS, move || {
            boxed(lamb(
                schedule(),
                LambConfig {
                    weight_decay: 0.0,
                    ..m2.clone()
                },
            ))
        }),
    ]
}

const HORIZON: Horizon = Horizon {
    total_steps: STEPS,
    steps_per_epoch: 3,
};

fn spec_schedule() -> ScheduleSpec {
    ScheduleSpec::new(
        Some(Length::Steps(2)),
        Decay::Polynomial {
            power: 1.0,
            final_fraction: 0.1,
            length: None,
        },
    )
}

/// Every optimizer of the spec in every shape: plain, masked weight decay
/// (L2, or decoupled for AdamW and LAMB), layer-wise trust ratio, bounded
/// trust ratio with a mask, and clipping (with decay and a bounded ratio).
fn specs() -> Vec<Case> {
    let mut out = Vec::new();
    for name in Method::NAMES {
        let plain = OptimizerSpec::new(Method::named(name).expect("name")).with_learning_rate(0.05);
        let decayed = OptimizerSpec {
            weight_decay: 0.01,
            weight_decay_mask: MaskSpec::weights_only(),
            ..plain.clone()
        };
        let layerwise = OptimizerSpec {
            trust_ratio: Some(TrustRatioSpec::default()),
            ..plain.clone()
        };
        let bounded = OptimizerSpec {
            trust_ratio: Some(TrustRatioSpec {
                bounds: Some([0.01, 10.0]),
                eps: 1e-9,
            }),
            trust_ratio_mask: MaskSpec::weights_only(),
            ..plain.clone()
        };
        let clipped = OptimizerSpec {
            clip_global_norm: Some(0.5),
            weight_decay: 0.01,
            trust_ratio: Some(TrustRatioSpec {
                bounds: Some([0.01, 10.0]),
                eps: 0.0,
            }),
            ..plain.clone()
        };
        let norms = matches!(plain.method, Method::Lars { .. } | Method::Lamb { .. });
        for (shape, spec) in [
            ("plain", plain),
            ("decayed", decayed),
            ("layer-wise", layerwise),
            ("bounded", bounded),
            ("clipped", clipped),
        ] {
            let rtol = if norms || spec.trust_ratio.is_some() || spec.clip_global_norm.is_some() {
                NORMS
            } else {
                0.0
            };
            out.push(Case {
                label: format!("spec {name} {shape}"),
                make: Box::new(move |p| Ok(spec.chain(p, &spec_schedule(), &HORIZON)?)),
                rtol,
            });
        }
    }
    out
}

fn cases() -> Vec<Case> {
    let mut all = named();
    all.extend(specs());
    all
}

#[test]
fn fused_updates_equal_the_composed_chains() -> anyhow::Result<()> {
    let (mut exact, mut total) = (0, 0);
    for Case { label, make, rtol } in cases() {
        let (fast, slow) = (params(DType::F32)?, params(DType::F32)?);
        let mut fused = Optimizer::new(make(&fast)?, &fast)?;
        let mut chain = Optimizer::composed(make(&slow)?, &slow)?;
        assert!(fused.is_fused() && !chain.is_fused(), "{label}");
        for step in 0..STEPS {
            fused.step(&fast, grads(&fast, step)?)?;
            chain.step(&slow, grads(&slow, step)?)?;
        }
        assert_close(&fast.tree(), &slow.tree(), rtol, &label)?;
        assert_close(&fused.state_tree()?, &chain.state_tree()?, rtol, &label)?;
        // And the parameters really moved.
        let start = params(DType::F32)?;
        let moved = (fast.tree().get("fc.weight").expect("w")
            - start.tree().get("fc.weight").expect("w"))?
        .abs()?
        .max_all()?
        .to_scalar::<f32>()?;
        assert!(moved > 1e-4, "{label}: moved {moved}");
        exact += usize::from(rtol == 0.0);
        total += 1;
    }
    // 17 named, 9 × 5 specs; bit for bit: 12 named, and 7 methods × (plain, decayed).
    assert_eq!((exact, total), (12 + 14, 17 + 45));
    Ok(())
}

/// The fused steps of `make` on a pool of `threads` threads: parameters and state.
fn on_threads(make: &Make, threads: usize) -> anyhow::Result<(Tree, Tree)> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()?;
    pool.install(|| {
        let p = params(DType::F32)?;
        let mut opt = Optimizer::new(make(&p)?, &p)?;
        for step in 0..STEPS {
            opt.step(&p, grads(&p, step)?)?;
        }
        Ok((p.tree(), opt.state_tree()?))
    })
}

#[test]
fn fused_results_do_not_depend_on_the_thread_count() -> anyhow::Result<()> {
    for Case { label, make, .. } in cases() {
        let (p1, s1) = on_threads(&make, 1)?;
        let (p3, s3) = on_threads(&make, 3)?;
        assert_same_bits(&p1, &p3, &format!("{label}: parameters, 1 vs 3 threads"))?;
        assert_same_bits(&s1, &s3, &format!("{label}: state, 1 vs 3 threads"))?;
    }
    Ok(())
}

#[test]
fn checkpoints_move_between_fused_and_composed() -> anyhow::Result<()> {
    for Case { label, make, rtol } in cases() {
        // Reference: six composed steps.
        let reference = params(DType::F32)?;
        let mut chain = Optimizer::composed(make(&reference)?, &reference)?;
        for step in 0..STEPS {
            chain.step(&reference, grads(&reference, step)?)?;
        }
        // Three fused steps, save, three composed steps from the saved state.
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("opt.safetensors");
        let p = params(DType::F32)?;
        let mut fused = Optimizer::new(make(&p)?, &p)?;
        for step in 0..STEPS / 2 {
            fused.step(&p, grads(&p, step)?)?;
        }
        fused.save(&path)?;
        let mut resumed = Optimizer::composed(make(&p)?, &p)?;
        resumed.load(&path)?;
        for step in STEPS / 2..STEPS {
            resumed.step(&p, grads(&p, step)?)?;
        }
        assert_close(&p.tree(), &reference.tree(), rtol, &label)?;

        // And back: composed steps, then fused ones from the composed state.
        let q = params(DType::F32)?;
        let mut chain = Optimizer::composed(make(&q)?, &q)?;
        for step in 0..STEPS / 2 {
            chain.step(&q, grads(&q, step)?)?;
        }
        let mut fused = Optimizer::new(make(&q)?, &q)?;
        fused.load_state_tree(&chain.state_tree()?)?;
        for step in STEPS / 2..STEPS {
            fused.step(&q, grads(&q, step)?)?;
        }
        assert_close(&q.tree(), &reference.tree(), rtol, &label)?;
    }
    Ok(())
}

#[test]
fn saved_and_loaded_states_are_not_updated_behind_the_callers_back() -> anyhow::Result<()> {
    let p = params(DType::F32)?;
    let mut fused = Optimizer::new(adam(schedule(), AdamConfig::default()), &p)?;
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
    let p = params(DType::F32)?;
    let mut fused = Optimizer::new(momentum(0.1, 0.9), &p)?;
    assert!(fused.is_fused());
    let before = flat(&p.tree())?;

    let mut missing = grads(&p, 0)?;
    missing.remove("fc.bias");
    let err = fused.step(&p, missing).expect_err("missing gradient");
    assert!(matches!(err, Error::TreeMismatch { .. }), "{err}");

    let mut misshapen = grads(&p, 0)?;
    misshapen.insert("fc.bias", Tensor::zeros(11, DType::F32, &Device::Cpu)?);
    let err = fused.step(&p, misshapen).expect_err("wrong shape");
    assert!(matches!(err, Error::BadInput { .. }), "{err}");

    let mut wide = grads(&p, 0)?;
    wide.insert("fc.bias", Tensor::zeros(10, DType::F64, &Device::Cpu)?);
    let err = fused.step(&p, wide).expect_err("wrong dtype");
    assert!(matches!(err, Error::BadInput { .. }), "{err}");

    assert_eq!(flat(&p.tree())?, before);
    assert_eq!(fused.steps(), 0);
    assert_eq!(flat(&fused.state_tree()?)?, {
        let fresh = Optimizer::new(momentum(0.1, 0.9), &p)?;
        flat(&fresh.state_tree()?)?
    });

    // Hyperparameters are the chain's, validated the same way.
    let err = Optimizer::new(momentum(0.1, 1.0), &p).expect_err("momentum 1");
    assert!(matches!(err, Error::InvalidHyperparameter { .. }), "{err}");
    Ok(())
}

#[test]
fn other_dtypes_run_the_composed_chain() -> anyhow::Result<()> {
    let (wide, reference) = (params(DType::F64)?, params(DType::F64)?);
    let mut fused = Optimizer::new(adam(schedule(), AdamConfig::default()), &wide)?;
    let mut chain = Optimizer::composed(adam(schedule(), AdamConfig::default()), &reference)?;
    assert!(!fused.is_fused());
    for step in 0..3 {
        fused.step(&wide, grads(&wide, step)?)?;
        chain.step(&reference, grads(&reference, step)?)?;
    }
    assert_close(&wide.tree(), &reference.tree(), 0.0, "f64 fallback")?;
    Ok(())
}

/// A transform with no fused form: halves the updates.
struct Halve;

impl Transform for Halve {
    type State = ();

    fn init(&self, _: &Tree) -> bigbatch_optim::Result<()> {
        Ok(())
    }

    fn update(&self, u: Tree, state: (), _: &Tree) -> bigbatch_optim::Result<(Tree, ())> {
        Ok((u.map(|_, u| Ok(u.affine(0.5, 0.)?))?, state))
    }
}

#[test]
fn a_chain_with_an_unfusable_part_runs_composed() -> anyhow::Result<()> {
    let (p, q) = (params(DType::F32)?, params(DType::F32)?);
    let mut opt = Optimizer::new(chain((Halve, momentum(0.1, 0.9))), &p)?;
    let mut reference = Optimizer::composed(chain((Halve, momentum(0.1, 0.9))), &q)?;
    assert!(!opt.is_fused());
    for step in 0..2 {
        opt.step(&p, grads(&p, step)?)?;
        reference.step(&q, grads(&q, step)?)?;
    }
    assert_close(&p.tree(), &q.tree(), 0.0, "unfusable chain")?;
    Ok(())
}
