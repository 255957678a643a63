//! Deploying a job, coordinating its checkpoints, and restarting it after failures.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use wasmflow_state::StateLimits;

use super::channel::{EdgeOutput, InputGate};
use super::message::Barrier;
use super::operator::{OperatorCode, load_operators};
use super::restore::{self, Assignment};
use super::subtask::{self, Control, Event, OperatorMetrics, SubtaskTask};
use crate::checkpoint::{
    CheckpointMetadata, CheckpointStorage, DirLock, FORMAT_VERSION, LoadedCheckpoint, LocalStorage, OperatorMetadata, StateFileRef, load_dir,
};
use crate::engine::Engine;
use crate::engine::bindings::wasmflow::operator::types::{OperatorKind, TaskInfo};
use crate::engine::host::{FilesDir, SubtaskData, SubtaskLimits, SubtaskTag, record_attempt, recorded_attempt};
use crate::job::{JobSpec, LimitsSpec, Partitioning};
use crate::native::NativeRegistry;

/// Where a job starts from.
#[derive(Clone, Debug)]
pub enum RestoreFrom {
    /// The newest complete checkpoint in the job's checkpoint directory.
    LatestCheckpoint,
    /// A savepoint or checkpoint directory.
    Savepoint(PathBuf),
}

/// Requests to a running job (from the control endpoint or a test).
#[derive(Debug)]
pub enum ControlRequest {
    /// Take a savepoint into `target` (a directory that will contain `savepoint-<id>`).
    Savepoint { target: PathBuf, reply: oneshot::Sender<Result<PathBuf, String>> },
    /// Stop the job, after a savepoint into `target` if given.
    Stop { savepoint: Option<PathBuf>, reply: oneshot::Sender<Result<Option<PathBuf>, String>> },
    /// Records in/out per operator and completed checkpoints.
    Status { reply: oneshot::Sender<serde_json::Value> },
}

/// Each operator's metrics, shared with a progress display.
pub type SharedMetrics = Arc<std::sync::Mutex<BTreeMap<String, Arc<OperatorMetrics>>>>;

/// How to run a job.
#[derive(Default)]
pub struct RunOptions {
    pub restore: Option<RestoreFrom>,
    /// Skip state of operators the job no longer has.
    pub allow_non_restored_state: bool,
    /// Requests from outside (savepoint, stop, status).
    pub control: Option<mpsc::Receiver<ControlRequest>>,
    /// Filled with each operator's metrics when the job is deployed (for progress display).
    pub metrics: Option<SharedMetrics>,
    /// Native operators the job file may name with `module = "native:<name>"`.
    pub native: NativeRegistry,
    /// The lock on the job's checkpoint directory, if the caller already holds it (the CLI
    /// takes it before it writes `_control`); otherwise `run_job` takes it.
    pub dir_lock: Option<DirLock>,
}

/// Statistics of one completed checkpoint (what Flink's web UI shows per checkpoint).
#[derive(Clone, Debug)]
pub struct CheckpointStats {
    pub checkpoint_id: u64,
    /// When the coordinator triggered it.
    pub triggered: std::time::Instant,
    /// From trigger to complete: barriers through the job, every snapshot durable, metadata written.
    pub duration: Duration,
    /// Bytes of state files written, all subtasks.
    pub state_bytes: u64,
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
    pub savepoint: Option<PathBuf>,
    /// Whether the job was stopped (rather than running to the end of its input).
    pub stopped: bool,
}

enum AttemptEnd {
    Finished,
    Stopped,
}

/// Bytes of record data one channel holds before its sender waits (`[job] channel-bytes`).
pub const DEFAULT_CHANNEL_BYTES: usize = 8 << 20;

/// Bytes of operator state one subtask may hold, by default (`limits.state-bytes`).
pub const DEFAULT_STATE_BYTES: usize = 256 << 20;

/// Resolved limits of one operator.
fn subtask_limits(spec: &LimitsSpec, kafka: Option<&crate::job::KafkaGrant>) -> (SubtaskLimits, Duration) {
    let limits = SubtaskLimits {
        memory_bytes: (spec.memory_mb.unwrap_or(256) as usize) << 20,
        table_elements: spec.table_elements.unwrap_or(100_000) as usize,
        state: StateLimits {
            max_states: spec.states.unwrap_or(1024),
            max_entry_bytes: spec.state_entry_bytes.unwrap_or(16 << 20),
            // The host holds a subtask's state, and copies it at every checkpoint: by default no
            // more than the guest's own memory, so a small guest cannot make the host hold GBs.
            max_total_bytes: spec.state_bytes.unwrap_or(DEFAULT_STATE_BYTES),
        },
        log_line_bytes: spec.log_line_bytes.unwrap_or(4096),
        log_lines_per_second: spec.log_lines_per_second.unwrap_or(1000),
        batch_bytes: spec.batch_bytes.unwrap_or(64 << 20),
        kafka: crate::connectors::kafka::KafkaLimits {
            connect_timeout: Duration::from_millis(spec.kafka_connect_timeout_ms.unwrap_or(30_000)),
            max_record_bytes: spec.kafka_max_record_bytes.unwrap_or(8 << 20),
            max_clients: spec.kafka_clients.unwrap_or(4),
            bootstrap_servers: kafka.map(|k| k.bootstrap_servers.clone()).unwrap_or_default(),
            ..Default::default()
        },
    };
    (limits, Duration::from_millis(spec.call_timeout_ms.unwrap_or(10_000)))
}

/// The checkpoint storage of a job (its `[checkpoints] dir`, or `checkpoints/` next to the job file).
pub fn job_storage(job: &JobSpec) -> Result<LocalStorage> {
    let dir = job.checkpoints.as_ref().map(|c| c.dir.clone()).unwrap_or_else(|| PathBuf::from("checkpoints"));
    LocalStorage::new(job.resolve(&dir))
}

/// Loads the newest complete checkpoint among `candidates`, falling back to older ones (with a
/// warning) when one is damaged.
fn load_newest(storage: &LocalStorage, only: Option<&[u64]>) -> Result<Option<LoadedCheckpoint>> {
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
    let storage = Arc::new(job_storage(job)?);
    let _lock = match opts.dir_lock.take() {
        Some(lock) => lock,
        None => storage.lock()?,
    };
    storage.remove_incomplete()?;
    let mut control = opts.control.take();
    let mut restore = match opts.restore.take() {
        None => None,
        Some(RestoreFrom::Savepoint(dir)) => Some(load_dir(&dir)?),
        Some(RestoreFrom::LatestCheckpoint) => {
            let newest = load_newest(&storage, None)?.ok_or_else(|| {
                anyhow!("{}: no complete checkpoint to resume from; run without --from-latest-checkpoint to start fresh", storage.root().display())
            })?;
            // After `stop --savepoint` the savepoint's side effects (committed files, Kafka
            // offsets) are out: resuming from an older checkpoint would repeat them.
            if let Some(savepoint) = storage.stop_savepoint_newer_than(newest.metadata.checkpoint_id)? {
                bail!(
                    "{}: the job was stopped with savepoint {}, which is newer than the latest checkpoint ({}); restore from it: --from-savepoint {}",
                    storage.root().display(),
                    savepoint.display(),
                    newest.metadata.checkpoint_id,
                    savepoint.display()
                );
            }
            Some(newest)
        }
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
    let files_dirs: Vec<PathBuf> = job.operators.iter().filter_map(|op| op.grants.files.as_ref().map(|d| job.resolve(d))).collect();
    loop {
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
        let result = Attempt::deploy(engine, job, &modules, storage.clone(), restore.as_ref(), attempt, &opts).await;
        let result = match result {
            Ok(mut a) => a.coordinate(&mut control, &mut report).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(AttemptEnd::Finished) => return Ok(report),
            Ok(AttemptEnd::Stopped) => {
                report.stopped = true;
                return Ok(report);
            }
            Err(failure) => {
                if report.restarts >= job.restart.attempts {
                    return Err(
                        failure.context(format!("job failed (restart strategy: {} restart(s) allowed, {} used)", job.restart.attempts, report.restarts))
                    );
                }
                report.restarts += 1;
                tracing::warn!("restart {}/{} in {} ms after failure: {failure:#}", report.restarts, job.restart.attempts, job.restart.delay_ms);
                if restart_delay(Duration::from_millis(job.restart.delay_ms), &mut control, &report).await {
                    report.stopped = true;
                    return Ok(report);
                }
                if let Some(c) = load_newest(&storage, Some(&report.completed_checkpoints))? {
                    restore = Some(c);
                }
            }
        }
    }
}

struct PendingCheckpoint {
    id: u64,
    timestamp: i64,
    started: Instant,
    /// Each subtask's state file, and whether it had finished before its snapshot.
    acks: BTreeMap<(String, u32), (StateFileRef, bool)>,
    max_sync: Duration,
    savepoint: Option<SavepointRequest>,
}

enum SavepointRequest {
    Take(PathBuf, oneshot::Sender<Result<PathBuf, String>>),
    Stop(PathBuf, oneshot::Sender<Result<Option<PathBuf>, String>>),
}

impl SavepointRequest {
    /// The directory the savepoint goes into (as `savepoint-<id>`).
    fn target(&self) -> &std::path::Path {
        match self {
            SavepointRequest::Take(t, _) | SavepointRequest::Stop(t, _) => t,
        }
    }
}

/// One deployment of the job (the first, or one after a restart).
struct Attempt<'a> {
    job: &'a JobSpec,
    /// This deployment's attempt number (recorded in every checkpoint it completes).
    number: u64,
    storage: Arc<LocalStorage>,
    controls: Vec<(SubtaskTag, mpsc::UnboundedSender<Control>)>,
    events: mpsc::UnboundedReceiver<Event>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    sources: BTreeSet<SubtaskTag>,
    total: usize,
    metrics: BTreeMap<String, Arc<OperatorMetrics>>,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl<'a> Attempt<'a> {
    async fn deploy(
        engine: &Engine,
        job: &'a JobSpec,
        modules: &BTreeMap<String, OperatorCode>,
        storage: Arc<LocalStorage>,
        restore: Option<&LoadedCheckpoint>,
        attempt: u64,
        opts: &RunOptions,
    ) -> Result<Attempt<'a>> {
        let mut assignment: Option<Assignment> = restore.map(|c| restore::assign(job, c, opts.allow_non_restored_state)).transpose()?;
        let capacity = job.job.channel_capacity.unwrap_or(16).max(1);
        let batch_size = job.job.batch_size.unwrap_or(1024).max(1);

        // Channels: one per (edge, upstream subtask, downstream subtask) that can talk.
        let budget = job.job.channel_bytes.unwrap_or(DEFAULT_CHANNEL_BYTES);
        let mut inputs: HashMap<(String, usize), Vec<super::channel::ChannelReceiver>> = HashMap::new();
        let mut outputs: HashMap<(String, usize), Vec<EdgeOutput>> = HashMap::new();
        for edge in &job.edges {
            let (pa, pb) = (job.operator(&edge.from).unwrap().parallelism as usize, job.operator(&edge.to).unwrap().parallelism as usize);
            for i in 0..pa {
                let targets: Vec<usize> = if edge.partitioning == Partitioning::Forward { vec![i] } else { (0..pb).collect() };
                let mut senders = Vec::new();
                for j in targets {
                    let (tx, rx) = super::channel::channel(capacity, budget);
                    senders.push(tx);
                    inputs.entry((edge.to.clone(), j)).or_default().push(rx);
                }
                let index = if edge.partitioning == Partitioning::Forward { 0 } else { i };
                outputs.entry((edge.from.clone(), i)).or_default().push(EdgeOutput::new(edge.partitioning, senders, index));
            }
        }

        let (event_tx, events) = mpsc::unbounded_channel();
        let mut a = Attempt {
            job,
            number: attempt,
            storage: storage.clone(),
            controls: Vec::new(),
            events,
            tasks: Vec::new(),
            sources: BTreeSet::new(),
            total: 0,
            metrics: BTreeMap::new(),
        };
        for op in &job.operators {
            let module = &modules[&op.id];
            let (limits, call_timeout) = subtask_limits(&op.limits.or(&job.limits), op.grants.kafka.as_ref());
            let metrics = Arc::new(OperatorMetrics::default());
            a.metrics.insert(op.id.clone(), metrics.clone());
            let has_inputs = job.edges.iter().any(|e| e.to == op.id);
            let config = serde_json::to_string(&op.config.clone().unwrap_or_default())?;
            // Restored only if the checkpoint knows this operator (even with empty state): an
            // operator added since starts fresh, and a Kafka source applies its startup mode.
            let restored = restore.and_then(|c| c.metadata.operators.get(&op.id).map(|m| (c.metadata.checkpoint_id, m)));
            let restored_id = restored.map(|(id, _)| id);
            for index in 0..op.parallelism as usize {
                let tag = SubtaskTag { operator: op.id.clone(), subtask: index as u32 };
                let files = match &op.grants.files {
                    Some(dir) => Some(FilesDir::open(job.resolve(dir))?),
                    None => None,
                };
                let store = restore::store_for(assignment.as_mut(), &op.id, index, limits.state.clone());
                let data = SubtaskData::new(tag.clone(), store, &limits, files);
                let mut instance = module.instantiate(engine, data, call_timeout).await?;
                match (instance.kind(), has_inputs) {
                    (OperatorKind::Source, true) => bail!("operator '{}' is a source but an edge leads into it", op.id),
                    (OperatorKind::Transform | OperatorKind::Sink, false) => {
                        bail!("operator '{}' needs input but no edge leads into it; add an [[edges]] entry", op.id)
                    }
                    _ => {}
                }
                if instance.kind() == OperatorKind::Source {
                    a.sources.insert(tag.clone());
                }
                let info = TaskInfo {
                    operator_id: op.id.clone(),
                    subtask_index: index as u32,
                    parallelism: op.parallelism,
                    checkpointing_enabled: job.checkpoints.is_some(),
                    attempt,
                };
                instance.create(info, config.clone()).await?;
                instance.initialize_state(restored_id).await?;
                instance.open().await?;
                let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
                a.controls.push((tag.clone(), ctl_tx));
                let task = SubtaskTask {
                    tag: tag.clone(),
                    instance,
                    control: ctl_rx,
                    events: event_tx.clone(),
                    outputs: outputs.remove(&(op.id.clone(), index)).unwrap_or_default(),
                    input: inputs.remove(&(op.id.clone(), index)).map(InputGate::new),
                    storage: storage.clone(),
                    batch_size,
                    metrics: metrics.clone(),
                    finished_on_restore: restored.is_some_and(|(_, m)| m.finished_on_restore(index as u32, op.parallelism)),
                };
                a.total += 1;
                a.tasks.push(tokio::spawn(subtask::run(task)));
            }
        }
        if let Some(m) = &opts.metrics {
            *m.lock().expect("metrics lock") = a.metrics.clone();
        }
        Ok(a)
    }

    fn send_all(&self, c: Control) {
        for (_, tx) in &self.controls {
            let _ = tx.send(c.clone());
        }
    }

    /// Starts checkpoint (or, with `savepoint`, savepoint) `id`: sources get the trigger.
    /// A savepoint whose directory cannot be created is answered with the error right away.
    fn trigger(&self, savepoint: Option<SavepointRequest>) -> Result<Option<PendingCheckpoint>> {
        let id = self.storage.reserve_checkpoint_id()?;
        if let Some(req) = &savepoint {
            let storage = self.storage.clone();
            if let Err(e) = storage.begin_savepoint(id, req.target()) {
                fail_savepoint(savepoint, &format!("{e:#}"));
                return Ok(None);
            }
        }
        let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        let barrier = Barrier { checkpoint_id: id, timestamp };
        tracing::debug!("triggering checkpoint {id}");
        for (tag, tx) in &self.controls {
            if self.sources.contains(tag) {
                let _ = tx.send(Control::Trigger(barrier));
            }
        }
        Ok(Some(PendingCheckpoint { id, timestamp, started: Instant::now(), acks: BTreeMap::new(), max_sync: Duration::ZERO, savepoint }))
    }

    /// All acks are in: write the metadata (making the checkpoint complete), then notify.
    /// Savepoints are written in place in their own directory and never pruned.
    async fn complete(&self, p: PendingCheckpoint, report: &mut JobReport) -> Result<Option<(SavepointRequest, Result<PathBuf, String>)>> {
        let mut operators = BTreeMap::new();
        for op in &self.job.operators {
            let acks: Vec<&(StateFileRef, bool)> = (0..op.parallelism).map(|i| &p.acks[&(op.id.clone(), i)]).collect();
            let subtasks = acks.iter().map(|(file, _)| file.clone()).collect();
            let finished = (0..op.parallelism).filter(|&i| acks[i as usize].1).collect();
            operators.insert(op.id.clone(), OperatorMetadata { parallelism: op.parallelism, subtasks, finished });
        }
        let kind = if p.savepoint.is_some() { "savepoint" } else { "checkpoint" };
        let meta = CheckpointMetadata {
            format_version: FORMAT_VERSION,
            checkpoint_id: p.id,
            timestamp: p.timestamp,
            kind: kind.into(),
            job_name: self.job.job.name.clone().unwrap_or_default(),
            attempt: self.number,
            operators,
        };
        let storage = self.storage.clone();
        let id = p.id;
        let location = self.storage.location(p.id);
        let committed = tokio::task::spawn_blocking(move || storage.commit(id, &meta)).await?;
        if let Err(e) = &committed
            && p.savepoint.is_some()
        {
            // A savepoint that cannot be written fails the request, not the job.
            let why = format!("cannot write savepoint {}: {e:#}", location.display());
            tracing::warn!("{why}");
            self.storage.abort(p.id);
            self.send_all(Control::Aborted(p.id));
            return Ok(p.savepoint.map(|req| (req, Err(why))));
        }
        committed?;
        if p.savepoint.is_some() {
            report.savepoint = Some(location.clone());
            report.savepoints.push(p.id);
        } else {
            report.completed_checkpoints.push(p.id);
        }
        let stats = CheckpointStats {
            checkpoint_id: p.id,
            triggered: p.started.into_std(),
            duration: p.started.elapsed(),
            state_bytes: p.acks.values().map(|(f, _)| f.size).sum(),
            max_sync: p.max_sync,
        };
        tracing::info!(
            "{kind} {} complete in {} ms ({} bytes of state, longest synchronous snapshot {} ms)",
            p.id,
            stats.duration.as_millis(),
            stats.state_bytes,
            stats.max_sync.as_millis()
        );
        report.checkpoint_stats.push(stats);
        // As Flink (since 1.15): a savepoint is not a checkpoint. It is not used for recovery,
        // so its side effects must not be committed either — except when the job stops with it,
        // which the user then restores from.
        if let Some(SavepointRequest::Stop(..)) = &p.savepoint {
            // Recorded before anything is committed: `--from-latest-checkpoint` must then point
            // the user at this savepoint.
            let storage = self.storage.clone();
            let (id, path) = (p.id, location.clone());
            tokio::task::spawn_blocking(move || storage.record_stop_savepoint(id, &path)).await??;
        }
        match &p.savepoint {
            None | Some(SavepointRequest::Stop(..)) => self.send_all(Control::Complete(p.id)),
            Some(SavepointRequest::Take(..)) => {}
        }
        if p.savepoint.is_none() {
            let storage = self.storage.clone();
            let retain = self.job.checkpoints.as_ref().map(|c| c.retain).unwrap_or(1);
            tokio::task::spawn_blocking(move || storage.prune(retain)).await??;
        }
        Ok(p.savepoint.map(|req| (req, Ok(location))))
    }

    fn abort(&self, p: &PendingCheckpoint, why: &str) {
        tracing::warn!("checkpoint {} aborted: {why}", p.id);
        self.storage.abort(p.id);
        self.send_all(Control::Aborted(p.id));
    }

    /// Runs the attempt until the job finishes, is stopped, or fails. `control` survives the
    /// attempt: requests keep working across restarts.
    async fn coordinate(&mut self, control: &mut Option<mpsc::Receiver<ControlRequest>>, report: &mut JobReport) -> Result<AttemptEnd> {
        let spec = self.job.checkpoints.clone();
        let interval = spec.as_ref().map(|c| Duration::from_millis(c.interval_ms));
        let timeout = Duration::from_millis(spec.as_ref().map(|c| c.timeout_ms).unwrap_or(60_000));
        let min_pause = Duration::from_millis(spec.as_ref().map(|c| c.min_pause_ms).unwrap_or(0));
        let tolerable = spec.as_ref().map(|c| c.tolerable_failures).unwrap_or(0);
        // After a finished or failed checkpoint, the next one waits the interval (at least the
        // minimum pause): a checkpoint that keeps failing is retried at that pace, not in a loop.
        let pause = interval.map(|i| i.max(min_pause)).unwrap_or(min_pause);
        let mut next_trigger = interval.map(|i| Instant::now() + i);
        let mut pending: Option<PendingCheckpoint> = None;
        let mut queued: Vec<SavepointRequest> = Vec::new();
        let mut finished: BTreeSet<SubtaskTag> = BTreeSet::new();
        let mut final_checkpoint: Option<u64> = None;
        let mut retry_final_at: Option<Instant> = None;
        let mut failures: u32 = 0;
        let mut stopping = false;
        let result = loop {
            let all_finished = finished.len() == self.total;
            // End of a bounded job: with checkpoints, one final checkpoint after every subtask
            // has processed all its input (so exactly-once sinks commit everything), then stop.
            let final_due = all_finished && pending.is_none() && queued.is_empty();
            if final_due {
                match (spec.is_some(), final_checkpoint) {
                    (false, _) => break Ok(AttemptEnd::Finished),
                    (true, Some(id)) if report.completed_checkpoints.contains(&id) => break Ok(AttemptEnd::Finished),
                    (true, _) if retry_final_at.is_none_or(|t| t <= Instant::now()) => {
                        retry_final_at = None;
                        pending = self.trigger(None)?;
                        final_checkpoint = pending.as_ref().map(|p| p.id);
                    }
                    (true, _) => {}
                }
            }
            if pending.is_none()
                && !stopping
                && let Some(req) = queued.pop()
            {
                stopping = matches!(req, SavepointRequest::Stop(..));
                pending = self.trigger(Some(req))?;
                if pending.is_none() {
                    stopping = false;
                }
                continue;
            }
            let deadline = pending.as_ref().map(|p| p.started + timeout);
            let periodic = next_trigger.filter(|_| pending.is_none() && !all_finished && !stopping);
            let retry = retry_final_at.filter(|_| pending.is_none() && all_finished);
            let failed = tokio::select! {
                _ = tokio::time::sleep_until(periodic.unwrap_or_else(far_future)), if periodic.is_some() => {
                    pending = self.trigger(None)?;
                    None
                }
                _ = tokio::time::sleep_until(retry.unwrap_or_else(far_future)), if retry.is_some() => None,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                    let p = pending.take().expect("deadline implies pending");
                    let why = format!("not complete after {} ms (checkpoints.timeout-ms)", timeout.as_millis());
                    self.abort(&p, &why);
                    fail_savepoint(p.savepoint, "the savepoint timed out");
                    Some((p.id, why))
                }
                req = recv_control(control) => match req {
                    Some(ControlRequest::Savepoint { target, reply }) => { queued.insert(0, SavepointRequest::Take(target, reply)); None }
                    Some(ControlRequest::Stop { savepoint: Some(target), reply }) => { queued.insert(0, SavepointRequest::Stop(target, reply)); None }
                    Some(ControlRequest::Stop { savepoint: None, reply }) => {
                        let _ = reply.send(Ok(None));
                        break Ok(AttemptEnd::Stopped);
                    }
                    Some(ControlRequest::Status { reply }) => {
                        let _ = reply.send(self.status(report));
                        None
                    }
                    None => { *control = None; None }
                },
                ev = self.events.recv() => match ev.expect("the attempt holds a sender") {
                    Event::Finished(tag) => { finished.insert(tag); None }
                    Event::Failed(tag, e) => break Err(anyhow!("{e}").context(format!("subtask {tag} failed"))),
                    Event::Declined { checkpoint_id, tag, reason } => match pending.take_if(|p| p.id == checkpoint_id) {
                        Some(p) => {
                            let why = format!("{tag} declined: {reason}");
                            self.abort(&p, &why);
                            fail_savepoint(p.savepoint, &reason);
                            Some((p.id, why))
                        }
                        None => None,
                    },
                    Event::Ack { checkpoint_id, tag, file, sync, finished } => {
                        let complete = match pending.as_mut().filter(|p| p.id == checkpoint_id) {
                            Some(p) => {
                                p.acks.insert((tag.operator, tag.subtask), (file, finished));
                                p.max_sync = p.max_sync.max(sync);
                                p.acks.len() == self.total
                            }
                            None => false, // late ack of an aborted checkpoint
                        };
                        if complete {
                            let p = pending.take().expect("checked");
                            let is_savepoint = p.savepoint.is_some();
                            match self.complete(p, report).await? {
                                Some((SavepointRequest::Take(_, reply), r)) => { let _ = reply.send(r); }
                                Some((SavepointRequest::Stop(_, reply), r)) => {
                                    let ok = r.is_ok();
                                    let _ = reply.send(r.map(Some));
                                    if ok { break Ok(AttemptEnd::Stopped) }
                                    stopping = false;
                                }
                                None => {}
                            }
                            if !is_savepoint {
                                failures = 0;
                            }
                            next_trigger = interval.map(|_| Instant::now() + pause);
                        }
                        None
                    }
                },
            };
            // Flink's tolerable-failed-checkpoints: more consecutive failures than tolerated
            // fail the job (and go through the restart strategy).
            if let Some((id, why)) = failed {
                failures += 1;
                if failures > tolerable {
                    break Err(anyhow!(
                        "checkpoint {id} failed ({why}): {failures} consecutive checkpoint failure(s), more than checkpoints.tolerable-failures = {tolerable} allows"
                    ));
                }
                next_trigger = interval.map(|_| Instant::now() + pause);
                if final_checkpoint == Some(id) {
                    retry_final_at = Some(Instant::now() + pause.max(Duration::from_millis(100)));
                }
            }
        };
        self.send_all(Control::Shutdown);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
        if let Some(p) = pending.take() {
            self.abort(&p, "the job is stopping");
            fail_savepoint(p.savepoint, "the job stopped before the savepoint completed");
        }
        // A failure during shutdown (e.g. a trap in close) still counts.
        while let Ok(ev) = self.events.try_recv() {
            if let (Ok(_), Event::Failed(tag, e)) = (&result, ev) {
                return Err(anyhow!("{e}").context(format!("subtask {tag} failed while stopping")));
            }
        }
        result
    }

    fn status(&self, report: &JobReport) -> serde_json::Value {
        let ops: serde_json::Map<String, serde_json::Value> = self
            .metrics
            .iter()
            .map(|(id, m)| {
                (
                    id.clone(),
                    serde_json::json!({
                        "records_in": m.records_in.load(std::sync::atomic::Ordering::Relaxed),
                        "records_out": m.records_out.load(std::sync::atomic::Ordering::Relaxed),
                    }),
                )
            })
            .collect();
        let last = report.checkpoint_stats.last().map(|c| {
            serde_json::json!({
                "id": c.checkpoint_id,
                "duration_ms": c.duration.as_secs_f64() * 1e3,
                "state_bytes": c.state_bytes,
                "max_sync_ms": c.max_sync.as_secs_f64() * 1e3,
            })
        });
        serde_json::json!({
            "operators": ops,
            "completed_checkpoints": report.completed_checkpoints,
            "last_checkpoint": last,
            "restarts": report.restarts,
        })
    }
}

/// Waits out the restart delay while answering control requests: a stop ends the job (returns
/// true); a savepoint cannot be taken while no attempt runs.
async fn restart_delay(delay: Duration, control: &mut Option<mpsc::Receiver<ControlRequest>>, report: &JobReport) -> bool {
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
                Some(ControlRequest::Status { reply }) => {
                    let _ = reply.send(serde_json::json!({
                        "state": "restarting",
                        "completed_checkpoints": report.completed_checkpoints,
                        "restarts": report.restarts,
                    }));
                }
                None => *control = None,
            },
        }
    }
}

const RESTARTING: &str = "the job is restarting after a failure: no savepoint can be taken now; retry in a moment, or stop without a savepoint";

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

async fn recv_control(control: &mut Option<mpsc::Receiver<ControlRequest>>) -> Option<ControlRequest> {
    match control {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn fail_savepoint(req: Option<SavepointRequest>, why: &str) {
    match req {
        Some(SavepointRequest::Take(_, reply)) => {
            let _ = reply.send(Err(why.to_string()));
        }
        Some(SavepointRequest::Stop(_, reply)) => {
            let _ = reply.send(Err(why.to_string()));
        }
        None => {}
    }
}
