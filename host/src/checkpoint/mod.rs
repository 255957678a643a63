//! Durable checkpoints: where subtask state goes, and the metadata that makes a checkpoint
//! complete.
//!
//! Layout of one checkpoint (or savepoint) directory — every path inside is relative, so a
//! savepoint can be moved to another directory or machine:
//!
//! ```text
//! chk-<id>/
//!   <operator-id>/<subtask>.state   one per subtask: header + bincode SubtaskSnapshot + CRC-32
//!   _metadata                       every state file's path, size and SHA-256; written last,
//!                                   atomically; its presence makes the checkpoint complete
//! ```
//!
//! Beside them, the storage holds `shared/` (keyed state files incremental checkpoints share),
//! `_job.json` (ids, attempts and job manager generations used so far), `_control` (how to
//! reach the running job) and, in a local directory, `_lock` (one running job per directory).
//!
//! The same layout lives in a local directory ([`LocalStorage`]) or below an object-store prefix
//! ([`ObjectStorage`], `s3://bucket/prefix`). A checkpoint without a valid `_metadata` is
//! ignored (with a warning), so a crash at any moment leaves either a complete checkpoint or
//! nothing.

mod control_file;
mod load;
mod local;
mod location;
mod metadata;
pub mod object;
mod state_file;
mod storage;

pub use control_file::{CONTROL_FILE, ControlFile};
pub use local::{DirLock, LOCK_FILE, LocalStorage, load_dir};
pub use location::{Location, ObjectUrl};
pub use metadata::{CheckpointMetadata, FORMAT_VERSION, METADATA_FILE, OperatorMetadata, StateFileRef, sha256_hex};
pub use object::{ObjectStorage, StoreOptions};
pub use state_file::{decode_state_file, encode_state_file};
pub use storage::{CheckpointStorage, Fenced, JobCounters, LoadedCheckpoint, SnapshotWriter, StorageLease, Takeover, load_location, open};

/// What the storage tests write: one subtask's snapshot holding a count in split list state.
#[cfg(test)]
pub(crate) fn count_snapshot(count: u64) -> wasmflow_state::SubtaskSnapshot {
    use wasmflow_state::{Mode, NamedStateSnapshot, StateValue, TypeInfo};
    let state = NamedStateSnapshot {
        name: "count".into(),
        mode: Mode::SplitDistribute,
        element_type: TypeInfo::default(),
        value_type: None,
        value: StateValue::List(vec![count.to_le_bytes().to_vec()]),
    };
    wasmflow_state::SubtaskSnapshot { states: vec![state], keyed: None }
}

/// The metadata of a test checkpoint: one operator of parallelism 1 with state file `file`.
#[cfg(test)]
pub(crate) fn one_operator_metadata(id: u64, operator: &str, file: StateFileRef, generation: u64) -> CheckpointMetadata {
    CheckpointMetadata {
        format_version: FORMAT_VERSION,
        checkpoint_id: id,
        timestamp: 0,
        kind: "checkpoint".into(),
        job_name: "j".into(),
        attempt: 1,
        generation,
        operators: [(operator.to_string(), OperatorMetadata { parallelism: 1, subtasks: vec![file], finished: vec![] })].into(),
    }
}
