//! One running subtask: a `Store` with the operator instantiated in it.

use std::time::{Duration, Instant};

use anyhow::Result;
use wasmtime::component::Resource;
use wasmtime::{Store, UpdateDeadline};

use async_trait::async_trait;
use wasmflow_state::{SubtaskSnapshot, TimeDomain};
use wasmflow_types::{Batch, OperatorKind, SourceOutput, SubtaskTag, TaskInfo};

use super::bindings::OperatorModule as Bindings;
use super::bindings::exports::wasmflow::operator::operator::Guest;
use super::bindings::wasmflow::operator::types as wire;
use super::host::input::InputBatch;
use super::host::{Phase, StoreData};
use super::{Engine, OperatorModule};
use crate::instance::OperatorInstance;

/// Why a call into a guest failed. Either way the subtask is finished; the runtime's restart
/// strategy decides what happens next.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The operator returned an error (its own message).
    #[error("{tag}: {call} failed: {message}")]
    Failed { tag: SubtaskTag, call: &'static str, message: String },
    /// The guest trapped: panic, out of memory, stack overflow, deadline, misuse of a handle.
    #[error("{tag}: {call} trapped: {message}")]
    Trapped { tag: SubtaskTag, call: &'static str, message: String },
}

impl GuestError {
    /// The subtask whose call failed.
    pub fn tag(&self) -> &SubtaskTag {
        match self {
            GuestError::Failed { tag, .. } | GuestError::Trapped { tag, .. } => tag,
        }
    }
}

/// A subtask's wasm operator: one store, one instance of the module.
pub struct WasmInstance {
    store: Store<StoreData>,
    bindings: Bindings,
    kind: OperatorKind,
    call_timeout: Duration,
    max_batch_bytes: usize,
}

/// Frames of a guest backtrace kept in an error report (a runaway recursion has thousands).
const MAX_BACKTRACE_LINES: usize = 12;

fn trap_message(e: &wasmtime::Error) -> String {
    let full = format!("{e:#}");
    let lines: Vec<&str> = full.lines().collect();
    let mut msg = if lines.len() > MAX_BACKTRACE_LINES + 2 {
        // Keep the head of the backtrace and the cause, which wasmtime puts last.
        let mut kept = lines[..MAX_BACKTRACE_LINES].join("\n");
        kept.push_str(&format!("\n    … {} more lines\n{}", lines.len() - MAX_BACKTRACE_LINES - 1, lines[lines.len() - 1]));
        kept
    } else {
        full
    };
    if let Some(trap) = e.downcast_ref::<wasmtime::Trap>() {
        let hint = match trap {
            wasmtime::Trap::StackOverflow => " (deep recursion: the guest exceeded its stack)",
            wasmtime::Trap::MemoryOutOfBounds => " (an out-of-bounds access; in Rust guests also a stack overflow of the shadow stack: deep recursion)",
            wasmtime::Trap::UnreachableCodeReached => " (a panic in the guest; its message is in the log above)",
            wasmtime::Trap::Interrupt => " (the call ran past its deadline: limits.call-timeout-ms)",
            _ => "",
        };
        msg.push_str(hint);
    }
    msg
}

impl WasmInstance {
    /// Instantiates `module` in a new store holding `data`.
    pub async fn instantiate(engine: &Engine, module: &OperatorModule, data: StoreData, call_timeout: Duration) -> Result<Self> {
        let max_batch_bytes = data.max_batch_bytes;
        let mut store = Store::new(engine.wasmtime(), data);
        store.limiter(|d| d);
        store.set_epoch_deadline(1);
        // Every epoch tick: yield to tokio (a busy guest never starves other subtasks), unless
        // the call in progress is past its deadline, which traps.
        store.epoch_deadline_callback(|ctx| {
            let late = ctx.data().call_deadline.is_some_and(|d| Instant::now() >= d);
            if late && let Some(m) = &ctx.data().metrics {
                m.deadline_exceeded();
            }
            if late { Ok(UpdateDeadline::Interrupt) } else { Ok(UpdateDeadline::Yield(1)) }
        });
        let tag = store.data().tag.clone();
        // Start-up runs guest code too (start functions, static constructors, `kind`): it gets
        // the same deadline as every other call, so a loop there cannot hang the job.
        store.data_mut().call_deadline = Some(Instant::now() + call_timeout);
        let bindings = module.pre.instantiate_async(&mut store).await.map_err(|e| GuestError::Trapped {
            tag: tag.clone(),
            call: "instantiate",
            message: trap_message(&e),
        })?;
        store.data_mut().call_deadline = Some(Instant::now() + call_timeout);
        let kind = bindings.wasmflow_operator_operator().call_kind(&mut store).await.map_err(|e| GuestError::Trapped {
            tag,
            call: "kind",
            message: trap_message(&e),
        })?;
        store.data_mut().call_deadline = None;
        Ok(WasmInstance { store, bindings, kind: super::wire::kind(kind), call_timeout, max_batch_bytes })
    }

    /// The store's data (state store, tag).
    pub fn data(&self) -> &StoreData {
        self.store.data()
    }

    /// The store's data, mutably.
    pub fn data_mut(&mut self) -> &mut StoreData {
        self.store.data_mut()
    }

    async fn call<T, F>(&mut self, name: &'static str, phase: Phase, f: F) -> Result<T, GuestError>
    where
        F: for<'a> FnOnce(&'a Guest, &'a mut Store<StoreData>) -> std::pin::Pin<Box<dyn Future<Output = wasmtime::Result<Result<T, String>>> + Send + 'a>>,
    {
        let tag = self.store.data().tag.clone();
        self.store.data_mut().phase = phase;
        self.store.data_mut().call_deadline = Some(Instant::now() + self.call_timeout);
        self.store.data_mut().call_millis = super::host::now_millis();
        let guest = self.bindings.wasmflow_operator_operator();
        let result = f(guest, &mut self.store).await;
        self.store.data_mut().call_deadline = None;
        self.store.data_mut().phase = Phase::Running;
        match result {
            Ok(Ok(v)) => Ok(v),
            // The guest's own text: cut and escaped like its log lines (a 50 MiB error is not
            // logged whole, and cannot forge host log lines).
            Ok(Err(message)) => Err(GuestError::Failed { tag, call: name, message: super::host::log::sanitize(&message, self.store.data().log.max_line) }),
            Err(e) => Err(GuestError::Trapped { tag, call: name, message: trap_message(&e) }),
        }
    }

    /// A batch from the guest is untrusted: its record lengths must add up to its data, and it
    /// must fit the batch-size limit, before anything downstream reads it.
    fn check_batch(&self, call: &'static str, batch: wire::Batch) -> Result<Batch, GuestError> {
        self.check_output(call, batch, 0)
    }

    /// [`check_batch`](Self::check_batch) for a batch that follows `forwarded` bytes of keys and
    /// values the host already holds: the limit is on the whole output.
    fn check_output(&self, call: &'static str, batch: wire::Batch, forwarded: usize) -> Result<Batch, GuestError> {
        let fail = |message: String| GuestError::Failed { tag: self.store.data().tag.clone(), call, message };
        let bytes = forwarded + batch.data.len();
        if bytes > self.max_batch_bytes {
            return Err(fail(format!("returned a batch of {bytes} bytes, over the limit of {} bytes (limits.batch-bytes)", self.max_batch_bytes)));
        }
        super::wire::batch_from_guest(batch).map_err(|e| fail(format!("returned a malformed batch: {e}")))
    }
}

#[async_trait]
impl OperatorInstance for WasmInstance {
    fn kind(&self) -> OperatorKind {
        self.kind
    }

    /// `create`: builds the operator with its task info and JSON config.
    async fn create(&mut self, info: TaskInfo, config: String) -> Result<(), GuestError> {
        let info = super::wire::task_info(info);
        self.call("create", Phase::Create, move |g, s| Box::pin(async move { g.call_create(s, &info, &config).await })).await
    }

    /// `initialize-state`: registration of state is allowed only here.
    async fn initialize_state(&mut self, restored_checkpoint_id: Option<u64>) -> Result<(), GuestError> {
        self.call("initialize-state", Phase::InitializeState, move |g, s| Box::pin(async move { g.call_initialize_state(s, restored_checkpoint_id).await }))
            .await
    }

    /// `open`.
    async fn open(&mut self) -> Result<(), GuestError> {
        self.call("open", Phase::Running, |g, s| Box::pin(async move { g.call_open(s).await })).await
    }

    /// `process`: one batch in, one batch out. The input is lent: it stays in the store's resource
    /// table for the call and the guest copies it in only by reading it (`host/input.rs`). An
    /// operator that forwards its input returns only what it emitted besides: the output is the
    /// batch lent, then that (no copy back out of the guest, no second check of records the host
    /// built).
    async fn process(&mut self, input: Batch) -> Result<Batch, GuestError> {
        let lent = InputBatch::new(super::wire::batch_to_guest(input));
        let handle = self.store.data_mut().table.push(lent).map_err(|e| GuestError::Failed {
            tag: self.store.data().tag.clone(),
            call: "process",
            message: format!("could not lend the input batch: {e}"),
        })?;
        let borrow = Resource::new_borrow(handle.rep());
        let out = self.call("process", Phase::Running, move |g, s| Box::pin(async move { g.call_process(s, borrow).await })).await;
        // Taken back whatever the call did: the handle must not outlive it.
        let input = self.store.data_mut().table.delete(handle).map(InputBatch::into_batch);
        let out = out?;
        let input =
            input.map_err(|e| GuestError::Failed { tag: self.store.data().tag.clone(), call: "process", message: format!("lost the input batch: {e}") })?;
        if !out.forward_input {
            return self.check_batch("process", out.batch);
        }
        // The limit is on the whole output, as if the guest had returned its input too.
        let emitted = self.check_output("process", out.batch, input.data.len())?;
        let mut output = super::wire::batch_from_host(input);
        output.append(emitted);
        Ok(output)
    }

    /// `poll`: a source produces up to `max_records` records.
    async fn poll(&mut self, max_records: u32) -> Result<SourceOutput, GuestError> {
        let out = self.call("poll", Phase::Running, move |g, s| Box::pin(async move { g.call_poll(s, max_records).await })).await?;
        let batch = self.check_batch("poll", out.batch)?;
        Ok(SourceOutput { batch, status: super::wire::poll_status(out.status), watermark: out.watermark, idle: out.idle })
    }

    fn set_watermark(&mut self, watermark: i64) {
        self.store.data_mut().state.watermark = watermark;
    }

    /// `on-timer` with the keys of the next due timestamp, if one is due.
    async fn fire_timers(&mut self, domain: TimeDomain, time: i64) -> Result<Option<Batch>, GuestError> {
        let Some(due) = self.store.data_mut().state.keyed.as_mut().and_then(|k| k.pop_due(domain, time)) else { return Ok(None) };
        let (wire_domain, timestamp, keys) = (super::wire::time_domain(domain), due.timestamp, due.keys);
        let out = self.call("on-timer", Phase::Running, move |g, s| Box::pin(async move { g.call_on_timer(s, wire_domain, timestamp, &keys).await })).await?;
        Ok(Some(self.check_batch("on-timer", out)?))
    }

    fn next_processing_timer(&self) -> Option<i64> {
        self.store.data().state.keyed.as_ref().and_then(|k| k.next_processing_timer())
    }

    /// `snapshot-state`, then a deep copy of the subtask's state (Flink's synchronous phase).
    async fn snapshot_state(&mut self, checkpoint_id: u64, timestamp: i64, keyed_since: Option<u64>) -> Result<SubtaskSnapshot, GuestError> {
        self.call("snapshot-state", Phase::Snapshot, move |g, s| Box::pin(async move { g.call_snapshot_state(s, checkpoint_id, timestamp).await })).await?;
        let tag = self.store.data().tag.clone();
        self.store.data_mut().state.snapshot_since(super::host::now_millis(), checkpoint_id, keyed_since).map_err(|e| GuestError::Failed {
            tag,
            call: "snapshot-state",
            message: e.to_string(),
        })
    }

    /// `notify-checkpoint-complete`.
    async fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), GuestError> {
        self.call("notify-checkpoint-complete", Phase::Running, move |g, s| Box::pin(async move { g.call_notify_checkpoint_complete(s, checkpoint_id).await }))
            .await
    }

    /// `notify-checkpoint-aborted`.
    async fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<(), GuestError> {
        self.call("notify-checkpoint-aborted", Phase::Running, move |g, s| Box::pin(async move { g.call_notify_checkpoint_aborted(s, checkpoint_id).await }))
            .await
    }

    /// `close`: returns records still to emit.
    async fn close(&mut self) -> Result<Batch, GuestError> {
        let out = self.call("close", Phase::Running, |g, s| Box::pin(async move { g.call_close(s).await })).await;
        self.store.data_mut().phase = Phase::Closed;
        self.check_batch("close", out?)
    }
}
