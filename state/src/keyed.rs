//! Keyed state: Flink's `ValueState`, `ListState` and `MapState` scoped to the key of the record
//! being processed, and the per-key timers of `KeyedProcessFunction` — the heap backend.
//!
//! One [`KeyedStateBackend`] per subtask of a keyed operator (one downstream of `key-hash`
//! edges). It owns the key groups of its [`KeyGroupRange`] and refuses a key outside them: a
//! guest can never write state a restore would hand to another subtask. Values are opaque bytes
//! (the SDK encodes typed values); entries of a state with a TTL carry the processing time of
//! their last write and are invisible once expired (Flink's `OnCreateAndWrite`,
//! `NeverReturnExpired`), and dropped at the next snapshot.
//!
//! ```
//! use wasmflow_state::{KeyGroupRange, KeyedStateBackend, StateLimits, TypeInfo};
//! let mut keyed = KeyedStateBackend::new(128, KeyGroupRange::for_subtask(128, 1, 0), StateLimits::default());
//! let count = keyed.register_value("count", TypeInfo::default(), None).unwrap();
//! keyed.value_update(count, b"user-1", vec![3], 0).unwrap();
//! assert_eq!(keyed.value_get(count, b"user-1", 0).unwrap(), Some(vec![3]));
//! assert_eq!(keyed.value_get(count, b"user-2", 0).unwrap(), None);
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use crate::incremental::{ChangeLog, Changes};
use crate::keyed_snapshot::{EntryRef, GroupBuffers, ValueRef};
pub use crate::keyed_snapshot::{KeyGroupSnapshot, KeyedEntry, KeyedSnapshot, KeyedValue, TimerEntry};
use crate::keygroups::{KeyGroupRange, key_group};
use crate::table::{Slot, Stamped, Table, UserMap};
use crate::{StateLimits, TypeInfo};

/// Handle to a registered keyed state.
pub type KeyedStateId = usize;

/// What kind of keyed state a name holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyedKind {
    /// `ValueState`: one value per key.
    Value,
    /// `ListState`: a list per key.
    List,
    /// `MapState`: a map per key.
    Map,
}

impl std::fmt::Display for KeyedKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyedKind::Value => "value",
            KeyedKind::List => "list",
            KeyedKind::Map => "map",
        })
    }
}

/// A registered keyed state, as recorded in snapshots (Flink's `StateDescriptor`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedStateDescriptor {
    /// The state's name, unique within the operator's keyed states.
    pub name: String,
    /// Value, list or map.
    pub kind: KeyedKind,
    /// Type of the value (value state), the elements (list) or the map values.
    pub value_type: TypeInfo,
    /// Type of the map's keys (map state only).
    pub user_key_type: Option<TypeInfo>,
    /// Time to live in milliseconds of processing time since the last write, if any.
    pub ttl_ms: Option<u64>,
}

/// Which clock a timer follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TimeDomain {
    /// Fires when the operator's watermark reaches the timestamp.
    EventTime,
    /// Fires when the wall clock reaches the timestamp.
    ProcessingTime,
}

/// Why a keyed state operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyedStateError {
    /// The key belongs to a key group another subtask owns.
    #[error(
        "key {key} belongs to key group {key_group}, which this subtask does not own (it owns {range}): keyed state and timers can only be used for the key of the record or timer being processed"
    )]
    ForeignKey { key: String, key_group: u32, range: KeyGroupRange },
    /// A name registered with another kind.
    #[error("keyed state '{name}' is {was} state and cannot be registered as {now} state")]
    WrongKind { name: String, was: KeyedKind, now: KeyedKind },
    /// The restored state's type is not the registered one.
    #[error(
        "keyed state '{name}' holds {was} (as restored or registered before) and is now registered holding {now}: the stored values cannot be read as the new type; keep the type, or register the new type under a new name (the old state is then carried along unread)"
    )]
    TypeChanged { name: String, was: String, now: String },
    /// TTL on list state is not supported.
    #[error("keyed state '{name}': a TTL is supported on value and map state only")]
    TtlOnList { name: String },
    /// Over a limit.
    #[error(transparent)]
    Limit(#[from] crate::StateError),
    /// A handle this backend never returned.
    #[error("unknown keyed state handle {0}")]
    UnknownHandle(KeyedStateId),
    /// A key group's entries could not be decoded.
    #[error("keyed state of key group {key_group} cannot be decoded: {reason}")]
    Corrupt { key_group: u32, reason: String },
    /// The disk store failed (I/O, a corrupt entry): the subtask fails and restarts from the
    /// last checkpoint.
    #[error("keyed state store: {0}")]
    Store(String),
    /// Restoring state written with another number of key groups.
    #[error(
        "the checkpoint's keyed state was written with max-parallelism {was}, but the job has max-parallelism {now}: max-parallelism is fixed for the life of keyed state; set `[job] max-parallelism = {was}`"
    )]
    MaxParallelismChanged { was: u32, now: u32 },
}

struct StateData {
    descriptor: KeyedStateDescriptor,
    /// Whether the running operator registered it (restored-only states are carried along).
    registered: bool,
    slots: Table,
}

/// The timers of one subtask: deduplicated per (key, timestamp) and fired in timestamp order.
#[derive(Default, Debug, Clone)]
struct Timers {
    event: BTreeSet<(i64, Vec<u8>)>,
    processing: BTreeSet<(i64, Vec<u8>)>,
}

impl Timers {
    fn queue_ref(&self, domain: TimeDomain) -> &BTreeSet<(i64, Vec<u8>)> {
        match domain {
            TimeDomain::EventTime => &self.event,
            TimeDomain::ProcessingTime => &self.processing,
        }
    }

    fn queue(&mut self, domain: TimeDomain) -> &mut BTreeSet<(i64, Vec<u8>)> {
        match domain {
            TimeDomain::EventTime => &mut self.event,
            TimeDomain::ProcessingTime => &mut self.processing,
        }
    }
}

/// Timers that are due, all with the same timestamp, in key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueTimers {
    /// Event or processing time.
    pub domain: TimeDomain,
    /// The timestamp they were registered for.
    pub timestamp: i64,
    /// The key of each timer.
    pub keys: Vec<Vec<u8>>,
}

impl From<String> for KeyedStateError {
    /// A disk store's failure.
    fn from(message: String) -> Self {
        KeyedStateError::Store(message)
    }
}

/// The keyed state and timers of one subtask of a keyed operator, on the heap or on local disk.
pub struct KeyedStateBackend {
    max_parallelism: u32,
    range: KeyGroupRange,
    limits: StateLimits,
    states: Vec<StateData>,
    by_name: HashMap<String, KeyedStateId>,
    timers: Timers,
    total_bytes: usize,
    /// The last key checked against the range (most calls repeat the record's key).
    last_checked: Vec<u8>,
    /// What changed since earlier snapshots, when incremental snapshots are wanted.
    changes: Option<ChangeLog>,
    /// The local disk store, for the disk backend; `None`: the heap.
    #[cfg(feature = "disk")]
    store: Option<crate::table::disk::DiskStore>,
}

fn printable(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.len() <= 64 && !s.chars().any(char::is_control) => format!("'{s}'"),
        _ => format!("0x{}", key.iter().take(32).map(|b| format!("{b:02x}")).collect::<String>()),
    }
}

/// What a registered timer counts against `state-bytes`: its key and its timestamp.
fn timer_bytes(key: &[u8]) -> usize {
    key.len() + 8
}

/// Whether two descriptions of a type are the same type: the serde format when both have one,
/// else the Rust type name. Unknown (empty) matches anything.
fn same_type(a: &TypeInfo, b: &TypeInfo) -> bool {
    if !a.schema.is_empty() && !b.schema.is_empty() {
        return a.schema == b.schema;
    }
    a.type_name.is_empty() || b.type_name.is_empty() || a.type_name == b.type_name
}

impl KeyedStateBackend {
    /// An empty backend owning `range` of `max_parallelism` key groups.
    pub fn new(max_parallelism: u32, range: KeyGroupRange, limits: StateLimits) -> Self {
        KeyedStateBackend {
            max_parallelism,
            range,
            limits,
            states: Vec::new(),
            by_name: HashMap::new(),
            timers: Timers::default(),
            total_bytes: 0,
            last_checked: Vec::new(),
            changes: None,
            #[cfg(feature = "disk")]
            store: None,
        }
    }

    /// An empty backend that keeps its entries on local disk, in `dir` (created, and deleted
    /// when the backend is dropped): state larger than memory (docs/state.md, state backends).
    /// Timers stay in memory.
    #[cfg(feature = "disk")]
    pub fn on_disk(max_parallelism: u32, range: KeyGroupRange, limits: StateLimits, dir: &std::path::Path) -> Result<Self, KeyedStateError> {
        let mut backend = Self::new(max_parallelism, range, limits);
        backend.store = Some(crate::table::disk::DiskStore::create(dir)?);
        Ok(backend)
    }

    /// A table for a new state, on the heap or in the disk store.
    fn new_table(&mut self) -> Result<Table, KeyedStateError> {
        #[cfg(feature = "disk")]
        if let Some(store) = &mut self.store {
            return Ok(Table::Disk(store.table()?));
        }
        Ok(Table::default())
    }

    /// Starts noting what changes, so that [`snapshot_since`](Self::snapshot_since) can write
    /// incremental snapshots. Costs a set insertion per changed key between snapshots.
    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(ChangeLog::default);
    }

    fn note_entry(&mut self, id: KeyedStateId, key: &[u8]) {
        if let Some(log) = &mut self.changes {
            log.current.entry(id, key, log.limit);
        }
    }

    fn note_timer(&mut self, domain: TimeDomain, timestamp: i64, key: &[u8]) {
        if let Some(log) = &mut self.changes {
            log.current.timer(domain, timestamp, key);
        }
    }

    /// A backend for `range` restored from the snapshots of the old subtasks: every key group of
    /// `range` comes from whichever snapshot holds it (whole groups, never re-hashed). An
    /// incremental snapshot applies to what the snapshots before it restored: pass each old
    /// subtask's full snapshot followed by its increments, in order.
    pub fn restore<'a>(
        max_parallelism: u32,
        range: KeyGroupRange,
        limits: StateLimits,
        snapshots: impl IntoIterator<Item = &'a KeyedSnapshot>,
    ) -> Result<Self, KeyedStateError> {
        Self::new(max_parallelism, range, limits).restored_from(snapshots)
    }

    /// This (empty) backend with the key groups of its range from `snapshots`, as
    /// [`restore`](Self::restore) describes.
    pub fn restored_from<'a>(mut self, snapshots: impl IntoIterator<Item = &'a KeyedSnapshot>) -> Result<Self, KeyedStateError> {
        let (max_parallelism, range) = (self.max_parallelism, self.range);
        let backend = &mut self;
        for snapshot in snapshots {
            if snapshot.max_parallelism != max_parallelism {
                return Err(KeyedStateError::MaxParallelismChanged { was: snapshot.max_parallelism, now: max_parallelism });
            }
            // Map the snapshot's state indexes to ours (descriptors are merged by name).
            let ids = snapshot.states.iter().map(|d| backend.carry(d)).collect::<Result<Vec<KeyedStateId>, _>>()?;
            for group in snapshot.groups.iter().filter(|g| range.contains(g.key_group)) {
                for e in group.decode_entries()? {
                    let id = *ids.get(e.state as usize).ok_or(KeyedStateError::UnknownHandle(e.state as usize))?;
                    let slot = match e.value {
                        KeyedValue::Value(bytes, written) => Some(Slot::Value(Stamped { bytes, written })),
                        KeyedValue::List(items) => Some(Slot::List(items)),
                        KeyedValue::Map(m) => Some(Slot::Map(m.into_iter().map(|(k, bytes, written)| (k, Stamped { bytes, written })).collect())),
                        KeyedValue::Deleted => None,
                    };
                    backend.put_slot(id, &e.key, slot)?;
                }
                for t in &group.removed_timers {
                    if backend.timers.queue(t.domain).remove(&(t.timestamp, t.key.clone())) {
                        backend.total_bytes -= timer_bytes(&t.key);
                    }
                }
                for t in &group.timers {
                    if backend.timers.queue(t.domain).insert((t.timestamp, t.key.clone())) {
                        backend.total_bytes += timer_bytes(&t.key);
                    }
                }
            }
        }
        Ok(self)
    }

    /// Merges an old subtask's full snapshot and its increments into one full snapshot (what
    /// `inspect` shows and what a restore starts from). `chain` must start with a full snapshot.
    pub fn merge_chain(chain: &[KeyedSnapshot]) -> Result<KeyedSnapshot, KeyedStateError> {
        let first = chain.first().ok_or_else(|| KeyedStateError::Corrupt { key_group: 0, reason: "an empty chain of keyed snapshots".into() })?;
        if first.base.is_some() || chain[1..].iter().any(|s| s.base.is_none()) {
            return Err(KeyedStateError::Corrupt {
                key_group: first.range.start,
                reason: "the chain of keyed snapshots must be one full snapshot followed by increments".into(),
            });
        }
        let unlimited = StateLimits { max_states: usize::MAX, max_entry_bytes: usize::MAX, max_total_bytes: usize::MAX };
        let mut merged = Self::restore(first.max_parallelism, first.range, unlimited, chain)?;
        // i64::MIN: keep every entry, expired or not; the restoring subtask applies the TTL.
        merged.snapshot(i64::MIN)
    }

    /// Adds a restored state's descriptor if the name is new (a later snapshot's description
    /// of a known name replaces the earlier one); its id either way.
    fn carry(&mut self, d: &KeyedStateDescriptor) -> Result<KeyedStateId, KeyedStateError> {
        if let Some(&id) = self.by_name.get(&d.name) {
            self.states[id].descriptor = d.clone();
            return Ok(id);
        }
        let id = self.states.len();
        let slots = self.new_table()?;
        self.states.push(StateData { descriptor: d.clone(), registered: false, slots });
        self.by_name.insert(d.name.clone(), id);
        Ok(id)
    }

    /// The key groups this subtask owns.
    pub fn range(&self) -> KeyGroupRange {
        self.range
    }

    /// The job's number of key groups.
    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism
    }

    /// Bytes held by all keyed states.
    pub fn total_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Descriptors of every state (registered or restored), in registration order.
    pub fn descriptors(&self) -> impl Iterator<Item = &KeyedStateDescriptor> {
        self.states.iter().map(|s| &s.descriptor)
    }

    fn register(&mut self, d: KeyedStateDescriptor) -> Result<KeyedStateId, KeyedStateError> {
        if d.name.is_empty() {
            return Err(crate::StateError::EmptyName.into());
        }
        if d.ttl_ms.is_some() && d.kind == KeyedKind::List {
            return Err(KeyedStateError::TtlOnList { name: d.name });
        }
        if let Some(&id) = self.by_name.get(&d.name) {
            let state = &mut self.states[id];
            let was = &state.descriptor;
            if was.kind != d.kind {
                return Err(KeyedStateError::WrongKind { name: d.name, was: was.kind, now: d.kind });
            }
            let key_types = match (&was.user_key_type, &d.user_key_type) {
                (Some(a), Some(b)) => same_type(a, b),
                _ => true,
            };
            if !same_type(&was.value_type, &d.value_type) || !key_types {
                let show = |x: &KeyedStateDescriptor| match &x.user_key_type {
                    Some(k) => format!("map<{}, {}>", k.type_name, x.value_type.type_name),
                    None => x.value_type.type_name.clone(),
                };
                return Err(KeyedStateError::TypeChanged { name: d.name.clone(), was: show(was), now: show(&d) });
            }
            state.descriptor = d;
            state.registered = true;
            return Ok(id);
        }
        if self.states.len() >= self.limits.max_states {
            return Err(crate::StateError::TooManyStates { max: self.limits.max_states }.into());
        }
        let id = self.states.len();
        self.by_name.insert(d.name.clone(), id);
        let slots = self.new_table()?;
        self.states.push(StateData { descriptor: d, registered: true, slots });
        Ok(id)
    }

    /// `getState(ValueStateDescriptor)`.
    pub fn register_value(&mut self, name: &str, value_type: TypeInfo, ttl_ms: Option<u64>) -> Result<KeyedStateId, KeyedStateError> {
        self.register(KeyedStateDescriptor { name: name.into(), kind: KeyedKind::Value, value_type, user_key_type: None, ttl_ms })
    }

    /// `getListState(ListStateDescriptor)` on a keyed stream.
    pub fn register_list(&mut self, name: &str, element_type: TypeInfo) -> Result<KeyedStateId, KeyedStateError> {
        self.register(KeyedStateDescriptor { name: name.into(), kind: KeyedKind::List, value_type: element_type, user_key_type: None, ttl_ms: None })
    }

    /// `getMapState(MapStateDescriptor)`.
    pub fn register_map(&mut self, name: &str, user_key_type: TypeInfo, value_type: TypeInfo, ttl_ms: Option<u64>) -> Result<KeyedStateId, KeyedStateError> {
        self.register(KeyedStateDescriptor { name: name.into(), kind: KeyedKind::Map, value_type, user_key_type: Some(user_key_type), ttl_ms })
    }

    /// The id of keyed state `name`, registered or restored.
    pub fn id_of(&self, name: &str) -> Option<KeyedStateId> {
        self.by_name.get(name).copied()
    }

    /// Refuses a key outside this subtask's key groups.
    pub fn check_key(&mut self, key: &[u8]) -> Result<(), KeyedStateError> {
        if key == self.last_checked.as_slice() && !self.last_checked.is_empty() {
            return Ok(());
        }
        let kg = key_group(key, self.max_parallelism);
        if !self.range.contains(kg) {
            return Err(KeyedStateError::ForeignKey { key: printable(key), key_group: kg, range: self.range });
        }
        self.last_checked.clear();
        self.last_checked.extend_from_slice(key);
        Ok(())
    }

    fn state(&self, id: KeyedStateId, kind: KeyedKind) -> Result<&StateData, KeyedStateError> {
        let s = self.states.get(id).ok_or(KeyedStateError::UnknownHandle(id))?;
        if s.descriptor.kind != kind {
            return Err(KeyedStateError::WrongKind { name: s.descriptor.name.clone(), was: s.descriptor.kind, now: kind });
        }
        Ok(s)
    }

    fn expired(ttl: Option<u64>, written: i64, now: i64) -> bool {
        ttl.is_some_and(|ttl| written.saturating_add(ttl as i64) <= now)
    }

    /// Checks an entry size and the total after replacing `old` bytes by `new` bytes. A change
    /// that does not grow the state always passes (a restore may bring in more than a lowered
    /// limit: the operator must still be able to shrink it).
    fn check_size(&self, entry: usize, old: usize, new: usize) -> Result<(), KeyedStateError> {
        if entry > self.limits.max_entry_bytes {
            return Err(crate::StateError::EntryTooLarge { size: entry, max: self.limits.max_entry_bytes }.into());
        }
        let after = self.total_bytes - old + new;
        if new > old && after > self.limits.max_total_bytes {
            return Err(crate::StateError::StoreTooLarge { size: after, max: self.limits.max_total_bytes }.into());
        }
        Ok(())
    }

    /// Replaces the slot of `key` (None removes it), keeping the byte count. The key is copied
    /// only when it is new.
    fn put_slot(&mut self, id: KeyedStateId, key: &[u8], slot: Option<Slot>) -> Result<(), KeyedStateError> {
        self.note_entry(id, key);
        let new = slot.as_ref().map(|s| s.bytes() + key.len()).unwrap_or(0);
        let old = self.states[id].slots.replace(key, slot)?;
        let old = old.map(|s| s.bytes() + key.len()).unwrap_or(0);
        self.total_bytes = self.total_bytes - old + new;
        Ok(())
    }

    fn slot_bytes(&self, id: KeyedStateId, key: &[u8]) -> Result<usize, KeyedStateError> {
        Ok(self.states[id].slots.get(key)?.map(|s| s.bytes() + key.len()).unwrap_or(0))
    }

    /// `ValueState.value()` for `key`, as of processing time `now`. An expired value is removed
    /// as it is read (Flink's cleanup on read).
    pub fn value_get(&mut self, id: KeyedStateId, key: &[u8], now: i64) -> Result<Option<Vec<u8>>, KeyedStateError> {
        self.check_key(key)?;
        let s = self.state(id, KeyedKind::Value)?;
        let live = match s.slots.get(key)?.as_deref() {
            Some(Slot::Value(v)) if !Self::expired(s.descriptor.ttl_ms, v.written, now) => Some(Some(v.bytes.clone())),
            Some(_) => None,
            None => Some(None),
        };
        match live {
            Some(value) => Ok(value),
            None => {
                self.put_slot(id, key, None)?;
                Ok(None)
            }
        }
    }

    /// `ValueState.update(value)` for `key`, written at processing time `now`.
    pub fn value_update(&mut self, id: KeyedStateId, key: &[u8], value: Vec<u8>, now: i64) -> Result<(), KeyedStateError> {
        self.check_key(key)?;
        self.state(id, KeyedKind::Value)?;
        self.check_size(value.len(), self.slot_bytes(id, key)?, key.len() + value.len())?;
        self.put_slot(id, key, Some(Slot::Value(Stamped { bytes: value, written: now })))
    }

    /// `clear()` on any keyed state for `key`.
    pub fn clear(&mut self, id: KeyedStateId, key: &[u8]) -> Result<(), KeyedStateError> {
        self.check_key(key)?;
        self.states.get(id).ok_or(KeyedStateError::UnknownHandle(id))?;
        self.put_slot(id, key, None)
    }

    /// `ListState.get()` for `key` (empty when there is none).
    pub fn list_get(&mut self, id: KeyedStateId, key: &[u8]) -> Result<Vec<Vec<u8>>, KeyedStateError> {
        self.check_key(key)?;
        Ok(match self.state(id, KeyedKind::List)?.slots.get(key)?.as_deref() {
            Some(Slot::List(items)) => items.clone(),
            _ => Vec::new(),
        })
    }

    /// `ListState.add(element)` for `key`.
    pub fn list_add(&mut self, id: KeyedStateId, key: &[u8], element: Vec<u8>) -> Result<(), KeyedStateError> {
        self.check_key(key)?;
        self.state(id, KeyedKind::List)?;
        let old = self.slot_bytes(id, key)?;
        let added = if old == 0 { key.len() } else { 0 } + element.len();
        self.check_size(element.len(), old, old + added)?;
        self.note_entry(id, key);
        self.states[id].slots.update(
            key,
            || Slot::List(Vec::new()),
            |slot| match slot {
                Slot::List(items) => (items.push(element), true),
                _ => unreachable!("list state holds lists"),
            },
        )?;
        self.total_bytes += added;
        Ok(())
    }

    /// `ListState.update(elements)` for `key` (an empty list clears it).
    pub fn list_update(&mut self, id: KeyedStateId, key: &[u8], elements: Vec<Vec<u8>>) -> Result<(), KeyedStateError> {
        self.check_key(key)?;
        self.state(id, KeyedKind::List)?;
        let largest = elements.iter().map(Vec::len).max().unwrap_or(0);
        let new = if elements.is_empty() { 0 } else { key.len() + elements.iter().map(Vec::len).sum::<usize>() };
        self.check_size(largest, self.slot_bytes(id, key)?, new)?;
        self.put_slot(id, key, if elements.is_empty() { None } else { Some(Slot::List(elements)) })
    }

    fn map_of(&self, id: KeyedStateId, key: &[u8]) -> Result<(Option<std::borrow::Cow<'_, UserMap>>, Option<u64>), KeyedStateError> {
        let s = self.state(id, KeyedKind::Map)?;
        let map = match s.slots.get(key)? {
            Some(std::borrow::Cow::Borrowed(Slot::Map(m))) => Some(std::borrow::Cow::Borrowed(m)),
            Some(std::borrow::Cow::Owned(Slot::Map(m))) => Some(std::borrow::Cow::Owned(m)),
            _ => None,
        };
        Ok((map, s.descriptor.ttl_ms))
    }

    /// `MapState.get(userKey)` for `key`; an expired entry is removed as it is read.
    pub fn map_get(&mut self, id: KeyedStateId, key: &[u8], user_key: &[u8], now: i64) -> Result<Option<Vec<u8>>, KeyedStateError> {
        self.check_key(key)?;
        let (map, ttl) = self.map_of(id, key)?;
        let live = match map.as_ref().and_then(|m| m.get(user_key)) {
            Some(v) if !Self::expired(ttl, v.written, now) => Some(Some(v.bytes.clone())),
            Some(_) => None,
            None => Some(None),
        };
        match live {
            Some(value) => Ok(value),
            None => {
                self.map_remove(id, key, user_key)?;
                Ok(None)
            }
        }
    }

    /// `MapState.put(userKey, value)` for `key`, written at processing time `now`.
    pub fn map_put(&mut self, id: KeyedStateId, key: &[u8], user_key: Vec<u8>, value: Vec<u8>, now: i64) -> Result<(), KeyedStateError> {
        self.check_key(key)?;
        let (map, _) = self.map_of(id, key)?;
        let old_entry = map.as_ref().and_then(|m| m.get(&user_key)).map(|v| user_key.len() + v.bytes.len()).unwrap_or(0);
        let key_bytes = if map.is_none() { key.len() } else { 0 };
        drop(map);
        let new_entry = user_key.len() + value.len();
        self.check_size(user_key.len().max(value.len()), old_entry, new_entry + key_bytes)?;
        self.note_entry(id, key);
        self.states[id].slots.update(
            key,
            || Slot::Map(BTreeMap::new()),
            |slot| match slot {
                Slot::Map(m) => (m.insert(user_key, Stamped { bytes: value, written: now }), true),
                _ => unreachable!("map state holds maps"),
            },
        )?;
        self.total_bytes = self.total_bytes - old_entry + new_entry + key_bytes;
        Ok(())
    }

    /// `MapState.remove(userKey)` for `key`; the key's map goes when it is empty.
    pub fn map_remove(&mut self, id: KeyedStateId, key: &[u8], user_key: &[u8]) -> Result<(), KeyedStateError> {
        self.check_key(key)?;
        self.state(id, KeyedKind::Map)?;
        if self.states[id].slots.get(key)?.is_none() {
            return Ok(());
        }
        self.note_entry(id, key);
        let freed = self.states[id].slots.update(
            key,
            || Slot::Map(BTreeMap::new()),
            |slot| match slot {
                Slot::Map(m) => {
                    let entry = m.remove(user_key).map_or(0, |v| user_key.len() + v.bytes.len());
                    // The key's map goes when it is empty.
                    let empty = m.is_empty();
                    (entry + if empty { key.len() } else { 0 }, !empty)
                }
                _ => unreachable!("map state holds maps"),
            },
        )?;
        self.total_bytes -= freed;
        Ok(())
    }

    /// `MapState.entries()` for `key`, sorted by map key, without expired entries.
    pub fn map_entries(&mut self, id: KeyedStateId, key: &[u8], now: i64) -> Result<crate::snapshot::MapEntries, KeyedStateError> {
        self.check_key(key)?;
        let (map, ttl) = self.map_of(id, key)?;
        Ok(map.iter().flat_map(|m| m.iter()).filter(|(_, v)| !Self::expired(ttl, v.written, now)).map(|(k, v)| (k.clone(), v.bytes.clone())).collect())
    }

    /// Registers a timer for `key` (Flink's `registerEventTimeTimer`/`registerProcessingTimeTimer`):
    /// a second registration of the same (key, timestamp) is the same timer.
    pub fn register_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp: i64) -> Result<(), KeyedStateError> {
        self.check_key(key)?;
        let timer = (timestamp, key.to_vec());
        if self.timers.queue(domain).contains(&timer) {
            return Ok(());
        }
        // A timer is held like state: its key and timestamp count against `state-bytes`.
        let size = timer_bytes(key);
        self.check_size(key.len(), 0, size)?;
        self.note_timer(domain, timestamp, key);
        self.timers.queue(domain).insert(timer);
        self.total_bytes += size;
        Ok(())
    }

    /// Deletes a timer (no-op if there is none).
    pub fn delete_timer(&mut self, domain: TimeDomain, key: &[u8], timestamp: i64) -> Result<(), KeyedStateError> {
        self.check_key(key)?;
        if self.timers.queue(domain).remove(&(timestamp, key.to_vec())) {
            self.total_bytes -= timer_bytes(key);
            self.note_timer(domain, timestamp, key);
        }
        Ok(())
    }

    /// Takes the timers of `domain` with the lowest timestamp if it is at most `time` (the
    /// watermark or the wall clock). Call again until `None`: a timer registered while others
    /// fire, for a time already reached, fires in the same round, in timestamp order.
    pub fn pop_due(&mut self, domain: TimeDomain, time: i64) -> Option<DueTimers> {
        let queue = self.timers.queue(domain);
        let &(timestamp, _) = queue.first()?;
        if timestamp > time {
            return None;
        }
        let mut keys = Vec::new();
        while let Some(first) = queue.first() {
            if first.0 != timestamp {
                break;
            }
            let key = queue.pop_first().expect("first exists").1;
            self.total_bytes -= timer_bytes(&key);
            if let Some(log) = &mut self.changes {
                log.current.timer(domain, timestamp, &key);
            }
            keys.push(key);
        }
        Some(DueTimers { domain, timestamp, keys })
    }

    /// The earliest processing-time timer.
    pub fn next_processing_timer(&self) -> Option<i64> {
        self.timers.processing.first().map(|(t, _)| *t)
    }

    /// Number of registered timers (event, processing).
    pub fn timer_counts(&self) -> (usize, usize) {
        (self.timers.event.len(), self.timers.processing.len())
    }

    /// A copy of every state and timer, grouped by key group, as of processing time `now`:
    /// expired TTL entries are left out (and dropped from the backend). Entries are encoded
    /// straight into their key group's buffer, one pass over each state's map.
    pub fn snapshot(&mut self, now: i64) -> Result<KeyedSnapshot, KeyedStateError> {
        self.drop_expired(now)?;
        self.encode_all()
    }

    /// The snapshot for checkpoint `checkpoint_id`: with change tracking on and `since` (the
    /// newest complete checkpoint) one this backend took a snapshot for, only what changed
    /// since then ([`KeyedSnapshot::base`]); otherwise a full one, as [`snapshot`](Self::snapshot).
    ///
    /// Expired TTL entries are dropped at full snapshots only: finding them means visiting every
    /// entry, which an increment must not cost. Until then they are invisible to reads (and a
    /// read removes them), and an increment may carry one that changed before it expired.
    pub fn snapshot_since(&mut self, now: i64, checkpoint_id: u64, since: Option<u64>) -> Result<KeyedSnapshot, KeyedStateError> {
        let Some(mut log) = self.changes.take() else { return self.snapshot(now) };
        let increment = match log.snapshot(checkpoint_id, since) {
            Some(periods) if !self.mostly_changed(periods) => Some(self.encode_changes(periods, since.expect("a delta has a base"))),
            _ => None,
        };
        self.changes = Some(log);
        // Entries a full snapshot drops as expired are noted in the new period.
        let snapshot = match increment {
            Some(increment) => increment?,
            None => self.snapshot(now)?,
        };
        let entries = self.entry_count();
        if let Some(log) = &mut self.changes {
            log.set_limit(entries);
        }
        Ok(snapshot)
    }

    /// Whether a full snapshot is the better buy. An increment looks each changed entry up by
    /// key: a random access into a large table, ~0.7–1.3 µs per entry for a million keys on a
    /// 2-core VM (bench/REPORT.md), against ~0.27 µs per entry for a full snapshot's walk in
    /// memory order. Past a tenth of the entries changed, an increment costs a good part of a
    /// full snapshot and lengthens the chain; the full snapshot restarts it.
    ///
    /// While a period runs, it stops noting keys past a tenth of the entries at its start
    /// (`ChangeLog::limit`): the set would only cost time and memory for a full snapshot.
    fn mostly_changed(&self, periods: &[(u64, Changes)]) -> bool {
        let changed: usize = periods.iter().flat_map(|(_, c)| &c.entries).map(|keys| keys.len()).sum();
        changed > 0 && changed * 10 > self.entry_count()
    }

    /// Keys with an entry, over all states.
    fn entry_count(&self) -> usize {
        self.states.iter().map(|s| s.slots.len()).sum()
    }

    /// State ids sorted by name: a snapshot's state indexes.
    fn by_name_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.states.len()).collect();
        order.sort_by(|&a, &b| self.states[a].descriptor.name.cmp(&self.states[b].descriptor.name));
        order
    }

    fn encode_all(&self) -> Result<KeyedSnapshot, KeyedStateError> {
        let order = self.by_name_order();
        let mut groups = GroupBuffers::new(self.max_parallelism, self.range);
        for (position, &id) in order.iter().enumerate() {
            self.states[id].slots.for_each(|key, slot| groups.entry(&EntryRef { state: position as u32, key, value: slot.as_ref() }))?;
        }
        for (domain, queue) in [(TimeDomain::EventTime, &self.timers.event), (TimeDomain::ProcessingTime, &self.timers.processing)] {
            for (timestamp, key) in queue {
                groups.timer(TimerEntry { domain, timestamp: *timestamp, key: key.clone() }, true);
            }
        }
        Ok(self.finish(&order, groups, None))
    }

    /// An increment from the change sets of the periods since the base, oldest first: each
    /// changed entry and timer once, as it is now.
    fn encode_changes(&self, periods: &[(u64, Changes)], base: u64) -> Result<KeyedSnapshot, KeyedStateError> {
        let order = self.by_name_order();
        let mut groups = GroupBuffers::new(self.max_parallelism, self.range);
        // Newest period first; a key also noted in a newer period was already written.
        let newer_has = |i: usize, f: &dyn Fn(&Changes) -> bool| periods[i + 1..].iter().any(|(_, c)| f(c));
        for (position, &id) in order.iter().enumerate() {
            let slots = &self.states[id].slots;
            for (i, (_, changes)) in periods.iter().enumerate().rev() {
                let Some(keys) = changes.entries.get(id) else { continue };
                for key in keys {
                    if newer_has(i, &|c| c.entries.get(id).is_some_and(|k| k.contains(key))) {
                        continue;
                    }
                    let slot = slots.get(key)?;
                    let value = slot.as_deref().map_or(ValueRef::Deleted, Slot::as_ref);
                    groups.entry(&EntryRef { state: position as u32, key, value });
                }
            }
        }
        let mut timers: Vec<&(TimeDomain, i64, Vec<u8>)> = periods.iter().flat_map(|(_, c)| &c.timers).collect();
        timers.sort();
        timers.dedup();
        for (domain, timestamp, key) in timers {
            let present = self.timers.queue_ref(*domain).contains(&(*timestamp, key.clone()));
            groups.timer(TimerEntry { domain: *domain, timestamp: *timestamp, key: key.clone() }, present);
        }
        Ok(self.finish(&order, groups, Some(base)))
    }

    fn finish(&self, order: &[usize], groups: GroupBuffers, base: Option<u64>) -> KeyedSnapshot {
        KeyedSnapshot {
            max_parallelism: self.max_parallelism,
            range: self.range,
            states: order.iter().map(|&id| self.states[id].descriptor.clone()).collect(),
            groups: groups.finish(),
            base,
        }
    }

    /// Drops entries whose TTL has passed (Flink's full-snapshot cleanup).
    fn drop_expired(&mut self, now: i64) -> Result<(), KeyedStateError> {
        let mut freed = 0;
        let mut changed: Vec<(KeyedStateId, Vec<u8>)> = Vec::new();
        let tracking = self.changes.is_some();
        for (id, s) in self.states.iter_mut().enumerate() {
            let Some(ttl) = s.descriptor.ttl_ms else { continue };
            s.slots.retain(|key, slot| {
                let (keep, dropped) = match slot {
                    Slot::Value(v) if Self::expired(Some(ttl), v.written, now) => (false, key.len() + v.bytes.len()),
                    Slot::Map(m) => {
                        let mut dropped = 0;
                        m.retain(|k, v| {
                            let keep = !Self::expired(Some(ttl), v.written, now);
                            if !keep {
                                dropped += k.len() + v.bytes.len();
                            }
                            keep
                        });
                        if m.is_empty() {
                            dropped += key.len();
                        }
                        (!m.is_empty(), dropped)
                    }
                    _ => (true, 0),
                };
                if dropped > 0 && tracking {
                    changed.push((id, key.to_vec()));
                }
                freed += dropped;
                keep
            })?;
        }
        self.total_bytes -= freed;
        for (id, key) in changed {
            self.note_entry(id, &key);
        }
        Ok(())
    }

    /// Names of the states the operator registered in this run.
    pub fn registered_names(&self) -> Vec<String> {
        self.states.iter().filter(|s| s.registered).map(|s| s.descriptor.name.clone()).collect()
    }
}
