//! What a subtask runs: the one lifecycle every operator goes through, whatever runs it.
//!
//! [`OperatorInstance`] has two implementations: [`WasmInstance`](crate::engine::WasmInstance),
//! a sandboxed component in its own store, and [`NativeInstance`](crate::native::NativeInstance),
//! operator code compiled into the host. The runtime holds a `Box<dyn OperatorInstance>` and
//! never asks which.
//!
//! The calls come in the contract's order (`wit/wasmflow.wit`): `create`, `initialize_state`,
//! `open`, then `process` (transforms and sinks) or `poll` (sources) interleaved with
//! `fire_timers` (keyed operators), `snapshot_state` and the notifications, and `close` at most
//! once.

use async_trait::async_trait;
use wasmflow_state::{SubtaskSnapshot, TimeDomain};
use wasmflow_types::{Batch, OperatorKind, SourceOutput, TaskInfo};

use crate::engine::GuestError;

/// One subtask's operator.
#[async_trait]
pub trait OperatorInstance: Send {
    /// Source, transform or sink.
    fn kind(&self) -> OperatorKind;

    /// Builds the operator from its task info and its `config` table as JSON.
    async fn create(&mut self, info: TaskInfo, config: String) -> Result<(), GuestError>;

    /// Flink's `initializeState`: the operator registers its state and reads what was restored.
    /// `restored_checkpoint_id` is set when the job was restored, even if this subtask got no
    /// state.
    async fn initialize_state(&mut self, restored_checkpoint_id: Option<u64>) -> Result<(), GuestError>;

    /// Acquire resources.
    async fn open(&mut self) -> Result<(), GuestError>;

    /// A transform or sink consumes one batch; what it emits comes back.
    async fn process(&mut self, input: Batch) -> Result<Batch, GuestError>;

    /// A source produces up to `max_records` records, and possibly a watermark.
    async fn poll(&mut self, max_records: u32) -> Result<SourceOutput, GuestError>;

    /// The operator's event time advanced to `watermark` (the minimum over its inputs).
    fn set_watermark(&mut self, watermark: i64);

    /// Fires the due timers of `domain` with the lowest timestamp at or before `time` (the
    /// watermark, or the wall clock) and returns what the operator emitted; `None` when no
    /// timer is due. Call until `None`: timers fire in timestamp order, and one registered
    /// while others fire, for a time already reached, fires in the same round.
    async fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<Option<Batch>, GuestError>;

    /// When the earliest processing-time timer is due.
    fn next_processing_timer(&self) -> Option<i64>;

    /// `snapshot_state`, then a copy of the subtask's state as it is now (Flink's synchronous
    /// phase). Keyed state tracking its changes copies only what changed since checkpoint
    /// `keyed_since` when it can (`SubtaskState::snapshot_since`).
    async fn snapshot_state(&mut self, checkpoint_id: u64, timestamp: i64, keyed_since: Option<u64>) -> Result<SubtaskSnapshot, GuestError>;

    /// The checkpoint is complete and durable everywhere.
    async fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), GuestError>;

    /// The checkpoint was aborted.
    async fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<(), GuestError>;

    /// End of input or a stop: what a transform still emits comes back.
    async fn close(&mut self) -> Result<Batch, GuestError>;
}
