//! Flink's `RoundRobinOperatorStateRepartitioner` (docs/state.md).
//!
//! Redistribution never copies elements: each new subtask receives [`Segment`]s, ranges into
//! the old subtasks' lists held behind `Arc`s. A union list restored at parallelism P is
//! therefore held once in memory, not P times (docs/state.md, union lists).
//!
//! Order, where Flink's comes from Java `HashMap` iteration:
//! * split states are processed (and the remainder rotation carried over) in the order Flink's
//!   `HashMap<String, …>` iterates their names — [`flink_hashmap_order`]: by bucket of Java's
//!   `String.hashCode`, then first appearance (docs/state.md);
//! * segments of a restored list come in ascending old-subtask index, then original position
//!   (Flink leaves this unspecified; operators must not depend on it).

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use crate::{Mode, StateValue, SubtaskSnapshot, TypeInfo};

/// A contiguous run of one old subtask's list, shared without copying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Index of the old subtask whose list this run comes from.
    pub old_subtask: u32,
    /// That old subtask's whole list for this state name.
    pub elements: Arc<Vec<Vec<u8>>>,
    /// The run within `elements`.
    pub range: Range<usize>,
}

impl Segment {
    /// The elements of this run.
    pub fn as_slice(&self) -> &[Vec<u8>] {
        &self.elements[self.range.clone()]
    }
}

/// What one new subtask restores for one state name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RestoredValue {
    /// List content: the concatenation of the segments, in order.
    List(Vec<Segment>),
    /// A broadcast map (shared copy of one old subtask's map).
    Map(Arc<Vec<(Vec<u8>, Vec<u8>)>>),
}

/// One named state as a new subtask restores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestoredState {
    /// The state's name.
    pub name: String,
    /// Its mode, as snapshotted.
    pub mode: Mode,
    /// Type of list elements, or of map keys.
    pub element_type: TypeInfo,
    /// Type of map values (broadcast state only).
    pub value_type: Option<TypeInfo>,
    /// What this subtask restores.
    pub value: RestoredValue,
}

/// Everything one new subtask restores, sorted by state name. A name the subtask received no
/// entry for is absent (docs/state.md, split lists: the name is simply not registered).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoredSubtask {
    /// The restored states, sorted by name.
    pub states: Vec<RestoredState>,
}

/// Redistributes the snapshots of `oldP = old.len()` subtasks (index = old subtask; `None` for
/// a subtask that had no state) over `new_parallelism` subtasks, exactly as docs/state.md (redistribution) describes.
///
/// Returns one [`RestoredSubtask`] per new subtask, indexed by new subtask.
///
/// Which states a new subtask receives, for SPLIT_DISTRIBUTE at a new parallelism (docs/state.md, split lists):
/// the pseudocode hands out pieces while a target still needs elements, so an *empty* old list
/// that is visited on the way is handed to the current target as an empty piece (that target
/// then restores the name with an empty list), while empty lists after the last element are
/// never visited (nobody receives them). With `T = 0` nobody receives the name at all.
///
/// ```
/// use wasmflow_state::{redistribute, Mode, NamedStateSnapshot, StateValue, SubtaskSnapshot, TypeInfo};
/// let list = |items: &[&str]| SubtaskSnapshot { states: vec![NamedStateSnapshot {
///     name: "S".into(), mode: Mode::SplitDistribute, element_type: TypeInfo::default(), value_type: None,
///     value: StateValue::List(items.iter().map(|s| s.as_bytes().to_vec()).collect()),
/// }], keyed: None };
/// let new = redistribute(vec![Some(list(&["a", "b"])), Some(list(&["c"])), Some(list(&["d", "e", "f"]))], 2);
/// assert_eq!(new[0].list("S").unwrap(), vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
/// assert_eq!(new[1].list("S").unwrap(), vec![b"d".to_vec(), b"e".to_vec(), b"f".to_vec()]);
/// ```
pub fn redistribute(old: Vec<Option<SubtaskSnapshot>>, new_parallelism: usize) -> Vec<RestoredSubtask> {
    let old_parallelism = old.len();
    let new_p = new_parallelism;
    // Move every old list into an Arc once; from here on only references are handed out.
    let mut by_name: BTreeMap<String, NameStates> = BTreeMap::new();
    // Names in the order Flink meets them: old subtask by subtask (ties within a subtask: by name).
    let mut first_seen: Vec<String> = Vec::new();
    for (j, snapshot) in old.into_iter().enumerate() {
        for state in snapshot.map(|s| s.states).unwrap_or_default() {
            if !by_name.contains_key(&state.name) {
                first_seen.push(state.name.clone());
            }
            let entry = by_name.entry(state.name.clone()).or_insert_with(|| NameStates {
                mode: state.mode,
                element_type: state.element_type.clone(),
                value_type: state.value_type.clone(),
                per_subtask: Vec::new(),
            });
            let value = match state.value {
                StateValue::List(items) => OldValue::List(Arc::new(items)),
                StateValue::Map(entries) => OldValue::Map(Arc::new(entries)),
            };
            entry.per_subtask.push((j as u32, value));
        }
    }

    let mut result: Vec<BTreeMap<String, RestoredState>> = vec![BTreeMap::new(); new_p];
    let has_union = by_name.values().any(|n| n.mode == Mode::Union);
    let partly_broadcast = |n: &NameStates| n.mode == Mode::Broadcast && n.per_subtask.len() != old_parallelism;
    let any_partly_broadcast = by_name.values().any(partly_broadcast);

    if new_p == old_parallelism {
        // docs/state.md, unchanged parallelism: each subtask keeps its own split and broadcast state unchanged...
        for (name, n) in &by_name {
            if n.mode == Mode::Union || (any_partly_broadcast && partly_broadcast(n)) {
                continue;
            }
            for (j, value) in &n.per_subtask {
                result[*j as usize].insert(name.clone(), n.restored(name, whole(*j, value)));
            }
        }
        if !has_union && !any_partly_broadcast {
            return finish(result);
        }
        // ...and union state is redistributed all-to-all even at unchanged parallelism.
    } else {
        // Split states in Flink's HashMap order, with the start subtask carried over from one
        // name to the next.
        let mut start_parallel_op = 0usize;
        let split: Vec<&String> = first_seen.iter().filter(|name| by_name[*name].mode == Mode::SplitDistribute).collect();
        for name in flink_hashmap_order(&split) {
            start_parallel_op = split_one(name, &by_name[name], new_p, start_parallel_op, &mut result);
        }
        for (name, n) in by_name.iter().filter(|(_, n)| n.mode == Mode::Broadcast) {
            broadcast_one(name, n, &mut result);
        }
    }
    for (name, n) in by_name.iter().filter(|(_, n)| n.mode == Mode::Union) {
        // docs/state.md, union lists: every new subtask gets every old segment, in old-subtask order (docs/state.md, element order).
        let segments: Vec<Segment> = n.per_subtask.iter().filter_map(|(j, v)| v.as_segment(*j)).collect();
        for target in result.iter_mut() {
            target.insert(name.clone(), n.restored(name, RestoredValue::List(segments.clone())));
        }
    }
    if new_p == old_parallelism {
        for (name, n) in by_name.iter().filter(|(_, n)| partly_broadcast(n)) {
            broadcast_one(name, n, &mut result);
        }
    }
    finish(result)
}

/// Java's `String.hashCode()`: `31·h + c` over the UTF-16 code units, wrapping in an `i32`.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The table size of a Java `HashMap` created empty and filled with `n` entries: 16, doubled
/// whenever the size passes 0.75 of it.
pub fn java_hashmap_capacity(n: usize) -> usize {
    let mut capacity = 16;
    while n > capacity * 3 / 4 {
        capacity *= 2;
    }
    capacity
}

/// The bucket of `name` in a Java `HashMap` of `capacity`: `(h ^ (h >>> 16)) & (capacity - 1)`.
pub fn java_hashmap_bucket(name: &str, capacity: usize) -> usize {
    let h = java_string_hash(name) as u32;
    ((h ^ (h >> 16)) as usize) & (capacity - 1)
}

/// The order in which a Java `HashMap<String, _>` filled with `names` (in this insertion order)
/// iterates them: ascending bucket, insertion order within a bucket. (Resizing keeps the
/// relative order within a bucket; with fewer than 8 names in a bucket there are no tree bins.)
/// This is the order Flink's `RoundRobinOperatorStateRepartitioner` splits states in, and so
/// which state's remainder rotation starts first.
pub fn flink_hashmap_order<'a>(names: &[&'a String]) -> Vec<&'a String> {
    let capacity = java_hashmap_capacity(names.len());
    let mut ordered: Vec<(usize, usize, &String)> = names.iter().enumerate().map(|(i, n)| (java_hashmap_bucket(n, capacity), i, *n)).collect();
    ordered.sort();
    ordered.into_iter().map(|(_, _, n)| n).collect()
}

/// One state name across the old subtasks that had it.
struct NameStates {
    mode: Mode,
    element_type: TypeInfo,
    value_type: Option<TypeInfo>,
    /// (old subtask index, its value), in old-subtask order.
    per_subtask: Vec<(u32, OldValue)>,
}

enum OldValue {
    List(Arc<Vec<Vec<u8>>>),
    Map(Arc<Vec<(Vec<u8>, Vec<u8>)>>),
}

impl OldValue {
    fn as_segment(&self, j: u32) -> Option<Segment> {
        match self {
            OldValue::List(items) => Some(Segment { old_subtask: j, elements: items.clone(), range: 0..items.len() }),
            OldValue::Map(_) => None,
        }
    }
}

fn whole(j: u32, value: &OldValue) -> RestoredValue {
    match value {
        OldValue::List(items) => RestoredValue::List(vec![Segment { old_subtask: j, elements: items.clone(), range: 0..items.len() }]),
        OldValue::Map(entries) => RestoredValue::Map(entries.clone()),
    }
}

impl NameStates {
    fn restored(&self, name: &str, value: RestoredValue) -> RestoredState {
        RestoredState { name: name.to_string(), mode: self.mode, element_type: self.element_type.clone(), value_type: self.value_type.clone(), value }
    }
}

/// docs/state.md, split lists for one name; returns the start subtask for the next name.
fn split_one(name: &str, n: &NameStates, new_p: usize, start_parallel_op: usize, result: &mut [BTreeMap<String, RestoredState>]) -> usize {
    let lists: Vec<(u32, &Arc<Vec<Vec<u8>>>)> = n
        .per_subtask
        .iter()
        .filter_map(|(j, v)| match v {
            OldValue::List(items) => Some((*j, items)),
            OldValue::Map(_) => None,
        })
        .collect();
    let total: usize = lists.iter().map(|(_, l)| l.len()).sum();
    let base = total / new_p;
    let mut remainder = (total % new_p) as isize;
    let (mut lst_idx, mut offset_idx) = (0usize, 0usize);
    let mut new_start = start_parallel_op;
    for i in 0..new_p {
        let op = (i + start_parallel_op) % new_p;
        let mut needed = base as isize;
        if remainder > 0 {
            needed += 1;
            remainder -= 1;
        } else if remainder == 0 {
            new_start = op;
            remainder -= 1;
        }
        while needed > 0 {
            let (j, items) = lists[lst_idx];
            let rem = (items.len() - offset_idx) as isize;
            let range = if rem > needed {
                let r = offset_idx..offset_idx + needed as usize;
                offset_idx += needed as usize;
                r
            } else {
                let r = offset_idx..items.len();
                offset_idx = 0;
                lst_idx += 1;
                r
            };
            needed -= rem;
            let segment = Segment { old_subtask: j, elements: items.clone(), range };
            match result[op].get_mut(name) {
                Some(RestoredState { value: RestoredValue::List(segments), .. }) => segments.push(segment),
                _ => {
                    result[op].insert(name.to_string(), n.restored(name, RestoredValue::List(vec![segment])));
                }
            }
        }
    }
    new_start
}

/// docs/state.md, broadcast maps: new subtask `i` gets the map of the `i mod len`-th old subtask that has the name.
fn broadcast_one(name: &str, n: &NameStates, result: &mut [BTreeMap<String, RestoredState>]) {
    let maps: Vec<&Arc<crate::snapshot::MapEntries>> = n
        .per_subtask
        .iter()
        .filter_map(|(_, v)| match v {
            OldValue::Map(m) => Some(m),
            OldValue::List(_) => None,
        })
        .collect();
    if maps.is_empty() {
        return;
    }
    for (i, target) in result.iter_mut().enumerate() {
        target.insert(name.to_string(), n.restored(name, RestoredValue::Map(maps[i % maps.len()].clone())));
    }
}

fn finish(result: Vec<BTreeMap<String, RestoredState>>) -> Vec<RestoredSubtask> {
    result.into_iter().map(|m| RestoredSubtask { states: m.into_values().collect() }).collect()
}

impl RestoredSubtask {
    /// The restored state named `name`, if this subtask received one.
    pub fn get(&self, name: &str) -> Option<&RestoredState> {
        self.states.iter().find(|s| s.name == name)
    }

    /// The concatenated elements of list state `name` (copies; for tests and inspection).
    pub fn list(&self, name: &str) -> Option<Vec<Vec<u8>>> {
        match &self.get(name)?.value {
            RestoredValue::List(segments) => Some(segments.iter().flat_map(|s| s.as_slice().iter().cloned()).collect()),
            RestoredValue::Map(_) => None,
        }
    }

    /// The entries of broadcast state `name`.
    pub fn map(&self, name: &str) -> Option<&[(Vec<u8>, Vec<u8>)]> {
        match &self.get(name)?.value {
            RestoredValue::Map(m) => Some(m.as_slice()),
            RestoredValue::List(_) => None,
        }
    }
}
