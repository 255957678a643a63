//! One subtask's loop, a task on tokio: drives the guest through its lifecycle, moves batches between
//! channels, aligns barriers and snapshots state.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Result;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

use super::channel::{EdgeOutput, InputEvent, InputGate};
use wasmflow_types::{Batch, PollStatus, SubtaskTag};

use super::message::{Barrier, Message};
use crate::checkpoint::{CheckpointStorage, StateFileRef};
use crate::instance::OperatorInstance;

/// Commands from the coordinator to a subtask (a control channel, not in-band).
#[derive(Clone, Debug)]
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
#[derive(Debug)]
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

/// Records in and out of one operator, summed over its subtasks.
#[derive(Debug, Default)]
pub struct OperatorMetrics {
    pub records_in: AtomicU64,
    pub records_out: AtomicU64,
}

/// Everything a subtask task needs.
pub struct SubtaskLoop {
    pub tag: SubtaskTag,
    pub instance: Box<dyn OperatorInstance>,
    pub control: UnboundedReceiver<Control>,
    pub events: UnboundedSender<Event>,
    pub outputs: Vec<EdgeOutput>,
    /// `None` for sources.
    pub input: Option<InputGate>,
    pub storage: Arc<dyn CheckpointStorage>,
    pub batch_size: u32,
    pub metrics: Arc<OperatorMetrics>,
    /// Where the subtask starts: [`Progress::at_start`].
    pub progress: Progress,
}

/// Where a subtask is in its life, for close-once and the `finished` flag of its snapshots.
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

/// Runs a subtask to its end and reports failures as [`Event::Failed`].
pub async fn run(mut task: SubtaskLoop) {
    let tag = task.tag.clone();
    let events = task.events.clone();
    let result = if task.input.is_some() { task.run_operator().await } else { task.run_source().await };
    if let Err(e) = result {
        // A closed downstream channel only happens while the job is torn down (stop, restart):
        // the subtask was blocked on back-pressure when its consumer exited. Not a failure.
        if e.downcast_ref::<super::channel::ChannelClosed>().is_none() {
            let _ = events.send(Event::Failed(tag, format!("{e:#}")));
        }
    }
}

enum Next {
    Continue,
    Shutdown,
}

impl SubtaskLoop {
    async fn emit(&mut self, batch: Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.metrics.records_out.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let Some(last) = self.outputs.len().checked_sub(1) else { return Ok(()) };
        for out in &mut self.outputs[..last] {
            out.send_batch(batch.clone()).await?;
        }
        self.outputs[last].send_batch(batch).await?;
        Ok(())
    }

    async fn broadcast(&mut self, message: Message) -> Result<()> {
        for out in &mut self.outputs {
            out.broadcast(message.clone()).await?;
        }
        Ok(())
    }

    /// Snapshot (synchronous, like Flink's sync phase), then write and ack in the background.
    async fn snapshot(&mut self, barrier: Barrier) -> Result<()> {
        let started = Instant::now();
        let snapshot = match self.instance.snapshot_state(barrier.checkpoint_id, barrier.timestamp).await {
            Ok(s) => s,
            Err(e) => {
                // The guest is in an unknown state after a failed snapshot: decline and fail.
                let _ = self.events.send(Event::Declined { checkpoint_id: barrier.checkpoint_id, tag: self.tag.clone(), reason: e.to_string() });
                return Err(e.into());
            }
        };
        let sync = started.elapsed();
        let finished = self.progress.finished;
        let (storage, events, tag) = (self.storage.clone(), self.events.clone(), self.tag.clone());
        tokio::task::spawn_blocking(move || {
            let event = match storage.write_state(barrier.checkpoint_id, &tag.operator, tag.subtask, &snapshot) {
                Ok(file) => Event::Ack { checkpoint_id: barrier.checkpoint_id, tag, file, sync, finished },
                Err(e) => Event::Declined { checkpoint_id: barrier.checkpoint_id, tag, reason: format!("{e:#}") },
            };
            let _ = events.send(event);
        });
        Ok(())
    }

    async fn handle(&mut self, control: Control) -> Result<Next> {
        match control {
            Control::Trigger(barrier) => {
                self.snapshot(barrier).await?;
                self.broadcast(Message::Barrier(barrier)).await?;
            }
            Control::Complete(id) => self.instance.notify_checkpoint_complete(id).await?,
            Control::Aborted(id) => self.instance.notify_checkpoint_aborted(id).await?,
            Control::Shutdown => return Ok(Next::Shutdown),
        }
        Ok(Next::Continue)
    }

    async fn run_source(&mut self) -> Result<()> {
        let mut idle_until: Option<Instant> = None;
        if self.progress.finished {
            self.broadcast(Message::EndOfInput).await?;
            let _ = self.events.send(Event::Finished(self.tag.clone()));
        }
        loop {
            let finished = self.progress.finished;
            // Control first: a checkpoint falls between two polls, never inside one, so a
            // snapshot never sees a record emitted without its offset (docs/architecture.md, checkpoint path, checkpoint lock).
            while let Ok(c) = self.control.try_recv() {
                if let Next::Shutdown = self.handle(c).await? {
                    return self.shutdown().await;
                }
            }
            if finished || idle_until.is_some_and(|t| t > Instant::now()) {
                let wake = idle_until.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
                tokio::select! {
                    c = self.control.recv() => match c {
                        Some(c) => if let Next::Shutdown = self.handle(c).await? { return self.shutdown().await },
                        None => return Ok(()),
                    },
                    _ = tokio::time::sleep_until(wake), if !finished => idle_until = None,
                }
                continue;
            }
            let (batch, status) = self.instance.poll(self.batch_size).await?;
            self.emit(batch).await?;
            match status {
                PollStatus::Ready => {}
                PollStatus::Idle(ms) => idle_until = Some(Instant::now() + Duration::from_millis(ms.max(1) as u64)),
                PollStatus::Finished => {
                    self.progress.finished = true;
                    self.broadcast(Message::EndOfInput).await?;
                    let _ = self.events.send(Event::Finished(self.tag.clone()));
                }
            }
        }
    }

    async fn run_operator(&mut self) -> Result<()> {
        let mut gate = self.input.take().expect("operators have an input gate");
        loop {
            tokio::select! {
                biased;
                c = self.control.recv() => match c {
                    Some(c) => if let Next::Shutdown = self.handle(c).await? { return self.shutdown().await },
                    None => return Ok(()),
                },
                ev = gate.next() => match ev {
                    None => return Ok(()),
                    Some(InputEvent::Records(batch)) => {
                        self.metrics.records_in.fetch_add(batch.len() as u64, Ordering::Relaxed);
                        let out = self.instance.process(batch).await?;
                        self.emit(out).await?;
                    }
                    Some(InputEvent::BarrierAligned(barrier)) => {
                        self.snapshot(barrier).await?;
                        self.broadcast(Message::Barrier(barrier)).await?;
                    }
                    Some(InputEvent::AllEnded) => {
                        if !self.progress.closed {
                            self.progress.closed = true;
                            let out = self.instance.close().await?;
                            self.emit(out).await?;
                        }
                        self.progress.finished = true;
                        self.broadcast(Message::EndOfInput).await?;
                        let _ = self.events.send(Event::Finished(self.tag.clone()));
                    }
                },
            }
        }
    }

    /// `close`, unless it already ran: operators are closed at end of input; sources, and
    /// operators that did not reach it (a stop), are closed here. What `close` returns here is
    /// dropped: the job is being torn down.
    async fn shutdown(&mut self) -> Result<()> {
        if !self.progress.closed {
            self.progress.closed = true;
            let _ = self.instance.close().await?;
        }
        Ok(())
    }
}
