//! The named states of one (operator, subtask), with Flink's registration rules.

use std::collections::{BTreeMap, HashMap};

use crate::{Mode, NamedStateSnapshot, RestoredSubtask, RestoredValue, Segment, StateValue, SubtaskSnapshot, TypeInfo};

/// A broadcast map's content.
type Map = BTreeMap<Vec<u8>, Vec<u8>>;

/// Handle to a registered state, valid for the store that returned it.
pub type StateId = usize;

/// Caps on what a guest can make the host hold (sandboxing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateLimits {
    /// Most named states one subtask may hold (registered and restored together).
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
    /// docs/state.md, registration `checkStateNameAndMode`.
    #[error("Incompatible state assignment modes for state '{name}'. Was [{was}], registered with [{now}].")]
    IncompatibleMode { name: String, was: Mode, now: Mode },
    /// A list name used as a broadcast map or the other way round.
    #[error("state '{name}' is a {was} state and cannot be used as a {now} state")]
    WrongKind { name: String, was: &'static str, now: &'static str },
    /// Over [`StateLimits::max_states`].
    #[error("too many states: at most {max} named states per subtask (limits.states)")]
    TooManyStates { max: usize },
    /// Over [`StateLimits::max_entry_bytes`].
    #[error("state entry of {size} bytes exceeds the limit of {max} bytes (limits.state-entry-bytes)")]
    EntryTooLarge { size: usize, max: usize },
    /// Over [`StateLimits::max_total_bytes`].
    #[error("state of this subtask would hold {size} bytes, over the limit of {max} bytes (limits.state-bytes)")]
    StoreTooLarge { size: usize, max: usize },
    /// A handle this store never returned.
    #[error("unknown state handle {0}")]
    UnknownHandle(StateId),
    /// Names must not be empty.
    #[error("state name must not be empty")]
    EmptyName,
}

/// A list's content: restored segments shared with other subtasks until the first change
/// (copy-on-write), or owned elements.
#[derive(Debug)]
enum ListContent {
    Shared(Vec<Segment>),
    Owned(Vec<Vec<u8>>),
}

#[derive(Debug)]
enum Content {
    List(ListContent),
    Map(Map),
}

#[derive(Debug)]
struct Entry {
    name: String,
    mode: Mode,
    element_type: TypeInfo,
    value_type: Option<TypeInfo>,
    content: Content,
    bytes: usize,
}

fn kind(mode: Mode) -> &'static str {
    if mode == Mode::Broadcast { "broadcast" } else { "list" }
}

/// The operator state store of one (operator, subtask) — Flink's `OperatorStateStore`.
///
/// * A name is registered once per mode; registering it again with the same mode returns the
///   same handle, with another mode is [`StateError::IncompatibleMode`] (docs/state.md, registration).
/// * Restored states that the operator does not register again are carried into every later
///   snapshot (docs/state.md, registration), so no state is lost by an operator that only reads some of it.
/// * Every change is checked against [`StateLimits`] first; a refused change changes nothing.
///
/// ```
/// use wasmflow_state::{Mode, OperatorStateStore, StateLimits, TypeInfo};
/// let mut store = OperatorStateStore::new(StateLimits::default());
/// let id = store.register_list("offsets", Mode::Union, TypeInfo::default()).unwrap();
/// store.list_add(id, b"x".to_vec()).unwrap();
/// assert_eq!(store.snapshot().states[0].name, "offsets");
/// let err = store.register_list("offsets", Mode::SplitDistribute, TypeInfo::default()).unwrap_err();
/// assert_eq!(err.to_string(), "Incompatible state assignment modes for state 'offsets'. Was [UNION], registered with [SPLIT_DISTRIBUTE].");
/// ```
#[derive(Debug)]
pub struct OperatorStateStore {
    entries: Vec<Entry>,
    by_name: HashMap<String, StateId>,
    limits: StateLimits,
    total_bytes: usize,
}

fn list_bytes(items: &[Vec<u8>]) -> usize {
    items.iter().map(Vec::len).sum()
}

impl OperatorStateStore {
    /// An empty store (a fresh start).
    pub fn new(limits: StateLimits) -> Self {
        OperatorStateStore { entries: Vec::new(), by_name: HashMap::new(), limits, total_bytes: 0 }
    }

    /// A store holding what a subtask restores. Restored lists stay shared until changed.
    pub fn restore(restored: RestoredSubtask, limits: StateLimits) -> Self {
        let mut store = Self::new(limits);
        for state in restored.states {
            let (content, bytes) = match state.value {
                RestoredValue::List(segments) => {
                    let bytes = segments.iter().map(|s| list_bytes(s.as_slice())).sum();
                    (Content::List(ListContent::Shared(segments)), bytes)
                }
                RestoredValue::Map(entries) => {
                    let map: BTreeMap<_, _> = entries.iter().cloned().collect();
                    let bytes = map.iter().map(|(k, v)| k.len() + v.len()).sum();
                    (Content::Map(map), bytes)
                }
            };
            store.total_bytes += bytes;
            store.by_name.insert(state.name.clone(), store.entries.len());
            store.entries.push(Entry { name: state.name, mode: state.mode, element_type: state.element_type, value_type: state.value_type, content, bytes });
        }
        store
    }

    fn register(&mut self, name: &str, mode: Mode, element_type: TypeInfo, value_type: Option<TypeInfo>) -> Result<StateId, StateError> {
        if name.is_empty() {
            return Err(StateError::EmptyName);
        }
        if let Some(&id) = self.by_name.get(name) {
            let entry = &mut self.entries[id];
            if kind(entry.mode) != kind(mode) {
                return Err(StateError::WrongKind { name: name.into(), was: kind(entry.mode), now: kind(mode) });
            }
            if entry.mode != mode {
                return Err(StateError::IncompatibleMode { name: name.into(), was: entry.mode, now: mode });
            }
            entry.element_type = element_type;
            entry.value_type = value_type;
            return Ok(id);
        }
        if self.entries.len() >= self.limits.max_states {
            return Err(StateError::TooManyStates { max: self.limits.max_states });
        }
        let content = if mode == Mode::Broadcast { Content::Map(BTreeMap::new()) } else { Content::List(ListContent::Owned(Vec::new())) };
        let id = self.entries.len();
        self.entries.push(Entry { name: name.into(), mode, element_type, value_type, content, bytes: 0 });
        self.by_name.insert(name.into(), id);
        Ok(id)
    }

    /// `getListState` (`Mode::SplitDistribute`) or `getUnionListState` (`Mode::Union`).
    pub fn register_list(&mut self, name: &str, mode: Mode, element_type: TypeInfo) -> Result<StateId, StateError> {
        if mode == Mode::Broadcast {
            return Err(StateError::WrongKind { name: name.into(), was: "list", now: "broadcast" });
        }
        self.register(name, mode, element_type, None)
    }

    /// `getBroadcastState`.
    pub fn register_broadcast(&mut self, name: &str, key_type: TypeInfo, value_type: TypeInfo) -> Result<StateId, StateError> {
        self.register(name, Mode::Broadcast, key_type, Some(value_type))
    }

    /// The id of state `name`, registered or restored.
    pub fn id_of(&self, name: &str) -> Option<StateId> {
        self.by_name.get(name).copied()
    }

    /// Names of all states (registered and restored), sorted.
    pub fn state_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.entries.iter().map(|e| e.name.clone()).collect();
        names.sort();
        names
    }

    /// Bytes held by all states.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    fn entry(&self, id: StateId) -> Result<&Entry, StateError> {
        self.entries.get(id).ok_or(StateError::UnknownHandle(id))
    }

    fn check_entries(&self, sizes: impl Iterator<Item = usize>, replacing: usize) -> Result<usize, StateError> {
        let mut added = 0usize;
        for size in sizes {
            if size > self.limits.max_entry_bytes {
                return Err(StateError::EntryTooLarge { size, max: self.limits.max_entry_bytes });
            }
            added += size;
        }
        let after = self.total_bytes - replacing + added;
        if after > self.limits.max_total_bytes {
            return Err(StateError::StoreTooLarge { size: after, max: self.limits.max_total_bytes });
        }
        Ok(added)
    }

    fn list_mut(&mut self, id: StateId) -> Result<(&mut Vec<Vec<u8>>, &mut usize), StateError> {
        let entry = self.entries.get_mut(id).ok_or(StateError::UnknownHandle(id))?;
        let name = entry.name.clone();
        match &mut entry.content {
            Content::List(content) => {
                if let ListContent::Shared(segments) = content {
                    let owned = segments.iter().flat_map(|s| s.as_slice().iter().cloned()).collect();
                    *content = ListContent::Owned(owned);
                }
                match content {
                    ListContent::Owned(items) => Ok((items, &mut entry.bytes)),
                    ListContent::Shared(_) => unreachable!("made owned above"),
                }
            }
            Content::Map(_) => Err(StateError::WrongKind { name, was: "broadcast", now: "list" }),
        }
    }

    fn map_ref(&self, id: StateId) -> Result<&Map, StateError> {
        let entry = self.entry(id)?;
        match &entry.content {
            Content::Map(m) => Ok(m),
            Content::List(_) => Err(StateError::WrongKind { name: entry.name.clone(), was: "list", now: "broadcast" }),
        }
    }

    fn map_mut(&mut self, id: StateId) -> Result<(&mut Map, &mut usize), StateError> {
        let entry = self.entries.get_mut(id).ok_or(StateError::UnknownHandle(id))?;
        match &mut entry.content {
            Content::Map(m) => Ok((m, &mut entry.bytes)),
            Content::List(_) => Err(StateError::WrongKind { name: entry.name.clone(), was: "list", now: "broadcast" }),
        }
    }

    /// All elements of a list, in order.
    pub fn list_get(&self, id: StateId) -> Result<Vec<Vec<u8>>, StateError> {
        let entry = self.entry(id)?;
        match &entry.content {
            Content::List(ListContent::Owned(items)) => Ok(items.clone()),
            Content::List(ListContent::Shared(segments)) => Ok(segments.iter().flat_map(|s| s.as_slice().iter().cloned()).collect()),
            Content::Map(_) => Err(StateError::WrongKind { name: entry.name.clone(), was: "broadcast", now: "list" }),
        }
    }

    /// Number of elements of a list.
    pub fn list_len(&self, id: StateId) -> Result<usize, StateError> {
        let entry = self.entry(id)?;
        match &entry.content {
            Content::List(ListContent::Owned(items)) => Ok(items.len()),
            Content::List(ListContent::Shared(segments)) => Ok(segments.iter().map(|s| s.range.len()).sum()),
            Content::Map(_) => Err(StateError::WrongKind { name: entry.name.clone(), was: "broadcast", now: "list" }),
        }
    }

    /// Appends one element.
    pub fn list_add(&mut self, id: StateId, element: Vec<u8>) -> Result<(), StateError> {
        self.list_add_all(id, vec![element])
    }

    /// Appends elements; an empty list is a no-op (docs/state.md, registration).
    pub fn list_add_all(&mut self, id: StateId, elements: Vec<Vec<u8>>) -> Result<(), StateError> {
        self.entry(id)?;
        let added = self.check_entries(elements.iter().map(Vec::len), 0)?;
        let (items, bytes) = self.list_mut(id)?;
        items.extend(elements);
        *bytes += added;
        self.total_bytes += added;
        Ok(())
    }

    /// Replaces the content: `clear` then `add_all` (docs/state.md, registration).
    pub fn list_update(&mut self, id: StateId, elements: Vec<Vec<u8>>) -> Result<(), StateError> {
        let current = self.entry(id)?.bytes;
        let added = self.check_entries(elements.iter().map(Vec::len), current)?;
        let (items, bytes) = self.list_mut(id)?;
        *items = elements;
        *bytes = added;
        self.total_bytes = self.total_bytes - current + added;
        Ok(())
    }

    /// Removes every element.
    pub fn list_clear(&mut self, id: StateId) -> Result<(), StateError> {
        self.list_update(id, Vec::new())
    }

    /// The value of `key` in a broadcast map.
    pub fn map_get(&self, id: StateId, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.map_ref(id)?.get(key).cloned())
    }

    /// Whether `key` is in a broadcast map.
    pub fn map_contains(&self, id: StateId, key: &[u8]) -> Result<bool, StateError> {
        Ok(self.map_ref(id)?.contains_key(key))
    }

    /// Every entry of a broadcast map, sorted by key.
    pub fn map_entries(&self, id: StateId) -> Result<crate::snapshot::MapEntries, StateError> {
        Ok(self.map_ref(id)?.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// Sets `key` to `value`.
    pub fn map_put(&mut self, id: StateId, key: Vec<u8>, value: Vec<u8>) -> Result<(), StateError> {
        let old = self.map_ref(id)?.get(&key).map(|v| key.len() + v.len()).unwrap_or(0);
        let added = self.check_entries([key.len(), value.len()].into_iter(), old)?;
        let (map, bytes) = self.map_mut(id)?;
        map.insert(key, value);
        *bytes = *bytes - old + added;
        self.total_bytes = self.total_bytes - old + added;
        Ok(())
    }

    /// Removes `key`.
    pub fn map_remove(&mut self, id: StateId, key: &[u8]) -> Result<(), StateError> {
        let (map, bytes) = self.map_mut(id)?;
        if let Some(v) = map.remove(key) {
            let freed = key.len() + v.len();
            *bytes -= freed;
            self.total_bytes -= freed;
        }
        Ok(())
    }

    /// Removes every entry.
    pub fn map_clear(&mut self, id: StateId) -> Result<(), StateError> {
        let (map, bytes) = self.map_mut(id)?;
        map.clear();
        let freed = std::mem::take(bytes);
        self.total_bytes -= freed;
        Ok(())
    }

    /// A deep copy of every state, registered or restored, sorted by name (docs/state.md, snapshots). Changes made
    /// after this returns do not affect the snapshot.
    pub fn snapshot(&self) -> SubtaskSnapshot {
        let mut states: Vec<NamedStateSnapshot> = self
            .entries
            .iter()
            .map(|e| NamedStateSnapshot {
                name: e.name.clone(),
                mode: e.mode,
                element_type: e.element_type.clone(),
                value_type: e.value_type.clone(),
                value: match &e.content {
                    Content::List(ListContent::Owned(items)) => StateValue::List(items.clone()),
                    Content::List(ListContent::Shared(segments)) => StateValue::List(segments.iter().flat_map(|s| s.as_slice().iter().cloned()).collect()),
                    Content::Map(m) => StateValue::Map(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
                },
            })
            .collect();
        states.sort_by(|a, b| a.name.cmp(&b.name));
        SubtaskSnapshot { states, keyed: None }
    }
}
