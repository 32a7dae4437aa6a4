//! Issue 8's harness: steps-to-target, divergence, gradient accumulation,
//! ghost batch norm, checkpoints, and sweeps that survive SIGKILL. Tiny
//! synthetic MNIST-format data, few steps.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bigbatch_bench::{
    Budget, Checkpointing, Error, EvalPoint, Metric, Model, Observer, OptimizerSpec, Status,
    StepBudget, SweepPlan, Target, TrainConfig, WorkloadExt, WorkloadKind, batch_norm, train,
    train_resumable, train_until,
};
use bigbatch_data::vision::cifar;
use bigbatch_data::{ImageClassification, ImageShape, Split, mnist};
use bigbatch_models::Norm;
use bigbatch_optim::{Accumulator, Params};
use bigbatch_spec::{
    DatasetName, Decay, Dimension, Length, Method, Param, ScheduleSpec, SearchSpace, Workload,
};
use candle_core::Device;

/// A tiny valid MNIST-format dataset (raw IDX) in `dir/mnist`.
fn write_tiny_mnist(dir: &Path, n: usize) -> Result<()> {
    let pixels: Vec<u8> = (0..n * 784).map(|i| ((i * 7) % 251) as u8).collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let data = ImageClassification::new(ImageShape::new(1, 28, 28), pixels, labels, 10)?;
    for split in [Split::Train, Split::Test] {
        mnist::write_idx(&dir.join("mnist"), split, &data, false)?;
    }
    Ok(())
}

/// The same digits as Fashion-MNIST, and `n` CIFAR-10 records per file in the
/// extracted binary layout (`cifar-10/cifar-10-batches-bin/*.bin`).
fn write_tiny_datasets(dir: &Path, n: usize) -> Result<()> {
    write_tiny_mnist(dir, n)?;
    let fashion = dir.join("fashion-mnist");
    std::fs::create_dir_all(&fashion)?;
    for entry in std::fs::read_dir(dir.join("mnist"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), fashion.join(entry.file_name()))?;
    }
    let cifar = dir.join("cifar-10/cifar-10-batches-bin");
    std::fs::create_dir_all(&cifar)?;
    for (f, name) in cifar::Variant::Cifar10
        .files(Split::Train)
        .iter()
        .chain(cifar::Variant::Cifar10.files(Split::Test))
        .enumerate()
    {
        let records: Vec<u8> = (0..n)
            .flat_map(|r| {
                std::iter::once((r % 10) as u8)
                    .chain((0..3072).map(move |p| ((p * 13 + r * 7 + f * 31) % 256) as u8))
            })
            .collect();
        std::fs::write(cifar.join(name), records)?;
    }
    Ok(())
}

fn point(step: u64, test_accuracy: f64) -> EvalPoint {
    EvalPoint {
        step,
        epoch: 0.0,
        examples: step * 8,
        train_loss: 1.0,
        test_loss: Some(1.0),
        test_accuracy: Some(test_accuracy),
        validation_loss: None,
        validation_accuracy: None,
        b_simple: None,
        b_simple_smoothed: None,
    }
}

#[test]
fn steps_to_target_is_the_first_evaluation_meeting_it() {
    // A known curve: accuracy 1 − 0.5/√step, evaluated every 10 steps.
    let curve: Vec<EvalPoint> = (1..=20)
        .map(|i| point(10 * i, 1.0 - 0.5 / (10.0 * i as f64).sqrt()))
        .collect();
    // 1 − 0.5/√s ≥ 0.9 ⇔ s ≥ 25: the first evaluation at or after is step 30.
    let acc = Target {
        metric: Metric::TestAccuracy,
        threshold: 0.9,
    };
    assert_eq!(acc.steps_to_target(&curve), Some(30));
    // Error ≤ 0.0501 ⇔ s ≥ 99.6 (0.05 itself is lost to rounding in 1 − acc).
    let err = Target {
        metric: Metric::TestError,
        threshold: 0.0501,
    };
    assert_eq!(err.steps_to_target(&curve), Some(100));
    let never = Target {
        metric: Metric::TestAccuracy,
        threshold: 0.99,
    };
    assert_eq!(never.steps_to_target(&curve), None);
}

#[test]
fn training_stops_at_the_target_and_records_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 20)?;
    let data = WorkloadKind::MnistLenet5.load_data(dir.path())?;
    let device = Device::Cpu;
    let model = WorkloadKind::MnistLenet5.build_model(0, Norm::Batch, &device)?;
    let mut cfg = TrainConfig::new(
        4,
        Budget::Steps(6),
        OptimizerSpec::new(Method::Sgd).with_learning_rate(0.01),
    );
    cfg.eval_every_steps = 2;
    // Accuracy ≥ 0 holds at the first evaluation.
    cfg.target = Some(Target {
        metric: Metric::TestAccuracy,
        threshold: 0.0,
    });
    let out = train(&model, &data, &cfg, &device, &mut ())?;
    assert_eq!(out.status, Status::ReachedTarget { step: 2 });
    assert_eq!(out.steps_to_target, Some(2));
    assert_eq!(out.curve.len(), 1);
    Ok(())
}

#[test]
fn a_pruned_run_is_the_full_run_up_to_its_cap() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 20)?;
    let data = WorkloadKind::MnistLenet5.load_data(dir.path())?;
    let device = Device::Cpu;
    let mut cfg = TrainConfig::new(
        4,
        Budget::Steps(8),
        OptimizerSpec::new(Method::Momentum { momentum: 0.9 }).with_learning_rate(0.05),
    );
    // A schedule over the whole budget: pruning must not shorten it.
    cfg.schedule = ScheduleSpec::new(
        None,
        Decay::Linear {
            final_fraction: 0.0,
            length: None,
        },
    );
    cfg.eval_every_steps = 1;
    let run = |stop_after| -> Result<(bigbatch_bench::Outcome, Vec<f32>)> {
        let model = WorkloadKind::MnistLenet5.build_model(0, Norm::Batch, &device)?;
        let out = train_until(&model, &data, &cfg, &device, &mut (), None, stop_after)?;
        Ok((out, parameters(&model)?))
    };
    let (full, _) = run(None)?;
    let (pruned, weights_at_5) = run(Some(5))?;
    assert_eq!(full.status, Status::Completed);
    assert_eq!(pruned.status, Status::Pruned { step: 5 });
    assert_eq!(pruned.curve.as_slice(), &full.curve[..5]);
    let (_, weights_full_5) = {
        let mut short = cfg.clone();
        short.budget = Budget::Steps(5);
        let model = WorkloadKind::MnistLenet5.build_model(0, Norm::Batch, &device)?;
        let out = train(&model, &data, &short, &device, &mut ())?;
        (out, parameters(&model)?)
    };
    // A 5-step budget decays the learning rate faster: different weights,
    // so the cap is not a shorter budget.
    assert_ne!(weights_at_5, weights_full_5);
    Ok(())
}

#[test]
fn a_validation_split_is_evaluated_throughout_and_the_test_split_once() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 40)?;
    let data = WorkloadKind::MnistLenet5.load_data(dir.path())?;
    let device = Device::Cpu;
    let model = WorkloadKind::MnistLenet5.build_model(0, Norm::Batch, &device)?;
    let mut cfg = TrainConfig::new(
        4,
        Budget::Steps(12),
        OptimizerSpec::new(Method::Sgd).with_learning_rate(0.01),
    );
    cfg.validation_examples = Some(10);
    cfg.eval_every_steps = 4;
    cfg.eval_growth = Some(2.0);
    cfg.target = Some(Target {
        metric: Metric::ValidationAccuracy,
        threshold: 1.0,
    });
    // 30 examples left for training: 7 steps per epoch.
    assert_eq!(cfg.steps_per_epoch(data.train.len()), 7);
    let out = train(&model, &data, &cfg, &device, &mut ())?;
    let steps: Vec<u64> = out.curve.iter().map(|p| p.step).collect();
    // Growth 2 from step 1, gaps of at most 4: 1, 2, 4, 8, 12 (the last step).
    assert_eq!(steps, [1, 2, 4, 8, 12]);
    for p in &out.curve {
        let v = p.validation_accuracy.context("validation not measured")?;
        // 10 validation examples: accuracy in tenths.
        assert!(((v * 10.0) - (v * 10.0).round()).abs() < 1e-9, "{v}");
    }
    let (last, before) = out.curve.split_last().context("no evaluation")?;
    assert!(last.test_accuracy.is_some() && last.test_loss.is_some());
    assert!(before.iter().all(|p| p.test_accuracy.is_none()));
    // A test-split target with a validation split, or the reverse, is refused.
    cfg.target = Some(Target {
        metric: Metric::TestAccuracy,
        threshold: 0.5,
    });
    let err = train(&model, &data, &cfg, &device, &mut ()).expect_err("test target accepted");
    assert!(err.to_string().contains("target.metric"), "{err}");
    cfg.validation_examples = Some(40);
    cfg.target = None;
    let err = train(&model, &data, &cfg, &device, &mut ()).expect_err("no examples left");
    assert!(err.to_string().contains("validation_examples"), "{err}");
    Ok(())
}

#[test]
fn a_huge_learning_rate_is_recorded_as_diverged() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 20)?;
    let data = WorkloadKind::MnistLenet5.load_data(dir.path())?;
    let device = Device::Cpu;
    let model = WorkloadKind::MnistLenet5.build_model(0, Norm::Batch, &device)?;
    let mut cfg = TrainConfig::new(
        4,
        Budget::Steps(20),
        OptimizerSpec::new(Method::Momentum { momentum: 0.9 }).with_learning_rate(1e6),
    );
    cfg.eval_every_steps = 10;
    let out = train(&model, &data, &cfg, &device, &mut ())?;
    assert!(
        matches!(out.status, Status::Diverged { step } if step < 20),
        "{:?}",
        out.status
    );
    assert_eq!(out.steps_to_target, None);
    Ok(())
}

#[test]
fn accumulating_micro_batches_equals_the_big_batch() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 20)?;
    let data = WorkloadKind::MnistLenet5.load_data(dir.path())?;
    let device = Device::Cpu;
    let model = WorkloadKind::MnistLenet5.build_model(3, Norm::Batch, &device)?;
    let params = Params::new(model.vars.vars());
    let (mut inputs, mut labels) = (Vec::new(), Vec::new());
    let grads_of = |idx: &[usize], inputs: &mut Vec<f32>, labels: &mut Vec<u32>| -> Result<_> {
        data.train
            .batch_into(idx, &data.normalization, inputs, labels);
        let xs = candle_core::Tensor::from_slice(inputs, (idx.len(), 1, 28, 28), &device)?;
        let ys = candle_core::Tensor::from_slice(labels, idx.len(), &device)?;
        let loss = candle_nn::loss::cross_entropy(&model.net.forward(&xs, true)?, &ys)?;
        Ok(params.grads(&loss.backward()?)?)
    };
    let batch: Vec<usize> = (0..12).collect();
    let big = grads_of(&batch, &mut inputs, &mut labels)?;
    let mut acc = Accumulator::new();
    // Uneven micro-batches: 5 + 5 + 2.
    for chunk in batch.chunks(5) {
        acc.add(&grads_of(chunk, &mut inputs, &mut labels)?, chunk.len())?;
    }
    let small = acc.take()?;
    for (name, g) in big.iter() {
        let a = g.flatten_all()?.to_vec1::<f32>()?;
        let b = small
            .get(name)
            .context(name.to_owned())?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() <= 1e-5 + 1e-4 * x.abs(), "{name}: {x} vs {y}");
        }
    }

    // And through the loop: one step of batch 12 with micro-batches of 5 trains
    // like the plain batch of 12.
    let run = |micro: Option<usize>| -> Result<Vec<f32>> {
        let model = WorkloadKind::MnistLenet5.build_model(3, Norm::Batch, &device)?;
        let mut cfg = TrainConfig::new(
            12,
            Budget::Steps(2),
            OptimizerSpec::new(Method::Sgd).with_learning_rate(0.1),
        );
        cfg.micro_batch_size = micro;
        train(&model, &data, &cfg, &device, &mut ())?;
        let vars = model.vars.vars();
        let (_, w) = vars.first().context("no vars")?;
        Ok(w.as_tensor().flatten_all()?.to_vec1::<f32>()?)
    };
    let (plain, accumulated) = (run(None)?, run(Some(5))?);
    for (x, y) in plain.iter().zip(&accumulated) {
        assert!((x - y).abs() <= 1e-5 + 1e-4 * x.abs(), "{x} vs {y}");
    }
    Ok(())
}

#[test]
fn noise_scale_is_tracked_from_micro_batches() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 20)?;
    let data = WorkloadKind::MnistLenet5.load_data(dir.path())?;
    let device = Device::Cpu;
    let model = WorkloadKind::MnistLenet5.build_model(0, Norm::Batch, &device)?;
    let mut cfg = TrainConfig::new(
        8,
        Budget::Steps(2),
        OptimizerSpec::new(Method::Sgd).with_learning_rate(0.01),
    );
    cfg.micro_batch_size = Some(4);
    cfg.track_noise_scale = true;
    let out = train(&model, &data, &cfg, &device, &mut ())?;
    let last = out.curve.last().context("no eval")?;
    assert!(last.b_simple.is_some() && last.b_simple_smoothed.is_some());
    Ok(())
}

#[test]
fn every_workload_loads_its_dataset_and_trains() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_datasets(dir.path(), 8)?;
    let device = Device::Cpu;
    for kind in WorkloadKind::ALL {
        let workload = kind.workload();
        let data = kind.load_data(dir.path())?;
        // MNIST and Fashion-MNIST: four files; CIFAR-10: five train batches
        // and the test batch.
        let files = if workload.dataset == DatasetName::Cifar10 {
            6
        } else {
            4
        };
        assert_eq!(data.digests.len(), files, "{kind:?}");
        let channels = if workload.dataset == DatasetName::Cifar10 {
            3
        } else {
            1
        };
        assert_eq!(data.train.shape().channels, channels, "{kind:?}");
        let mut cfg = TrainConfig::new(
            8,
            Budget::Steps(2),
            OptimizerSpec::new(Method::Sgd).with_learning_rate(0.01),
        );
        cfg.target = Some(workload.target);
        cfg.ghost_batch_size = kind.has_batch_norm().then_some(4);
        let model = kind.build_model(0, batch_norm(&cfg), &device)?;
        assert_eq!(
            model.batch_norm.is_some(),
            kind.has_batch_norm(),
            "{kind:?}"
        );
        let out = train(&model, &data, &cfg, &device, &mut ())?;
        assert!(
            matches!(out.status, Status::Completed),
            "{kind:?}: {:?}",
            out.status
        );
        let last = out.curve.last().context("no evaluation")?;
        assert!(
            last.train_loss.is_finite() && last.test_loss.is_some_and(f64::is_finite),
            "{kind:?}"
        );
    }
    // Every workload is in the catalogue, with the published target.
    let catalogue = Workload::catalogue();
    assert_eq!(catalogue.len(), WorkloadKind::ALL.len());
    let resnet8 = WorkloadKind::Cifar10Resnet8.workload();
    assert_eq!(
        (resnet8.target.metric, resnet8.target.threshold),
        (Metric::TestError, 0.30)
    );
    Ok(())
}

/// Panics at a step, as a killed process would stop there.
struct CrashAt(u64);

impl Observer for CrashAt {
    fn stepped(&mut self, step: u64, _loss: f64) {
        assert!(step < self.0, "simulated crash at step {step}");
    }
}

fn weights(model: &Model) -> Result<Vec<(String, Vec<f32>)>> {
    model
        .vars
        .state()
        .into_iter()
        .map(|(name, v)| Ok((name, v.as_tensor().flatten_all()?.to_vec1::<f32>()?)))
        .collect()
}

fn parameters(model: &Model) -> Result<Vec<f32>> {
    let mut all = Vec::new();
    for (_, v) in model.vars.vars() {
        all.extend(v.as_tensor().flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(all)
}

fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn ghost_batch_norm_is_chosen_in_the_config_and_behaves_as_defined() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 32)?;
    let workload = WorkloadKind::MnistKeskarF1;
    let data = workload.load_data(dir.path())?;
    let device = Device::Cpu;
    let run = |ghost: Option<usize>, micro: Option<usize>| -> Result<(Vec<EvalPoint>, Vec<f32>)> {
        // Two steps at a small rate: rounding differences between the two
        // summation orders grow fast through five batch norms of 4 examples
        // (at rate 0.05 they reach 1% by step 4), so the comparison is kept
        // to where they are still rounding-sized.
        let mut cfg = TrainConfig::new(
            8,
            Budget::Steps(2),
            OptimizerSpec::new(Method::Momentum { momentum: 0.9 }).with_learning_rate(0.02),
        );
        cfg.eval_every_steps = 1;
        cfg.ghost_batch_size = ghost;
        cfg.micro_batch_size = micro;
        let model = workload.build_model(2, batch_norm(&cfg), &device)?;
        let out = train(&model, &data, &cfg, &device, &mut ())?;
        Ok((out.curve, parameters(&model)?))
    };
    // One virtual batch per batch is ordinary batch norm, bit for bit.
    let ordinary = run(None, None)?;
    assert_eq!(run(Some(8), None)?, ordinary);

    // Virtual batches of 4: each normalised alone, so the batch's loss and
    // gradient are the means of its two halves', exactly what accumulating
    // micro-batches of 4 computes (up to summation order). The running
    // statistics, hence test losses, are averaged differently: not compared.
    let (ghost_curve, ghost_weights) = run(Some(4), None)?;
    let (micro_curve, micro_weights) = run(None, Some(4))?;
    assert!(max_rel_diff(&ghost_weights, &micro_weights) < 1e-5);
    for (g, m) in ghost_curve.iter().zip(&micro_curve) {
        assert!((g.train_loss - m.train_loss).abs() < 1e-5 * m.train_loss);
    }
    // ... and not what the whole batch's statistics give.
    assert!(max_rel_diff(&ghost_weights, &ordinary.1) > 1e-3);

    // A model built for other statistics, or a ghost size for a model without
    // batch norm, is refused.
    let mut cfg = TrainConfig::new(
        8,
        Budget::Steps(1),
        OptimizerSpec::new(Method::Sgd).with_learning_rate(0.1),
    );
    cfg.ghost_batch_size = Some(4);
    let plain = workload.build_model(2, Norm::Batch, &device)?;
    let err = train(&plain, &data, &cfg, &device, &mut ()).expect_err("mismatched batch norm");
    assert!(matches!(err, Error::BatchNormMismatch { .. }), "{err}");
    assert!(matches!(
        WorkloadKind::MnistLenet5.build_model(0, batch_norm(&cfg), &device),
        Err(Error::Model(bigbatch_models::Error::InvalidConfig { .. }))
    ));
    Ok(())
}

#[test]
fn a_run_resumed_from_its_checkpoint_matches_the_uninterrupted_run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 20)?;
    let data = WorkloadKind::MnistLenet5.load_data(dir.path())?;
    let device = Device::Cpu;
    // 2 steps per epoch: the checkpoint at step 3 lies inside epoch 1.
    let mut cfg = TrainConfig::new(
        8,
        Budget::Steps(7),
        OptimizerSpec::new(Method::Momentum { momentum: 0.9 }).with_learning_rate(0.05),
    );
    cfg.eval_every_steps = 2;
    cfg.micro_batch_size = Some(4);
    cfg.track_noise_scale = true;
    cfg.label_smoothing = 0.1;
    cfg.schedule = ScheduleSpec::new(
        None,
        Decay::Linear {
            final_fraction: 0.1,
            length: Some(Length::Fraction(1.0)),
        },
    );
    let straight_model = WorkloadKind::MnistLenet5.build_model(5, Norm::Batch, &device)?;
    let straight = train(&straight_model, &data, &cfg, &device, &mut ())?;
    assert_eq!(straight.noise_scale.len(), 7);

    let ckpt = Checkpointing {
        path: dir.path().join("ck/run.safetensors"),
        every_steps: 3,
    };
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let model = WorkloadKind::MnistLenet5.build_model(5, Norm::Batch, &device)?;
        train_resumable(&model, &data, &cfg, &device, &mut CrashAt(5), Some(&ckpt))
    }));
    assert!(crashed.is_err(), "the run did not stop at step 5");
    assert!(ckpt.path.exists());

    // Another seed's initialisation: every weight must come from the checkpoint.
    let resumed_model = WorkloadKind::MnistLenet5.build_model(99, Norm::Batch, &device)?;
    let resumed = train_resumable(&resumed_model, &data, &cfg, &device, &mut (), Some(&ckpt))?;
    assert_eq!(resumed.status, straight.status);
    assert_eq!(resumed.curve, straight.curve);
    assert_eq!(resumed.noise_scale, straight.noise_scale);
    assert_eq!(weights(&resumed_model)?, weights(&straight_model)?);

    // A checkpoint of another configuration is refused, naming the file.
    let mut other = cfg.clone();
    other.seed = 1;
    let model = WorkloadKind::MnistLenet5.build_model(1, Norm::Batch, &device)?;
    let err = train_resumable(&model, &data, &other, &device, &mut (), Some(&ckpt))
        .err()
        .context("resumed another run's checkpoint")?;
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("run.safetensors"), "{err}");
    Ok(())
}

#[test]
fn a_corrupt_checkpoint_is_refused_naming_the_tensor_and_kept() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 20)?;
    let data = WorkloadKind::MnistLenet5.load_data(dir.path())?;
    let device = Device::Cpu;
    let mut cfg = TrainConfig::new(8, Budget::Steps(7), OptimizerSpec::default());
    cfg.eval_every_steps = 2;
    let ckpt = Checkpointing {
        path: dir.path().join("run.safetensors"),
        every_steps: 3,
    };
    let crashed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let model = WorkloadKind::MnistLenet5.build_model(5, Norm::Batch, &device)?;
        train_resumable(&model, &data, &cfg, &device, &mut CrashAt(5), Some(&ckpt))
    }));
    assert!(crashed.is_err() && ckpt.path.exists());
    let saved = candle_core::safetensors::load(&ckpt.path, &device)?;
    let resume = || {
        let model = WorkloadKind::MnistLenet5.build_model(5, Norm::Batch, &device)?;
        train_resumable(&model, &data, &cfg, &device, &mut (), Some(&ckpt))
    };
    // One weight set to infinity, everything else (the checksums too) as saved.
    let mut tampered = saved.clone();
    let w = &tampered["model/fc1.weight"];
    let mut values = w.flatten_all()?.to_vec1::<f32>()?;
    values[0] = f32::INFINITY;
    let w = candle_core::Tensor::from_vec(values, w.dims(), &device)?;
    tampered.insert("model/fc1.weight".into(), w);
    candle_core::safetensors::save(&tampered, &ckpt.path)?;
    let err = resume().err().context("resumed a tampered checkpoint")?;
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("model/fc1.weight"), "{err}");
    assert!(ckpt.path.exists(), "the error path deleted the checkpoint");
    // A checkpoint without checksums (an older bigbatch's) is refused too.
    let mut unsummed = saved.clone();
    unsummed.remove("checksum.sha256");
    candle_core::safetensors::save(&unsummed, &ckpt.path)?;
    let err = resume().err().context("resumed without checksums")?;
    assert!(err.to_string().contains("checksum.sha256"), "{err}");
    // The checkpoint as saved resumes.
    candle_core::safetensors::save(&saved, &ckpt.path)?;
    assert_eq!(resume()?.status, Status::Completed);
    Ok(())
}

fn tiny_plan() -> SweepPlan {
    SweepPlan {
        workload: WorkloadKind::MnistLenet5,
        batch_sizes: vec![2, 4, 8, 64],
        trials_per_batch_size: 2,
        optimizer: OptimizerSpec::default(),
        schedule: ScheduleSpec::default(),
        label_smoothing: 0.0,
        search: SearchSpace {
            dimensions: vec![
                Dimension::log(Param::LearningRate, 1e-3, 1e-1),
                Dimension::log(Param::OneMinusMomentum, 0.05, 0.5),
            ],
        },
        search_seed: 1,
        seed: 0,
        budget: StepBudget {
            examples: 16,
            min_steps: 2,
            max_steps: 4,
        },
        target: Target {
            metric: Metric::TestAccuracy,
            threshold: 0.0,
        },
        evals_per_trial: 2,
        eval_growth: None,
        validation_examples: None,
        eval_batch_size: 20,
        micro_batch_size: None,
        ghost_batch_size: None,
        checkpoint_every_steps: Some(1),
        prune: false,
        refine: None,
        seeds: Vec::new(),
    }
}

fn sweep(dir: &Path, jobs: usize) -> Command {
    sweep_on(dir, dir, jobs)
}

/// `bigbatch sweep` of `dir/plan-in.json` into `dir/sweep` on the data in `data`.
fn sweep_on(dir: &Path, data: &Path, jobs: usize) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_bigbatch"));
    cmd.arg("sweep")
        .arg("--plan")
        .arg(dir.join("plan-in.json"))
        .arg("--dir")
        .arg(dir.join("sweep"))
        .arg("--data-dir")
        .arg(data)
        .args(["--jobs", &jobs.to_string(), "--threads", "1"])
        .env("RUST_LOG", "warn");
    cmd
}

fn results(dir: &Path) -> Result<Vec<(String, Vec<u8>, std::time::SystemTime)>> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir.join("sweep/results")) else {
        return Ok(out);
    };
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") {
            out.push((name, std::fs::read(e.path())?, e.metadata()?.modified()?));
        }
    }
    out.sort();
    Ok(out)
}

#[test]
fn a_killed_sweep_resumes_without_losing_or_rerunning_finished_trials() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 20)?;
    std::fs::write(
        dir.path().join("plan-in.json"),
        serde_json::to_vec(&tiny_plan())?,
    )?;
    // Batch 64 exceeds the 20 examples: 3 batch sizes × 2 points = 6 trials.
    let mut child = sweep(dir.path(), 1).spawn()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while results(dir.path())?.is_empty() {
        assert!(Instant::now() < deadline, "no trial finished in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill()?; // SIGKILL
    child.wait()?;
    let before = results(dir.path())?;
    assert!(!before.is_empty());

    let out = sweep(dir.path(), 2).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = results(dir.path())?;
    assert_eq!(after.len(), 6);
    for b in &before {
        let a = after.iter().find(|a| a.0 == b.0).context("lost a result")?;
        assert_eq!(a, b, "a finished trial was rewritten");
    }
    let attempts = std::fs::read_to_string(dir.path().join("sweep/attempts.log"))?;
    for (name, _, _) in &before {
        let id = name.trim_end_matches(".json");
        assert_eq!(
            attempts.lines().filter(|l| *l == id).count(),
            1,
            "finished trial {id} ran again"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("sweep/summary.json"))?)?;
    assert_eq!(summary["trials_planned"], 6);
    assert_eq!(summary["batch_sizes"].as_array().map(Vec::len), Some(3));
    assert!(summary["plan"]["search"]["dimensions"][0]["low"].is_number());

    // Finished trials leave no checkpoint behind.
    let leftover = std::fs::read_dir(dir.path().join("sweep/checkpoints"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftover, 0, "checkpoints of finished trials remain");

    // A third run finds nothing to do.
    let out = sweep(dir.path(), 2).output()?;
    assert!(out.status.success());
    assert_eq!(results(dir.path())?, after);
    Ok(())
}

#[test]
fn a_result_is_reused_only_for_the_same_data() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // Two data sets the trial specs cannot tell apart: 20 and 24 examples.
    write_tiny_mnist(&dir.path().join("a"), 20)?;
    write_tiny_mnist(&dir.path().join("b"), 24)?;
    std::fs::write(
        dir.path().join("plan-in.json"),
        serde_json::to_vec(&tiny_plan())?,
    )?;
    let run = |data: &str| -> Result<String> {
        let out = sweep_on(dir.path(), &dir.path().join(data), 2)
            .env("RUST_LOG", "info")
            .output()?;
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        anyhow::ensure!(out.status.success(), "{stderr}");
        Ok(stderr)
    };
    run("a")?;
    let first = results(dir.path())?;
    assert_eq!(first.len(), 6);
    let log = run("b")?;
    assert_eq!(
        log.matches("data changed: train-images-idx3-ubyte").count(),
        6,
        "{log}"
    );
    let second = results(dir.path())?;
    assert_eq!(second.len(), 6);
    let attempts = std::fs::read_to_string(dir.path().join("sweep/attempts.log"))?;
    for (name, bytes, _) in &first {
        let id = name.trim_end_matches(".json");
        assert_eq!(
            attempts.lines().filter(|l| *l == id).count(),
            2,
            "{id} not rerun"
        );
        // The first data set's result is kept, unchanged, beside the sweep.
        let kept = std::fs::read(dir.path().join(format!("sweep/stale/{id}.0.json")))?;
        assert_eq!(&kept, bytes);
    }
    // The same data again: nothing reruns.
    let log = run("b")?;
    assert!(!log.contains("rerunning"), "{log}");
    assert_eq!(results(dir.path())?, second);
    Ok(())
}

#[test]
fn a_sweep_refines_edges_prunes_and_reruns_its_best_with_more_seeds() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 20)?;
    let mut plan = tiny_plan();
    plan.batch_sizes = vec![2, 4];
    plan.trials_per_batch_size = 3;
    plan.checkpoint_every_steps = None;
    plan.validation_examples = Some(4);
    plan.eval_growth = Some(1.5);
    plan.target = Target {
        metric: Metric::ValidationAccuracy,
        threshold: 0.0,
    };
    plan.prune = true;
    // A margin of 0.45: every best outside the middle tenth is "at an edge".
    plan.refine = Some(bigbatch_spec::Refine {
        rounds: 1,
        trials: 2,
        margin: 0.45,
    });
    plan.seeds = vec![0, 7];
    std::fs::write(dir.path().join("plan-in.json"), serde_json::to_vec(&plan)?)?;
    let out = sweep(dir.path(), 2).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: bigbatch_bench::SweepSummary =
        bigbatch_bench::read_json(&dir.path().join("sweep/summary.json"))?;
    assert_eq!(summary.batch_sizes.len(), 2);
    for b in &summary.batch_sizes {
        let best = b.best.as_ref().context("no best")?;
        // Every trial meets accuracy ≥ 0 at its first evaluation, step 1.
        assert_eq!((best.steps, best.previous_eval), (1, 0));
        assert!(best.test_accuracy.is_some());
        // Seed 0 is the plan's own: only seed 7 runs again.
        assert_eq!(b.seeds.len(), 1);
        assert_eq!((b.seeds[0].seed, b.seeds[0].steps), (7, Some(1)));
        // Round 2 ran where round 1's best sat at an edge, and its space moved.
        if b.rounds == 2 {
            assert_eq!(b.trials, 5);
            assert_ne!(b.search.as_ref(), Some(&plan.search));
        } else {
            assert_eq!(b.trials, 3);
        }
        assert_eq!(b.reached + b.pruned + b.diverged, b.trials);
    }
    assert!(summary.batch_sizes.iter().any(|b| b.rounds == 2));
    // Every trial, refined and seeded ones too, ran once; a rerun runs none.
    let attempts = || std::fs::read_to_string(dir.path().join("sweep/attempts.log"));
    let before = attempts()?;
    let trials: usize = summary
        .batch_sizes
        .iter()
        .map(|b| b.trials + b.seeds.len())
        .sum();
    assert_eq!(before.lines().count(), trials);
    let out = sweep(dir.path(), 2).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(attempts()?, before);
    Ok(())
}

#[test]
fn emit_slurm_writes_a_job_array_over_the_same_trials() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_tiny_mnist(dir.path(), 20)?;
    std::fs::write(
        dir.path().join("plan-in.json"),
        serde_json::to_vec(&tiny_plan())?,
    )?;
    let out = sweep(dir.path(), 1).args(["--emit", "slurm"]).output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let script = std::fs::read_to_string(dir.path().join("sweep/sweep.slurm"))?;
    assert!(script.contains("#SBATCH --array=0-5"), "{script}");
    assert!(script.contains("trial --quiet"));
    assert!(
        script.contains("/checkpoints/$ID.safetensors --checkpoint-every 1"),
        "{script}"
    );
    let index = std::fs::read_to_string(dir.path().join("sweep/trials/index.txt"))?;
    assert_eq!(index.lines().count(), 6);
    assert!(results(dir.path())?.is_empty());
    Ok(())
}
