//! Keyed state and timers (docs/state.md, keyed state): scoping by key, TTL, timers, and the
//! key-group snapshot a rescale redistributes.

use std::collections::BTreeMap;

use wasmflow_state::{
    DueTimers, KeyGroupRange, KeyedEntry, KeyedStateBackend, KeyedStateError, KeyedValue, StateLimits, TimeDomain, TypeInfo, key_group, subtask_for_key,
};

fn backend(p: u32, index: u32) -> KeyedStateBackend {
    KeyedStateBackend::new(128, KeyGroupRange::for_subtask(128, p, index), StateLimits::default())
}

fn ty(name: &str) -> TypeInfo {
    TypeInfo { type_name: name.into(), schema: String::new() }
}

/// Keys owned by subtask `index` of `p`.
fn owned_keys(p: u32, index: u32, n: usize) -> Vec<Vec<u8>> {
    (0..).map(|i| format!("k{i}").into_bytes()).filter(|k| subtask_for_key(k, 128, p) == index).take(n).collect()
}

#[test]
fn each_state_is_scoped_to_its_key() {
    let mut b = backend(1, 0);
    let v = b.register_value("count", ty("u64"), None).unwrap();
    let l = b.register_list("seen", ty("u64")).unwrap();
    let m = b.register_map("windows", ty("i64"), ty("u64"), None).unwrap();
    b.value_update(v, b"a", vec![1], 0).unwrap();
    b.value_update(v, b"b", vec![2], 0).unwrap();
    b.list_add(l, b"a", vec![7]).unwrap();
    b.list_add(l, b"a", vec![8]).unwrap();
    b.map_put(m, b"b", vec![1], vec![10], 0).unwrap();
    b.map_put(m, b"b", vec![0], vec![9], 0).unwrap();
    assert_eq!(b.value_get(v, b"a", 0).unwrap(), Some(vec![1]));
    assert_eq!(b.value_get(v, b"b", 0).unwrap(), Some(vec![2]));
    assert_eq!(b.list_get(l, b"a").unwrap(), vec![vec![7], vec![8]]);
    assert_eq!(b.list_get(l, b"b").unwrap(), Vec::<Vec<u8>>::new());
    assert_eq!(b.map_entries(m, b"b", 0).unwrap(), vec![(vec![0], vec![9]), (vec![1], vec![10])]);
    assert_eq!(b.map_get(m, b"a", &[0], 0).unwrap(), None);
    b.clear(v, b"a").unwrap();
    assert_eq!(b.value_get(v, b"a", 0).unwrap(), None);
    b.map_remove(m, b"b", &[0]).unwrap();
    b.map_remove(m, b"b", &[1]).unwrap();
    b.list_update(l, b"a", vec![]).unwrap();
    b.clear(v, b"b").unwrap();
    assert_eq!(b.total_bytes(), 0, "everything removed frees every byte");
}

#[test]
fn a_key_of_another_subtask_is_refused() {
    let mut b = backend(4, 1);
    let v = b.register_value("count", ty("u64"), None).unwrap();
    let foreign = owned_keys(4, 2, 1).remove(0);
    let err = b.value_update(v, &foreign, vec![1], 0).unwrap_err();
    assert!(matches!(err, KeyedStateError::ForeignKey { .. }));
    assert!(err.to_string().contains("which this subtask does not own (it owns 32..=63)"), "{err}");
    assert!(b.register_timer(TimeDomain::EventTime, &foreign, 5).is_err());
}

#[test]
fn registering_a_name_as_another_kind_or_type_is_refused_naming_the_state() {
    let mut b = backend(1, 0);
    b.register_value("count", ty("u64"), None).unwrap();
    let err = b.register_map("count", ty("u64"), ty("u64"), None).unwrap_err().to_string();
    assert_eq!(err, "keyed state 'count' is value state and cannot be registered as map state");
    let err = b.register_value("count", ty("alloc::string::String"), None).unwrap_err().to_string();
    assert!(err.starts_with("keyed state 'count' holds u64 (as restored or registered before) and is now registered holding alloc::string::String"), "{err}");
}

#[test]
fn ttl_hides_expired_entries_and_the_snapshot_drops_them() {
    let mut b = backend(1, 0);
    let v = b.register_value("seen", ty("bool"), Some(100)).unwrap();
    let m = b.register_map("m", ty("u8"), ty("u8"), Some(100)).unwrap();
    b.value_update(v, b"a", vec![1], 1000).unwrap();
    b.map_put(m, b"a", vec![1], vec![1], 1000).unwrap();
    b.map_put(m, b"a", vec![2], vec![2], 1050).unwrap();
    assert_eq!(b.value_get(v, b"a", 1099).unwrap(), Some(vec![1]));
    let before = b.total_bytes();
    assert_eq!(b.value_get(v, b"a", 1100).unwrap(), None, "expired at written + ttl");
    assert_eq!(b.total_bytes(), before - 2, "and removed as it is read");
    assert_eq!(b.map_entries(m, b"a", 1120).unwrap(), vec![(vec![2], vec![2])]);
    // A write renews the entry (OnCreateAndWrite).
    b.value_update(v, b"a", vec![1], 1100).unwrap();
    assert_eq!(b.value_get(v, b"a", 1150).unwrap(), Some(vec![1]));
    let snapshot = b.snapshot(1140).unwrap();
    let entries: Vec<KeyedEntry> = snapshot.groups.iter().flat_map(|g| g.decode_entries().unwrap()).collect();
    let mut values: Vec<KeyedValue> = entries.into_iter().map(|e| e.value).collect();
    values.sort_by_key(|v| matches!(v, KeyedValue::Map(_)));
    assert_eq!(values, [KeyedValue::Value(vec![1], 1100), KeyedValue::Map(vec![(vec![2], vec![2], 1050)])], "the value and the map with its one live entry");
    let s = b.snapshot(1300).unwrap();
    assert!(s.groups.is_empty(), "everything expired is gone: {s:?}");
    assert_eq!(b.total_bytes(), 0);
    let err = b.register_list("l", ty("u8")).map(|_| ()).and(Ok::<_, KeyedStateError>(()));
    assert!(err.is_ok(), "a list without TTL is fine");
}

#[test]
fn timers_are_deduplicated_and_fire_in_timestamp_order() {
    let mut b = backend(1, 0);
    for (key, t) in [("b", 20), ("a", 10), ("a", 20), ("a", 10), ("c", 30)] {
        b.register_timer(TimeDomain::EventTime, key.as_bytes(), t).unwrap();
    }
    b.register_timer(TimeDomain::ProcessingTime, b"a", 5).unwrap();
    b.delete_timer(TimeDomain::EventTime, b"c", 30).unwrap();
    assert_eq!(b.timer_counts(), (3, 1));
    assert_eq!(b.pop_due(TimeDomain::EventTime, 9), None);
    let due = b.pop_due(TimeDomain::EventTime, 25).unwrap();
    assert_eq!(due, DueTimers { domain: TimeDomain::EventTime, timestamp: 10, keys: vec![b"a".to_vec()] });
    // A timer registered while timers fire, for a time already passed, fires next.
    b.register_timer(TimeDomain::EventTime, b"z", 15).unwrap();
    assert_eq!(b.pop_due(TimeDomain::EventTime, 25).unwrap().timestamp, 15);
    assert_eq!(b.pop_due(TimeDomain::EventTime, 25).unwrap().keys, vec![b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(b.pop_due(TimeDomain::EventTime, 25), None);
    assert_eq!(b.next_processing_timer(), Some(5));
    assert_eq!(b.pop_due(TimeDomain::ProcessingTime, 5).unwrap().keys, vec![b"a".to_vec()]);
    assert_eq!(b.total_bytes(), 0, "fired timers free their bytes");
}

/// State and timers written at parallelism 2 and restored at 3, then 1: every key's value and
/// timers arrive, once, at the subtask that owns the key's group; nothing is re-hashed.
#[test]
fn a_rescale_moves_whole_key_groups_with_their_timers() {
    let keys: Vec<Vec<u8>> = (0..500).map(|i| format!("key-{i}").into_bytes()).collect();
    let expected: BTreeMap<Vec<u8>, Vec<u8>> = keys.iter().map(|k| (k.clone(), k.iter().rev().cloned().collect())).collect();
    let snapshots_at = |p: u32, values: &BTreeMap<Vec<u8>, Vec<u8>>| {
        (0..p)
            .map(|i| {
                let mut b = backend(p, i);
                let v = b.register_value("v", ty("bytes"), None).unwrap();
                for (k, val) in values.iter().filter(|(k, _)| subtask_for_key(k, 128, p) == i) {
                    b.value_update(v, k, val.clone(), 0).unwrap();
                    b.register_timer(TimeDomain::EventTime, k, k.len() as i64).unwrap();
                }
                b.snapshot(0).unwrap()
            })
            .collect::<Vec<_>>()
    };
    let mut snapshots = snapshots_at(2, &expected);
    for new_p in [3u32, 1] {
        let mut seen = BTreeMap::new();
        let mut timers = 0;
        for i in 0..new_p {
            let range = KeyGroupRange::for_subtask(128, new_p, i);
            let mut b = KeyedStateBackend::restore(128, range, StateLimits::default(), &snapshots).unwrap();
            let v = b.register_value("v", ty("bytes"), None).unwrap();
            for k in &keys {
                match b.value_get(v, k, 0) {
                    Ok(Some(val)) => assert!(seen.insert(k.clone(), val).is_none(), "key restored twice"),
                    Ok(None) => panic!("key {k:?} in range without its value"),
                    Err(_) => assert!(!range.contains(key_group(k, 128))),
                }
            }
            timers += b.timer_counts().0;
            // The restored bytes are counted as written ones: removing everything frees them all.
            for k in keys.iter().filter(|k| range.contains(key_group(k, 128))) {
                b.clear(v, k).unwrap();
                b.delete_timer(TimeDomain::EventTime, k, k.len() as i64).unwrap();
            }
            assert_eq!(b.total_bytes(), 0);
        }
        assert_eq!(seen, expected, "at parallelism {new_p}");
        assert_eq!(timers, keys.len());
        snapshots = snapshots_at(new_p, &expected);
    }
}

#[test]
fn a_different_max_parallelism_is_refused() {
    let mut b = backend(1, 0);
    b.register_value("v", ty("u8"), None).unwrap();
    let s = b.snapshot(0).unwrap();
    let err = KeyedStateBackend::restore(256, KeyGroupRange::for_subtask(256, 1, 0), StateLimits::default(), [&s]).err().unwrap();
    assert_eq!(
        err.to_string(),
        "the checkpoint's keyed state was written with max-parallelism 128, but the job has max-parallelism 256: max-parallelism is fixed for the life of keyed state; set `[job] max-parallelism = 128`"
    );
}

#[test]
fn keyed_state_and_timers_count_against_the_limits() {
    let limits = StateLimits { max_states: 8, max_entry_bytes: 16, max_total_bytes: 40 };
    let mut b = KeyedStateBackend::new(128, KeyGroupRange::for_subtask(128, 1, 0), limits.clone());
    let v = b.register_value("v", ty("u8"), None).unwrap();
    assert!(b.value_update(v, b"a", vec![0; 17], 0).unwrap_err().to_string().contains("limits.state-entry-bytes"));
    b.value_update(v, b"a", vec![0; 16], 0).unwrap();
    b.value_update(v, b"b", vec![0; 16], 0).unwrap();
    assert_eq!(b.total_bytes(), 34);
    assert!(b.register_timer(TimeDomain::EventTime, b"a", 1).unwrap_err().to_string().contains("limits.state-bytes"));
    // Replacing a value counts the difference only.
    b.value_update(v, b"b", vec![0; 10], 0).unwrap();
    b.register_timer(TimeDomain::EventTime, b"a", 1).unwrap();
    assert_eq!(b.total_bytes(), 28 + 9);
    // Over the limit (as after a restore under a lowered limit), shrinking still works.
    let mut over =
        KeyedStateBackend::restore(128, KeyGroupRange::for_subtask(128, 1, 0), StateLimits { max_total_bytes: 10, ..limits }, [&b.snapshot(0).unwrap()])
            .unwrap();
    let v = over.id_of("v").unwrap();
    assert!(over.value_update(v, b"a", vec![0; 16], 0).is_ok(), "same size: not growing");
    over.value_update(v, b"b", vec![0; 1], 0).unwrap();
    assert!(over.value_update(v, b"c", vec![0; 1], 0).is_err(), "growing over the limit is still refused");
}

/// Value, list and map entries come back from a snapshot exactly as they were written (the
/// entries are encoded from borrowed data and decoded as owned `KeyedEntry`s).
#[test]
fn every_kind_round_trips_through_a_snapshot() {
    let mut b = backend(1, 0);
    let v = b.register_value("v", ty("u8"), None).unwrap();
    let l = b.register_list("l", ty("u8")).unwrap();
    let m = b.register_map("m", ty("u8"), ty("u8"), Some(1000)).unwrap();
    b.value_update(v, b"k", vec![1], 5).unwrap();
    b.list_add(l, b"k", vec![2]).unwrap();
    b.list_add(l, b"k", vec![3, 4]).unwrap();
    b.map_put(m, b"k", vec![9], vec![8], 7).unwrap();
    b.map_put(m, b"j", vec![1], vec![], 7).unwrap();
    let snapshot = b.snapshot(10).unwrap();
    let mut r = KeyedStateBackend::restore(128, KeyGroupRange::for_subtask(128, 1, 0), StateLimits::default(), [&snapshot]).unwrap();
    assert_eq!(r.total_bytes(), b.total_bytes());
    let (v, l, m) = (r.id_of("v").unwrap(), r.id_of("l").unwrap(), r.id_of("m").unwrap());
    assert_eq!(r.value_get(v, b"k", 10).unwrap(), Some(vec![1]));
    assert_eq!(r.list_get(l, b"k").unwrap(), vec![vec![2], vec![3, 4]]);
    assert_eq!(r.map_entries(m, b"k", 10).unwrap(), vec![(vec![9], vec![8])]);
    assert_eq!(r.map_entries(m, b"j", 10).unwrap(), vec![(vec![1], vec![])]);
    // The write time travels too: the TTL still counts from the original write.
    assert_eq!(r.map_entries(m, b"k", 1007).unwrap(), vec![]);
}
