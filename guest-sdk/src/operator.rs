//! The traits an operator implements, named as in Flink.

use anyhow::Result;

use crate::{Batch, Collector, FunctionInitializationContext, FunctionSnapshotContext, RuntimeContext};

/// Flink's `CheckpointedFunction`: state registration and snapshots.
///
/// Both methods default to doing nothing, so a stateless operator writes
/// `impl CheckpointedFunction for MyOp {}`.
pub trait CheckpointedFunction {
    /// Called exactly once per attempt, before `open`: register state and read what was restored.
    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// Called at every checkpoint: bring all persistent data into the registered state
    /// (typically `clear` then `add`). The state's content when this returns is what the
    /// checkpoint holds. Never runs concurrently with record processing.
    fn snapshot_state(&mut self, ctx: &FunctionSnapshotContext) -> Result<()> {
        let _ = ctx;
        Ok(())
    }
}

/// Flink's `CheckpointListener`: notifications about checkpoints, best effort.
pub trait CheckpointListener {
    /// The checkpoint is complete and durable on every subtask. A higher id subsumes all lower
    /// ones; a notification may be skipped (docs/architecture.md).
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        let _ = checkpoint_id;
        Ok(())
    }

    /// The checkpoint was aborted. Data since the previous checkpoint must not be discarded.
    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
        let _ = checkpoint_id;
        Ok(())
    }
}

/// What a source returns from [`Source::poll`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollStatus {
    /// Records may have been emitted; poll again.
    Ready,
    /// Nothing to do now (Flink's `markAsTemporarilyIdle`); poll again after this many ms.
    Idle(u32),
    /// A bounded source has emitted everything.
    Finished,
}

/// A source: produces records when polled (Flink's `SourceFunction`, turned inside out so the
/// host drives it and checkpoints fall between polls, like Flink's checkpoint lock).
pub trait Source: CheckpointedFunction + CheckpointListener + Sized {
    /// Builds the source from its runtime context and configuration.
    fn create(ctx: &RuntimeContext) -> Result<Self>;
    /// Called after `initialize_state`.
    fn open(&mut self) -> Result<()> {
        Ok(())
    }
    /// Emit up to `max_records` records into `out`.
    fn poll(&mut self, out: &mut Collector, max_records: usize) -> Result<PollStatus>;
    /// Called once at the end.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A transformation: consumes batches and emits records downstream.
pub trait Operator: CheckpointedFunction + CheckpointListener + Sized {
    /// Builds the operator from its runtime context and configuration.
    fn create(ctx: &RuntimeContext) -> Result<Self>;
    /// Called after `initialize_state`.
    fn open(&mut self) -> Result<()> {
        Ok(())
    }
    /// Processes one batch; emit any number of records into `out`.
    fn process(&mut self, input: &Batch, out: &mut Collector) -> Result<()>;
    /// End of input: emit anything still buffered.
    fn close(&mut self, out: &mut Collector) -> Result<()> {
        let _ = out;
        Ok(())
    }
}

/// A sink: consumes batches and emits nothing downstream.
pub trait Sink: CheckpointedFunction + CheckpointListener + Sized {
    /// Builds the sink from its runtime context and configuration.
    fn create(ctx: &RuntimeContext) -> Result<Self>;
    /// Called after `initialize_state`.
    fn open(&mut self) -> Result<()> {
        Ok(())
    }
    /// Writes one batch.
    fn invoke(&mut self, input: &Batch) -> Result<()>;
    /// End of input.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
