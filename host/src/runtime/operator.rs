//! What a subtask runs: a sandboxed wasm instance or a native operator, behind one set of
//! lifecycle calls so the rest of the runtime does not care which.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmflow_state::SubtaskSnapshot;

use crate::engine::bindings::wasmflow::operator::types::{Batch, OperatorKind, PollStatus, TaskInfo};
use crate::engine::host::SubtaskData;
use crate::engine::{Capability, Engine, GuestError, OperatorModule, SubtaskInstance};
use crate::job::{JobSpec, OperatorSpec};
use crate::native::{NativeFactory, NativeInstance, NativeRegistry, native_name};

/// An operator's code, loaded once per job.
pub enum OperatorCode {
    /// A component, compiled and checked against its grants (boxed: it is much larger than a
    /// native factory).
    Wasm(Box<OperatorModule>),
    /// A native operator from the host's [`NativeRegistry`].
    Native(NativeFactory),
}

impl OperatorCode {
    /// Loads the code of `op`: its wasm module, or the native operator it names.
    pub fn load(engine: &Engine, job: &JobSpec, op: &OperatorSpec, native: &NativeRegistry) -> Result<Self> {
        if let Some(name) = native_name(&op.module) {
            if op.grants.kafka.is_some() || op.grants.files.is_some() {
                bail!("native operators get no capabilities (they are not sandboxed); remove `grants` or use a wasm module");
            }
            return Ok(OperatorCode::Native(native.get(name)?));
        }
        let mut granted = BTreeSet::new();
        if op.grants.kafka.is_some() {
            granted.insert(Capability::Kafka);
        }
        if op.grants.files.is_some() {
            granted.insert(Capability::Files);
        }
        Ok(OperatorCode::Wasm(Box::new(OperatorModule::load(engine, &job.resolve(&op.module), &granted)?)))
    }

    /// A new subtask of this operator over `data` (its tag, restored state and capabilities).
    pub async fn instantiate(&self, engine: &Engine, data: SubtaskData, call_timeout: Duration) -> Result<SubtaskOperator> {
        Ok(match self {
            OperatorCode::Wasm(module) => SubtaskOperator::Wasm(SubtaskInstance::instantiate(engine, module, data, call_timeout).await?),
            OperatorCode::Native(factory) => {
                let (tag, store) = data.into_parts();
                SubtaskOperator::Native(NativeInstance::new(tag, factory.clone(), store))
            }
        })
    }
}

/// Loads every operator's code once; errors name the operator.
pub fn load_operators(engine: &Engine, job: &JobSpec, native: &NativeRegistry) -> Result<std::collections::BTreeMap<String, OperatorCode>> {
    job.operators.iter().map(|op| Ok((op.id.clone(), OperatorCode::load(engine, job, op, native).with_context(|| format!("operator '{}'", op.id))?))).collect()
}

/// One running subtask's operator.
pub enum SubtaskOperator {
    /// In its own wasm store.
    Wasm(SubtaskInstance),
    /// Compiled into the host.
    Native(NativeInstance),
}

macro_rules! dispatch {
    ($self:ident, $op:ident => $call:expr) => {
        match $self {
            SubtaskOperator::Wasm($op) => $call.await,
            SubtaskOperator::Native($op) => $call,
        }
    };
}

impl SubtaskOperator {
    /// Source, transform or sink.
    pub fn kind(&self) -> OperatorKind {
        match self {
            SubtaskOperator::Wasm(i) => i.kind(),
            SubtaskOperator::Native(n) => n.kind(),
        }
    }

    /// `create`.
    pub async fn create(&mut self, info: TaskInfo, config: String) -> Result<(), GuestError> {
        dispatch!(self, op => op.create(info, config))
    }

    /// `initialize-state`.
    pub async fn initialize_state(&mut self, restored_checkpoint_id: Option<u64>) -> Result<(), GuestError> {
        dispatch!(self, op => op.initialize_state(restored_checkpoint_id))
    }

    /// `open`.
    pub async fn open(&mut self) -> Result<(), GuestError> {
        dispatch!(self, op => op.open())
    }

    /// `process`.
    pub async fn process(&mut self, input: Batch) -> Result<Batch, GuestError> {
        dispatch!(self, op => op.process(input))
    }

    /// `poll`.
    pub async fn poll(&mut self, max_records: u32) -> Result<(Batch, PollStatus), GuestError> {
        dispatch!(self, op => op.poll(max_records))
    }

    /// `snapshot-state` and a copy of the state.
    pub async fn snapshot_state(&mut self, checkpoint_id: u64, timestamp: i64) -> Result<SubtaskSnapshot, GuestError> {
        dispatch!(self, op => op.snapshot_state(checkpoint_id, timestamp))
    }

    /// `notify-checkpoint-complete`.
    pub async fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), GuestError> {
        dispatch!(self, op => op.notify_checkpoint_complete(checkpoint_id))
    }

    /// `notify-checkpoint-aborted`.
    pub async fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<(), GuestError> {
        dispatch!(self, op => op.notify_checkpoint_aborted(checkpoint_id))
    }

    /// `close`.
    pub async fn close(&mut self) -> Result<Batch, GuestError> {
        dispatch!(self, op => op.close())
    }
}
