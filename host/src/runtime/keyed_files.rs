//! The shared files that hold one subtask's keyed state under incremental checkpoints: which
//! chain of files each of its snapshots left, what the next snapshot builds on, and writing a
//! snapshot as a shared file plus the subtask's state file.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use wasmflow_state::SubtaskSnapshot;
use wasmflow_types::SubtaskTag;

use super::message::{Barrier, KeyedSnapshotKind};
use crate::checkpoint::{SnapshotWriter, StateFileRef};

/// Increments after which the next snapshot is full again, so a restore never reads a long chain.
pub const MAX_INCREMENTS: usize = 10;

/// The chains of shared files this subtask's snapshots left, by checkpoint id: a full snapshot
/// followed by increments. Shared with the background writers, which record a chain before they
/// acknowledge: once a checkpoint is complete, its chain is here.
#[derive(Clone, Default)]
pub struct KeyedFiles {
    chains: Arc<Mutex<BTreeMap<u64, Vec<StateFileRef>>>>,
}

impl KeyedFiles {
    /// What the snapshot for `barrier` builds on: its base when this subtask left a chain for
    /// it, unless the chain is due to start over (too many increments, or increments larger
    /// than the full snapshot they build on); `None` for a full snapshot.
    pub fn since(&self, barrier: &Barrier) -> Option<u64> {
        let KeyedSnapshotKind::Shared { base: Some(base) } = barrier.keyed else { return None };
        let mut chains = self.chains.lock().expect("keyed files lock");
        // No checkpoint older than the newest complete one is a base again.
        chains.retain(|&id, _| id >= base);
        let chain = chains.get(&base)?;
        let (full, increments) = chain.split_first()?;
        let increment_bytes: u64 = increments.iter().map(|r| r.size).sum();
        (increments.len() < MAX_INCREMENTS && increment_bytes <= full.size).then_some(base)
    }

    /// Writes `snapshot` for `barrier`: with incremental checkpoints, its keyed state as a shared
    /// file first (full, or an increment on the base's chain), then the rest as the subtask's
    /// state file referencing the chain. Returns the state file's reference. Keyed state that is
    /// empty and full stays in the state file (and starts no chain).
    pub fn write(&self, storage: &dyn SnapshotWriter, barrier: &Barrier, tag: &SubtaskTag, mut snapshot: SubtaskSnapshot) -> Result<StateFileRef> {
        let id = barrier.checkpoint_id;
        let shared = match (barrier.keyed, snapshot.keyed.take()) {
            // Empty keyed state (a keyed operator that keeps none) stays in the state file: no
            // shared file per checkpoint for nothing.
            (KeyedSnapshotKind::Shared { .. }, Some(keyed)) if keyed.base.is_some() || !keyed.groups.is_empty() => {
                let file = storage.write_shared(id, &tag.operator, tag.subtask, &keyed)?;
                let mut chain = match keyed.base {
                    // `since` kept the base's chain; without it the increment would restore
                    // nothing: decline the checkpoint rather than commit a broken chain.
                    Some(base) => self.chains.lock().expect("keyed files lock").get(&base).cloned().ok_or_else(|| {
                        anyhow::anyhow!("the keyed state's increment builds on checkpoint {base}, whose shared files this subtask no longer knows")
                    })?,
                    None => Vec::new(),
                };
                chain.push(file);
                self.chains.lock().expect("keyed files lock").insert(id, chain.clone());
                chain
            }
            (_, keyed) => {
                snapshot.keyed = keyed;
                Vec::new()
            }
        };
        storage.write_state(id, &tag.operator, tag.subtask, &snapshot, shared)
    }
}
