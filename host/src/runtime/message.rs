//! What travels on a channel between two subtasks.
//!
//! Barriers and watermarks travel **in-band**, after the records that precede them, exactly like
//! Flink's checkpoint barriers and watermarks; every message is serde-serializable so that a channel can later be a
//! network connection between machines without changing the protocol.

use serde::{Deserialize, Serialize};

use wasmflow_types::Batch;

/// A checkpoint barrier: everything before it on a channel belongs to the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    pub checkpoint_id: u64,
    pub timestamp: i64,
    /// Where keyed state goes at this barrier.
    pub keyed: KeyedSnapshotKind,
}

/// How subtasks write their keyed state for one checkpoint (docs/state.md, incremental
/// checkpoints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyedSnapshotKind {
    /// All of it, inside the subtask's state file: savepoints (self-contained, relocatable) and
    /// checkpoints with `incremental = false`.
    SelfContained,
    /// Into a shared file that later checkpoints can build on: only what changed since `base`
    /// (the newest complete checkpoint) when the subtask wrote a shared file for it, else all.
    Shared { base: Option<u64> },
}

/// Whether an upstream subtask's output counts for its consumers' watermark (Flink's
/// `WatermarkStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WatermarkStatus {
    /// The upstream is idle (a source marked itself idle): leave its channel out of the minimum.
    Idle,
    /// The upstream emits again.
    Active,
}

/// One message on a channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Message {
    /// A batch of records.
    Records(Batch),
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// Event time: no record at or below this timestamp follows on this channel. A bounded
    /// input ends with `i64::MAX`, which fires every event-time timer.
    Watermark(i64),
    /// The upstream became idle or active again.
    Status(WatermarkStatus),
    /// The upstream subtask has no more records (it may still send barriers for the final
    /// checkpoint, as in Flink's FLIP-147).
    EndOfInput,
}
