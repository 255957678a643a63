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
//! Beside them, the directory holds `_job.json` (ids and attempts used so far), `_lock` (one
//! running job per directory) and `_control` (how to reach that job).
//!
//! A checkpoint directory without a valid `_metadata` is ignored (with a warning), so a crash
//! at any moment leaves either a complete checkpoint or nothing.

mod control_file;
mod metadata;
mod state_file;
mod storage;

pub use control_file::{CONTROL_FILE, ControlFile};
pub use metadata::{CheckpointMetadata, FORMAT_VERSION, METADATA_FILE, OperatorMetadata, StateFileRef, sha256_hex};
pub use state_file::{decode_state_file, encode_state_file};
pub use storage::{CheckpointStorage, DirLock, JobCounters, LOCK_FILE, LoadedCheckpoint, LocalStorage, load_dir};
