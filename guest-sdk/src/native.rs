//! Running an operator natively instead of as wasm: the code the [`harness`](crate::harness)
//! uses in `cargo test`, and what a host uses to compile an operator into itself (the
//! `wasmflow` runtime's native operators, e.g. for the wasm-overhead benchmark).
//!
//! A [`NativeSubtask`] is one subtask: the operator plus its state store, driven through the
//! same lifecycle calls the wasm export makes (`create`, `initialize_state`, `open`, then
//! `process`/`poll`, `snapshot_state`, notifications, `close`). Nothing is sandboxed: native
//! operator code is as trusted as the host.
//!
//! ```
//! use wasmflow_guest_sdk::native::NativeSubtask;
//! use wasmflow_guest_sdk::prelude::*;
//! use wasmflow_state::{OperatorStateStore, StateLimits};
//!
//! fn shout(r: Record<'_>, out: &mut Collector) -> Result<()> {
//!     out.emit(r.key, &r.value.to_ascii_uppercase(), r.timestamp);
//!     Ok(())
//! }
//! export_map!(shout);
//!
//! let ctx = RuntimeContext::new("shout", 0, 1, serde_json::json!({}));
//! let store = OperatorStateStore::new(StateLimits::default());
//! let mut subtask = NativeSubtask::create::<WasmflowOperator>(&ctx, store).unwrap();
//! subtask.initialize_state(None).unwrap();
//! subtask.open().unwrap();
//! let out = subtask.process(Batch::from_records([Record { key: None, value: b"hi", timestamp: 0 }])).unwrap();
//! assert_eq!(out.iter().next().unwrap().value, b"HI");
//! ```

use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Result;
use wasmflow_state::{SubtaskSnapshot, SubtaskState, TimeDomain};

use crate::glue::{DynOperator, Factory, KeyedFactory, SinkFactory, SourceFactory, TransformFactory};
use crate::state::{Backend, SharedStore, lock};
use crate::{Batch, Input, KeyedProcessFunction, OperatorKind, RuntimeContext, Sink, Source, SourceOutput, Transform};

/// A factory whose operator may move between threads — what a multi-threaded host needs.
/// Implemented for every exported operator type that is `Send` (most are: state handles are).
pub trait SendFactory: Factory {
    /// Builds the operator for `ctx`.
    fn create_send(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator + Send>>;
}

impl<T: Source + Send + 'static> SendFactory for SourceFactory<T> {
    fn create_send(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator + Send>> {
        Ok(crate::glue::boxed_source(T::create(ctx)?))
    }
}

impl<T: Transform + Send + 'static> SendFactory for TransformFactory<T> {
    fn create_send(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator + Send>> {
        Ok(crate::glue::boxed_transform(T::create(ctx)?))
    }
}

impl<T: KeyedProcessFunction + Send + 'static> SendFactory for KeyedFactory<T> {
    fn create_send(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator + Send>> {
        Ok(crate::glue::boxed_keyed(T::create(ctx)?))
    }
}

impl<T: Sink + Send + 'static> SendFactory for SinkFactory<T> {
    fn create_send(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator + Send>> {
        Ok(crate::glue::boxed_sink(T::create(ctx)?))
    }
}

/// One natively running subtask: the operator and the state store it registers state in.
///
/// `Op` is `dyn DynOperator + Send` for hosts (the default), or `dyn DynOperator` for the
/// single-threaded test harness, which accepts operators that are not `Send`.
pub struct NativeSubtask<Op: ?Sized + DynOperator = dyn DynOperator + Send> {
    op: Box<Op>,
    store: SharedStore,
    kind: OperatorKind,
}

impl NativeSubtask {
    /// Creates the operator of factory `F` for `ctx`, over `store` (fresh or restored: an
    /// `OperatorStateStore`, or a `SubtaskState` with keyed state for a keyed operator).
    pub fn create<F: SendFactory>(ctx: &RuntimeContext, store: impl Into<SubtaskState>) -> Result<Self> {
        Ok(NativeSubtask { op: F::create_send(ctx)?, store: Arc::new(Mutex::new(store.into())), kind: F::KIND })
    }
}

impl NativeSubtask<dyn DynOperator> {
    /// Like [`NativeSubtask::create`], for operators that are not `Send` (test harness).
    pub fn create_local<F: Factory>(ctx: &RuntimeContext, store: impl Into<SubtaskState>) -> Result<Self> {
        Ok(NativeSubtask { op: F::create(ctx)?, store: Arc::new(Mutex::new(store.into())), kind: F::KIND })
    }
}

impl<Op: ?Sized + DynOperator> NativeSubtask<Op> {
    /// Source, transform or sink.
    pub fn kind(&self) -> OperatorKind {
        self.kind
    }

    /// `initialize_state`: the operator registers its state; `restored` is the checkpoint id
    /// when the job was restored (even if this subtask received no state).
    pub fn initialize_state(&mut self, restored: Option<u64>) -> Result<()> {
        self.op.initialize_state(restored, Backend::Native(self.store.clone()))
    }

    /// `open`.
    pub fn open(&mut self) -> Result<()> {
        self.op.open()
    }

    /// `process`: one batch in, what the operator emitted out.
    pub fn process(&mut self, input: Batch) -> Result<Batch> {
        let out = self.op.process(&Input::from(&input))?;
        Ok(out.finish(input))
    }

    /// `poll`: a source emits up to `max_records` records, and possibly a watermark.
    pub fn poll(&mut self, max_records: usize) -> Result<SourceOutput> {
        self.op.poll(max_records)
    }

    /// The operator's event time advanced to `watermark`.
    pub fn set_watermark(&mut self, watermark: i64) {
        lock(&self.store).watermark = watermark;
    }

    /// Fires the due timers of `domain` with the lowest timestamp at or before `time` (the
    /// watermark or the wall clock): `on_timer` for each of their keys. `None` when none is due;
    /// call until `None`, as the host does.
    pub fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<Option<Batch>> {
        let due = lock(&self.store).keyed.as_mut().and_then(|k| k.pop_due(domain, time));
        match due {
            Some(due) => Ok(Some(self.op.on_timer(domain, due.timestamp, due.keys)?)),
            None => Ok(None),
        }
    }

    /// When the earliest processing-time timer is due.
    pub fn next_processing_timer(&self) -> Option<i64> {
        lock(&self.store).keyed.as_ref().and_then(|k| k.next_processing_timer())
    }

    /// `snapshot_state`, then a deep copy of the state, as the host takes it at a barrier.
    pub fn snapshot_state(&mut self, checkpoint_id: u64, timestamp: i64) -> Result<SubtaskSnapshot> {
        self.snapshot_state_since(checkpoint_id, timestamp, None)
    }

    /// As [`snapshot_state`](Self::snapshot_state); keyed state tracking its changes copies
    /// only what changed since checkpoint `keyed_since` when it can (incremental checkpoints).
    pub fn snapshot_state_since(&mut self, checkpoint_id: u64, timestamp: i64, keyed_since: Option<u64>) -> Result<SubtaskSnapshot> {
        self.op.snapshot_state(checkpoint_id, timestamp)?;
        Ok(lock(&self.store).snapshot_since(crate::log::now_millis(), checkpoint_id, keyed_since)?)
    }

    /// `notify_checkpoint_complete`.
    pub fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.op.notify_checkpoint_complete(checkpoint_id)
    }

    /// `notify_checkpoint_aborted`.
    pub fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
        self.op.notify_checkpoint_aborted(checkpoint_id)
    }

    /// `close`: what the operator emits at the end of its input.
    pub fn close(&mut self) -> Result<Batch> {
        self.op.close()
    }

    /// The state, as it is now.
    pub fn state(&self) -> MutexGuard<'_, SubtaskState> {
        lock(&self.store)
    }
}
