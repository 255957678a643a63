//! What travels on a channel between two subtasks.
//!
//! Barriers travel **in-band**, after the records that precede them, exactly like Flink's
//! checkpoint barriers; every message is serde-serializable so that a channel can later be a
//! network connection between machines without changing the protocol.

use serde::{Deserialize, Serialize};

use crate::engine::bindings::wasmflow::operator::types::Batch;

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

/// Number of bytes a batch holds, for limits and metrics.
pub fn batch_bytes(b: &Batch) -> usize {
    b.data.len() + b.len() * 16
}

/// An empty batch.
pub fn empty_batch() -> Batch {
    Batch { data: Vec::new(), key_lens: Vec::new(), value_lens: Vec::new(), timestamps: Vec::new() }
}

/// Record-level access to the contract's batch (its lists are columns, one entry per record).
pub trait Records {
    /// Number of records (the length of each per-record list, once the batch is checked).
    fn len(&self) -> usize;
    /// Whether the batch has no record.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Appends one record whose key (if any) and value are `bytes`, back to back.
    fn push(&mut self, key_len: i32, bytes: &[u8], timestamp: i64);
}

impl Records for Batch {
    fn len(&self) -> usize {
        self.key_lens.len()
    }

    fn push(&mut self, key_len: i32, bytes: &[u8], timestamp: i64) {
        self.data.extend_from_slice(bytes);
        self.key_lens.push(key_len);
        self.value_lens.push((bytes.len() - key_len.max(0) as usize) as u32);
        self.timestamps.push(timestamp);
    }
}
