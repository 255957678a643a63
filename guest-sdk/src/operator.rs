//! The traits an operator implements: [`Source`], [`Transform`] or [`Sink`].
//!
//! Each is one trait with Flink's hooks, all but the essential one defaulted:
//!
//! | hook | Flink | default |
//! |---|---|---|
//! | `create` | the constructor, with the `RuntimeContext` | required |
//! | `initialize_state` | `CheckpointedFunction.initializeState` | registers nothing |
//! | `open` | `RichFunction.open` | nothing |
//! | `poll` / `process` / `invoke` | `SourceFunction.run` / `processElement` / `SinkFunction.invoke` | required |
//! | `snapshot_state` | `CheckpointedFunction.snapshotState` | nothing |
//! | `notify_checkpoint_complete` / `_aborted` | `CheckpointListener` | nothing |
//! | `close` | `RichFunction.close` (transforms may still emit) | nothing |
//!
//! The host calls them in the order of the table; `docs/authoring.md` has the details.

use anyhow::Result;

use crate::{Collector, FunctionInitializationContext, FunctionSnapshotContext, Input, KeyedContext, PollStatus, Record, RuntimeContext};

/// Generates the checkpoint hooks every kind shares, with their documentation.
macro_rules! checkpoint_hooks {
    () => {
        /// Flink's `initializeState`: called exactly once, after `create` and before `open`.
        /// Register state here and read what was restored (the default registers nothing).
        fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
            let _ = ctx;
            Ok(())
        }

        /// Flink's `snapshotState`: called at every checkpoint. Bring all persistent data into
        /// the registered state (typically `update`); the state's content when this returns is
        /// what the checkpoint holds. Never runs concurrently with record processing.
        fn snapshot_state(&mut self, ctx: &FunctionSnapshotContext) -> Result<()> {
            let _ = ctx;
            Ok(())
        }

        /// Flink's `notifyCheckpointComplete`: the checkpoint is complete and durable on every
        /// subtask. A higher id subsumes all lower ones; a notification may be skipped
        /// (docs/architecture.md).
        fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
            let _ = checkpoint_id;
            Ok(())
        }

        /// Flink's `notifyCheckpointAborted`: the checkpoint was aborted. Data since the previous
        /// checkpoint must not be discarded.
        fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
            let _ = checkpoint_id;
            Ok(())
        }

        /// Called after `initialize_state`: acquire resources.
        fn open(&mut self) -> Result<()> {
            Ok(())
        }
    };
}

/// A source: produces records when polled (Flink's `SourceFunction`, turned inside out so the
/// host drives it and checkpoints fall between polls, like Flink's checkpoint lock).
pub trait Source: Sized {
    /// Builds the source from its runtime context and configuration.
    fn create(ctx: &RuntimeContext) -> Result<Self>;

    /// Emit up to `max_records` records into `out`.
    fn poll(&mut self, out: &mut Collector, max_records: usize) -> Result<PollStatus>;

    checkpoint_hooks!();

    /// Called once at the end.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}

/// A transform: consumes batches and emits records downstream (map, filter, flat-map,
/// aggregation — Flink's `ProcessFunction` family).
pub trait Transform: Sized {
    /// Builds the transform from its runtime context and configuration.
    fn create(ctx: &RuntimeContext) -> Result<Self>;

    /// Processes one batch; emit any number of records into `out`. The records are read (copied
    /// into a wasm module's memory) only if the operator looks at them: see [`Input`].
    fn process(&mut self, input: &Input, out: &mut Collector) -> Result<()>;

    checkpoint_hooks!();

    /// End of input: emit anything still buffered.
    fn close(&mut self, out: &mut Collector) -> Result<()> {
        let _ = out;
        Ok(())
    }
}

/// A keyed operator (Flink's `KeyedProcessFunction`): downstream of `key-hash` edges, it sees
/// one record at a time with its key current, keeps keyed state ([`ValueState`](crate::ValueState),
/// [`MapState`](crate::MapState), …) for that key, and registers timers that call `on_timer`
/// with the key current again. Export it with [`export_keyed!`](crate::export_keyed).
pub trait KeyedProcessFunction: Sized {
    /// Builds the operator from its runtime context and configuration.
    fn create(ctx: &RuntimeContext) -> Result<Self>;

    /// Processes one record; `ctx.key()` is its key, keyed state reads and writes that key's
    /// value, and `ctx.timer_service()` registers timers for it.
    fn process_element(&mut self, record: Record<'_>, ctx: &KeyedContext<'_>, out: &mut Collector) -> Result<()>;

    /// A timer of the current key fired: `timestamp` is the time it was registered for,
    /// `ctx.time_domain()` says which clock.
    fn on_timer(&mut self, timestamp: i64, ctx: &KeyedContext<'_>, out: &mut Collector) -> Result<()> {
        let _ = (timestamp, ctx, out);
        Ok(())
    }

    checkpoint_hooks!();

    /// End of input: emit anything still buffered. At the end of a bounded input every
    /// event-time timer has fired by then (the input ends with the highest watermark); at a stop
    /// they have not (they stay in the savepoint, as with Flink's stop without `--drain`).
    fn close(&mut self, out: &mut Collector) -> Result<()> {
        let _ = out;
        Ok(())
    }
}

/// A sink: consumes batches and emits nothing downstream (Flink's `SinkFunction`).
pub trait Sink: Sized {
    /// Builds the sink from its runtime context and configuration.
    fn create(ctx: &RuntimeContext) -> Result<Self>;

    /// Writes one batch (read only if the sink looks at its records: see [`Input`]).
    fn invoke(&mut self, input: &Input) -> Result<()>;

    checkpoint_hooks!();

    /// End of input.
    fn close(&mut self) -> Result<()> {
        Ok(())
    }
}
