//! One subtask's loop, a task on tokio: drives its operators through their lifecycle, moves
//! batches between channels, aligns barriers and snapshots state.
//!
//! The loop runs a **chain** (`crate::job::Chain`): one or more operators of the same subtask
//! index, each handing its output batch straight to the next (no channel, no copy, no task
//! switch). Barriers, notifications and end of input are handled once per loop and passed to the
//! members head to tail. Each member keeps its own tag, state, metrics and progress, and
//! acknowledges checkpoints under its own tag, so the coordinator and the checkpoint format do
//! not know whether operators were chained.
//!
//! Event time: a source's watermarks, and the lowest watermark over an operator's inputs
//! ([`InputGate`]), advance each member in turn — firing its due event-time timers, whose output
//! flows on down the chain ahead of the watermark — and then go to the tail's consumers.
//! Processing-time timers fire between batches when the wall clock reaches them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::channel::{EdgeOutput, InputEvent, InputGate};
use wasmflow_state::TimeDomain;
use wasmflow_types::{Batch, OperatorKind, PollStatus, SubtaskTag};

use super::keyed_files::KeyedFiles;
use super::message::{Barrier, Message, WatermarkStatus};
use crate::checkpoint::{SnapshotWriter, StateFileRef};
use crate::engine::GuestError;
use crate::instance::OperatorInstance;
use crate::metrics::{ChainTime, SubtaskMetrics};

/// Commands from the coordinator to a subtask (a control channel, not in-band).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum Control {
    /// Sources only: take a snapshot and inject this barrier.
    Trigger(Barrier),
    /// The checkpoint is complete and durable everywhere.
    Complete(u64),
    /// The checkpoint was aborted.
    Aborted(u64),
    /// Stop now (after a final checkpoint, a stop, or for a restart).
    Shutdown,
}

/// Reports from subtasks to the coordinator.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum Event {
    /// The subtask's state for `checkpoint_id` is durable at `file`; taking the snapshot held up
    /// the subtask's records for `sync` (Flink's synchronous phase). `finished`: the subtask had
    /// finished (a source emitted everything; an operator processed all input and closed) before
    /// this snapshot, so a restore from this checkpoint must not run it again (FLIP-147).
    Ack { checkpoint_id: u64, tag: SubtaskTag, file: StateFileRef, sync: Duration, finished: bool },
    /// The subtask could not take its snapshot: the checkpoint must be aborted.
    Declined { checkpoint_id: u64, tag: SubtaskTag, reason: String },
    /// A source has emitted everything, or a non-source has processed all its input.
    Finished(SubtaskTag),
    /// The subtask failed; the job restarts or fails.
    Failed(SubtaskTag, String),
}

/// A subtask's failure, as the job's error: `subtask <tag> failed: <message>`. Typed so the
/// failure history ([`crate::status`]) can name the failing operator and subtask.
#[derive(Debug, thiserror::Error)]
#[error("subtask {tag} failed: {message}")]
pub struct SubtaskFailure {
    pub tag: SubtaskTag,
    pub message: String,
}

/// One operator of a chain, with everything that is its own.
pub struct ChainMember {
    pub tag: SubtaskTag,
    pub instance: Box<dyn OperatorInstance>,
    /// This operator subtask's series (the same on every attempt of the run).
    pub metrics: Arc<SubtaskMetrics>,
    /// Where the member starts: [`Progress::at_start`].
    pub progress: Progress,
    /// The shared files its keyed state was written to (incremental checkpoints).
    pub keyed_files: KeyedFiles,
}

/// Everything a subtask loop needs.
pub struct SubtaskLoop {
    /// The chain's operators, head first (one for an unchained operator).
    pub chain: Vec<ChainMember>,
    pub control: UnboundedReceiver<Control>,
    pub events: UnboundedSender<Event>,
    /// The tail's outputs.
    pub outputs: Vec<EdgeOutput>,
    /// The head's inputs; `None` when the head is a source.
    pub input: Option<InputGate>,
    pub storage: Arc<dyn SnapshotWriter>,
    pub batch_size: u32,
    /// What the loop has told its consumers about event time.
    pub event_time: OutputEventTime,
    /// Where the members' time goes (busy, idle, back-pressured).
    pub time: ChainTime,
}

/// The watermark and idleness a loop last passed on.
#[derive(Debug)]
pub struct OutputEventTime {
    watermark: i64,
    idle: bool,
}

impl Default for OutputEventTime {
    fn default() -> Self {
        OutputEventTime { watermark: i64::MIN, idle: false }
    }
}

/// Where an operator's subtask is in its life, for close-once and the `finished` flag of its
/// snapshots.
pub struct Progress {
    /// Emitted everything (source) or processed all input (operator).
    finished: bool,
    /// `close` ran (or must never run: finished before the restore).
    closed: bool,
}

impl Progress {
    /// A subtask's start. `finished_on_restore`: the checkpoint restored from says it had
    /// finished (FLIP-147): a source is not polled again, an operator is not closed again; both
    /// still take part in checkpoints and get their notifications.
    pub fn at_start(finished_on_restore: bool, has_input: bool) -> Progress {
        Progress { finished: finished_on_restore, closed: finished_on_restore && has_input }
    }
}

/// Runs a subtask loop to its end and reports failures as [`Event::Failed`], under the tag of
/// the member that failed.
pub async fn run(mut task: SubtaskLoop) {
    let head = task.chain[0].tag.clone();
    let events = task.events.clone();
    let result = if task.input.is_some() { task.run_operator().await } else { task.run_source().await };
    if let Err(e) = result {
        // A closed downstream channel only happens while the job is torn down (stop, restart):
        // the subtask was blocked on back-pressure when its consumer exited. Not a failure.
        if e.downcast_ref::<super::channel::ChannelClosed>().is_none() {
            let tag = e.downcast_ref::<GuestError>().map(GuestError::tag).cloned().unwrap_or(head);
            let _ = events.send(Event::Failed(tag, format!("{e:#}")));
        }
    }
}

enum Next {
    Continue,
    Shutdown,
}

/// What ended an operator loop's wait.
enum Woken {
    Control(Option<Control>),
    Timer,
    Input(Option<InputEvent>),
}

impl SubtaskLoop {
    /// Hands `batch`, emitted by member `from`, to the members after it and then to the tail's
    /// outputs.
    async fn emit_from(&mut self, from: usize, mut batch: Batch) -> Result<()> {
        self.chain[from].metrics.output(&batch);
        for (k, member) in self.chain.iter_mut().enumerate().skip(from + 1) {
            if batch.is_empty() {
                return Ok(());
            }
            member.metrics.input(&batch);
            let started = std::time::Instant::now();
            batch = member.instance.process(batch).await?;
            self.time.busy(k, started);
            member.metrics.output(&batch);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let Some(last) = self.outputs.len().checked_sub(1) else { return Ok(()) };
        let mut waited = Duration::ZERO;
        for out in &mut self.outputs[..last] {
            waited += out.send_batch(batch.clone()).await?;
        }
        waited += self.outputs[last].send_batch(batch).await?;
        self.time.back_pressured(waited);
        Ok(())
    }

    /// The chain's event time reached `watermark` at member `from`: each member from there on
    /// takes it and fires its due event-time timers (their output flows on down the chain, ahead
    /// of the watermark), then the tail's consumers get it. Watermarks never go back.
    async fn advance_watermark(&mut self, from: usize, watermark: i64) -> Result<()> {
        if watermark <= self.event_time.watermark {
            return Ok(());
        }
        for k in from..self.chain.len() {
            self.chain[k].instance.set_watermark(watermark);
            while let Some(out) = self.timers(k, TimeDomain::EventTime, watermark).await? {
                self.emit_from(k, out).await?;
            }
        }
        self.event_time.watermark = watermark;
        // A watermark makes the output active (as Flink's valve does when one passes).
        self.set_idle(false).await?;
        self.broadcast(Message::Watermark(watermark)).await
    }

    /// Passes an idle/active change on (once per change).
    async fn set_idle(&mut self, idle: bool) -> Result<()> {
        if self.event_time.idle == idle {
            return Ok(());
        }
        self.event_time.idle = idle;
        self.broadcast(Message::Status(if idle { WatermarkStatus::Idle } else { WatermarkStatus::Active })).await
    }

    /// When the earliest processing-time timer of the chain is due. A closed member's timers
    /// never fire: nothing may reach it, or leave it, after `close`.
    fn next_processing_timer(&self) -> Option<Instant> {
        let at = self.chain.iter().filter(|m| !m.progress.closed).filter_map(|m| m.instance.next_processing_timer()).min()?;
        let wait = at.saturating_sub(crate::engine::host::now_millis()).max(0) as u64;
        Some(Instant::now() + Duration::from_millis(wait))
    }

    /// Fires every processing-time timer that is due, member by member.
    async fn fire_processing_timers(&mut self) -> Result<()> {
        let now = crate::engine::host::now_millis();
        for k in 0..self.chain.len() {
            if self.chain[k].progress.closed {
                continue;
            }
            while let Some(out) = self.timers(k, TimeDomain::ProcessingTime, now).await? {
                self.emit_from(k, out).await?;
            }
        }
        Ok(())
    }

    /// Member `k`'s next due timer of `domain` fired (its output), if one is due.
    async fn timers(&mut self, k: usize, domain: TimeDomain, time: i64) -> Result<Option<Batch>> {
        let started = std::time::Instant::now();
        let out = self.chain[k].instance.fire_timers(domain, time).await?;
        if out.is_some() {
            self.time.busy(k, started);
        }
        Ok(out)
    }

    async fn broadcast(&mut self, message: Message) -> Result<()> {
        let mut waited = Duration::ZERO;
        for out in &mut self.outputs {
            waited += out.broadcast(message.clone()).await?;
        }
        self.time.back_pressured(waited);
        Ok(())
    }

    /// Every member's snapshot, head to tail (synchronous, like Flink's sync phase: no record
    /// moves between them), then each is written and acknowledged in the background.
    async fn snapshot(&mut self, barrier: Barrier) -> Result<()> {
        for (k, member) in self.chain.iter_mut().enumerate() {
            let started = std::time::Instant::now();
            let since = member.keyed_files.since(&barrier);
            let snapshot = match member.instance.snapshot_state(barrier.checkpoint_id, barrier.timestamp, since).await {
                Ok(s) => s,
                Err(e) => {
                    // The guest is in an unknown state after a failed snapshot: decline and fail.
                    let _ = self.events.send(Event::Declined { checkpoint_id: barrier.checkpoint_id, tag: member.tag.clone(), reason: e.to_string() });
                    return Err(e.into());
                }
            };
            let sync = started.elapsed();
            self.time.busy(k, started);
            let finished = member.progress.finished;
            let (storage, events, tag, files) = (self.storage.clone(), self.events.clone(), member.tag.clone(), member.keyed_files.clone());
            tokio::task::spawn_blocking(move || {
                let event = match files.write(storage.as_ref(), &barrier, &tag, snapshot) {
                    Ok(file) => Event::Ack { checkpoint_id: barrier.checkpoint_id, tag, file, sync, finished },
                    Err(e) => Event::Declined { checkpoint_id: barrier.checkpoint_id, tag, reason: format!("{e:#}") },
                };
                let _ = events.send(event);
            });
        }
        Ok(())
    }

    async fn handle(&mut self, control: Control) -> Result<Next> {
        match control {
            Control::Trigger(barrier) => {
                self.snapshot(barrier).await?;
                self.broadcast(Message::Barrier(barrier)).await?;
            }
            Control::Complete(id) => {
                for (k, member) in self.chain.iter_mut().enumerate() {
                    let started = std::time::Instant::now();
                    member.instance.notify_checkpoint_complete(id).await?;
                    self.time.busy(k, started);
                }
            }
            Control::Aborted(id) => {
                for (k, member) in self.chain.iter_mut().enumerate() {
                    let started = std::time::Instant::now();
                    member.instance.notify_checkpoint_aborted(id).await?;
                    self.time.busy(k, started);
                }
            }
            Control::Shutdown => return Ok(Next::Shutdown),
        }
        Ok(Next::Continue)
    }

    /// The chain's input has ended (the head source finished, or every input channel ended):
    /// event time jumps to the end (`i64::MAX`: every event-time timer fires, as when Flink's
    /// bounded input ends), then each member in turn reaches the end of its input — a transform
    /// or sink is closed and what it emits flows on down the chain; a source is only marked
    /// finished (it is closed at shutdown). Then the tail's consumers learn it.
    async fn end_of_input(&mut self) -> Result<()> {
        self.set_idle(false).await?;
        self.advance_watermark(0, i64::MAX).await?;
        for k in 0..self.chain.len() {
            let member = &mut self.chain[k];
            if member.instance.kind() != OperatorKind::Source && !member.progress.closed {
                member.progress.closed = true;
                let started = std::time::Instant::now();
                let out = member.instance.close().await?;
                self.time.busy(k, started);
                self.emit_from(k, out).await?;
            }
            let member = &mut self.chain[k];
            member.progress.finished = true;
            let _ = self.events.send(Event::Finished(member.tag.clone()));
        }
        self.broadcast(Message::EndOfInput).await
    }

    async fn run_source(&mut self) -> Result<()> {
        let mut idle_until: Option<Instant> = None;
        if self.chain[0].progress.finished {
            self.end_of_input().await?;
        }
        loop {
            let finished = self.chain[0].progress.finished;
            // Control first: a checkpoint falls between two polls, never inside one, so a
            // snapshot never sees a record emitted without its offset (the checkpoint lock).
            while let Ok(c) = self.control.try_recv() {
                if let Next::Shutdown = self.handle(c).await? {
                    return self.shutdown().await;
                }
            }
            if finished || idle_until.is_some_and(|t| t > Instant::now()) {
                let wake = idle_until.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                let waiting = std::time::Instant::now();
                // `None`: the idle pause is over.
                let control = tokio::select! {
                    c = self.control.recv() => Some(c),
                    _ = tokio::time::sleep_until(wake), if !finished => None,
                };
                self.time.idle(waiting.elapsed());
                match control {
                    Some(Some(c)) => {
                        if let Next::Shutdown = self.handle(c).await? {
                            return self.shutdown().await;
                        }
                    }
                    Some(None) => return Ok(()),
                    None => idle_until = None,
                }
                continue;
            }
            let started = std::time::Instant::now();
            let out = self.chain[0].instance.poll(self.batch_size).await?;
            self.time.busy(0, started);
            if !out.batch.is_empty() || out.watermark.is_some() {
                self.set_idle(false).await?;
            }
            self.emit_from(0, out.batch).await?;
            if let Some(watermark) = out.watermark {
                self.advance_watermark(0, watermark).await?;
            }
            if out.idle {
                self.set_idle(true).await?;
            }
            match out.status {
                PollStatus::Ready => {}
                PollStatus::Idle(ms) => idle_until = Some(Instant::now() + Duration::from_millis(ms.max(1) as u64)),
                PollStatus::Finished => {
                    self.chain[0].progress.finished = true;
                    self.end_of_input().await?;
                }
            }
        }
    }

    async fn run_operator(&mut self) -> Result<()> {
        let mut gate = self.input.take().expect("operators have an input gate");
        loop {
            let timer = self.next_processing_timer();
            let waiting = std::time::Instant::now();
            let woken = tokio::select! {
                biased;
                c = self.control.recv() => Woken::Control(c),
                _ = tokio::time::sleep_until(timer.unwrap_or_else(Instant::now)), if timer.is_some() => Woken::Timer,
                ev = gate.next() => Woken::Input(ev),
            };
            // Whatever woke the loop, the wait was for something to do: idle time.
            self.time.idle(waiting.elapsed());
            match woken {
                Woken::Control(Some(c)) => {
                    if let Next::Shutdown = self.handle(c).await? {
                        return self.shutdown().await;
                    }
                }
                Woken::Control(None) | Woken::Input(None) => return Ok(()),
                Woken::Timer => self.fire_processing_timers().await?,
                Woken::Input(Some(InputEvent::Records(batch))) => {
                    let head = &mut self.chain[0];
                    head.metrics.input(&batch);
                    let started = std::time::Instant::now();
                    let out = head.instance.process(batch).await?;
                    self.time.busy(0, started);
                    self.emit_from(0, out).await?;
                }
                Woken::Input(Some(InputEvent::BarrierAligned(barrier))) => {
                    self.chain[0].metrics.aligned(gate.last_alignment());
                    self.snapshot(barrier).await?;
                    self.broadcast(Message::Barrier(barrier)).await?;
                }
                Woken::Input(Some(InputEvent::Watermark(w))) => self.advance_watermark(0, w).await?,
                Woken::Input(Some(InputEvent::Status(s))) => self.set_idle(s == WatermarkStatus::Idle).await?,
                Woken::Input(Some(InputEvent::AllEnded)) => self.end_of_input().await?,
            }
        }
    }

    /// `close` on every member where it has not run: operators are closed at end of input;
    /// sources, and operators that did not reach it (a stop), are closed here. What `close`
    /// returns here is dropped: the job is being torn down.
    async fn shutdown(&mut self) -> Result<()> {
        for member in &mut self.chain {
            if !member.progress.closed {
                member.progress.closed = true;
                let _ = member.instance.close().await?;
            }
        }
        Ok(())
    }
}
