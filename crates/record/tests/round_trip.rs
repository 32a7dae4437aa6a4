//! Records survive a write and a read unchanged; a record of another schema
//! version, or of an older shape, is refused naming the file.

use bigbatch_record::{
    DataUsed, EvalPoint, FileDigest, NoiseScaleEstimate, NoiseScaleStep, Provenance, RunRecord,
    Schema, Status, TrialResult, read_json, write_json_atomic,
};
use bigbatch_spec::{
    Budget, DatasetName, Method, OptimizerSpec, RunSpec, TrainConfig, WorkloadKind,
};

fn record() -> RunRecord {
    let estimate = NoiseScaleEstimate::new(2.0, 64.0);
    RunRecord {
        schema: Schema,
        workload: WorkloadKind::MnistKeskarF1,
        model: bigbatch_spec::ModelKind::KeskarF1,
        config: TrainConfig::new(
            256,
            Budget::Epochs(3),
            OptimizerSpec::new(Method::named("adam").expect("adam")),
        ),
        provenance: Provenance {
            seed: 3,
            git_revision: None,
            threads: 2,
            device: "cpu".into(),
            cpu_model: None,
            bigbatch_version: "0.1.0".into(),
            datasets: vec![FileDigest {
                file: "t10k-labels-idx1-ubyte.gz".into(),
                sha256: "00ff".into(),
            }],
            data: Some(DataUsed {
                dataset: DatasetName::Mnist,
                train_examples: 4000,
                test_examples: 1000,
            }),
        },
        status: Status::Diverged { step: 7 },
        curve: vec![EvalPoint {
            step: 5,
            epoch: 0.1,
            examples: 1280,
            train_loss: 2.0,
            test_loss: Some(1.9),
            test_accuracy: Some(0.4),
            validation_loss: None,
            validation_accuracy: None,
            b_simple: Some(32.0),
            b_simple_smoothed: None,
        }],
        steps_to_target: None,
        examples_to_target: None,
        noise_scale: vec![NoiseScaleStep {
            steps: 1,
            raw: estimate,
            smoothed: estimate,
        }],
        wall_seconds: 1.5,
    }
}

#[test]
fn records_round_trip_through_their_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let run = record();
    write_json_atomic(&dir.path().join("a/run.json"), &run)?;
    assert_eq!(read_json::<RunRecord>(&dir.path().join("a/run.json"))?, run);
    let spec = RunSpec {
        search_index: Some(4),
        ..RunSpec::new(run.workload, run.config.clone())
    };
    let trial = TrialResult {
        schema: Schema,
        id: spec.id(),
        spec,
        record: run,
    };
    write_json_atomic(&dir.path().join("trial.json"), &trial)?;
    assert_eq!(
        read_json::<TrialResult>(&dir.path().join("trial.json"))?,
        trial
    );
    Ok(())
}

#[test]
fn other_versions_and_old_shapes_are_refused_naming_the_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("results.json");
    let mut json = serde_json::to_value(record())?;
    json["schema"] = 2.into();
    std::fs::write(&path, serde_json::to_vec(&json)?)?;
    let err = read_json::<RunRecord>(&path)
        .expect_err("version 2")
        .to_string();
    assert!(
        err.contains("results.json") && err.contains("schema version 2"),
        "{err}"
    );
    // A record written before schemas existed has no `schema` field.
    json.as_object_mut().map(|o| o.remove("schema"));
    std::fs::write(&path, serde_json::to_vec(&json)?)?;
    let err = read_json::<RunRecord>(&path)
        .expect_err("no schema")
        .to_string();
    assert!(
        err.contains("results.json") && err.contains("schema"),
        "{err}"
    );
    Ok(())
}
