//! The bridge between the wit-bindgen exports and the author's traits.
//!
//! A module holds one operator instance per store, so the instance lives in a thread-local
//! (wasm is single-threaded). The same object-safe [`DynOperator`] drives the operator natively
//! ([`crate::native`]: the test harness and hosts that compile operators in), so tests exercise
//! the code path production uses.

use std::marker::PhantomData;

use anyhow::Result;

use wasmflow_state::TimeDomain;

use crate::keyed::with_current_key;
use crate::state::Backend;
use crate::{
    Batch, Collector, FunctionInitializationContext, FunctionSnapshotContext, Input, KeyedContext, KeyedProcessFunction, OperatorKind, RuntimeContext, Sink,
    Source, SourceOutput, Transform,
};

/// Lifecycle of any operator kind, object safe.
#[doc(hidden)]
pub trait DynOperator {
    fn initialize_state(&mut self, restored: Option<u64>, backend: Backend) -> Result<()>;
    fn open(&mut self) -> Result<()>;
    /// What the operator emitted for `input`, and whether it forwards the input itself: the
    /// wasm export hands that flag to the host, which still holds the input (nothing copied
    /// back); a native caller builds the output with [`Collector::finish`].
    fn process(&mut self, input: &Input) -> Result<Collector>;
    fn poll(&mut self, max_records: usize) -> Result<SourceOutput>;
    fn on_timer(&mut self, domain: TimeDomain, timestamp: i64, keys: Vec<Vec<u8>>) -> Result<Batch>;
    fn snapshot_state(&mut self, checkpoint_id: u64, timestamp: i64) -> Result<()>;
    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()>;
    fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()>;
    fn close(&mut self) -> Result<Batch>;
}

/// Builds the operator of a module.
#[doc(hidden)]
pub trait Factory {
    const KIND: OperatorKind;
    /// Whether the operator is keyed (its harness gives it keyed state).
    const KEYED: bool = false;
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
        checkpoint_methods!(notifications);
    };
    (notifications) => {
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

/// A source, and how many bytes its last poll emitted: the next poll's buffer starts that large
/// rather than growing by doubling (and copying) through every poll.
struct SourceBox<T>(T, usize);
/// A transform, and whether its last call emitted records: one that forwards or filters out its
/// input gets no output buffer sized for the input (it would be allocated for nothing).
struct TransformBox<T>(T, bool);
struct SinkBox<T>(T);
/// A keyed operator and the backend its timers and keyed state go to (known from
/// `initialize_state` on).
struct KeyedBox<T>(T, Option<Backend>);

/// What was emitted where there is no input batch: forwarding one is a mistake, said so.
fn no_input_to_forward(out: &Collector, call: &str) -> Result<()> {
    if out.forwards_input() {
        return Err(anyhow::anyhow!("`forward_input` called in `{call}`, which has no input batch; emit the records instead"));
    }
    Ok(())
}

fn wrong_kind(call: &str, kind: &str) -> anyhow::Error {
    anyhow::anyhow!("`{call}` called on a {kind}; the host only calls it on other operator kinds")
}

fn no_timers(kind: &str) -> anyhow::Error {
    anyhow::anyhow!("`on_timer` called on a {kind}, which has no timers; timers belong to keyed operators (export_keyed!)")
}

/// A transform's or sink's output: sources alone emit watermarks (an operator forwards the
/// minimum of its inputs'), so one emitted elsewhere is a mistake, said so.
fn no_watermark(out: &Collector, call: &str) -> Result<()> {
    if out.watermark().is_some() {
        return Err(anyhow::anyhow!(
            "`emit_watermark` called in `{call}`: only sources emit watermarks; an operator forwards the lowest watermark of its inputs by itself"
        ));
    }
    Ok(())
}

impl<T: Source> DynOperator for SourceBox<T> {
    checkpoint_methods!();
    fn open(&mut self) -> Result<()> {
        self.0.open()
    }
    fn process(&mut self, _input: &Input) -> Result<Collector> {
        Err(wrong_kind("process", "source"))
    }
    fn poll(&mut self, max_records: usize) -> Result<SourceOutput> {
        // Room for the records asked for, so the per-record columns never grow during a poll.
        let mut out = Collector::with_capacity(max_records.min(1 << 16), self.1);
        let status = self.0.poll(&mut out, max_records)?;
        no_input_to_forward(&out, "poll")?;
        self.1 = out.data_bytes();
        Ok(out.into_source_output(status))
    }
    fn on_timer(&mut self, _: TimeDomain, _: i64, _: Vec<Vec<u8>>) -> Result<Batch> {
        Err(no_timers("source"))
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
    fn process(&mut self, input: &Input) -> Result<Collector> {
        // Room for as much as came in if the last call emitted records: a map emits about that
        // much, and its buffers do not grow record by record.
        let mut out = if self.1 { Collector::with_capacity(input.len(), input.data_bytes()) } else { Collector::new() };
        self.0.process(input, &mut out)?;
        no_watermark(&out, "process")?;
        self.1 = !out.is_empty();
        Ok(out)
    }
    fn poll(&mut self, _max_records: usize) -> Result<SourceOutput> {
        Err(wrong_kind("poll", "transform"))
    }
    fn on_timer(&mut self, _: TimeDomain, _: i64, _: Vec<Vec<u8>>) -> Result<Batch> {
        Err(no_timers("transform"))
    }
    fn close(&mut self) -> Result<Batch> {
        let mut out = Collector::new();
        self.0.close(&mut out)?;
        no_watermark(&out, "close")?;
        no_input_to_forward(&out, "close")?;
        Ok(out.into_batch())
    }
}

impl<T: Sink> DynOperator for SinkBox<T> {
    checkpoint_methods!();
    fn open(&mut self) -> Result<()> {
        self.0.open()
    }
    fn process(&mut self, input: &Input) -> Result<Collector> {
        self.0.invoke(input)?;
        Ok(Collector::new())
    }
    fn poll(&mut self, _max_records: usize) -> Result<SourceOutput> {
        Err(wrong_kind("poll", "sink"))
    }
    fn on_timer(&mut self, _: TimeDomain, _: i64, _: Vec<Vec<u8>>) -> Result<Batch> {
        Err(no_timers("sink"))
    }
    fn close(&mut self) -> Result<Batch> {
        self.0.close()?;
        Ok(Batch::default())
    }
}

impl<T: KeyedProcessFunction> KeyedBox<T> {
    fn backend(&self) -> Result<&Backend> {
        self.1.as_ref().ok_or_else(|| anyhow::anyhow!("keyed operator used before `initialize_state`"))
    }
}

impl<T: KeyedProcessFunction> DynOperator for KeyedBox<T> {
    checkpoint_methods!(notifications);
    fn initialize_state(&mut self, restored: Option<u64>, backend: Backend) -> Result<()> {
        self.1 = Some(backend.clone());
        self.0.initialize_state(&mut init_context(restored, backend))
    }
    fn open(&mut self) -> Result<()> {
        self.0.open()
    }
    fn process(&mut self, input: &Input) -> Result<Collector> {
        let backend = self.1.take().ok_or_else(|| anyhow::anyhow!("keyed operator used before `initialize_state`"))?;
        let mut out = Collector::with_capacity(input.len(), input.data_bytes());
        let result = (|| -> Result<()> {
            for record in input {
                let Some(key) = record.key else {
                    return Err(anyhow::anyhow!(
                        "a keyed operator got a record without a key: records reach it over key-hash edges by their key, so give every record a key upstream"
                    ));
                };
                let ctx = KeyedContext { key, timestamp: record.timestamp, domain: None, backend: &backend };
                with_current_key(key, || self.0.process_element(record, &ctx, &mut out))?;
            }
            Ok(())
        })();
        self.1 = Some(backend);
        result?;
        no_watermark(&out, "process_element")?;
        Ok(out)
    }
    fn poll(&mut self, _max_records: usize) -> Result<SourceOutput> {
        Err(wrong_kind("poll", "keyed operator"))
    }
    fn on_timer(&mut self, domain: TimeDomain, timestamp: i64, keys: Vec<Vec<u8>>) -> Result<Batch> {
        self.backend()?;
        let backend = self.1.take().expect("checked above");
        let mut out = Collector::new();
        let result = (|| -> Result<()> {
            for key in &keys {
                let ctx = KeyedContext { key, timestamp, domain: Some(domain), backend: &backend };
                with_current_key(key, || self.0.on_timer(timestamp, &ctx, &mut out))?;
            }
            Ok(())
        })();
        self.1 = Some(backend);
        result?;
        no_watermark(&out, "on_timer")?;
        no_input_to_forward(&out, "on_timer")?;
        Ok(out.into_batch())
    }
    fn close(&mut self) -> Result<Batch> {
        let mut out = Collector::new();
        self.0.close(&mut out)?;
        no_watermark(&out, "close")?;
        no_input_to_forward(&out, "close")?;
        Ok(out.into_batch())
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn boxed_keyed<T: KeyedProcessFunction + Send + 'static>(op: T) -> Box<dyn DynOperator + Send> {
    Box::new(KeyedBox(op, None))
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn boxed_source<T: Source + Send + 'static>(op: T) -> Box<dyn DynOperator + Send> {
    Box::new(SourceBox(op, 0))
}

#[cfg(not(target_arch = "wasm32"))]
pub(crate) fn boxed_transform<T: Transform + Send + 'static>(op: T) -> Box<dyn DynOperator + Send> {
    Box::new(TransformBox(op, false))
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
/// Factory for a [`KeyedProcessFunction`] type.
#[doc(hidden)]
pub struct KeyedFactory<T>(PhantomData<T>);

impl<T: Source + 'static> Factory for SourceFactory<T> {
    const KIND: OperatorKind = OperatorKind::Source;
    fn create(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator>> {
        Ok(Box::new(SourceBox(T::create(ctx)?, 0)))
    }
}

impl<T: Transform + 'static> Factory for TransformFactory<T> {
    const KIND: OperatorKind = OperatorKind::Transform;
    fn create(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator>> {
        Ok(Box::new(TransformBox(T::create(ctx)?, false)))
    }
}

impl<T: KeyedProcessFunction + 'static> Factory for KeyedFactory<T> {
    const KIND: OperatorKind = OperatorKind::Transform;
    const KEYED: bool = true;
    fn create(ctx: &RuntimeContext) -> Result<Box<dyn DynOperator>> {
        Ok(Box::new(KeyedBox(T::create(ctx)?, None)))
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
    use crate::bindings::wasmflow::operator::input::InputBatch;
    use crate::bindings::wasmflow::operator::types as wire;
    use crate::{Columns, PollStatus, TaskInfo};

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

    /// A batch the host lent (`Input` reads it): the host checked every batch it lends
    /// (`Batch::from_columns`).
    pub(crate) fn from_wire(b: wire::Batch) -> Batch {
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

    pub fn process(input: &InputBatch) -> Result<wire::ProcessOutput, String> {
        let out = with(|op| op.process(&Input::from_host(input)))?;
        Ok(wire::ProcessOutput { forward_input: out.forwards_input(), batch: to_wire(out.into_batch()) })
    }

    pub fn poll(max_records: u32) -> Result<wire::SourceOutput, String> {
        let out = with(|op| op.poll(max_records as usize))?;
        let status = match out.status {
            PollStatus::Ready => wire::PollStatus::Ready,
            PollStatus::Idle(ms) => wire::PollStatus::Idle(ms),
            PollStatus::Finished => wire::PollStatus::Finished,
        };
        Ok(wire::SourceOutput { batch: to_wire(out.batch), status, watermark: out.watermark, idle: out.idle })
    }

    pub fn on_timer(domain: wire::TimeDomain, timestamp: i64, keys: Vec<Vec<u8>>) -> Result<wire::Batch, String> {
        let domain = match domain {
            wire::TimeDomain::EventTime => TimeDomain::EventTime,
            wire::TimeDomain::ProcessingTime => TimeDomain::ProcessingTime,
        };
        with(|op| op.on_timer(domain, timestamp, keys)).map(to_wire)
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
            use $crate::bindings::wasmflow::operator::types::{Batch, OperatorKind, ProcessOutput, SourceOutput, TaskInfo, TimeDomain};
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
                fn process(input: &$crate::bindings::wasmflow::operator::input::InputBatch) -> Result<ProcessOutput, String> {
                    e::process(input)
                }
                fn poll(max_records: u32) -> Result<SourceOutput, String> {
                    e::poll(max_records)
                }
                fn on_timer(domain: TimeDomain, timestamp: i64, keys: Vec<Vec<u8>>) -> Result<Batch, String> {
                    e::on_timer(domain, timestamp, keys)
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

/// Exports a [`KeyedProcessFunction`] type as this module's operator.
///
/// ```ignore
/// wasmflow_guest_sdk::export_keyed!(WindowCount);
/// ```
#[macro_export]
macro_rules! export_keyed {
    ($t:ty) => {
        $crate::__wasmflow_export!($crate::glue::KeyedFactory<$t>);
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
            fn process(&mut self, input: &$crate::Input, out: &mut $crate::Collector) -> $crate::Result<()> {
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
