//! State save/load: n steps straight equal n/2 steps, save, load, n/2 steps, bit for bit.

use bigbatch_optim::{
    AdamConfig, Error, LambConfig, LarsConfig, Optimizer, Params, RmsConfig, Transform, adam, lamb,
    lars, mask, momentum, rmsprop, schedule::warmup_cosine_decay,
};
use candle_core::{DType, Device, Tensor, Var};

fn model() -> anyhow::Result<Params> {
    let d = Device::Cpu;
    let w: Vec<f32> = (0..12).map(|i| ((i as f32) * 0.9).sin()).collect();
    Ok(Params::new([
        (
            "fc.weight".to_string(),
            Var::from_tensor(&Tensor::from_vec(w, (3, 4), &d)?)?,
        ),
        (
            "fc.bias".to_string(),
            Var::new(&[0.1f32, -0.2, 0.3, 0.0], &d)?,
        ),
    ]))
}

fn loss(params: &Params) -> anyhow::Result<Tensor> {
    let x = Tensor::new(&[[1f32, -2., 0.5], [0.3, 0.8, -1.0]], &Device::Cpu)?;
    let w = params.get("fc.weight").expect("w").as_tensor();
    let b = params.get("fc.bias").expect("b").as_tensor();
    Ok(x.matmul(w)?
        .broadcast_add(b)?
        .tanh()?
        .sum_all()?
        .affine(1.0, 0.)?
        .sqr()?)
}

fn step(opt: &mut Optimizer, params: &Params) -> anyhow::Result<()> {
    let grads = params.grads(&loss(params)?.backward()?)?;
    opt.step(params, grads)?;
    Ok(())
}

fn bits(params: &Params) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for (_, v) in params.iter() {
        let flat = v.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        out.extend(flat.iter().map(|x| x.to_bits()));
    }
    Ok(out)
}

fn check_resume<T: Transform + 'static>(make: impl Fn() -> T, n: usize) -> anyhow::Result<()> {
    let straight = model()?;
    let mut opt = Optimizer::new(make(), &straight)?;
    for _ in 0..n {
        step(&mut opt, &straight)?;
    }

    let dir = tempfile::tempdir()?;
    let path = dir.path().join("opt.safetensors");
    let first = model()?;
    let mut opt = Optimizer::new(make(), &first)?;
    for _ in 0..n / 2 {
        step(&mut opt, &first)?;
    }
    opt.save(&path)?;
    let saved_params = first.tree();

    let resumed = model()?;
    resumed.assign(&saved_params)?;
    let mut opt = Optimizer::new(make(), &resumed)?;
    opt.load(&path)?;
    assert_eq!(opt.steps(), (n / 2) as u64);
    for _ in n / 2..n {
        step(&mut opt, &resumed)?;
    }
    assert_eq!(bits(&resumed)?, bits(&straight)?, "bit-identical resume");
    Ok(())
}

#[test]
fn resume_is_bit_identical() -> anyhow::Result<()> {
    let sched = || warmup_cosine_decay(0.0, 0.05, 3, 10, 0.001).expect("schedule");
    check_resume(|| momentum(sched(), 0.9), 10)?;
    check_resume(|| adam(sched(), AdamConfig::default()), 10)?;
    let centered = RmsConfig {
        centered: true,
        ..RmsConfig::default()
    };
    check_resume(|| rmsprop(sched(), centered, 0.5), 10)?;
    let lars_cfg = LarsConfig {
        weight_decay: 1e-3,
        eta: 0.01,
        weight_decay_mask: mask::exclude_bias_and_norm(),
        ..LarsConfig::default()
    };
    check_resume(|| lars(sched(), lars_cfg.clone()), 10)?;
    let lamb_cfg = LambConfig {
        weight_decay: 0.01,
        weight_decay_mask: mask::exclude_bias_and_norm(),
        ..LambConfig::default()
    };
    check_resume(|| lamb(sched(), lamb_cfg.clone()), 10)
}

#[test]
fn loading_a_mismatched_state_fails() -> anyhow::Result<()> {
    let params = model()?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("opt.safetensors");
    let mut opt = Optimizer::new(momentum(0.1, 0.9), &params)?;
    assert!(matches!(opt.load(&path), Err(Error::Io { .. })));
    step(&mut opt, &params)?;
    opt.save(&path)?;
    let mut other = Optimizer::new(adam(0.1, AdamConfig::default()), &params)?;
    assert!(matches!(
        other.load(&path),
        Err(Error::StateMismatch { .. })
    ));
    let small = Params::new([(
        "fc.weight".to_string(),
        Var::zeros((2, 2), DType::F32, &Device::Cpu)?,
    )]);
    let mut other = Optimizer::new(momentum(0.1, 0.9), &small)?;
    assert!(matches!(
        other.load(&path),
        Err(Error::StateMismatch { .. })
    ));
    Ok(())
}
