//! Incremental checkpoints of keyed state: what a checkpoint costs as a function of how much of
//! the state changed since the last one.
//!
//! One subtask's keyed backend (the heap backend the runtime uses) holds a `ValueState<u64>`
//! for 1 M keys. A full snapshot is taken, then, for each row, the given share of keys is updated
//! and an increment on the previous checkpoint is taken. Each snapshot is written as the runtime
//! writes it: a shared file through `LocalStorage` (encode, write, fsync, rename). The
//! synchronous part is what records wait for at a barrier; the write runs in the background.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Result;
use wasmflow_host::checkpoint::{LocalStorage, SnapshotWriter};
use wasmflow_state::{KeyGroupRange, KeyedStateBackend, StateLimits, TypeInfo};

const KEYS: u64 = 1_000_000;
/// Shares of keys changed between two checkpoints, in per mille.
const CHANGED_PER_MILLE: [u64; 4] = [1000, 100, 10, 1];

/// One checkpoint: how much changed and what it cost.
pub struct Row {
    pub label: String,
    pub changed_keys: u64,
    pub sync_ms: f64,
    pub bytes: u64,
    pub write_ms: f64,
}

pub fn measure() -> Result<Vec<Row>> {
    let dir = tempfile::tempdir()?;
    let storage = LocalStorage::new(dir.path())?;
    let mut backend = KeyedStateBackend::new(128, KeyGroupRange::for_subtask(128, 1, 0), StateLimits::default());
    let count = backend.register_value("count", TypeInfo::default(), None)?;
    backend.track_changes();
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|k| format!("key-{k}").into_bytes()).collect();
    for key in &keys {
        backend.value_update(count, key, wasmflow_types::codec::encode(&1u64)?, 0)?;
    }
    let mut rows = Vec::new();
    let mut snapshot = |backend: &mut KeyedStateBackend, id: u64, since: Option<u64>, label: String, changed_keys: u64| -> Result<()> {
        let started = Instant::now();
        let keyed = backend.snapshot_since(0, id, since)?;
        let sync_ms = started.elapsed().as_secs_f64() * 1e3;
        // More than a tenth changed: the backend takes a full snapshot instead (cheaper).
        let label = if since.is_some() && keyed.base.is_none() { label.replace("increment", "full snapshot instead of an increment") } else { label };
        let started = Instant::now();
        let file = storage.write_shared(id, "count", 0, &keyed)?;
        let write_ms = started.elapsed().as_secs_f64() * 1e3;
        eprintln!("incremental: {label}: sync {sync_ms:.1} ms, {} bytes, write {write_ms:.1} ms", file.size);
        rows.push(Row { label, changed_keys, sync_ms, bytes: file.size, write_ms });
        Ok(())
    };
    snapshot(&mut backend, 1, None, "full snapshot".into(), KEYS)?;
    let mut id = 1;
    for per_mille in CHANGED_PER_MILLE {
        let changed = KEYS * per_mille / 1000;
        // Every (1000 / per_mille)-th key: spread over all key groups.
        for key in keys.iter().step_by((1000 / per_mille) as usize) {
            backend.value_update(count, key, wasmflow_types::codec::encode(&2u64)?, 0)?;
        }
        id += 1;
        snapshot(&mut backend, id, Some(id - 1), format!("increment, {:.1} % changed", per_mille as f64 / 10.0), changed)?;
    }
    Ok(rows)
}

pub fn report(rows: &[Row]) -> Result<String> {
    let mut s = String::new();
    writeln!(s, "## Incremental checkpoints: cost in proportion to the change\n")?;
    writeln!(
        s,
        "One subtask's keyed state, `ValueState<u64>` for {} M keys (heap backend). A full snapshot, then increments on the previous \
         checkpoint after updating the given share of keys. *sync* is the synchronous part (records wait for it at the barrier); \
         *write* encodes the shared file and makes it durable (background). Issue #13: incremental checkpoint cost proportional \
         to the change, not the total state.\n",
        KEYS / 1_000_000
    )?;
    writeln!(s, "| checkpoint | keys changed | sync | shared file | write |")?;
    writeln!(s, "|---|---|---|---|---|")?;
    for r in rows {
        writeln!(s, "| {} | {} | {:.1} ms | {:.2} MB | {:.1} ms |", r.label, r.changed_keys, r.sync_ms, r.bytes as f64 / 1e6, r.write_ms)?;
    }
    writeln!(s)?;
    Ok(s)
}
