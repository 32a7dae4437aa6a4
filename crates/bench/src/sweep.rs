//! Sweeps: many independent trials, one result file each, resumable after a
//! kill at any moment.
//!
//! A sweep directory holds `plan.json` (the [`SweepPlan`], search space
//! included), `trials/<id>.json` (one [`RunSpec`] per trial, `<id>` a stable
//! hash of the spec), `results/<id>.json` (one [`TrialResult`], written
//! atomically by the trial's own process) and `attempts.log` (one line per
//! trial start). [`run_sweep`] starts a child process per unfinished trial,
//! at most `jobs` at a time; finished trials are never rerun.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use bigbatch_noise::{BootstrapConfig, ParetoPoint, bootstrap_pareto};
use bigbatch_record::{
    BatchSizeSummary, BestTrial, Provenance, Schema, Status, SweepSummary, TrialResult, read_json,
    write_json_atomic,
};
use bigbatch_spec::{RunSpec, SweepPlan};
use candle_core::Device;

use crate::{Checkpointing, Error, Observer, Result, WorkloadExt, batch_norm, train_resumable};

/// Runs one trial on `data_dir` and returns its result (the caller writes it),
/// checkpointing as `checkpointing` says and resuming from its checkpoint if
/// one exists.
///
/// # Errors
/// Data, model or training errors.
pub fn run_trial(
    spec: &RunSpec,
    data_dir: &Path,
    device: &Device,
    threads: usize,
    observer: &mut dyn Observer,
    checkpointing: Option<&Checkpointing>,
) -> Result<TrialResult> {
    let data = spec.workload.load_data(data_dir)?;
    let model = crate::build_model(
        spec.model(),
        spec.train.seed,
        batch_norm(&spec.train),
        device,
    )?;
    let outcome = train_resumable(&model, &data, &spec.train, device, observer, checkpointing)?;
    let provenance = crate::provenance(
        spec.train.seed,
        threads,
        &crate::device_label(device),
        spec.workload,
        &data,
    );
    let record = outcome.into_record(spec, provenance);
    Ok(TrialResult {
        schema: Schema,
        id: spec.id(),
        spec: spec.clone(),
        record,
    })
}

/// The files of a sweep directory.
#[derive(Clone, Debug)]
pub struct SweepDir {
    /// The directory.
    pub root: PathBuf,
}

impl SweepDir {
    /// The sweep directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// `plan.json`.
    pub fn plan(&self) -> PathBuf {
        self.root.join("plan.json")
    }
    /// `trials/<id>.json`.
    pub fn spec(&self, id: &str) -> PathBuf {
        self.root.join("trials").join(format!("{id}.json"))
    }
    /// `results/<id>.json`.
    pub fn result(&self, id: &str) -> PathBuf {
        self.root.join("results").join(format!("{id}.json"))
    }
    /// `trials/index.txt`: one trial id per line, in plan order.
    pub fn index(&self) -> PathBuf {
        self.root.join("trials").join("index.txt")
    }
    /// `checkpoints/<id>.safetensors`: a running trial's checkpoint.
    pub fn checkpoint(&self, id: &str) -> PathBuf {
        self.root
            .join("checkpoints")
            .join(format!("{id}.safetensors"))
    }
    /// `attempts.log`: one line per trial start.
    pub fn attempts_log(&self) -> PathBuf {
        self.root.join("attempts.log")
    }

    /// Writes `plan.json`, every trial spec and the index (idempotent). A
    /// directory already holding a different plan is refused.
    ///
    /// # Errors
    /// [`Error::SweepPlanChanged`] for a different existing plan; I/O errors.
    pub fn prepare(&self, plan: &SweepPlan, trials: &[RunSpec]) -> Result<Vec<String>> {
        if self.plan().exists() {
            let existing: SweepPlan = read_json(&self.plan())?;
            if existing != *plan {
                return Err(Error::SweepPlanChanged { path: self.plan() });
            }
        } else {
            write_json_atomic(&self.plan(), plan)?;
        }
        let mut ids = Vec::new();
        for t in trials {
            let id = t.id();
            if !self.spec(&id).exists() {
                write_json_atomic(&self.spec(&id), t)?;
            }
            ids.push(id);
        }
        let index = ids.join("\n") + "\n";
        std::fs::write(self.index(), index).map_err(|source| Error::Io {
            path: self.index(),
            source,
        })?;
        Ok(ids)
    }

    /// Appends `id` to `attempts.log` (one short append: atomic on POSIX).
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn log_attempt(&self, id: &str) -> Result<()> {
        let path = self.attempts_log();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        f.write_all(format!("{id}\n").as_bytes()).map_err(io)
    }

    /// Moves every result that may not be reused for `trials` here and now
    /// to `stale/` (never deleting it), so that the sweep reruns it, and
    /// returns why, per trial. A result is reused only when its whole
    /// identity matches: the spec, the bigbatch version and git revision, and
    /// the SHA-256 of every data file ([`stale_reason`]).
    ///
    /// # Errors
    /// [`Error::Io`] or a record error naming the file.
    pub fn retire_stale(
        &self,
        trials: &[RunSpec],
        current: &Provenance,
    ) -> Result<Vec<(String, String)>> {
        let mut retired = Vec::new();
        for spec in trials {
            let id = spec.id();
            let path = self.result(&id);
            if !path.exists() {
                continue;
            }
            let reason = match read_json::<TrialResult>(&path) {
                Ok(result) => stale_reason(&result, spec, current),
                Err(e) => Some(format!("unreadable ({e})")),
            };
            if let Some(reason) = reason {
                let stale = self.root.join("stale");
                std::fs::create_dir_all(&stale).map_err(|source| Error::Io {
                    path: stale.clone(),
                    source,
                })?;
                let mut n = 0;
                let target = loop {
                    let t = stale.join(format!("{id}.{n}.json"));
                    if !t.exists() {
                        break t;
                    }
                    n += 1;
                };
                std::fs::rename(&path, &target).map_err(|source| Error::Io {
                    path: path.clone(),
                    source,
                })?;
                retired.push((id, reason));
            }
        }
        Ok(retired)
    }

    /// The results present, in `ids` order (missing ones skipped).
    ///
    /// # Errors
    /// A result file that cannot be read.
    pub fn results(&self, ids: &[String]) -> Result<Vec<TrialResult>> {
        ids.iter()
            .filter(|id| self.result(id).exists())
            .map(|id| Ok(read_json(&self.result(id))?))
            .collect()
    }
}

/// How [`run_sweep`] went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SweepProgress {
    /// Trials already finished before this call.
    pub skipped: usize,
    /// Trials run to a result by this call.
    pub finished: usize,
    /// Trials whose process failed (no result written).
    pub failed: usize,
}

/// Runs every trial of `ids` without a result file, as child processes made
/// by `command(id)`, at most `jobs` at once. The child writes the result.
///
/// # Errors
/// [`Error::Io`] if a process cannot be started.
pub fn run_sweep(
    dir: &SweepDir,
    ids: &[String],
    jobs: usize,
    mut command: impl FnMut(&str) -> Command,
) -> Result<SweepProgress> {
    let mut progress = SweepProgress::default();
    let mut pending: std::collections::VecDeque<&String> = ids
        .iter()
        .filter(|id| {
            let done = dir.result(id).exists();
            progress.skipped += usize::from(done);
            !done
        })
        .collect();
    let mut running: Vec<(String, Child)> = Vec::new();
    while !pending.is_empty() || !running.is_empty() {
        while running.len() < jobs.max(1) {
            let Some(id) = pending.pop_front() else { break };
            let child = command(id).spawn().map_err(|source| Error::Io {
                path: PathBuf::from(format!("trial {id}")),
                source,
            })?;
            running.push((id.clone(), child));
        }
        let mut i = 0;
        while i < running.len() {
            let exited = running[i].1.try_wait().map_err(|source| Error::Io {
                path: PathBuf::from(format!("trial {}", running[i].0)),
                source,
            })?;
            match exited {
                Some(status) => {
                    let (id, _) = running.swap_remove(i);
                    if status.success() && dir.result(&id).exists() {
                        progress.finished += 1;
                    } else {
                        tracing::error!(trial = id, %status, "trial failed");
                        progress.failed += 1;
                    }
                }
                None => i += 1,
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(progress)
}

/// The Slurm job-array script that runs the same trials on a cluster, sharing
/// the sweep directory: task `i` runs line `i + 1` of `trials/index.txt`
/// unless its result exists, checkpointing every `checkpoint_every` steps (a
/// requeued task resumes from its checkpoint).
pub fn slurm_script(
    dir: &SweepDir,
    trials: usize,
    bin: &Path,
    data_dir: &Path,
    checkpoint_every: Option<u64>,
) -> String {
    let checkpoint = checkpoint_every.map_or(String::new(), |every| {
        format!(
            " \\\n  --checkpoint {}/checkpoints/$ID.safetensors --checkpoint-every {every}",
            dir.root.display()
        )
    });
    format!(
        "#!/bin/bash\n\
         #SBATCH --job-name=bigbatch-sweep\n\
         #SBATCH --array=0-{last}\n\
         #SBATCH --cpus-per-task=4\n\
         #SBATCH --output={root}/slurm/%A_%a.log\n\
         set -euo pipefail\n\
         ID=$(sed -n \"$((SLURM_ARRAY_TASK_ID + 1))p\" {root}/trials/index.txt)\n\
         if [ -e {root}/results/$ID.json ]; then exit 0; fi\n\
         exec {bin} trial --quiet --threads \"$SLURM_CPUS_PER_TASK\" \\\n  \
         --spec {root}/trials/$ID.json --out {root}/results/$ID.json \\\n  \
         --attempts-log {root}/attempts.log --data-dir {data}{checkpoint}\n",
        last = trials.saturating_sub(1),
        root = dir.root.display(),
        bin = bin.display(),
        data = data_dir.display(),
    )
}

/// Why `result` may not stand for running `spec` now (with the data and code
/// of `current`), or `None` if it may: every part of its identity (spec,
/// bigbatch version, git revision, every data file's SHA-256) must match.
pub fn stale_reason(result: &TrialResult, spec: &RunSpec, current: &Provenance) -> Option<String> {
    let then = &result.record.provenance;
    if result.spec != *spec {
        return Some("the trial's spec differs".into());
    }
    if then.bigbatch_version != current.bigbatch_version {
        return Some(format!(
            "bigbatch version changed: {} -> {}",
            then.bigbatch_version, current.bigbatch_version
        ));
    }
    if then.git_revision != current.git_revision {
        return Some(format!(
            "revision changed: {} -> {}",
            then.git_revision.as_deref().unwrap_or("unknown"),
            current.git_revision.as_deref().unwrap_or("unknown")
        ));
    }
    if then.datasets != current.datasets {
        let changed: Vec<&str> = current
            .datasets
            .iter()
            .filter(|d| !then.datasets.contains(d))
            .map(|d| d.file.as_str())
            .collect();
        return Some(format!("data changed: {}", changed.join(", ")));
    }
    None
}

/// Summarises the results of a sweep.
///
/// # Errors
/// Unreadable results. A Pareto fit that fails is logged and left out.
pub fn summarize(plan: &SweepPlan, ids: &[String], dir: &SweepDir) -> Result<SweepSummary> {
    let results = dir.results(ids)?;
    let mut sizes: Vec<usize> = results.iter().map(|r| r.spec.train.batch_size).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let batch_sizes: Vec<BatchSizeSummary> = sizes
        .iter()
        .map(|&b| {
            let of_b: Vec<&TrialResult> = results
                .iter()
                .filter(|r| r.spec.train.batch_size == b)
                .collect();
            let best = of_b
                .iter()
                .filter_map(|r| r.record.steps_to_target.map(|s| (s, r)))
                .min_by_key(|(s, _)| *s)
                .map(|(steps, r)| BestTrial {
                    id: r.id.clone(),
                    steps,
                    examples: steps * b as u64,
                    optimizer: r.spec.train.optimizer.clone(),
                    schedule: r.spec.train.schedule.clone(),
                });
            BatchSizeSummary {
                batch_size: b,
                trials: of_b.len(),
                reached: of_b
                    .iter()
                    .filter(|r| r.record.steps_to_target.is_some())
                    .count(),
                diverged: of_b
                    .iter()
                    .filter(|r| matches!(r.record.status, Status::Diverged { .. }))
                    .count(),
                best,
            }
        })
        .collect();
    let points: Vec<ParetoPoint> = batch_sizes
        .iter()
        .filter_map(|s| {
            s.best
                .as_ref()
                .map(|b| ParetoPoint::new(s.batch_size as f64, b.steps as f64))
        })
        .collect();
    let pareto = if points.len() >= 3 {
        match bootstrap_pareto(&points, &BootstrapConfig::default()) {
            Ok(fit) => Some(fit),
            Err(e) => {
                tracing::warn!("no Pareto fit: {e}");
                None
            }
        }
    } else {
        None
    };
    Ok(SweepSummary {
        schema: Schema,
        plan: plan.clone(),
        trials_planned: ids.len(),
        batch_sizes,
        pareto,
        provenance: results.first().map(|r| r.record.provenance.clone()),
    })
}
