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

use std::collections::BTreeMap;

use bigbatch_record::SeedRun;
use bigbatch_spec::SearchSpace;

use crate::{Checkpointing, Error, Observer, Result, WorkloadExt, batch_norm, train_until};

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
    stop_after: Option<u64>,
) -> Result<TrialResult> {
    let data = spec.workload.load_data(data_dir)?;
    let model = crate::build_model(
        spec.model(),
        spec.train.seed,
        batch_norm(&spec.train),
        device,
    )?;
    let outcome = train_until(
        &model,
        &data,
        &spec.train,
        device,
        observer,
        checkpointing,
        stop_after,
    )?;
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
                    previous_eval: previous_eval(&r.record.curve, steps),
                    test_accuracy: r
                        .spec
                        .train
                        .validation_examples
                        .and(r.record.final_eval().and_then(|p| p.test_accuracy)),
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
                pruned: of_b
                    .iter()
                    .filter(|r| matches!(r.record.status, Status::Pruned { .. }))
                    .count(),
                best,
                rounds: 1,
                search: None,
                edges: Vec::new(),
                seeds: Vec::new(),
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

/// The step of the evaluation before the one at `step` in `curve` (0 if
/// there is none): steps to target lie in `(previous_eval, step]`.
pub fn previous_eval(curve: &[bigbatch_spec::EvalPoint], step: u64) -> u64 {
    curve
        .iter()
        .take_while(|p| p.step < step)
        .last()
        .map_or(0, |p| p.step)
}

/// How good a trial is, for choosing the point a refinement round centres
/// on (smaller is better): trials that met the target by their steps, then
/// those that did not by the best metric value they reached. `None` for a
/// trial with no evaluation.
fn rank(result: &TrialResult) -> Option<(u8, f64)> {
    if let Some(steps) = result.record.steps_to_target {
        return Some((0, steps as f64));
    }
    let target = result.spec.train.target?;
    let sign = if target.metric.higher_is_better() {
        -1.0
    } else {
        1.0
    };
    result
        .record
        .curve
        .iter()
        .filter_map(|p| target.metric.value(p))
        .map(|v| sign * v)
        .min_by(f64::total_cmp)
        .map(|v| (1, v))
}

/// The best of `results` at batch size `b` by [`rank`].
fn best_at(results: &[TrialResult], b: usize) -> Option<&TrialResult> {
    results
        .iter()
        .filter(|r| r.spec.train.batch_size == b)
        .filter_map(|r| rank(r).map(|k| (k, r)))
        .min_by(|(x, _), (y, _)| x.0.cmp(&y.0).then(x.1.total_cmp(&y.1)))
        .map(|(_, r)| r)
}

/// The fewest steps to target among the results present for `ids` at batch
/// size `b`: where [`SweepPlan::prune`] stops the next trial there.
fn best_steps(dir: &SweepDir, specs: &[RunSpec], b: usize) -> Result<Option<u64>> {
    let mut best = None;
    for spec in specs.iter().filter(|s| s.train.batch_size == b) {
        let path = dir.result(&spec.id());
        if path.exists() {
            let r: TrialResult = read_json(&path)?;
            if let Some(steps) = r.record.steps_to_target {
                best = Some(best.map_or(steps, |b: u64| b.min(steps)));
            }
        }
    }
    Ok(best)
}

/// Runs a whole [`SweepPlan`] in `dir` and summarises it: the first round
/// of trials; refinement rounds where a batch size's best sits at an edge
/// of its search range ([`SweepPlan::refine`]); the best trial of each
/// batch size again with every seed of [`SweepPlan::seeds`]. Trials are
/// child processes made by `command(id, stop_after)` (at most `jobs` at a
/// time), pruned when [`SweepPlan::prune`] says; results already present
/// under the same identity (`current`) are reused, others are moved to
/// `stale/` and rerun.
///
/// # Errors
/// An invalid plan, I/O errors, unreadable results.
pub fn run_plan(
    plan: &SweepPlan,
    dir: &SweepDir,
    train_len: usize,
    current: &Provenance,
    jobs: usize,
    mut command: impl FnMut(&str, Option<u64>) -> Command,
) -> Result<(SweepSummary, SweepProgress)> {
    let mut progress = SweepProgress::default();
    let mut all: Vec<RunSpec> = Vec::new();
    let mut round = plan.trials(train_len)?;
    let mut spaces: BTreeMap<usize, (SearchSpace, usize)> = plan
        .batch_sizes_for(train_len)
        .into_iter()
        .map(|b| (b, (plan.search.clone(), 1)))
        .collect();
    let margin = plan.refine.map_or(0.1, |r| r.margin);
    let mut run_round = |all: &mut Vec<RunSpec>, trials: Vec<RunSpec>, prune: bool| {
        all.extend(trials.iter().cloned());
        dir.prepare(plan, all)?;
        for (id, reason) in dir.retire_stale(&trials, current)? {
            tracing::info!(
                trial = id,
                "rerunning ({reason}); the old result is in stale/"
            );
        }
        let ids: Vec<String> = trials.iter().map(RunSpec::id).collect();
        let by_id: BTreeMap<String, usize> = trials
            .iter()
            .map(|t| (t.id(), t.train.batch_size))
            .collect();
        let snapshot = all.clone();
        let mut failed = None;
        let p = run_sweep(dir, &ids, jobs, |id| {
            let cap = if prune {
                let b = by_id.get(id).copied().unwrap_or(0);
                best_steps(dir, &snapshot, b).unwrap_or_else(|e| {
                    failed.get_or_insert(e);
                    None
                })
            } else {
                None
            };
            command(id, cap)
        })?;
        if let Some(e) = failed {
            return Err(e);
        }
        progress.skipped += p.skipped;
        progress.finished += p.finished;
        progress.failed += p.failed;
        Result::Ok(())
    };
    run_round(&mut all, std::mem::take(&mut round), plan.prune)?;
    if let Some(refine) = plan.refine {
        for r in 1..=refine.rounds {
            let results = dir.results(&all.iter().map(RunSpec::id).collect::<Vec<_>>())?;
            let mut next = Vec::new();
            for (&b, (space, rounds)) in &mut spaces {
                let Some(best) = best_at(&results, b) else {
                    continue;
                };
                let edges = space.edges(&best.spec.train, margin);
                if edges.is_empty() {
                    continue;
                }
                tracing::info!(
                    batch_size = b,
                    round = r,
                    ?edges,
                    "best at a search edge: refining"
                );
                *space = space.recentred(&best.spec.train, &edges);
                *rounds += 1;
                next.extend(plan.trials_at(
                    b,
                    space,
                    refine.trials,
                    plan.search_seed.wrapping_add(r as u64),
                    train_len,
                )?);
            }
            if next.is_empty() {
                break;
            }
            run_round(&mut all, next, plan.prune)?;
        }
    }
    let ids: Vec<String> = all.iter().map(RunSpec::id).collect();
    let mut summary = summarize(plan, &ids, dir)?;
    let mut seeded = Vec::new();
    for s in &summary.batch_sizes {
        let Some(best) = &s.best else { continue };
        let Some(spec) = all.iter().find(|t| t.id() == best.id) else {
            continue;
        };
        for &seed in plan.seeds.iter().filter(|&&seed| seed != spec.train.seed) {
            let mut again = spec.clone();
            again.train.seed = seed;
            seeded.push(again);
        }
    }
    if !seeded.is_empty() {
        run_round(&mut all, seeded.clone(), false)?;
    }
    for s in &mut summary.batch_sizes {
        if let Some((space, rounds)) = spaces.get(&s.batch_size) {
            s.rounds = *rounds;
            s.search = (plan.refine.is_some()).then(|| space.clone());
            let best_spec = s
                .best
                .as_ref()
                .and_then(|b| all.iter().find(|t| t.id() == b.id));
            s.edges = best_spec.map_or_else(Vec::new, |t| space.edges(&t.train, margin));
        }
        let best_id = s.best.as_ref().map(|b| b.id.clone());
        let Some(best_spec) = best_id.and_then(|id| all.iter().find(|t| t.id() == id)) else {
            continue;
        };
        for again in seeded.iter().filter(|t| {
            let mut same = (*t).clone();
            same.train.seed = best_spec.train.seed;
            same == *best_spec
        }) {
            let path = dir.result(&again.id());
            let steps = if path.exists() {
                read_json::<TrialResult>(&path)?.record.steps_to_target
            } else {
                None
            };
            s.seeds.push(SeedRun {
                seed: again.train.seed,
                steps,
            });
        }
    }
    summary.trials_planned = ids.len();
    Ok((summary, progress))
}
