//! What a keyed snapshot holds (by key group, in the state codec) and how the backend encodes
//! its entries into it without copying them first.

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use crate::keyed::{KeyedStateDescriptor, KeyedStateError, TimeDomain};
use crate::keygroups::{KeyGroupRange, key_group};
use crate::table::{Slot, UserMap};

/// One keyed entry in a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyedValue {
    /// A value and the processing time of its last write.
    Value(Vec<u8>, i64),
    /// A list's elements.
    List(Vec<Vec<u8>>),
    /// A map's entries, sorted by map key, each with the time of its last write.
    Map(Vec<(Vec<u8>, Vec<u8>, i64)>),
    /// In an incremental snapshot: the key's entry was removed since the base.
    Deleted,
}

/// One key's value of one state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedEntry {
    /// Index into [`KeyedSnapshot::states`].
    pub state: u32,
    /// The key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: KeyedValue,
}

/// A registered timer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimerEntry {
    /// Its clock.
    pub domain: TimeDomain,
    /// When it fires.
    pub timestamp: i64,
    /// Its key.
    pub key: Vec<u8>,
}

/// Everything of one key group: the unit a rescale moves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyGroupSnapshot {
    /// The key group.
    pub key_group: u32,
    /// Its entries: [`KeyedEntry`]s in the state codec, back to back, in no particular order.
    /// They are encoded straight from the backend's maps at the snapshot — no copy of each entry
    /// first, which for a million keys is most of a snapshot's cost — and decoded only by the
    /// subtask that restores this key group ([`KeyGroupSnapshot::decode_entries`]).
    pub entries: Vec<u8>,
    /// Its timers, sorted by (domain, timestamp, key). In an incremental snapshot: the timers
    /// registered since the base.
    pub timers: Vec<TimerEntry>,
    /// In an incremental snapshot: the timers deleted or fired since the base. Empty otherwise.
    pub removed_timers: Vec<TimerEntry>,
}

impl KeyGroupSnapshot {
    /// The entries, decoded.
    pub fn decode_entries(&self) -> Result<Vec<KeyedEntry>, KeyedStateError> {
        let mut out = Vec::new();
        let mut rest = self.entries.as_slice();
        while !rest.is_empty() {
            let (entry, used) = wasmflow_types::codec::decode_prefix::<KeyedEntry>(rest)
                .map_err(|e| KeyedStateError::Corrupt { key_group: self.key_group, reason: e.to_string() })?;
            out.push(entry);
            rest = &rest[used..];
        }
        Ok(out)
    }
}

/// A [`KeyedEntry`] borrowed from the backend, encoded exactly as the owned one.
#[derive(Serialize)]
pub(crate) struct EntryRef<'a> {
    pub state: u32,
    pub key: &'a [u8],
    pub value: ValueRef<'a>,
}

/// [`KeyedValue`], borrowed: same variants in the same order, so the same bytes.
#[derive(Serialize)]
pub(crate) enum ValueRef<'a> {
    Value(&'a [u8], i64),
    List(&'a [Vec<u8>]),
    Map(MapRef<'a>),
    Deleted,
}

/// A map's entries as the sequence of `(key, value, written)` that [`KeyedValue::Map`] holds.
pub(crate) struct MapRef<'a>(&'a UserMap);

impl Serialize for MapRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (k, v) in self.0 {
            seq.serialize_element(&(k.as_slice(), v.bytes.as_slice(), v.written))?;
        }
        seq.end()
    }
}

impl Slot {
    /// The entry as a snapshot encodes it.
    pub(crate) fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Slot::Value(v) => ValueRef::Value(&v.bytes, v.written),
            Slot::List(items) => ValueRef::List(items),
            Slot::Map(m) => ValueRef::Map(MapRef(m)),
        }
    }
}

/// A snapshot's key groups being filled: one entry buffer and timer lists per group of the range.
pub(crate) struct GroupBuffers {
    max_parallelism: u32,
    range: KeyGroupRange,
    entries: Vec<Vec<u8>>,
    timers: Vec<Vec<TimerEntry>>,
    removed: Vec<Vec<TimerEntry>>,
}

impl GroupBuffers {
    pub fn new(max_parallelism: u32, range: KeyGroupRange) -> Self {
        let n = range.len() as usize;
        GroupBuffers { max_parallelism, range, entries: vec![Vec::new(); n], timers: vec![Vec::new(); n], removed: vec![Vec::new(); n] }
    }

    /// Every key was checked against the range when it was written or restored.
    fn index(&self, key: &[u8]) -> Option<usize> {
        key_group(key, self.max_parallelism).checked_sub(self.range.start).map(|i| i as usize).filter(|&i| i < self.entries.len())
    }

    pub fn entry(&mut self, entry: &EntryRef<'_>) {
        if let Some(i) = self.index(entry.key) {
            // Encoding bytes and integers into a Vec has no failure case (no I/O, no
            // unsupported serde feature).
            wasmflow_types::codec::encode_into(entry, &mut self.entries[i]).expect("encoding keyed state into memory cannot fail");
        }
    }

    /// A timer that is registered (`present`) or, in an increment, one that was removed.
    pub fn timer(&mut self, timer: TimerEntry, present: bool) {
        if let Some(i) = self.index(&timer.key) {
            if present { &mut self.timers[i] } else { &mut self.removed[i] }.push(timer);
        }
    }

    pub fn finish(self) -> Vec<KeyGroupSnapshot> {
        let start = self.range.start;
        self.entries
            .into_iter()
            .zip(self.timers)
            .zip(self.removed)
            .enumerate()
            .filter(|(_, ((e, t), r))| !e.is_empty() || !t.is_empty() || !r.is_empty())
            .map(|(i, ((entries, timers), removed_timers))| KeyGroupSnapshot { key_group: start + i as u32, entries, timers, removed_timers })
            .collect()
    }
}

/// One subtask's keyed state at a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyedSnapshot {
    /// The job's number of key groups when it was written.
    pub max_parallelism: u32,
    /// The key groups the subtask owned.
    pub range: KeyGroupRange,
    /// Every keyed state, registered or carried over from a restore, sorted by name.
    pub states: Vec<KeyedStateDescriptor>,
    /// The key groups that hold entries or timers, ascending.
    pub groups: Vec<KeyGroupSnapshot>,
    /// `None` for a full snapshot. For an incremental one, the checkpoint it builds on: its
    /// groups hold only what changed since (docs/state.md, incremental checkpoints), and it is
    /// restored by applying it to that checkpoint's keyed state.
    pub base: Option<u64>,
}
