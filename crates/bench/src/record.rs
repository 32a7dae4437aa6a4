//! Provenance as bench collects it (the record types live in `bigbatch-record`).

use bigbatch_record::{DataUsed, Provenance};
use bigbatch_spec::WorkloadKind;

use crate::Data;

/// The provenance of a run of `workload` on `data` here and now: git
/// revision of the current directory, this crate's version, the data's
/// digests and sizes, and what the caller knows (seed, threads, device).
pub fn provenance(
    seed: u64,
    threads: usize,
    device: &str,
    workload: WorkloadKind,
    data: &Data,
) -> Provenance {
    Provenance {
        seed,
        git_revision: git_revision(),
        threads,
        device: device.into(),
        cpu_model: cpu_model(),
        bigbatch_version: env!("CARGO_PKG_VERSION").into(),
        datasets: data.digests.clone(),
        data: Some(DataUsed {
            dataset: workload.workload().dataset,
            train_examples: data.train.len(),
            test_examples: data.test.len(),
        }),
    }
}

/// The CPU model `/proc/cpuinfo` names, if it can be read.
pub fn cpu_model() -> Option<String> {
    let text = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    text.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, name)| name.trim().to_owned())
}

/// The revision of the git tree in the current directory, if there is one.
pub fn git_revision() -> Option<String> {
    let run = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let rev = run(&["rev-parse", "HEAD"])?;
    let dirty =
        run(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{rev}-dirty") } else { rev })
}

/// The device as provenance records it: `cpu`, `cuda:0`, `metal:0`.
pub fn device_label(device: &candle_core::Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}
