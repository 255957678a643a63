//! Running a job to its end: the public options and report, and the restart loop — each
//! attempt deployed ([`super::attempt`]) and coordinated ([`super::coordinator`]), restarted from
//! the newest checkpoint after a failure (Flink's fixed-delay strategy).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::attempt::{Attempt, AttemptEnd};
use super::coordinator::recv_control;
use super::operator::load_operators;
use crate::checkpoint::{CheckpointStorage, Fenced, LoadedCheckpoint, Location, StorageLease, load_location};
use crate::cluster::WorkerPool;
use crate::engine::Engine;
use crate::engine::host::{record_attempt, recorded_attempt};
use crate::job::JobSpec;
use crate::metrics::JobMetrics;
use crate::native::NativeRegistry;
use crate::status::JobStatus;
use crate::status::view::JobState;

/// Where a job starts from.
#[derive(Clone, Debug)]
pub enum RestoreFrom {
    /// The newest complete checkpoint in the job's checkpoint directory.
    LatestCheckpoint,
    /// A savepoint or checkpoint (a directory or an object-store prefix).
    Savepoint(Location),
    /// Where the job left off, if anywhere: the savepoint it was stopped with if that is newer
    /// than its newest checkpoint, else its newest checkpoint, else a fresh start. What a
    /// supervisor that restarts the process (a Kubernetes Job, systemd) runs.
    Resume,
}

/// Requests to a running job (from the control endpoint or a test).
#[derive(Debug)]
pub enum ControlRequest {
    /// Take a savepoint into `target` (a directory or prefix that will contain `savepoint-<id>`).
    Savepoint { target: Location, reply: oneshot::Sender<Result<Location, String>> },
    /// Stop the job, after a savepoint into `target` if given.
    Stop { savepoint: Option<Location>, reply: oneshot::Sender<Result<Option<Location>, String>> },
}

/// How to run a job.
#[derive(Default)]
pub struct RunOptions {
    pub restore: Option<RestoreFrom>,
    /// Skip state of operators the job no longer has.
    pub allow_non_restored_state: bool,
    /// Requests from outside (savepoint, stop).
    pub control: Option<mpsc::Receiver<ControlRequest>>,
    /// The run's metrics (`GET /metrics`, a progress display), kept across restarts; without
    /// them `run_job` keeps its own.
    pub metrics: Option<Arc<JobMetrics>>,
    /// Native operators the job file may name with `module = "native:<name>"`.
    pub native: NativeRegistry,
    /// The job's checkpoint storage and this process's hold on it, if the caller already took
    /// it over (the CLI does, before it writes `_control`); otherwise `run_job` does.
    pub storage: Option<(Arc<dyn CheckpointStorage>, StorageLease)>,
    /// Where the job records its state, checkpoints and failures (the HTTP API reads it);
    /// `run_job` makes its own when not given.
    pub status: Option<Arc<JobStatus>>,
    /// Run the subtasks on these workers instead of in this process (distributed execution).
    pub workers: Option<WorkerPool>,
}

/// Statistics of one completed checkpoint (what Flink's web UI shows per checkpoint).
#[derive(Clone, Debug)]
pub struct CheckpointStats {
    pub checkpoint_id: u64,
    /// When the coordinator triggered it.
    pub triggered: std::time::Instant,
    /// From trigger to complete: barriers through the job, every snapshot durable, metadata written.
    pub duration: Duration,
    /// Bytes written for this checkpoint, all subtasks: state files and the shared file of each
    /// subtask's keyed state (with incremental checkpoints, only what changed).
    pub state_bytes: u64,
    /// Bytes of state the checkpoint consists of: `state_bytes` plus the earlier shared files
    /// it builds on.
    pub total_bytes: u64,
    /// The longest synchronous snapshot phase of any subtask: how long that subtask's records
    /// waited while its operator snapshotted.
    pub max_sync: Duration,
}

/// What happened while a job ran.
#[derive(Debug, Default)]
pub struct JobReport {
    /// Ids of the checkpoints that completed, in order (savepoints not included).
    pub completed_checkpoints: Vec<u64>,
    /// Ids of the savepoints that completed, in order.
    pub savepoints: Vec<u64>,
    /// Statistics of the completed checkpoints, in order.
    pub checkpoint_stats: Vec<CheckpointStats>,
    /// Restarts after failures.
    pub restarts: u32,
    /// Where the last savepoint was written, if any.
    pub savepoint: Option<Location>,
    /// Whether the job was stopped (rather than running to the end of its input).
    pub stopped: bool,
}

/// The checkpoint storage of a job (its `[checkpoints] dir`, or `checkpoints/` next to the job
/// file): a local directory or an object-store prefix.
pub fn job_storage(job: &JobSpec) -> Result<Arc<dyn CheckpointStorage>> {
    crate::checkpoint::open(&job.checkpoint_location()?, &job.object_store)
}

/// The id of the newest complete checkpoint the storage lists (nothing is read but metadata).
fn newest_listed(storage: &dyn CheckpointStorage) -> Result<Option<u64>> {
    Ok(storage.complete_checkpoints()?.first().map(|(_, meta)| meta.checkpoint_id))
}

/// Loads the newest complete checkpoint among `candidates`, falling back to older ones (with a
/// warning) when one is damaged.
fn load_newest(storage: &dyn CheckpointStorage, only: Option<&[u64]>) -> Result<Option<LoadedCheckpoint>> {
    for (name, meta) in storage.complete_checkpoints()? {
        if only.is_some_and(|ids| !ids.contains(&meta.checkpoint_id)) {
            continue;
        }
        match storage.load(&name) {
            Ok(c) => return Ok(Some(c)),
            Err(e) => tracing::warn!("checkpoint {} is damaged, using an earlier one: {e:#}", storage.describe(&name)),
        }
    }
    Ok(None)
}

/// Runs `job` to its end (bounded input), a stop request, or a failure past the restart strategy.
pub async fn run_job(engine: &Engine, job: &JobSpec, mut opts: RunOptions) -> Result<JobReport> {
    let modules = load_operators(engine, job, &opts.native)?;
    let (storage, _lease) = match opts.storage.take() {
        Some(held) => held,
        None => {
            let storage = job_storage(job)?;
            let lease = storage.take_over()?;
            (storage, lease)
        }
    };
    storage.remove_incomplete()?;
    let mut control = opts.control.take();
    let metrics = opts.metrics.get_or_insert_with(|| Arc::new(JobMetrics::new(job.job.name.as_deref().unwrap_or_default()))).clone();
    let mut restore = match opts.restore.take() {
        None => None,
        Some(RestoreFrom::Savepoint(location)) => Some(load_location(&location, &job.object_store)?),
        Some(RestoreFrom::LatestCheckpoint) => {
            // After `stop --savepoint` the savepoint's side effects (committed files, Kafka
            // offsets) are out: resuming from an older checkpoint would repeat them. Decided on
            // the listing, before any state is read.
            let listed = newest_listed(storage.as_ref())?;
            if let Some(savepoint) = storage.stop_savepoint_newer_than(listed.unwrap_or(0))? {
                bail!(
                    "{}: the job was stopped with savepoint {}, which is newer than the latest checkpoint ({}); restore from it: --from-savepoint {}",
                    storage.root(),
                    savepoint,
                    listed.map_or_else(|| "none".to_string(), |id| id.to_string()),
                    savepoint
                );
            }
            Some(
                load_newest(storage.as_ref(), None)?
                    .ok_or_else(|| anyhow!("{}: no complete checkpoint to resume from; run without --from-latest-checkpoint to start fresh", storage.root()))?,
            )
        }
        Some(RestoreFrom::Resume) => match storage.stop_savepoint_newer_than(newest_listed(storage.as_ref())?.unwrap_or(0))? {
            // The stop savepoint is checked against the listing first: its newer state is
            // loaded, not the checkpoint's too.
            Some(savepoint) => {
                tracing::info!("resuming from {savepoint}, the savepoint the job was stopped with");
                Some(load_location(&savepoint, &job.object_store)?)
            }
            None => {
                let newest = load_newest(storage.as_ref(), None)?;
                if newest.is_none() {
                    tracing::info!("{}: no complete checkpoint yet: starting fresh", storage.root());
                }
                newest
            }
        },
    };
    if let Some(c) = &restore {
        tracing::info!("restoring from {} (checkpoint {})", c.location, c.metadata.checkpoint_id);
        let name = job.job.name.clone().unwrap_or_default();
        if c.metadata.job_name != name {
            tracing::warn!(
                "{} was taken by job '{}', and this job is '{name}': restoring anyway (state is matched by operator id)",
                c.location,
                c.metadata.job_name
            );
        }
    }
    let mut report = JobReport::default();
    let status = opts.status.get_or_insert_with(|| JobStatus::new(job)).clone();
    let mut workers = opts.workers.take();
    let files_dirs: Vec<PathBuf> = job.operators.iter().filter_map(|op| op.grants.files.as_ref().map(|d| job.resolve(d))).collect();
    let outcome = loop {
        // Sinks name their files by attempt: a new attempt is above every attempt any granted
        // directory has seen, whatever `_job.json` says.
        let mut floor = 0;
        for dir in &files_dirs {
            floor = floor.max(recorded_attempt(dir)?);
        }
        let attempt = storage.next_attempt(floor)?;
        for dir in &files_dirs {
            record_attempt(dir, attempt)?;
        }
        // On workers, each worker loads the state it restores; the job manager keeps only where
        // it is (for the rest of the run, whichever checkpoint this attempt restores).
        if workers.is_some()
            && let Some(c) = restore.as_mut()
        {
            c.states.clear();
        }
        let deployed = match workers.as_mut() {
            None => Attempt::deploy(engine, job, &modules, storage.clone(), storage.clone(), restore.as_ref(), attempt, &opts, None).await,
            Some(pool) => pool.deploy(job, storage.clone(), restore.as_ref(), attempt, &opts).await,
        };
        let result = match deployed {
            Ok(mut a) => {
                status.attempt_started(attempt);
                a.coordinate(&mut control, &mut report).await
            }
            Err(e) => Err(e),
        };
        if let Some(pool) = &workers {
            pool.cancel(attempt);
        }
        match result {
            Ok(AttemptEnd::Finished) => {
                status.set_state(JobState::Finished);
                break Ok(report);
            }
            Ok(AttemptEnd::Stopped) => {
                status.set_state(JobState::Stopped);
                report.stopped = true;
                break Ok(report);
            }
            Err(failure) => {
                // A fenced job manager stops: another one owns the storage now.
                let restarting = report.restarts < job.restart.attempts && failure.downcast_ref::<Fenced>().is_none();
                status.attempt_failed(attempt, &failure, restarting);
                if !restarting {
                    break Err(failure.context(format!("job failed (restart strategy: {} restart(s) allowed, {} used)", job.restart.attempts, report.restarts)));
                }
                report.restarts += 1;
                metrics.restarted();
                tracing::warn!("restart {}/{} in {} ms after failure: {failure:#}", report.restarts, job.restart.attempts, job.restart.delay_ms);
                if restart_delay(Duration::from_millis(job.restart.delay_ms), &mut control).await {
                    status.set_state(JobState::Stopped);
                    report.stopped = true;
                    break Ok(report);
                }
                if let Some(c) = load_newest(storage.as_ref(), Some(&report.completed_checkpoints))? {
                    restore = Some(c);
                }
            }
        }
    };
    if let Some(pool) = workers {
        pool.shutdown().await;
    }
    outcome
}

/// Waits out the restart delay while answering control requests: a stop ends the job (returns
/// true); a savepoint cannot be taken while no attempt runs.
async fn restart_delay(delay: Duration, control: &mut Option<mpsc::Receiver<ControlRequest>>) -> bool {
    let until = Instant::now() + delay;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(until) => return false,
            req = recv_control(control) => match req {
                Some(ControlRequest::Stop { savepoint: None, reply }) => {
                    let _ = reply.send(Ok(None));
                    return true;
                }
                Some(ControlRequest::Stop { savepoint: Some(_), reply }) => {
                    let _ = reply.send(Err(RESTARTING.into()));
                }
                Some(ControlRequest::Savepoint { reply, .. }) => {
                    let _ = reply.send(Err(RESTARTING.into()));
                }
                None => *control = None,
            },
        }
    }
}

const RESTARTING: &str = "the job is restarting after a failure: no savepoint can be taken now; retry in a moment, or stop without a savepoint";
