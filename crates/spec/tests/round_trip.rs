//! Every spec variant survives JSON and TOML unchanged, and bad input is
//! refused with the field or key named.

use bigbatch_spec::{
    Budget, Decay, Dimension, Length, MaskSpec, Method, ModelKind, OptimizerSpec, Param, ParamKind,
    RunSpec, ScheduleSpec, SearchSpace, TrainConfig, TrustRatioSpec, WorkloadKind,
};
use serde::{Serialize, de::DeserializeOwned};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(value: &T) {
    let json = serde_json::to_string(value).expect("json");
    assert_eq!(
        &serde_json::from_str::<T>(&json).expect("from json"),
        value,
        "{json}"
    );
    let toml = toml::to_string(value).expect("toml");
    assert_eq!(
        &toml::from_str::<T>(&toml).expect("from toml"),
        value,
        "{toml}"
    );
}

/// Every optimizer, plain, layer-wise, bounded, with decay masks and clipping.
fn optimizers() -> Vec<OptimizerSpec> {
    let mut out = Vec::new();
    for name in Method::NAMES {
        let plain = OptimizerSpec::new(Method::named(name).expect("name"));
        out.push(plain.clone());
        out.push(OptimizerSpec {
            trust_ratio: Some(TrustRatioSpec::default()),
            ..plain.clone()
        });
        out.push(OptimizerSpec {
            learning_rate: 0.3,
            weight_decay: 1e-4,
            weight_decay_mask: MaskSpec::weights_only(),
            trust_ratio: Some(TrustRatioSpec {
                bounds: Some([0.01, 10.0]),
                eps: 1e-9,
            }),
            trust_ratio_mask: MaskSpec {
                exclude_kinds: vec![ParamKind::Bias],
                exclude_names: vec!["fc*.weight".into()],
            },
            clip_global_norm: Some(1.0),
            ..plain
        });
    }
    out
}

fn schedules() -> Vec<ScheduleSpec> {
    let decays = [
        Decay::Constant,
        Decay::Linear {
            final_fraction: 0.01,
            length: Some(Length::Fraction(0.75)),
        },
        Decay::Polynomial {
            power: 2.0,
            final_fraction: 0.0,
            length: None,
        },
        Decay::Cosine {
            final_fraction: 0.0,
            length: Some(Length::Epochs(80.0)),
        },
        Decay::Piecewise {
            boundaries: vec![Length::Epochs(30.0), Length::Steps(6000)],
            values: vec![1.0, 0.1, 0.01],
        },
        Decay::Cyclical {
            min_fraction: 0.1,
            cycle: Length::Steps(200),
        },
        Decay::CosineRestarts {
            final_fraction: 0.0,
            first_period: Length::Epochs(10.0),
            period_mult: 2,
        },
    ];
    decays
        .into_iter()
        .flat_map(|d| {
            [
                ScheduleSpec::new(None, d.clone()),
                ScheduleSpec::new(Some(Length::Epochs(5.0)), d),
            ]
        })
        .collect()
}

#[test]
fn every_optimizer_and_schedule_round_trips() {
    let optimizers = optimizers();
    assert_eq!(optimizers.len(), 27);
    for o in &optimizers {
        round_trip(o);
    }
    for s in schedules() {
        round_trip(&s);
    }
}

#[test]
fn run_specs_with_every_field_round_trip() {
    for (o, s) in optimizers()
        .into_iter()
        .zip(schedules().into_iter().cycle())
    {
        let mut train = TrainConfig::new(256, Budget::Epochs(30), o);
        train.schedule = s;
        train.label_smoothing = 0.1;
        train.micro_batch_size = Some(64);
        let spec = RunSpec {
            workload: WorkloadKind::MnistLenet5,
            model: Some(ModelKind::TpuMnist),
            train,
            search_index: Some(3),
        };
        round_trip(&spec);
    }
    round_trip(&SearchSpace {
        dimensions: vec![
            Dimension::log(Param::OneMinusB2, 1e-4, 0.1),
            Dimension::linear(Param::WarmupEpochs, 0.0, 5.0),
        ],
    });
}

#[test]
fn a_config_file_states_only_what_it_changes() {
    let cfg: TrainConfig = toml::from_str(
        r#"
        batch_size = 8192
        label_smoothing = 0.1
        [optimizer]
        name = "lamb"
        learning_rate = 0.02
        weight_decay = 0.01
        weight_decay_mask = { exclude_kinds = ["bias", "norm-scale", "norm-shift"] }
        trust_ratio = { bounds = [0.01, 10] }
        [schedule]
        warmup = { epochs = 5 }
        decay = { kind = "polynomial", power = 2 }
        "#,
    )
    .expect("parses");
    assert_eq!(cfg.batch_size, 8192);
    assert_eq!(cfg.budget, Budget::Epochs(10));
    assert_eq!(
        cfg.optimizer.method,
        Method::Lamb {
            b1: 0.9,
            b2: 0.999,
            eps: 1e-6
        }
    );
    assert_eq!(
        cfg.optimizer.weight_decay_mask.exclude_kinds,
        [ParamKind::Bias, ParamKind::NormScale, ParamKind::NormShift]
    );
    assert_eq!(
        cfg.schedule.decay,
        Decay::Polynomial {
            power: 2.0,
            final_fraction: 0.0,
            length: None
        }
    );
    cfg.validate().expect("valid");
}

#[test]
fn unknown_keys_and_names_are_named_in_the_error() {
    let cases = [
        (r#"batch_sise = 3"#, "batch_sise"),
        ("[optimizer]\nname = \"adamax\"", "adamax"),
        (
            "[optimizer]\nname = \"adam\"\nmomentum = 0.9",
            "`momentum` does not apply to adam",
        ),
        ("[schedule]\ndecay = { kind = \"exp\" }", "exp"),
        (
            "[schedule]\ndecay = { kind = \"cosine\", power = 2 }",
            "power",
        ),
        (
            "[optimizer]\nname = \"sgd\"\ntrust_ratio = { bound = [0, 1] }",
            "bound",
        ),
    ];
    for (text, needle) in cases {
        let err = toml::from_str::<TrainConfig>(text)
            .expect_err(text)
            .to_string();
        assert!(err.contains(needle), "{text}: {err}");
    }
}
