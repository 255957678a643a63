//! Native operators: operator code compiled into the host instead of loaded as wasm.
//!
//! An embedding program (the benchmarks, a custom host) registers guest-SDK operator types under
//! a name, and a job file uses them with `module = "native:<name>"`. They run through the same
//! runtime — channels, barriers, checkpoints, restore, rescale — and keep their state in the same
//! store format, so a job can switch an operator between wasm and native and keep its state.
//!
//! Native code is **not sandboxed**: no memory limit, no call deadline, no capabilities (a native
//! operator with `grants` is rejected). Use it for trusted operators only; the `wasmflow` CLI
//! registers none.
//!
//! ```no_run
//! use wasmflow_host::native::NativeRegistry;
//! # mod my_operator { wasmflow_guest_sdk::export_map!(f); fn f(_: wasmflow_guest_sdk::Record<'_>, _: &mut wasmflow_guest_sdk::Collector) -> wasmflow_guest_sdk::Result<()> { Ok(()) } }
//! let mut native = NativeRegistry::default();
//! native.register::<my_operator::WasmflowOperator>("my-map");
//! // [[operators]] id = "m", module = "native:my-map"
//! let opts = wasmflow_host::runtime::RunOptions { native, ..Default::default() };
//! ```

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use wasmflow_guest_sdk::RuntimeContext;
use wasmflow_guest_sdk::native::{NativeSubtask, SendFactory};
use wasmflow_state::{SubtaskSnapshot, SubtaskState, TimeDomain};
use wasmflow_types::{Batch, OperatorKind, SourceOutput, SubtaskTag, TaskInfo};

use crate::engine::GuestError;
use crate::instance::OperatorInstance;

/// The prefix of a job file's `module` that names a native operator.
pub const NATIVE_PREFIX: &str = "native:";

/// The native operator name in a job file's `module`, if it names one.
pub fn native_name(module: &Path) -> Option<&str> {
    module.to_str()?.strip_prefix(NATIVE_PREFIX)
}

type CreateFn = dyn Fn(&RuntimeContext, SubtaskState) -> anyhow::Result<NativeSubtask> + Send + Sync;

/// A registered native operator: its kind and how to build a subtask of it.
#[derive(Clone)]
pub struct NativeFactory {
    kind: OperatorKind,
    create: Arc<CreateFn>,
}

/// Native operators an embedding host makes available to job files, by name.
#[derive(Clone, Default)]
pub struct NativeRegistry {
    factories: BTreeMap<String, NativeFactory>,
}

impl NativeRegistry {
    /// Registers the operator exported by a guest crate (its `WasmflowOperator` type) as `name`.
    pub fn register<F: SendFactory>(&mut self, name: &str) -> &mut Self {
        let kind = F::KIND;
        // Natively hosted operators log through the host's log (see `forward_logs`), not stderr.
        wasmflow_guest_sdk::log::echo_to_stderr(false);
        let create = Arc::new(|ctx: &RuntimeContext, store: SubtaskState| NativeSubtask::create::<F>(ctx, store));
        self.factories.insert(name.to_string(), NativeFactory { kind, create });
        self
    }

    /// The factory registered as `name`; the error lists what is registered.
    pub fn get(&self, name: &str) -> anyhow::Result<NativeFactory> {
        self.factories.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.factories.keys().map(String::as_str).collect();
            if known.is_empty() {
                anyhow::anyhow!(
                    "module \"{NATIVE_PREFIX}{name}\" names a native operator, but this host has none compiled in \
                     (the wasmflow CLI runs wasm modules only: point `module` at a .wasm file)"
                )
            } else {
                anyhow::anyhow!("no native operator named '{name}' in this host; it has: {}", known.join(", "))
            }
        })
    }
}

/// One subtask of a native operator: the other [`OperatorInstance`], beside
/// [`WasmInstance`](crate::engine::WasmInstance).
pub struct NativeInstance {
    tag: SubtaskTag,
    factory: NativeFactory,
    /// The state until `create` hands it to the operator.
    store: Option<SubtaskState>,
    subtask: Option<NativeSubtask>,
}

impl NativeInstance {
    /// A subtask of `factory` that will start from `store` (fresh or restored).
    pub fn new(tag: SubtaskTag, factory: NativeFactory, store: SubtaskState) -> Self {
        NativeInstance { tag, factory, store: Some(store), subtask: None }
    }

    /// Runs one lifecycle call: an error is the operator's failure, a panic is reported like a
    /// wasm trap; the operator's log lines go to the host log either way.
    fn call<T>(&mut self, call: &'static str, f: impl FnOnce(&mut NativeSubtask) -> anyhow::Result<T>) -> Result<T, GuestError> {
        let tag = self.tag.clone();
        let subtask = self.subtask.as_mut().ok_or_else(|| GuestError::Failed { tag: tag.clone(), call, message: "operator used before `create`".into() })?;
        let result = catch_unwind(AssertUnwindSafe(|| f(subtask)));
        forward_logs(&tag);
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(GuestError::Failed { tag, call, message: format!("{e:#}") }),
            Err(panic) => Err(GuestError::Trapped { tag, call, message: format!("native operator panicked: {}", panic_text(&panic)) }),
        }
    }
}

#[async_trait]
impl OperatorInstance for NativeInstance {
    fn kind(&self) -> OperatorKind {
        self.factory.kind
    }

    /// `create`: builds the operator with its task info and JSON config.
    async fn create(&mut self, info: TaskInfo, config: String) -> Result<(), GuestError> {
        let failed = |message: String| GuestError::Failed { tag: self.tag.clone(), call: "create", message };
        let ctx = RuntimeContext::from_task(info, &config).map_err(failed)?;
        let store = self.store.take().ok_or_else(|| failed("`create` called twice".into()))?;
        let created = catch_unwind(AssertUnwindSafe(|| (self.factory.create)(&ctx, store)));
        forward_logs(&self.tag);
        match created {
            Ok(Ok(subtask)) => {
                self.subtask = Some(subtask);
                Ok(())
            }
            Ok(Err(e)) => Err(failed(format!("{e:#}"))),
            Err(panic) => {
                Err(GuestError::Trapped { tag: self.tag.clone(), call: "create", message: format!("native operator panicked: {}", panic_text(&panic)) })
            }
        }
    }

    /// `initialize-state`.
    async fn initialize_state(&mut self, restored_checkpoint_id: Option<u64>) -> Result<(), GuestError> {
        self.call("initialize-state", |s| s.initialize_state(restored_checkpoint_id))
    }

    /// `open`.
    async fn open(&mut self) -> Result<(), GuestError> {
        self.call("open", |s| s.open())
    }

    /// `process`: one batch in, one batch out.
    async fn process(&mut self, input: Batch) -> Result<Batch, GuestError> {
        self.call("process", |s| s.process(input))
    }

    /// `poll`: a source produces up to `max_records` records.
    async fn poll(&mut self, max_records: u32) -> Result<SourceOutput, GuestError> {
        self.call("poll", |s| s.poll(max_records as usize))
    }

    fn set_watermark(&mut self, watermark: i64) {
        if let Some(s) = self.subtask.as_mut() {
            s.set_watermark(watermark);
        }
    }

    /// `on_timer` for the keys of the next due timestamp, if one is due.
    async fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<Option<Batch>, GuestError> {
        self.call("on-timer", |s| s.fire_timers(domain, time))
    }

    fn next_processing_timer(&self) -> Option<i64> {
        self.subtask.as_ref().and_then(|s| s.next_processing_timer())
    }

    /// `snapshot-state`, then a deep copy of the subtask's state.
    async fn snapshot_state(&mut self, checkpoint_id: u64, timestamp: i64, keyed_since: Option<u64>) -> Result<SubtaskSnapshot, GuestError> {
        self.call("snapshot-state", |s| s.snapshot_state_since(checkpoint_id, timestamp, keyed_since))
    }

    /// `notify-checkpoint-complete`.
    async fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), GuestError> {
        self.call("notify-checkpoint-complete", |s| s.notify_checkpoint_complete(checkpoint_id))
    }

    /// `notify-checkpoint-aborted`.
    async fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<(), GuestError> {
        self.call("notify-checkpoint-aborted", |s| s.notify_checkpoint_aborted(checkpoint_id))
    }

    /// `close`: returns records still to emit.
    async fn close(&mut self) -> Result<Batch, GuestError> {
        self.call("close", |s| s.close())
    }
}

/// Natively, the SDK keeps log lines in a thread-local; a call runs on one thread, so draining
/// right after it gets exactly that call's lines.
fn forward_logs(tag: &SubtaskTag) {
    for (level, msg) in wasmflow_guest_sdk::log::take_captured() {
        crate::engine::host::log::emit(tag, level, &msg);
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_else(|| "(no message)".into())
}
