//! Flink-style operator state for wasmflow.
//!
//! This crate is pure logic with no I/O, shared by the host (which owns state and makes it
//! durable) and by `guest-sdk`'s native test harness (which lets an operator author restore an
//! operator at another parallelism in a unit test). Both use exactly this code, so a rescale in a
//! unit test behaves as one in production.
//!
//! * [`Mode`]: how a named state is redistributed (`SPLIT_DISTRIBUTE`, `UNION`, `BROADCAST`).
//! * [`OperatorStateStore`]: the named states of one (operator, subtask), with Flink's
//!   registration rules (docs/state.md) and size limits.
//! * [`SubtaskSnapshot`]: what one subtask's snapshot holds (docs/state.md, snapshots); serializable.
//! * [`KeyedStateBackend`]: keyed state (value, list, map) and timers of one subtask of a keyed
//!   operator, owned by key group ([`key_group`], [`KeyGroupRange`]) (docs/state.md, keyed state).
//! * [`redistribute`]: Flink's `RoundRobinOperatorStateRepartitioner` (docs/state.md, redistribution).

mod incremental;
mod keyed;
mod keyed_snapshot;
mod keygroups;
mod mode;
mod redistribute;
mod snapshot;
mod store;
mod subtask;
mod table;

pub use keyed::{
    DueTimers, KeyGroupSnapshot, KeyedEntry, KeyedKind, KeyedSnapshot, KeyedStateBackend, KeyedStateDescriptor, KeyedStateError, KeyedStateId, KeyedValue,
    TimeDomain, TimerEntry,
};
pub use keygroups::{DEFAULT_MAX_PARALLELISM, KeyGroupRange, MAX_MAX_PARALLELISM, key_group, subtask_for_key, subtask_for_key_group};
pub use mode::Mode;
pub use redistribute::{
    RestoredState, RestoredSubtask, RestoredValue, Segment, flink_hashmap_order, java_hashmap_bucket, java_hashmap_capacity, java_string_hash, redistribute,
};
pub use snapshot::{NamedStateSnapshot, StateValue, SubtaskSnapshot, TypeInfo};
pub use store::{OperatorStateStore, StateError, StateId, StateLimits};
pub use subtask::{NotKeyed, SubtaskState};
