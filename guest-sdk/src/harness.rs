//! Native test harness: run an operator in `cargo test`, like Flink's operator test harnesses.
//!
//! The harness drives the operator through the same lifecycle the host uses (create,
//! initialize_state, open, process/poll, snapshot_state, notify, close) with an in-memory state
//! store, and restores snapshots at another parallelism with **the host's own redistribution
//! code** (`wasmflow_state::redistribute`), so a rescale in a unit test is a rescale in production.
//!
//! ```
//! use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord};
//! use wasmflow_guest_sdk::prelude::*;
//!
//! fn shout(r: Record<'_>, out: &mut Collector) -> Result<()> {
//!     out.emit(r.key, &r.value.to_ascii_uppercase(), r.timestamp);
//!     Ok(())
//! }
//! export_map!(shout);
//!
//! let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("shout", 0, 1, serde_json::json!({})).unwrap();
//! let out = h.process(&[OwnedRecord::value("hi")]).unwrap();
//! assert_eq!(out, vec![OwnedRecord::value("HI")]);
//! ```

use std::marker::PhantomData;

use anyhow::{Result, anyhow};
use serde::de::DeserializeOwned;
use wasmflow_state::{OperatorStateStore, RestoredSubtask, StateLimits, StateValue, SubtaskSnapshot, redistribute};

use crate::glue::{DynOperator, Factory};
use crate::native::NativeSubtask;
use crate::state::decode;
use crate::{Batch, PollStatus, Record, RuntimeContext};

/// An owned record, convenient for building inputs and asserting outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedRecord {
    /// The key, `None` for no key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Vec<u8>,
    /// Event time, ms since the Unix epoch.
    pub timestamp: i64,
}

impl OwnedRecord {
    /// A record with no key and timestamp 0.
    pub fn value(value: impl Into<Vec<u8>>) -> Self {
        OwnedRecord { key: None, value: value.into(), timestamp: 0 }
    }

    /// A record with a key and timestamp 0.
    pub fn keyed(key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Self {
        OwnedRecord { key: Some(key.into()), value: value.into(), timestamp: 0 }
    }

    /// The value as text (lossy).
    pub fn value_str(&self) -> String {
        String::from_utf8_lossy(&self.value).into_owned()
    }

    fn from_record(r: Record<'_>) -> Self {
        OwnedRecord { key: r.key.map(<[u8]>::to_vec), value: r.value.to_vec(), timestamp: r.timestamp }
    }
}

fn to_batch(records: &[OwnedRecord]) -> Batch {
    Batch::from_records(records.iter().map(|r| Record { key: r.key.as_deref(), value: &r.value, timestamp: r.timestamp }))
}

fn from_batch(batch: &Batch) -> Vec<OwnedRecord> {
    batch.iter().map(OwnedRecord::from_record).collect()
}

/// One subtask of an operator under test.
pub struct OperatorHarness<F: Factory> {
    subtask: NativeSubtask<dyn DynOperator>,
    ctx: RuntimeContext,
    _factory: PhantomData<F>,
}

impl<F: Factory> OperatorHarness<F> {
    /// Creates subtask `index` of `parallelism` on a fresh start: create, initialize_state
    /// (not restored), open.
    pub fn open_fresh(operator_id: &str, index: u32, parallelism: u32, config: serde_json::Value) -> Result<Self> {
        let ctx = RuntimeContext::new(operator_id, index, parallelism, config);
        Self::open_with(ctx, OperatorStateStore::new(StateLimits::default()), None)
    }

    /// Creates a subtask from a context and restored state (`restored_checkpoint_id` set means
    /// the job is restored, even if `restored` is empty — docs/state.md, is_restored).
    pub fn open_with(ctx: RuntimeContext, store: OperatorStateStore, restored_checkpoint_id: Option<u64>) -> Result<Self> {
        let mut subtask = NativeSubtask::create_local::<F>(&ctx, store)?;
        subtask.initialize_state(restored_checkpoint_id)?;
        subtask.open()?;
        Ok(OperatorHarness { subtask, ctx, _factory: PhantomData })
    }

    /// The runtime context of this subtask.
    pub fn context(&self) -> &RuntimeContext {
        &self.ctx
    }

    /// Feeds one batch; returns what the operator emitted.
    pub fn process(&mut self, input: &[OwnedRecord]) -> Result<Vec<OwnedRecord>> {
        Ok(from_batch(&self.subtask.process(to_batch(input))?))
    }

    /// Polls a source once.
    pub fn poll(&mut self, max_records: usize) -> Result<(Vec<OwnedRecord>, PollStatus)> {
        let (batch, status) = self.subtask.poll(max_records)?;
        Ok((from_batch(&batch), status))
    }

    /// Takes a snapshot as the host does at a barrier: `snapshot_state`, then a deep copy.
    pub fn snapshot(&mut self, checkpoint_id: u64) -> Result<SubtaskSnapshot> {
        self.subtask.snapshot_state(checkpoint_id, checkpoint_id as i64)
    }

    /// Notifies that `checkpoint_id` completed.
    pub fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.subtask.notify_checkpoint_complete(checkpoint_id)
    }

    /// Notifies that `checkpoint_id` was aborted.
    pub fn notify_checkpoint_aborted(&mut self, checkpoint_id: u64) -> Result<()> {
        self.subtask.notify_checkpoint_aborted(checkpoint_id)
    }

    /// Ends the input; returns what the operator emitted while closing.
    pub fn close(&mut self) -> Result<Vec<OwnedRecord>> {
        Ok(from_batch(&self.subtask.close()?))
    }

    /// The decoded content of list state `name` as the host holds it now.
    pub fn list_state<T: DeserializeOwned>(&self, name: &str) -> Result<Vec<T>> {
        let snapshot = self.subtask.state().snapshot();
        let state = snapshot.states.iter().find(|s| s.name == name).ok_or_else(|| anyhow!("no state named '{name}'"))?;
        match &state.value {
            StateValue::List(items) => items.iter().map(|b| decode(b)).collect(),
            StateValue::Map(_) => Err(anyhow!("state '{name}' is a broadcast map, not a list")),
        }
    }
}

/// A whole operator (all its subtasks) under test: snapshot every subtask and restore at any
/// parallelism, redistributing state exactly as the host does.
pub struct ParallelHarness<F: Factory> {
    /// The subtasks, by index.
    pub subtasks: Vec<OperatorHarness<F>>,
    operator_id: String,
    config: serde_json::Value,
}

impl<F: Factory> ParallelHarness<F> {
    /// Opens `parallelism` fresh subtasks.
    pub fn open_fresh(operator_id: &str, parallelism: u32, config: serde_json::Value) -> Result<Self> {
        let subtasks = (0..parallelism).map(|i| OperatorHarness::open_fresh(operator_id, i, parallelism, config.clone())).collect::<Result<_>>()?;
        Ok(ParallelHarness { subtasks, operator_id: operator_id.to_string(), config })
    }

    /// Snapshots every subtask for `checkpoint_id`.
    pub fn snapshot(&mut self, checkpoint_id: u64) -> Result<Vec<SubtaskSnapshot>> {
        self.subtasks.iter_mut().map(|s| s.snapshot(checkpoint_id)).collect()
    }

    /// Restores `snapshots` (one per old subtask) at `new_parallelism`, as the host would after
    /// `wasmflow run --from-savepoint ... --parallelism`.
    pub fn restore(operator_id: &str, config: serde_json::Value, snapshots: Vec<SubtaskSnapshot>, checkpoint_id: u64, new_parallelism: u32) -> Result<Self> {
        let restored: Vec<RestoredSubtask> = redistribute(snapshots.into_iter().map(Some).collect(), new_parallelism as usize);
        let subtasks = restored
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let ctx = RuntimeContext::new(operator_id, i as u32, new_parallelism, config.clone());
                OperatorHarness::open_with(ctx, OperatorStateStore::restore(r, StateLimits::default()), Some(checkpoint_id))
            })
            .collect::<Result<_>>()?;
        Ok(ParallelHarness { subtasks, operator_id: operator_id.to_string(), config })
    }

    /// Snapshots every subtask and restores the whole operator at `new_parallelism`.
    pub fn rescale(mut self, checkpoint_id: u64, new_parallelism: u32) -> Result<Self> {
        let snapshots = self.snapshot(checkpoint_id)?;
        Self::restore(&self.operator_id, self.config.clone(), snapshots, checkpoint_id, new_parallelism)
    }
}
