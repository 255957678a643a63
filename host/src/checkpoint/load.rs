//! Reading a checkpoint back and verifying it, whatever holds it: `_metadata`, then every state
//! file against its reference (size and SHA-256), then the shared keyed files a checkpoint
//! builds on. Local directories and object stores differ only in how bytes are fetched
//! ([`Fetch`]); the checks are made once, here.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow, bail};
use wasmflow_state::KeyedStateBackend;

use super::metadata::{CheckpointMetadata, METADATA_FILE, StateFileRef};
use super::state_file::decode_state_file;
use super::storage::{LoadedCheckpoint, SHARED_DIR};

/// Largest `_metadata` read (it lists file references: a few hundred bytes per subtask).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;

/// How the bytes of one checkpoint are fetched. Every read is bounded: a checkpoint or savepoint
/// can come from anywhere, and a file larger than its reference says is refused unread.
pub trait Fetch {
    /// `rel` inside the checkpoint (`_metadata`, `counter/0.state`), at most `max` bytes.
    fn checkpoint_file(&self, rel: &str, max: u64, what: &str) -> Result<Vec<u8>>;
    /// `rel` relative to the storage root (a shared file), at most `max` bytes; `None` if missing.
    fn shared_file(&self, rel: &str, max: u64) -> Result<Option<Vec<u8>>>;
    /// How to name `rel` inside the checkpoint in messages.
    fn name(&self, rel: &str) -> String;
    /// How to name `rel` below the storage root in messages.
    fn shared_name(&self, rel: &str) -> String;
}

/// Reads and verifies the checkpoint `fetch` reaches; `location` names it.
pub fn load(fetch: &dyn Fetch, location: String) -> Result<LoadedCheckpoint> {
    let meta_name = fetch.name(METADATA_FILE);
    let bytes = fetch.checkpoint_file(METADATA_FILE, MAX_METADATA_BYTES, "checkpoint metadata")?;
    let metadata = CheckpointMetadata::decode(&bytes, &meta_name)?;
    let mut states = BTreeMap::new();
    for (op, om) in &metadata.operators {
        if om.subtasks.len() != om.parallelism as usize {
            bail!("{meta_name}: operator '{op}' lists {} state files for parallelism {}", om.subtasks.len(), om.parallelism);
        }
        let mut subtasks = Vec::with_capacity(om.subtasks.len());
        for r in &om.subtasks {
            if r.path.starts_with('/') || r.path.split('/').any(|c| c == ".." || c.is_empty()) {
                bail!("{meta_name}: state file path '{}' must be relative and inside the checkpoint", r.path);
            }
            let what = fetch.name(&r.path);
            // At most the size the metadata records.
            let bytes = fetch.checkpoint_file(&r.path, r.size, "state file")?;
            if !r.matches(&bytes) {
                bail!("{what}: state file does not match the metadata (size or SHA-256): it is corrupt, cut short or not the file this checkpoint wrote");
            }
            let mut snapshot = decode_state_file(&bytes, &what)?;
            if !r.shared.is_empty() {
                snapshot.keyed = Some(load_shared_keyed(fetch, &metadata, r, &location)?);
            }
            subtasks.push(snapshot);
        }
        states.insert(op.clone(), subtasks);
    }
    Ok(LoadedCheckpoint { location, metadata, states })
}

/// The keyed state of one subtask that lives in shared files: each file read and verified
/// against its reference, then the full snapshot and its increments merged.
fn load_shared_keyed(fetch: &dyn Fetch, metadata: &CheckpointMetadata, subtask: &StateFileRef, location: &str) -> Result<wasmflow_state::KeyedSnapshot> {
    let what = fetch.name(&subtask.path);
    if metadata.kind != "checkpoint" {
        bail!("{what}: a {} must be self-contained, but its state refers to shared files: the metadata is corrupt", metadata.kind);
    }
    let mut chain = Vec::with_capacity(subtask.shared.len());
    for r in &subtask.shared {
        if !r.path.starts_with(&format!("{SHARED_DIR}/")) || r.path.split('/').any(|c| c == ".." || c.is_empty()) {
            bail!("{what}: shared file path '{}' must be inside the storage's {SHARED_DIR}/ directory", r.path);
        }
        let file = fetch.shared_name(&r.path);
        let Some(bytes) = fetch.shared_file(&r.path, r.size)? else {
            bail!(
                "{file}: shared state file missing: checkpoint {location} keeps its keyed state in the {SHARED_DIR}/ directory beside it; copy that directory along with the checkpoint, or restore from a savepoint (self-contained)"
            );
        };
        if !r.matches(&bytes) {
            bail!("{file}: shared state file does not match the metadata (size or SHA-256): it is corrupt, cut short or not the file this checkpoint wrote");
        }
        let keyed = decode_state_file(&bytes, &file)?.keyed.ok_or_else(|| anyhow!("{file}: a shared state file without keyed state"))?;
        chain.push(keyed);
    }
    KeyedStateBackend::merge_chain(&chain).map_err(|e| anyhow!("{what}: keyed state in shared files: {e}"))
}
