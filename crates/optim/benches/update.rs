//! One optimizer update on three parameter sets ([`shape_sets`]: LeNet-5,
//! ResNet-20, a 25M-parameter MLP; f32), side by side: each optimizer's
//! composed chain (`<name>`: one candle op after another, then `w + u`) and
//! the same chain fused (`<name>_fused`: `Optimizer::new` runs it in place,
//! one pass per parameter, two for the trust ratios).
//!
//! Run with `cargo bench -p bigbatch-optim --bench update`; `compare_torch.py`
//! runs the fused rows beside `torch_optim.py` (the same shapes) and prints
//! the table in the crate's README. The
//! memory-bandwidth floor of an update is the bytes each optimizer must read
//! and write once (e.g. SGD: read g, w; write w), printed per optimizer before
//! the timings so the ratio can be read off directly.

#![allow(clippy::print_stderr)] // a benchmark's report

use std::hint::black_box;

use bigbatch_optim::{
    AdagradConfig, AdamConfig, Boxed, LambConfig, LarsConfig, Optimizer, Params, RmsConfig,
    Transform, Tree, adagrad, adam, adamw, boxed, lamb, lars, mask, momentum, rmsprop, sgd,
};
use candle_core::{DType, Device, Tensor, Var};
use criterion::{Criterion, criterion_group, criterion_main};

/// A parameter set: its name and `(tensor name, shape)` list.
type ShapeSet = (&'static str, Vec<(String, Vec<usize>)>);

/// A layer's `weight` and `bias` shapes under `prefix`.
fn layer(prefix: &str, weight: Vec<usize>) -> [(String, Vec<usize>); 2] {
    let out = weight[0];
    [
        (format!("{prefix}.weight"), weight),
        (format!("{prefix}.bias"), vec![out]),
    ]
}

/// The three parameter sets of the comparison, named as PyTorch names them
/// (`torch_optim.py` builds the same shapes): LeNet-5 (LeCun et al. 1998,
/// 61,706 parameters in 10 tensors), ResNet-20 for CIFAR-10 (He et al. 2016,
/// 272,474 in 65) and a 2048-4096-4096-10 MLP (25,214,986 in 6), the
/// size of ResNet-50 in three large tensors.
fn shape_sets() -> Vec<ShapeSet> {
    let lenet5 = [
        layer("conv1", vec![6, 1, 5, 5]),
        layer("conv2", vec![16, 6, 5, 5]),
        layer("fc1", vec![120, 400]),
        layer("fc2", vec![84, 120]),
        layer("fc3", vec![10, 84]),
    ]
    .into_iter()
    .flatten()
    .collect();
    let mut resnet20 = vec![("conv1.weight".to_string(), vec![16, 3, 3, 3])];
    resnet20.extend(layer("bn1", vec![16]));
    let mut inplanes = 16;
    for (stage, planes) in [16, 32, 64].into_iter().enumerate() {
        for block in 0..3 {
            let p = format!("layer{}.{block}", stage + 1);
            for (conv, cin) in [(1, inplanes), (2, planes)] {
                resnet20.push((format!("{p}.conv{conv}.weight"), vec![planes, cin, 3, 3]));
                resnet20.extend(layer(&format!("{p}.bn{conv}"), vec![planes]));
            }
            inplanes = planes;
        }
    }
    resnet20.extend(layer("fc", vec![10, 64]));
    let mlp = [
        layer("fc1", vec![4096, 2048]),
        layer("fc2", vec![4096, 4096]),
        layer("fc3", vec![10, 4096]),
    ]
    .into_iter()
    .flatten()
    .collect();
    vec![("lenet5", lenet5), ("resnet20", resnet20), ("mlp25m", mlp)]
}

fn random_tree(shapes: &[(String, Vec<usize>)], scale: f64, device: &Device) -> Tree {
    shapes
        .iter()
        .map(|(name, shape)| {
            let t = Tensor::randn(0f32, scale as f32, shape.as_slice(), device)
                .expect("randn")
                .to_dtype(DType::F32)
                .expect("dtype");
            (name.clone(), t)
        })
        .collect()
}

/// Builds an optimizer's chain (once for the composed rows, once for the fused).
type Make = Box<dyn Fn() -> Boxed>;

fn bench_updates(c: &mut Criterion) {
    for (set, shapes) in shape_sets() {
        bench_set(c, set, &shapes);
    }
}

fn bench_set(c: &mut Criterion, set: &str, shapes: &[(String, Vec<usize>)]) {
    let device = Device::Cpu;
    let params = random_tree(shapes, 0.05, &device);
    let grads = random_tree(shapes, 0.01, &device);
    let n = params.elem_count();
    let lars_cfg = LarsConfig {
        weight_decay: 5e-5,
        weight_decay_mask: mask::exclude_bias_and_norm(),
        trust_ratio_mask: mask::exclude_bias_and_norm(),
        ..LarsConfig::default()
    };
    let lamb_cfg = LambConfig {
        weight_decay: 0.01,
        weight_decay_mask: mask::exclude_bias_and_norm(),
        ..LambConfig::default()
    };
    // (name, chain, f32 tensors read + written once per update: the floor)
    let optimizers: [(&str, Make, usize); 8] = [
        ("sgd", Box::new(|| boxed(sgd(0.1))), 2 + 1),
        ("momentum", Box::new(|| boxed(momentum(0.1, 0.9))), 3 + 2),
        (
            "adagrad",
            Box::new(|| boxed(adagrad(0.01, AdagradConfig::default()))),
            3 + 2,
        ),
        (
            "rmsprop",
            Box::new(|| boxed(rmsprop(1e-3, RmsConfig::default(), 0.0))),
            3 + 2,
        ),
        (
            "adam",
            Box::new(|| boxed(adam(1e-3, AdamConfig::default()))),
            4 + 3,
        ),
        (
            "adamw",
            Box::new(|| boxed(adamw(1e-3, AdamConfig::default(), 0.01, mask::all()))),
            4 + 3,
        ),
        (
            "lars",
            Box::new(move || boxed(lars(0.1, lars_cfg.clone()))),
            3 + 2,
        ),
        (
            "lamb",
            Box::new(move || boxed(lamb(1e-3, lamb_cfg.clone()))),
            4 + 3,
        ),
    ];
    let mut group = c.benchmark_group(format!("update_{set}"));
    group.sample_size(10);
    for (name, make, tensors) in &optimizers {
        let floor_bytes = tensors * n * 4;
        // The minimal traffic, for the ratio against memory bandwidth.
        eprintln!(
            "{set} {name}: {n} parameters, floor {:.3} MB per update",
            floor_bytes as f64 / 1e6
        );
        group.throughput(criterion::Throughput::Bytes(floor_bytes as u64));
        let tx = make();
        let state = tx.init(&params).expect("init");
        group.bench_function(*name, |b| {
            b.iter(|| {
                let (u, s) = tx
                    .update(grads.clone(), state.clone(), &params)
                    .expect("update");
                // Apply, as a training step does: w + u.
                let p = params.zip_map(&u, |_, p, u| Ok((p + u)?)).expect("apply");
                black_box((p, s))
            })
        });
    }

    // The same chains fused: in place, one pass per parameter.
    let vars = Params::new(params.iter().map(|(name, t)| {
        let var = Var::from_tensor(t).expect("var");
        (name.to_owned(), var)
    }));
    for (name, make, tensors) in &optimizers {
        group.throughput(criterion::Throughput::Bytes((tensors * n * 4) as u64));
        let mut opt = Optimizer::new(make(), &vars).expect("optimizer");
        assert!(opt.is_fused(), "{name} runs in place");
        // Allocate the state outside the timing, as torch_optim.py does.
        opt.step(&vars, grads.clone()).expect("step");
        group.bench_function(format!("{name}_fused"), |b| {
            b.iter(|| opt.step(&vars, grads.clone()).expect("step"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_updates);
criterion_main!(benches);
