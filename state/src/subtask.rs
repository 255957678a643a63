//! All the state of one (operator, subtask): its operator state and, for a keyed operator, its
//! keyed state and timers.

use crate::{KeyedStateBackend, KeyedStateError, OperatorStateStore, SubtaskSnapshot};

/// The state one subtask owns, snapshotted together at every checkpoint.
pub struct SubtaskState {
    /// Operator state (list, union, broadcast): Flink's `OperatorStateStore`.
    pub operator: OperatorStateStore,
    /// Keyed state and timers; `None` unless the operator is keyed (all its inputs are
    /// `key-hash` edges).
    pub keyed: Option<KeyedStateBackend>,
    /// The operator's event time: the lowest watermark over its active inputs, `i64::MIN`
    /// before the first. Not part of snapshots: like Flink, a restored operator waits for its
    /// inputs' watermarks again.
    pub watermark: i64,
}

/// Keyed state or timers used by an operator that is not keyed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{what} needs a keyed operator: make every edge into this operator `partitioning = \"key-hash\"` (keyed state and timers belong to the key of the record being processed)"
)]
pub struct NotKeyed {
    /// What was used, e.g. "keyed state 'count'".
    pub what: String,
}

impl SubtaskState {
    /// The state of a subtask of a keyed operator.
    pub fn keyed(operator: OperatorStateStore, keyed: KeyedStateBackend) -> Self {
        SubtaskState { operator, keyed: Some(keyed), watermark: i64::MIN }
    }

    /// The keyed backend, or an error naming `what` needed it.
    pub fn keyed_mut(&mut self, what: impl FnOnce() -> String) -> Result<&mut KeyedStateBackend, NotKeyed> {
        self.keyed.as_mut().ok_or_else(|| NotKeyed { what: what() })
    }

    /// A copy of every state as it is now; `now` (processing time, ms) decides which TTL
    /// entries have expired and are left out.
    pub fn snapshot(&mut self, now: i64) -> Result<SubtaskSnapshot, KeyedStateError> {
        let mut snapshot = self.operator.snapshot();
        snapshot.keyed = self.keyed.as_mut().map(|k| k.snapshot(now)).transpose()?;
        Ok(snapshot)
    }

    /// The snapshot for checkpoint `checkpoint_id`: as [`snapshot`](Self::snapshot), except that
    /// keyed state tracking its changes holds only what changed since checkpoint `since` when it
    /// can ([`KeyedStateBackend::snapshot_since`]).
    pub fn snapshot_since(&mut self, now: i64, checkpoint_id: u64, since: Option<u64>) -> Result<SubtaskSnapshot, KeyedStateError> {
        let mut snapshot = self.operator.snapshot();
        snapshot.keyed = self.keyed.as_mut().map(|k| k.snapshot_since(now, checkpoint_id, since)).transpose()?;
        Ok(snapshot)
    }
}

impl From<OperatorStateStore> for SubtaskState {
    fn from(operator: OperatorStateStore) -> Self {
        SubtaskState { operator, keyed: None, watermark: i64::MIN }
    }
}
