//! The checkpoint coordinator of one attempt: triggers checkpoints and savepoints at the
//! sources, collects acknowledgements, writes `_metadata`, notifies subtasks, applies the
//! tolerable-failure rule, and answers control requests until the attempt ends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{Result, anyhow};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use super::attempt::{Attempt, AttemptEnd};
use super::job::{CheckpointStats, ControlRequest, JobReport};
use super::message::{Barrier, KeyedSnapshotKind};
use super::subtask::{Control, Event, SubtaskFailure};
use crate::checkpoint::{CheckpointMetadata, FORMAT_VERSION, Fenced, Location, OperatorMetadata, StateFileRef};
use crate::status::view::CheckpointKind;
use wasmflow_types::SubtaskTag;

struct PendingCheckpoint {
    id: u64,
    timestamp: i64,
    started: Instant,
    /// Each subtask's state file, and whether it had finished before its snapshot.
    acks: BTreeMap<(String, u32), (StateFileRef, bool)>,
    max_sync: Duration,
    savepoint: Option<SavepointRequest>,
}

/// What a trigger did.
enum Triggered {
    Pending(PendingCheckpoint),
    /// A savepoint could not begin (its request was answered); not a checkpoint failure.
    Refused,
    /// The storage could not reserve an id (unreachable, say): a failed checkpoint.
    Failed(String),
}

/// What completing a checkpoint did.
enum Completed {
    Checkpoint,
    Savepoint(SavepointRequest, Result<Location, String>),
    /// `_metadata` could not be written: the checkpoint failed (and was aborted).
    Failed(String),
}

/// Whether a storage error ends the job: only fencing (another job manager owns the storage);
/// anything else (an unreachable object store, a full disk) fails the one checkpoint, which
/// `tolerable-failures` then judges.
fn is_fenced(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Fenced>().is_some()
}

enum SavepointRequest {
    Take(Location, oneshot::Sender<Result<Location, String>>),
    Stop(Location, oneshot::Sender<Result<Option<Location>, String>>),
}

impl SavepointRequest {
    /// The directory the savepoint goes into (as `savepoint-<id>`).
    fn target(&self) -> &Location {
        match self {
            SavepointRequest::Take(t, _) | SavepointRequest::Stop(t, _) => t,
        }
    }
}

impl Attempt<'_> {
    /// Triggers a checkpoint (or savepoint) at the sources. `last_complete` is the newest
    /// complete checkpoint, which incremental keyed snapshots build on.
    fn trigger(&self, savepoint: Option<SavepointRequest>, last_complete: Option<u64>) -> Result<Triggered> {
        let kind = CheckpointKind::of(savepoint.is_some());
        let id = match self.storage.reserve_checkpoint_id() {
            Ok(id) => id,
            Err(e) if is_fenced(&e) => return Err(e),
            Err(e) => {
                let why = format!("cannot reserve a checkpoint id: {e:#}");
                tracing::warn!("{} not started: {why}", kind.as_str());
                self.status.checkpoint_not_started();
                self.metrics.checkpoint_failed(kind);
                fail_savepoint(savepoint, &why);
                return Ok(Triggered::Failed(why));
            }
        };
        let location = match &savepoint {
            Some(req) => match self.storage.begin_savepoint(id, req.target()) {
                Ok(location) => Some(location),
                Err(e) => {
                    fail_savepoint(savepoint, &format!("{e:#}"));
                    return Ok(Triggered::Refused);
                }
            },
            None => None,
        };
        if let Some(announce) = &self.announce {
            announce(id, location.as_ref());
        }
        let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        let keyed = match savepoint {
            None if self.job.incremental_checkpoints() => KeyedSnapshotKind::Shared { base: last_complete },
            _ => KeyedSnapshotKind::SelfContained,
        };
        let barrier = Barrier { checkpoint_id: id, timestamp, keyed };
        tracing::debug!("triggering checkpoint {id}");
        for (tag, tx) in &self.controls {
            if self.sources.contains(tag) {
                tx.send(tag, Control::Trigger(barrier));
            }
        }
        self.status.checkpoint_triggered(id, kind, self.number, timestamp as u64);
        Ok(Triggered::Pending(PendingCheckpoint { id, timestamp, started: Instant::now(), acks: BTreeMap::new(), max_sync: Duration::ZERO, savepoint }))
    }

    /// All acks are in: write the metadata (making the checkpoint complete), then notify.
    /// Savepoints are written in place in their own directory and never pruned.
    async fn complete(&self, p: PendingCheckpoint, report: &mut JobReport) -> Result<Completed> {
        let mut operators = BTreeMap::new();
        for op in &self.job.operators {
            let acks: Vec<&(StateFileRef, bool)> = (0..op.parallelism).map(|i| &p.acks[&(op.id.clone(), i)]).collect();
            let subtasks = acks.iter().map(|(file, _)| file.clone()).collect();
            let finished = (0..op.parallelism).filter(|&i| acks[i as usize].1).collect();
            operators.insert(op.id.clone(), OperatorMetadata { parallelism: op.parallelism, subtasks, finished });
        }
        let kind = CheckpointKind::of(p.savepoint.is_some());
        let meta = CheckpointMetadata {
            format_version: FORMAT_VERSION,
            checkpoint_id: p.id,
            timestamp: p.timestamp,
            kind: kind.as_str().into(),
            job_name: self.job.job.name.clone().unwrap_or_default(),
            attempt: self.number,
            generation: self.storage.generation(),
            operators,
        };
        let storage = self.storage.clone();
        let id = p.id;
        let location = self.storage.location(p.id);
        match tokio::task::spawn_blocking(move || storage.commit(id, &meta)).await? {
            Ok(()) => {}
            Err(e) if is_fenced(&e) => return Err(e),
            Err(e) => {
                // Not committed: the checkpoint failed (the job goes on, as `tolerable-failures`
                // says); a savepoint fails its request.
                let why = format!("cannot write {}'s metadata at {location}: {e:#}", kind.as_str());
                self.abort(&p, &why);
                return Ok(match p.savepoint {
                    Some(req) => Completed::Savepoint(req, Err(why)),
                    None => Completed::Failed(why),
                });
            }
        }
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
            state_bytes: p.acks.values().map(|(f, _)| f.written_bytes()).sum(),
            total_bytes: p.acks.values().map(|(f, _)| f.total_bytes()).sum(),
            max_sync: p.max_sync,
        };
        tracing::info!(
            "{kind} {} complete in {} ms ({} bytes written, {} bytes of state, longest synchronous snapshot {} ms)",
            p.id,
            stats.duration.as_millis(),
            stats.state_bytes,
            stats.total_bytes,
            stats.max_sync.as_millis(),
            kind = kind.as_str()
        );
        self.status.checkpoint_completed(p.id, stats.duration, stats.state_bytes, stats.total_bytes, &location);
        self.metrics.checkpoint_completed(kind, &stats);
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
            // Retention is cleanup: the checkpoint is complete and notified. A storage that cannot
            // delete now (an object store gone for a moment) is pruned after the next checkpoint;
            // it must not fail the job.
            if let Err(e) = tokio::task::spawn_blocking(move || storage.prune(retain)).await? {
                tracing::warn!("cannot delete old checkpoints now (retried after the next one): {e:#}");
            }
        }
        Ok(match p.savepoint {
            Some(req) => Completed::Savepoint(req, Ok(location)),
            None => Completed::Checkpoint,
        })
    }

    fn abort(&self, p: &PendingCheckpoint, why: &str) {
        tracing::warn!("checkpoint {} aborted: {why}", p.id);
        self.status.checkpoint_failed(p.id, p.started.elapsed(), why);
        self.metrics.checkpoint_failed(CheckpointKind::of(p.savepoint.is_some()));
        self.storage.abort(p.id);
        self.send_all(Control::Aborted(p.id));
    }

    /// Runs the attempt until the job finishes, is stopped, or fails. `control` survives the
    /// attempt: requests keep working across restarts.
    pub(super) async fn coordinate(&mut self, control: &mut Option<mpsc::Receiver<ControlRequest>>, report: &mut JobReport) -> Result<AttemptEnd> {
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
        // A checkpoint that failed before the wait below (it could not start): (id, why).
        let mut failed_to_start: Option<(Option<u64>, String)> = None;
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
                        match self.trigger(None, report.completed_checkpoints.last().copied())? {
                            Triggered::Pending(p) => {
                                final_checkpoint = Some(p.id);
                                pending = Some(p);
                            }
                            Triggered::Refused => {}
                            Triggered::Failed(why) => failed_to_start = Some((None, why)),
                        }
                    }
                    (true, _) => {}
                }
            }
            if pending.is_none()
                && !stopping
                && let Some(req) = queued.pop()
            {
                stopping = matches!(req, SavepointRequest::Stop(..));
                match self.trigger(Some(req), None)? {
                    Triggered::Pending(p) => pending = Some(p),
                    Triggered::Refused => stopping = false,
                    Triggered::Failed(why) => {
                        stopping = false;
                        failed_to_start = Some((None, why));
                    }
                }
                if failed_to_start.is_none() {
                    continue;
                }
            }
            let deadline = pending.as_ref().map(|p| p.started + timeout);
            let periodic = next_trigger.filter(|_| pending.is_none() && !all_finished && !stopping);
            let retry = retry_final_at.filter(|_| pending.is_none() && all_finished);
            let failed = if let Some(early) = failed_to_start.take() {
                Some(early)
            } else {
                tokio::select! {
                    _ = tokio::time::sleep_until(periodic.unwrap_or_else(far_future)), if periodic.is_some() => {
                        match self.trigger(None, report.completed_checkpoints.last().copied())? {
                            Triggered::Pending(p) => { pending = Some(p); None }
                            Triggered::Refused => None,
                            Triggered::Failed(why) => Some((None, why)),
                        }
                    }
                    _ = tokio::time::sleep_until(retry.unwrap_or_else(far_future)), if retry.is_some() => None,
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                        let p = pending.take().expect("deadline implies pending");
                        let why = format!("not complete after {} ms (checkpoints.timeout-ms)", timeout.as_millis());
                        self.abort(&p, &why);
                        fail_savepoint(p.savepoint, "the savepoint timed out");
                        Some((Some(p.id), why))
                    }
                    req = recv_control(control) => match req {
                        Some(ControlRequest::Savepoint { target, reply }) => { queued.insert(0, SavepointRequest::Take(target, reply)); None }
                        Some(ControlRequest::Stop { savepoint: Some(target), reply }) => { queued.insert(0, SavepointRequest::Stop(target, reply)); None }
                        Some(ControlRequest::Stop { savepoint: None, reply }) => {
                            let _ = reply.send(Ok(None));
                            break Ok(AttemptEnd::Stopped);
                        }
                        None => { *control = None; None }
                    },
                    ev = self.events.recv() => match ev.expect("the attempt holds a sender") {
                        Event::Finished(tag) => { finished.insert(tag); None }
                        Event::Failed(tag, message) => break Err(SubtaskFailure { tag, message }.into()),
                        Event::Declined { checkpoint_id, tag, reason } => match pending.take_if(|p| p.id == checkpoint_id) {
                            Some(p) => {
                                let why = format!("{tag} declined: {reason}");
                                self.abort(&p, &why);
                                fail_savepoint(p.savepoint, &reason);
                                Some((Some(p.id), why))
                            }
                            None => None,
                        },
                        Event::Ack { checkpoint_id, tag, file, sync, finished } => {
                            let complete = match pending.as_mut().filter(|p| p.id == checkpoint_id) {
                                Some(p) => {
                                    self.status.checkpoint_acked(checkpoint_id, &tag.operator, tag.subtask, p.started.elapsed(), sync, file.written_bytes());
                                    p.acks.insert((tag.operator, tag.subtask), (file, finished));
                                    p.max_sync = p.max_sync.max(sync);
                                    p.acks.len() == self.total
                                }
                                None => false, // late ack of an aborted checkpoint
                            };
                            if complete {
                                let p = pending.take().expect("checked");
                                let id = p.id;
                                next_trigger = interval.map(|_| Instant::now() + pause);
                                match self.complete(p, report).await? {
                                    Completed::Checkpoint => { failures = 0; None }
                                    Completed::Failed(why) => Some((Some(id), why)),
                                    Completed::Savepoint(SavepointRequest::Take(_, reply), r) => { let _ = reply.send(r); None }
                                    Completed::Savepoint(SavepointRequest::Stop(_, reply), r) => {
                                        let ok = r.is_ok();
                                        let _ = reply.send(r.map(Some));
                                        if ok { break Ok(AttemptEnd::Stopped) }
                                        stopping = false;
                                        None
                                    }
                                }
                            } else {
                                None
                            }
                        }
                    },
                }
            };
            // Flink's tolerable-failed-checkpoints: more consecutive failures than tolerated
            // fail the job (and go through the restart strategy).
            if let Some((id, why)) = failed {
                failures += 1;
                let which = id.map_or_else(|| "a checkpoint".to_string(), |id| format!("checkpoint {id}"));
                if failures > tolerable {
                    break Err(anyhow!(
                        "{which} failed ({why}): {failures} consecutive checkpoint failure(s), more than checkpoints.tolerable-failures = {tolerable} allows"
                    ));
                }
                next_trigger = interval.map(|_| Instant::now() + pause);
                // The final checkpoint failed, or could not start: try again after the pause.
                if (id.is_some() && final_checkpoint == id) || (id.is_none() && all_finished) {
                    retry_final_at = Some(Instant::now() + pause.max(Duration::from_millis(100)));
                }
            }
        };
        self.send_all(Control::Shutdown);
        // Subtasks (or workers) that do not stop within the grace period are abandoned: the
        // attempt's drop aborts them, and a worker drops them at the next deployment.
        let stopped = futures::future::join_all(self.tasks.iter_mut());
        if tokio::time::timeout(SHUTDOWN_GRACE, stopped).await.is_err() {
            tracing::warn!("some subtasks did not stop within {} s of the shutdown; abandoning them", SHUTDOWN_GRACE.as_secs());
        }
        if let Some(p) = pending.take() {
            self.abort(&p, "the job is stopping");
            fail_savepoint(p.savepoint, "the job stopped before the savepoint completed");
        }
        // A failure during shutdown (e.g. a trap in close) still counts.
        while let Ok(ev) = self.events.try_recv() {
            if let (Ok(_), Event::Failed(tag, message)) = (&result, ev) {
                return Err(anyhow::Error::new(SubtaskFailure { tag, message }).context("the job failed while stopping"));
            }
        }
        result
    }
}

/// How long an ending attempt waits for its subtasks to stop.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(60);

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

pub(super) async fn recv_control(control: &mut Option<mpsc::Receiver<ControlRequest>>) -> Option<ControlRequest> {
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
