//! What travels on a channel between two subtasks.
//!
//! Barriers travel **in-band**, after the records that precede them, exactly like Flink's
//! checkpoint barriers; every message is serde-serializable so that a channel can later be a
//! network connection between machines without changing the protocol.

use serde::{Deserialize, Serialize};

use wasmflow_types::Batch;

/// A checkpoint barrier: everything before it on a channel belongs to the checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    pub checkpoint_id: u64,
    pub timestamp: i64,
}

/// One message on a channel.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Message {
    /// A batch of records.
    Records(Batch),
    /// A checkpoint barrier.
    Barrier(Barrier),
    /// The upstream subtask has no more records (it may still send barriers for the final
    /// checkpoint, as in Flink's FLIP-147).
    EndOfInput,
}
