use serde::{Deserialize, Serialize};

use crate::Mode;

/// Describes the Rust type of a state's elements (or keys/values), as registered by the SDK.
///
/// The host never interprets state bytes itself; `wasmflow inspect` uses this to decode
/// entries to JSON where it can. `schema` is the serde-reflection format of the type as JSON,
/// or empty when the SDK could not trace it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeInfo {
    /// `std::any::type_name` of the element type, e.g. `u64` or `(alloc::string::String, i32, i64)`.
    pub type_name: String,
    /// serde-reflection `Format` of the type as JSON; empty if unknown.
    pub schema: String,
}

/// Key/value pairs of a broadcast map.
pub type MapEntries = Vec<(Vec<u8>, Vec<u8>)>;

/// The content of one named state in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StateValue {
    /// A list state (split or union): elements in order. Each element is one redistribution unit.
    List(Vec<Vec<u8>>),
    /// A broadcast state: key/value pairs sorted by key.
    Map(Vec<(Vec<u8>, Vec<u8>)>),
}

/// One named state as it stands in a subtask's snapshot (docs/state.md, snapshots).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedStateSnapshot {
    /// The state's name, unique within the operator.
    pub name: String,
    /// How it is redistributed on restore.
    pub mode: Mode,
    /// Type of list elements, or of map keys for broadcast state.
    pub element_type: TypeInfo,
    /// Type of map values (broadcast state only).
    pub value_type: Option<TypeInfo>,
    /// The content. An empty list is still recorded (docs/state.md, snapshots).
    pub value: StateValue,
}

/// Everything one (operator, subtask) snapshotted at one checkpoint: every registered state,
/// including restored states the operator did not register again (docs/state.md, registration), sorted by name,
/// and the keyed state and timers of a keyed operator.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskSnapshot {
    /// The named operator states, sorted by name.
    pub states: Vec<NamedStateSnapshot>,
    /// Keyed state and timers, by key group (keyed operators only).
    pub keyed: Option<crate::KeyedSnapshot>,
}
