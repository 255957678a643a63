//! Helpers shared by the state tests.
#![allow(dead_code)]

use wasmflow_state::{Mode, NamedStateSnapshot, RestoredSubtask, StateValue, SubtaskSnapshot, TypeInfo};

/// A type description with just a name.
pub fn ty(name: &str) -> TypeInfo {
    TypeInfo { type_name: name.into(), schema: String::new() }
}

/// A deterministic pseudo-random sequence (no dependency, same on every machine).
pub struct Lcg(pub u64);

impl Lcg {
    /// The next number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

pub fn list_state(name: &str, mode: Mode, items: &[&str]) -> NamedStateSnapshot {
    NamedStateSnapshot {
        name: name.into(),
        mode,
        element_type: TypeInfo::default(),
        value_type: None,
        value: StateValue::List(items.iter().map(|s| s.as_bytes().to_vec()).collect()),
    }
}

pub fn map_state(name: &str, entries: &[(&str, &str)]) -> NamedStateSnapshot {
    NamedStateSnapshot {
        name: name.into(),
        mode: Mode::Broadcast,
        element_type: TypeInfo::default(),
        value_type: Some(TypeInfo::default()),
        value: StateValue::Map(entries.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()),
    }
}

pub fn subtask(states: Vec<NamedStateSnapshot>) -> Option<SubtaskSnapshot> {
    Some(SubtaskSnapshot { states, keyed: None })
}

/// List `name` of a restored subtask as strings; `None` if the subtask did not receive it.
pub fn strings(r: &RestoredSubtask, name: &str) -> Option<Vec<String>> {
    r.list(name).map(|items| items.into_iter().map(|b| String::from_utf8(b).unwrap()).collect())
}

/// Per new subtask: the list `name` (None = not received).
pub fn all_strings(rs: &[RestoredSubtask], name: &str) -> Vec<Option<Vec<String>>> {
    rs.iter().map(|r| strings(r, name)).collect()
}

pub fn v(items: &[&str]) -> Option<Vec<String>> {
    Some(items.iter().map(|s| s.to_string()).collect())
}
