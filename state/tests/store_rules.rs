//! Registration rules and limits of the operator state store (docs/state.md, registration, docs/state.md, snapshots).

mod common;

use common::*;
use wasmflow_state::{Mode, OperatorStateStore, StateError, StateLimits, StateValue, TypeInfo, redistribute};

fn store() -> OperatorStateStore {
    OperatorStateStore::new(StateLimits::default())
}

#[test]
fn registering_twice_returns_the_same_state() {
    let mut s = store();
    let a = s.register_list("x", Mode::SplitDistribute, TypeInfo::default()).unwrap();
    s.list_add(a, b"1".to_vec()).unwrap();
    let b = s.register_list("x", Mode::SplitDistribute, TypeInfo::default()).unwrap();
    assert_eq!(a, b);
    assert_eq!(s.list_get(b).unwrap(), vec![b"1".to_vec()]);
}

#[test]
fn another_mode_is_rejected_with_flinks_message() {
    let mut s = store();
    s.register_list("x", Mode::Union, TypeInfo::default()).unwrap();
    let e = s.register_list("x", Mode::SplitDistribute, TypeInfo::default()).unwrap_err();
    assert_eq!(e.to_string(), "Incompatible state assignment modes for state 'x'. Was [UNION], registered with [SPLIT_DISTRIBUTE].");
    let e = s.register_broadcast("x", TypeInfo::default(), TypeInfo::default()).unwrap_err();
    assert!(matches!(e, StateError::WrongKind { .. }), "{e}");
}

#[test]
fn a_restored_union_name_cannot_be_registered_as_split() {
    // docs/state.md, registration: the mode check also applies to names restored from a checkpoint.
    let restored = redistribute(vec![subtask(vec![list_state("offsets", Mode::Union, &["a"])])], 1).pop().unwrap();
    let mut s = OperatorStateStore::restore(restored, StateLimits::default());
    assert!(matches!(s.register_list("offsets", Mode::SplitDistribute, TypeInfo::default()), Err(StateError::IncompatibleMode { .. })));
}

#[test]
fn restored_states_not_registered_again_are_carried_forward() {
    // docs/state.md, registration "Restored but never re-registered states are carried forward".
    let restored =
        redistribute(vec![subtask(vec![list_state("old", Mode::SplitDistribute, &["keep"]), list_state("new", Mode::SplitDistribute, &[])])], 1).pop().unwrap();
    let mut s = OperatorStateStore::restore(restored, StateLimits::default());
    let id = s.register_list("new", Mode::SplitDistribute, TypeInfo::default()).unwrap();
    s.list_add(id, b"n".to_vec()).unwrap();
    let snap = s.snapshot();
    let names: Vec<&str> = snap.states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, vec!["new", "old"]);
    assert_eq!(snap.states[1].value, StateValue::List(vec![b"keep".to_vec()]));
}

#[test]
fn empty_lists_are_recorded() {
    // docs/state.md, snapshots: an empty list is still recorded.
    let mut s = store();
    s.register_list("e", Mode::SplitDistribute, TypeInfo::default()).unwrap();
    assert_eq!(s.snapshot().states[0].value, StateValue::List(vec![]));
}

#[test]
fn update_clear_and_add_all() {
    let mut s = store();
    let id = s.register_list("x", Mode::SplitDistribute, TypeInfo::default()).unwrap();
    s.list_add_all(id, vec![]).unwrap();
    s.list_add_all(id, vec![b"a".to_vec(), b"b".to_vec()]).unwrap();
    s.list_update(id, vec![b"c".to_vec()]).unwrap();
    assert_eq!(s.list_get(id).unwrap(), vec![b"c".to_vec()]);
    assert_eq!(s.total_bytes(), 1);
    s.list_clear(id).unwrap();
    assert_eq!((s.list_len(id).unwrap(), s.total_bytes()), (0, 0));
}

#[test]
fn snapshot_is_a_deep_copy() {
    // docs/state.md, snapshots: changes after the snapshot do not leak into it.
    let mut s = store();
    let id = s.register_list("x", Mode::SplitDistribute, TypeInfo::default()).unwrap();
    s.list_add(id, b"1".to_vec()).unwrap();
    let snap = s.snapshot();
    s.list_add(id, b"2".to_vec()).unwrap();
    assert_eq!(snap.states[0].value, StateValue::List(vec![b"1".to_vec()]));
}

#[test]
fn limits_refuse_without_side_effects() {
    let mut s = OperatorStateStore::new(StateLimits { max_states: 2, max_entry_bytes: 4, max_total_bytes: 6 });
    let id = s.register_list("x", Mode::SplitDistribute, TypeInfo::default()).unwrap();
    assert_eq!(s.list_add(id, b"12345".to_vec()), Err(StateError::EntryTooLarge { size: 5, max: 4 }));
    s.list_add_all(id, vec![b"1234".to_vec()]).unwrap();
    assert_eq!(s.list_add_all(id, vec![b"1".to_vec(), b"123".to_vec()]), Err(StateError::StoreTooLarge { size: 8, max: 6 }));
    assert_eq!(s.list_get(id).unwrap(), vec![b"1234".to_vec()], "a refused change changes nothing");
    let m = s.register_broadcast("m", TypeInfo::default(), TypeInfo::default()).unwrap();
    s.map_put(m, b"k".to_vec(), b"v".to_vec()).unwrap();
    assert_eq!(s.map_put(m, b"kk".to_vec(), b"v".to_vec()), Err(StateError::StoreTooLarge { size: 9, max: 6 }));
    assert_eq!(s.register_list("third", Mode::Union, TypeInfo::default()), Err(StateError::TooManyStates { max: 2 }));
    s.map_put(m, b"k".to_vec(), b"w".to_vec()).unwrap();
    assert_eq!(s.map_entries(m).unwrap(), vec![(b"k".to_vec(), b"w".to_vec())]);
    assert_eq!(s.total_bytes(), 6);
}

#[test]
fn restored_lists_are_shared_until_changed() {
    // A union list restored on many subtasks is held once (docs/state.md, union lists HOST implication).
    let restored = redistribute(vec![subtask(vec![list_state("u", Mode::Union, &["a", "b"])]), None], 3);
    let arc = match &restored[0].get("u").unwrap().value {
        wasmflow_state::RestoredValue::List(segs) => segs[0].elements.clone(),
        _ => unreachable!(),
    };
    let mut stores: Vec<_> = restored.into_iter().map(|r| OperatorStateStore::restore(r, StateLimits::default())).collect();
    assert_eq!(std::sync::Arc::strong_count(&arc), 4, "three stores and this test share one copy");
    let id = stores[0].register_list("u", Mode::Union, TypeInfo::default()).unwrap();
    stores[0].list_add(id, b"c".to_vec()).unwrap();
    assert_eq!(std::sync::Arc::strong_count(&arc), 3, "the changed store made its own copy");
    assert_eq!(stores[0].list_get(id).unwrap().len(), 3);
    assert_eq!(stores[1].list_len(stores[1].id_of("u").unwrap()).unwrap(), 2);
}
