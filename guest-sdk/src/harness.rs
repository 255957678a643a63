//! Native test harness: run an operator in `cargo test`, like Flink's operator test harnesses.
//!
//! The harness drives the operator through the same lifecycle the host uses (create,
//! initialize_state, open, process/poll, snapshot_state, notify, close) with an in-memory state
//! store, and restores snapshots at another parallelism with **the host's own redistribution
//! code** (`wasmflow_state::redistribute`), so a rescale in a unit test is a rescale in production.
//!
//! Keyed operators ([`KeyedProcessFunction`](crate::KeyedProcessFunction)) get keyed state for
//! the key groups their subtask owns; [`ParallelHarness::process`] routes records to subtasks by
//! key as a `key-hash` edge does, and [`OperatorHarness::advance_watermark`] /
//! [`advance_processing_time`](OperatorHarness::advance_processing_time) fire timers.
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
use wasmflow_state::{
    DEFAULT_MAX_PARALLELISM, KeyGroupRange, KeyedSnapshot, KeyedStateBackend, OperatorStateStore, RestoredSubtask, StateLimits, StateValue, SubtaskSnapshot,
    SubtaskState, TimeDomain, redistribute, subtask_for_key,
};

use crate::glue::{DynOperator, Factory};
use crate::native::NativeSubtask;
use crate::state::decode;
use crate::{Batch, PollStatus, Record, RuntimeContext, SourceOutput};

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

    /// The same record with event time `timestamp`.
    pub fn at(mut self, timestamp: i64) -> Self {
        self.timestamp = timestamp;
        self
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
    last_poll: Option<SourceOutput>,
    _factory: PhantomData<F>,
}

/// The state a fresh subtask starts with: keyed state for its key groups if `F` is keyed.
fn fresh_state<F: Factory>(max_parallelism: u32, parallelism: u32, index: u32) -> SubtaskState {
    let operator = OperatorStateStore::new(StateLimits::default());
    if F::KEYED {
        let range = KeyGroupRange::for_subtask(max_parallelism, parallelism, index);
        SubtaskState::keyed(operator, KeyedStateBackend::new(max_parallelism, range, StateLimits::default()))
    } else {
        operator.into()
    }
}

impl<F: Factory> OperatorHarness<F> {
    /// Creates subtask `index` of `parallelism` on a fresh start: create, initialize_state
    /// (not restored), open.
    pub fn open_fresh(operator_id: &str, index: u32, parallelism: u32, config: serde_json::Value) -> Result<Self> {
        let ctx = RuntimeContext::new(operator_id, index, parallelism, config);
        Self::open_with(ctx, fresh_state::<F>(DEFAULT_MAX_PARALLELISM, parallelism, index), None)
    }

    /// Creates a subtask from a context and restored state (`restored_checkpoint_id` set means
    /// the job is restored, even if `restored` is empty — docs/state.md, is_restored).
    pub fn open_with(ctx: RuntimeContext, store: impl Into<SubtaskState>, restored_checkpoint_id: Option<u64>) -> Result<Self> {
        let mut subtask = NativeSubtask::create_local::<F>(&ctx, store)?;
        subtask.initialize_state(restored_checkpoint_id)?;
        subtask.open()?;
        Ok(OperatorHarness { subtask, ctx, last_poll: None, _factory: PhantomData })
    }

    /// The runtime context of this subtask.
    pub fn context(&self) -> &RuntimeContext {
        &self.ctx
    }

    /// Feeds one batch; returns what the operator emitted.
    pub fn process(&mut self, input: &[OwnedRecord]) -> Result<Vec<OwnedRecord>> {
        Ok(from_batch(&self.subtask.process(to_batch(input))?))
    }

    /// Polls a source once; [`last_watermark`](Self::last_watermark) tells the watermark it
    /// emitted, if any.
    pub fn poll(&mut self, max_records: usize) -> Result<(Vec<OwnedRecord>, PollStatus)> {
        let out = self.subtask.poll(max_records)?;
        let result = (from_batch(&out.batch), out.status);
        self.last_poll = Some(out);
        Ok(result)
    }

    /// The watermark the last poll emitted.
    pub fn last_watermark(&self) -> Option<i64> {
        self.last_poll.as_ref().and_then(|p| p.watermark)
    }

    /// Whether the last poll marked the source idle.
    pub fn last_poll_idle(&self) -> bool {
        self.last_poll.as_ref().is_some_and(|p| p.idle)
    }

    /// The operator's watermark advances to `watermark`, as when every input has passed it:
    /// due event-time timers fire in timestamp order. Returns what they emitted.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Vec<OwnedRecord>> {
        self.subtask.set_watermark(watermark);
        self.fire(TimeDomain::EventTime, watermark)
    }

    /// The wall clock reaches `now` (ms): due processing-time timers fire.
    pub fn advance_processing_time(&mut self, now: i64) -> Result<Vec<OwnedRecord>> {
        self.fire(TimeDomain::ProcessingTime, now)
    }

    fn fire(&mut self, domain: TimeDomain, time: i64) -> Result<Vec<OwnedRecord>> {
        let mut out = Vec::new();
        while let Some(batch) = self.subtask.fire_timers(domain, time)? {
            out.extend(from_batch(&batch));
        }
        Ok(out)
    }

    /// The value of keyed value state `name` for `key`, decoded, as the host holds it now.
    pub fn keyed_value<T: DeserializeOwned>(&self, name: &str, key: &[u8]) -> Result<Option<T>> {
        let mut state = self.subtask.state();
        let keyed = state.keyed.as_mut().ok_or_else(|| anyhow!("this operator is not keyed"))?;
        let id = keyed.id_of(name).ok_or_else(|| anyhow!("no keyed state named '{name}'"))?;
        let now = crate::log::now_millis();
        keyed.value_get(id, key, now)?.map(|b| decode(&b)).transpose()
    }

    /// Registered timers (event time, processing time).
    pub fn timer_counts(&self) -> (usize, usize) {
        self.subtask.state().keyed.as_ref().map(|k| k.timer_counts()).unwrap_or_default()
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
        let snapshot = self.subtask.state().operator.snapshot();
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
    /// Key groups of keyed state (routing of [`process`](Self::process)).
    max_parallelism: u32,
    operator_id: String,
    config: serde_json::Value,
}

impl<F: Factory> ParallelHarness<F> {
    /// Opens `parallelism` fresh subtasks.
    pub fn open_fresh(operator_id: &str, parallelism: u32, config: serde_json::Value) -> Result<Self> {
        let subtasks = (0..parallelism).map(|i| OperatorHarness::open_fresh(operator_id, i, parallelism, config.clone())).collect::<Result<_>>()?;
        Ok(ParallelHarness { subtasks, max_parallelism: DEFAULT_MAX_PARALLELISM, operator_id: operator_id.to_string(), config })
    }

    /// Snapshots every subtask for `checkpoint_id`.
    pub fn snapshot(&mut self, checkpoint_id: u64) -> Result<Vec<SubtaskSnapshot>> {
        self.subtasks.iter_mut().map(|s| s.snapshot(checkpoint_id)).collect()
    }

    /// Restores `snapshots` (one per old subtask) at `new_parallelism`, as the host would after
    /// `wasmflow run --from-savepoint ... --parallelism`.
    pub fn restore(operator_id: &str, config: serde_json::Value, snapshots: Vec<SubtaskSnapshot>, checkpoint_id: u64, new_parallelism: u32) -> Result<Self> {
        let keyed: Vec<KeyedSnapshot> = snapshots.iter().filter_map(|s| s.keyed.clone()).collect();
        let max_parallelism = keyed.first().map(|k| k.max_parallelism).unwrap_or(DEFAULT_MAX_PARALLELISM);
        let restored: Vec<RestoredSubtask> = redistribute(snapshots.into_iter().map(Some).collect(), new_parallelism as usize);
        let subtasks = restored
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let ctx = RuntimeContext::new(operator_id, i as u32, new_parallelism, config.clone());
                let operator = OperatorStateStore::restore(r, StateLimits::default());
                let state = if F::KEYED {
                    // Whole key groups, from whichever old subtask had them (as the host does).
                    let range = KeyGroupRange::for_subtask(max_parallelism, new_parallelism, i as u32);
                    SubtaskState::keyed(operator, KeyedStateBackend::restore(max_parallelism, range, StateLimits::default(), &keyed)?)
                } else {
                    operator.into()
                };
                OperatorHarness::open_with(ctx, state, Some(checkpoint_id))
            })
            .collect::<Result<_>>()?;
        Ok(ParallelHarness { subtasks, max_parallelism, operator_id: operator_id.to_string(), config })
    }

    /// Feeds records as a `key-hash` edge would: each goes to the subtask that owns its key
    /// (keyless records to subtask 0). Returns what the subtasks emitted, subtask by subtask.
    pub fn process(&mut self, input: &[OwnedRecord]) -> Result<Vec<OwnedRecord>> {
        let p = self.subtasks.len() as u32;
        let mut parts: Vec<Vec<OwnedRecord>> = vec![Vec::new(); self.subtasks.len()];
        for r in input {
            let target = r.key.as_deref().map(|k| subtask_for_key(k, self.max_parallelism, p)).unwrap_or(0);
            parts[target as usize].push(r.clone());
        }
        let mut out = Vec::new();
        for (subtask, part) in self.subtasks.iter_mut().zip(parts) {
            if !part.is_empty() {
                out.extend(subtask.process(&part)?);
            }
        }
        Ok(out)
    }

    /// Advances every subtask's watermark; returns what the fired timers emitted.
    pub fn advance_watermark(&mut self, watermark: i64) -> Result<Vec<OwnedRecord>> {
        let mut out = Vec::new();
        for s in &mut self.subtasks {
            out.extend(s.advance_watermark(watermark)?);
        }
        Ok(out)
    }

    /// Snapshots every subtask and restores the whole operator at `new_parallelism`.
    pub fn rescale(mut self, checkpoint_id: u64, new_parallelism: u32) -> Result<Self> {
        let snapshots = self.snapshot(checkpoint_id)?;
        Self::restore(&self.operator_id, self.config.clone(), snapshots, checkpoint_id, new_parallelism)
    }
}
