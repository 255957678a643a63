//! The named states of one (operator, subtask), with Flink's registration rules.

use crate::{Mode, RestoredSubtask, SubtaskSnapshot, TypeInfo};

/// Handle to a registered state, valid for the store that returned it.
pub type StateId = usize;

/// Caps on what a guest can make the host hold (sandboxing, issue #5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateLimits {
    /// Most named states one subtask may register.
    pub max_states: usize,
    /// Largest single list element, map key or map value, in bytes.
    pub max_entry_bytes: usize,
    /// Most bytes all states of one subtask may hold together.
    pub max_total_bytes: usize,
}

impl Default for StateLimits {
    fn default() -> Self {
        StateLimits { max_states: 1024, max_entry_bytes: 16 << 20, max_total_bytes: 1 << 30 }
    }
}

/// Why a state operation was refused. Messages follow Flink's where Flink has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    #[error("Incompatible state assignment modes for state '{name}'. Was [{was}], registered with [{now}].")]
    IncompatibleMode { name: String, was: Mode, now: Mode },
    #[error("state '{name}' was registered as a list, not a broadcast map (or the other way round)")]
    WrongKind { name: String },
    #[error("too many states: at most {max} named states per subtask")]
    TooManyStates { max: usize },
    #[error("state entry of {size} bytes exceeds the limit of {max} bytes")]
    EntryTooLarge { size: usize, max: usize },
    #[error("state of this subtask would hold {size} bytes, over the limit of {max} bytes")]
    StoreTooLarge { size: usize, max: usize },
    #[error("unknown state handle {0}")]
    UnknownHandle(StateId),
    #[error("state name must not be empty")]
    EmptyName,
}

/// The operator state store of one (operator, subtask) — Flink's `OperatorStateStore`.
///
/// ```
/// use wasmflow_state::{Mode, OperatorStateStore, StateLimits, TypeInfo};
/// let mut store = OperatorStateStore::new(StateLimits::default());
/// let id = store.register_list("offsets", Mode::Union, TypeInfo::default()).unwrap();
/// store.list_add(id, b"x".to_vec()).unwrap();
/// assert_eq!(store.snapshot().states[0].name, "offsets");
/// ```
#[derive(Debug)]
pub struct OperatorStateStore {
    _private: (),
}

impl OperatorStateStore {
    pub fn new(limits: StateLimits) -> Self { let _ = limits; todo!() }
    pub fn restore(restored: RestoredSubtask, limits: StateLimits) -> Self { let _ = (restored, limits); todo!() }
    pub fn register_list(&mut self, name: &str, mode: Mode, element_type: TypeInfo) -> Result<StateId, StateError> { let _ = (name, mode, element_type); todo!() }
    pub fn register_broadcast(&mut self, name: &str, key_type: TypeInfo, value_type: TypeInfo) -> Result<StateId, StateError> { let _ = (name, key_type, value_type); todo!() }
    pub fn list_get(&self, id: StateId) -> Result<Vec<Vec<u8>>, StateError> { let _ = id; todo!() }
    pub fn list_add(&mut self, id: StateId, element: Vec<u8>) -> Result<(), StateError> { let _ = (id, element); todo!() }
    pub fn snapshot(&self) -> SubtaskSnapshot { todo!() }
}
