//! One optimizer update on a ResNet-50-sized parameter set (He et al. 2016,
//! torchvision `resnet50`: 161 tensors, 25,557,032 parameters, f32), side by
//! side: each optimizer's composed chain (`<name>`: one candle op after
//! another, then `w + u`) and the same chain fused (`<name>_fused`:
//! `Optimizer::new` runs it in place, one pass per parameter, two for the
//! trust ratios).
//!
//! Run with `cargo bench -p bigbatch-optim --bench update`; compare with
//! `python3 crates/optim/benches/torch_optim.py` in the same session. The
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

/// torchvision ResNet-50 parameter shapes, named as in its `state_dict`.
fn resnet50_shapes() -> Vec<(String, Vec<usize>)> {
    let mut shapes = vec![
        ("conv1.weight".to_string(), vec![64, 3, 7, 7]),
        ("bn1.weight".to_string(), vec![64]),
        ("bn1.bias".to_string(), vec![64]),
    ];
    let mut inplanes = 64;
    for (layer, (planes, blocks)) in [(64, 3), (128, 4), (256, 6), (512, 3)]
        .into_iter()
        .enumerate()
    {
        for block in 0..blocks {
            let p = format!("layer{}.{block}", layer + 1);
            let convs = [
                ("conv1", vec![planes, inplanes, 1, 1]),
                ("conv2", vec![planes, planes, 3, 3]),
                ("conv3", vec![planes * 4, planes, 1, 1]),
            ];
            for (i, (conv, shape)) in convs.into_iter().enumerate() {
                let out = shape[0];
                shapes.push((format!("{p}.{conv}.weight"), shape));
                shapes.push((format!("{p}.bn{}.weight", i + 1), vec![out]));
                shapes.push((format!("{p}.bn{}.bias", i + 1), vec![out]));
            }
            if block == 0 {
                shapes.push((
                    format!("{p}.downsample.0.weight"),
                    vec![planes * 4, inplanes, 1, 1],
                ));
                shapes.push((format!("{p}.downsample.1.weight"), vec![planes * 4]));
                shapes.push((format!("{p}.downsample.1.bias"), vec![planes * 4]));
            }
            inplanes = planes * 4;
        }
    }
    shapes.push(("fc.weight".to_string(), vec![1000, 2048]));
    shapes.push(("fc.bias".to_string(), vec![1000]));
    shapes
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
    let device = Device::Cpu;
    let shapes = resnet50_shapes();
    let params = random_tree(&shapes, 0.05, &device);
    let grads = random_tree(&shapes, 0.01, &device);
    let n = params.elem_count();
    assert_eq!(
        (shapes.len(), n),
        (161, 25_557_032),
        "ResNet-50 parameter count"
    );
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
    let mut group = c.benchmark_group("resnet50_update");
    group.sample_size(10);
    for (name, make, tensors) in &optimizers {
        let floor_bytes = tensors * n * 4;
        // The minimal traffic, for the ratio against memory bandwidth.
        eprintln!(
            "{name}: floor {:.1} MB per update",
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
