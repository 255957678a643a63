//! The bridge between the wit-bindgen exports and the author's traits.
//!
//! A module holds one operator instance per store, so the instance lives in a thread-local
//! (wasm is single-threaded). The same object-safe [`DynOperator`] drives the operator natively
//! ([`crate::native`]: the test harness and hosts that compile operators in), so tests exercise
//! the code path production uses.

use std::marker::PhantomData;

use anyhow::Result;

use crate::state::Backend;
use crate::{Batch, Collector, FunctionInitializationContext, FunctionSnapshotContext, OperatorKind, PollStatus, RuntimeContext, Sink, Source, Transform};

/// Lifecycle of any operator kind, object safe.
#[doc(hidden)]
pub trait DynOperator {
    fn initialize_state(&mut self, restored: Option<u64>, backend: Backend) -> Result<()>;
    fn open(&mut self) -> Result<()>;
    fn process(&mut self, input: Batch) -> Result<Batch>;
    fn poll(&mut self, max_records: usize) -> Result<(Batch, PollStatus)>;
    fn snapshot_state(&mut self, checkpoint_id: u64, timestamp: i64) -> Result<()>;
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()>;
    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()>;
    fn close(&mut self) -> Result<Batch>;
}

/// Builds the operator of a module.
#[doc(hidden)]
pub trait Factory {
    const KIND: OperatorKind;
    fn create(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator>>;
}

fn init_context(restored: Option<u64>, backend: Backend) -> FunctionInitializationContext {
    FunctionInitializationContext { restored_checkpoint_id: restored, backend }
}

macro_rules! checkpoint_methods {
    () => {
        fn initialize_state(&mut self, restored: Option<u64>, backend: Backend) -> Result<()> {
            self.0.initialize_state(&mut init_context(restored, backend))
        }
        fn snapshot_state(&mut self, checkpoint_id: u64, timestamp: i64) -> Result<()> {
            self.0.snapshot_state(&FunctionSnapshotContext::new(checkpoint_id, timestamp))
        }
        fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
            self.0.notify_checkpoint_complete(checkpoint_id)
        }
        fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
            self.0.notify_checkpoint_aborted(checkpoint_id)
        }
    };
}

struct SourceBox<T>(T);
struct TransformBox<T>(T);
struct SinkBox<T>(T);

/// What was emitted where there is no input batch: forwarding one is a mistake, said so.
fn no_input_to_forward(out: Collector, call: &str) -> Result<Batch> {
    if out.forwards_input() {
        return Err(anyhow::anyhow!("`forward_input` called in `{call}`, which has no input batch; emit the records instead"));
    }
    Ok(out.into_batch())
}

fn wrong_kind(call: &str, kind: &str) -> anyhow::Error {
    anyhow::anyhow!("`{call}` called on a {kind}; the host only calls it on other operator kinds")
}

impl<T: Source> DynOperator for SourceBox<T> {
    checkpoint_methods!();
    fn open(&mut self) -> Result<()> {
        self.0.open()
    }
    fn process(&mut self, _input: Batch) -> Result<Batch> {
        Err(wrong_kind("process", "source"))
    }
    fn poll(&mut self, max_records: usize) -> Result<(Batch, PollStatus)> {
        // Room for the records asked for, so the per-record columns never grow during a poll.
        let mut out = Collector::with_capacity(max_records.min(1 << 16), 0);
        let status = self.0.poll(&mut out, max_records)?;
        Ok((no_input_to_forward(out, "poll")?, status))
    }
    fn close(&mut self) -> Result<Batch> {
        self.0.close()?;
        Ok(Batch::default())
    }
}

impl<T: Transform> DynOperator for TransformBox<T> {
    checkpoint_methods!();
    fn open(&mut self) -> Result<()> {
        self.0.open()
    }
    fn process(&mut self, input: Batch) -> Result<Batch> {
        // Room for as much as came in: a map emits about that much, and its buffers do not grow
        // record by record. A forwarding transform leaves it unused.
        let mut out = Collector::with_capacity(input.len(), input.data_bytes());
        self.0.process(&input, &mut out)?;
        Ok(out.finish(input))
    }
    fn poll(&mut self, _max_records: usize) -> Result<(Batch, PollStatus)> {
        Err(wrong_kind("poll", "transform"))
    }
    fn close(&mut self) -> Result<Batch> {
        let mut out = Collector::new();
        self.0.close(&mut out)?;
        no_input_to_forward(out, "close")
    }
}

impl<T: Sink> DynOperator for SinkBox<T> {
    checkpoint_methods!();
    fn open(&mut self) -> Result<()> {
        self.0.open()
    }
    fn process(&mut self, input: Batch) -> Result<Batch> {
        self.0.invoke(&input)?;
        Ok(Batch::default())
    }
    fn poll(&mut self, _max_records: usize) -> Result<(Batch, PollStatus)> {
        Err(wrong_kind("poll", "sink"))
    }
    fn close(&mut self) -> Result<Batch> {
        self.0.close()?;
        Ok(Batch::default())
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn boxed_source<T: Source + Send + 'static>(op: T) -> Box<dyn DynOperator + Send> {
    Box::new(SourceBox(op))
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn boxed_transform<T: Transform + Send + 'static>(op: T) -> Box<dyn DynOperator + Send> {
    Box::new(TransformBox(op))
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn boxed_sink<T: Sink + Send + 'static>(op: T) -> Box<dyn DynOperator + Send> {
    Box::new(SinkBox(op))
}

/// Factory for a [`Source`] type.
#[doc(hidden)]
pub struct SourceFactory<T>(PhantomData<T>);
/// Factory for a [`Transform`] type.
#[doc(hidden)]
pub struct TransformFactory<T>(PhantomData<T>);
/// Factory for a [`Sink`] type.
#[doc(hidden)]
pub struct SinkFactory<T>(PhantomData<T>);

impl<T: Source + 'static> Factory for SourceFactory<T> {
    const KIND: OperatorKind = OperatorKind::Source;
    fn create(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator>> {
        Ok(Box::new(SourceBox(T::create(ctx)?)))
    }
}

impl<T: Transform + 'static> Factory for TransformFactory<T> {
    const KIND: OperatorKind = OperatorKind::Transform;
    fn create(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator>> {
        Ok(Box::new(TransformBox(T::create(ctx)?)))
    }
}

impl<T: Sink + 'static> Factory for SinkFactory<T> {
    const KIND: OperatorKind = OperatorKind::Sink;
    fn create(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator>> {
        Ok(Box::new(SinkBox(T::create(ctx)?)))
    }
}

/// Formats an error with its causes on one line, for the host's log and error reports.
#[cfg(target_arch = "wasm32")]
fn error_chain(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// The bodies of the exported functions; the export macros generate the `Guest` impl (in the
/// author's crate, as wit-bindgen requires) and call these.
#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod exports {
    use std::cell::RefCell;

    use super::*;
    use crate::bindings::wasmflow::operator::types as wire;
    use crate::{Columns, TaskInfo};

    thread_local! {
        static INSTANCE: RefCell<Option<Box<dyn DynOperator>>> = const { RefCell::new(None) };
    }

    fn with<R>(f: impl FnOnce(&mut dyn DynOperator) -> Result<R>) -> Result<R, String> {
        INSTANCE.with(|cell| {
            let mut slot = cell.borrow_mut();
            let op = slot.as_mut().ok_or_else(|| "operator used before `create`".to_string())?;
            f(op.as_mut()).map_err(|e| error_chain(&e))
        })
    }

    // The generated types are converted here and nowhere else; moving the columns copies nothing.

    /// The host checked every batch it hands to a guest (`Batch::from_columns`).
    fn from_wire(b: wire::Batch) -> Batch {
        Batch::from_checked_columns(Columns { data: b.data, key_lens: b.key_lens, value_lens: b.value_lens, timestamps: b.timestamps })
    }

    pub(crate) fn to_wire(b: Batch) -> wire::Batch {
        let c = b.into_columns();
        wire::Batch { data: c.data, key_lens: c.key_lens, value_lens: c.value_lens, timestamps: c.timestamps }
    }

    pub fn kind(kind: OperatorKind) -> wire::OperatorKind {
        match kind {
            OperatorKind::Source => wire::OperatorKind::Source,
            OperatorKind::Transform => wire::OperatorKind::Transform,
            OperatorKind::Sink => wire::OperatorKind::Sink,
        }
    }

    pub fn create<F: Factory>(info: wire::TaskInfo, config: String) -> Result<(), String> {
        crate::log::install_panic_hook();
        let info = TaskInfo {
            operator_id: info.operator_id,
            subtask_index: info.subtask_index,
            parallelism: info.parallelism,
            checkpointing_enabled: info.checkpointing_enabled,
            attempt: info.attempt,
        };
        let ctx = RuntimeContext::from_task(info, &config)?;
        let op = F::create(&ctx).map_err(|e| error_chain(&e))?;
        INSTANCE.with(|cell| *cell.borrow_mut() = Some(op));
        Ok(())
    }

    pub fn initialize_state(restored: Option<u64>) -> Result<(), String> {
        with(|op| op.initialize_state(restored, Backend::Host))
    }

    pub fn open() -> Result<(), String> {
        with(|op| op.open())
    }

    pub fn process(input: wire::Batch) -> Result<wire::Batch, String> {
        let input = from_wire(input);
        with(|op| op.process(input)).map(to_wire)
    }

    pub fn poll(max_records: u32) -> Result<(wire::Batch, wire::PollStatus), String> {
        let (batch, status) = with(|op| op.poll(max_records as usize))?;
        let status = match status {
            PollStatus::Ready => wire::PollStatus::Ready,
            PollStatus::Idle(ms) => wire::PollStatus::Idle(ms),
            PollStatus::Finished => wire::PollStatus::Finished,
        };
        Ok((to_wire(batch), status))
    }

    pub fn snapshot_state(checkpoint_id: u64, timestamp: i64) -> Result<(), String> {
        with(|op| op.snapshot_state(checkpoint_id, timestamp))
    }

    pub fn notify_checkpoint_complete(checkpoint_id: u64) -> Result<(), String> {
        with(|op| op.notify_checkpoint_complete(checkpoint_id))
    }

    pub fn notify_checkpoint_aborted(checkpoint_id: u64) -> Result<(), String> {
        with(|op| op.notify_checkpoint_aborted(checkpoint_id))
    }

    pub fn close() -> Result<wire::Batch, String> {
        with(|op| op.close()).map(to_wire)
    }
}

/// Generates the wit-bindgen export for a factory (used by the public export macros).
#[doc(hidden)]
#[macro_export]
macro_rules! __wasmflow_export {
    ($factory:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            use $crate::bindings::wasmflow::operator::types::{Batch, OperatorKind, PollStatus, TaskInfo};
            use $crate::glue::exports as e;

            struct WasmflowExport;

            impl $crate::bindings::exports::wasmflow::operator::operator::Guest for WasmflowExport {
                fn kind() -> OperatorKind {
                    e::kind(<$factory as $crate::glue::Factory>::KIND)
                }
                fn create(info: TaskInfo, config: String) -> Result<(), String> {
                    e::create::<$factory>(info, config)
                }
                fn initialize_state(restored: Option<u64>) -> Result<(), String> {
                    e::initialize_state(restored)
                }
                fn open() -> Result<(), String> {
                    e::open()
                }
                fn process(input: Batch) -> Result<Batch, String> {
                    e::process(input)
                }
                fn poll(max_records: u32) -> Result<(Batch, PollStatus), String> {
                    e::poll(max_records)
                }
                fn snapshot_state(checkpoint_id: u64, timestamp: i64) -> Result<(), String> {
                    e::snapshot_state(checkpoint_id, timestamp)
                }
                fn notify_checkpoint_complete(checkpoint_id: u64) -> Result<(), String> {
                    e::notify_checkpoint_complete(checkpoint_id)
                }
                fn notify_checkpoint_aborted(checkpoint_id: u64) -> Result<(), String> {
                    e::notify_checkpoint_aborted(checkpoint_id)
                }
                fn close() -> Result<Batch, String> {
                    e::close()
                }
            }

    $crate::bindings::__export_operator_module!(WasmflowExport with_types_in $crate::bindings);
        };
        /// The operator this crate exports, for the native test harness.
        pub type WasmflowOperator = $factory;
    };
}

/// Exports a [`Source`] type as this module's operator.
///
/// ```ignore
/// wasmflow_guest_sdk::export_source!(MySource);
/// ```
#[macro_export]
macro_rules! export_source {
    ($t:ty) => {
        $crate::__wasmflow_export!($crate::glue::SourceFactory<$t>);
    };
}

/// Exports a [`Transform`] type as this module's operator.
///
/// ```ignore
/// wasmflow_guest_sdk::export_transform!(MyTransform);
/// ```
#[macro_export]
macro_rules! export_transform {
    ($t:ty) => {
        $crate::__wasmflow_export!($crate::glue::TransformFactory<$t>);
    };
}

/// Exports a [`Sink`] type as this module's operator.
#[macro_export]
macro_rules! export_sink {
    ($t:ty) => {
        $crate::__wasmflow_export!($crate::glue::SinkFactory<$t>);
    };
}

/// Exports a stateless function as this module's operator — the one-function way to write a
/// map, filter or flat-map. The function gets each record and emits zero or more records.
///
/// ```
/// use wasmflow_guest_sdk::{Collector, Record, Result};
///
/// fn upper(record: Record<'_>, out: &mut Collector) -> Result<()> {
///     out.emit(record.key, &record.value.to_ascii_uppercase(), record.timestamp);
///     Ok(())
/// }
/// wasmflow_guest_sdk::export_map!(upper);
/// ```
#[macro_export]
macro_rules! export_map {
    ($f:path) => {
        #[doc(hidden)]
        pub struct WasmflowMapFn;
        impl $crate::Transform for WasmflowMapFn {
            fn create(_ctx: &$crate::RuntimeContext) -> $crate::Result<Self> {
                Ok(WasmflowMapFn)
            }
            fn process(&mut self, input: &$crate::Batch, out: &mut $crate::Collector) -> $crate::Result<()> {
                for record in input.iter() {
                    $f(record, out)?;
                }
                Ok(())
            }
        }
        $crate::export_transform!(WasmflowMapFn);
    };
}

#[cfg(test)]
mod tests {
    use wasmflow_state::{OperatorStateStore, StateLimits};

    use crate::native::NativeSubtask;
    use crate::prelude::*;

    struct Forwarder;
    impl Source for Forwarder {
        fn create(_ctx: &RuntimeContext) -> Result<Self> {
            Ok(Forwarder)
        }
        fn poll(&mut self, out: &mut Collector, _max_records: usize) -> Result<PollStatus> {
            out.forward_input();
            Ok(PollStatus::Ready)
        }
    }

    #[test]
    fn forwarding_where_there_is_no_input_is_an_error_that_says_so() {
        let ctx = RuntimeContext::new("f", 0, 1, serde_json::json!({}));
        let mut subtask = NativeSubtask::create::<super::SourceFactory<Forwarder>>(&ctx, OperatorStateStore::new(StateLimits::default())).unwrap();
        let err = subtask.poll(10).unwrap_err().to_string();
        assert_eq!(err, "`forward_input` called in `poll`, which has no input batch; emit the records instead");
    }
}
