//! The disk backend (docs/state.md, state backends) behaves exactly as the heap backend: the
//! same operations give the same reads, byte counts, full snapshots, increments and restores.
#![cfg(feature = "disk")]

use std::collections::{BTreeMap, BTreeSet};

mod common;

use common::{Lcg, ty};
use wasmflow_state::{KeyGroupRange, KeyedSnapshot, KeyedStateBackend, KeyedValue, StateLimits, TimeDomain};

type Contents = (BTreeMap<(String, Vec<u8>), KeyedValue>, BTreeSet<(TimeDomain, i64, Vec<u8>)>, BTreeSet<(TimeDomain, i64, Vec<u8>)>, Option<u64>);

fn contents(s: &KeyedSnapshot) -> Contents {
    let mut c: Contents = (BTreeMap::new(), BTreeSet::new(), BTreeSet::new(), s.base);
    for g in &s.groups {
        for e in g.decode_entries().unwrap() {
            c.0.insert((s.states[e.state as usize].name.clone(), e.key), e.value);
        }
        c.1.extend(g.timers.iter().map(|t| (t.domain, t.timestamp, t.key.clone())));
        c.2.extend(g.removed_timers.iter().map(|t| (t.domain, t.timestamp, t.key.clone())));
    }
    c
}

fn register(b: &mut KeyedStateBackend) {
    b.register_value("v", ty("u8"), Some(30)).unwrap();
    b.register_list("l", ty("u8")).unwrap();
    b.register_map("m", ty("u8"), ty("u8"), Some(45)).unwrap();
}

/// Applies one random operation to both backends and checks they answer alike.
fn step(backends: &mut [KeyedStateBackend; 2], rng: &mut Lcg, now: i64) {
    let key = format!("key-{}", rng.below(300)).into_bytes();
    let n = rng.below(100) as u8;
    let op = rng.below(12);
    let mut answers = Vec::new();
    for b in backends.iter_mut() {
        let (v, l, m) = (b.id_of("v").unwrap(), b.id_of("l").unwrap(), b.id_of("m").unwrap());
        answers.push(match op {
            0 | 1 => format!("{:?}", b.value_update(v, &key, vec![n], now)),
            2 => format!("{:?}", b.value_get(v, &key, now)),
            3 => format!("{:?}", b.clear(v, &key)),
            4 => format!("{:?}", b.list_add(l, &key, vec![n])),
            5 => format!("{:?}", b.list_get(l, &key)),
            6 => format!("{:?}", b.list_update(l, &key, if n.is_multiple_of(2) { vec![] } else { vec![vec![n]; 3] })),
            7 => format!("{:?}", b.map_put(m, &key, vec![n % 4], vec![n], now)),
            8 => format!("{:?}", b.map_get(m, &key, &[n % 4], now)),
            9 => format!("{:?}", b.map_remove(m, &key, &[n % 4])),
            10 => format!("{:?}", b.map_entries(m, &key, now)),
            _ => format!("{:?}", b.register_timer(TimeDomain::EventTime, &key, now + i64::from(n))),
        });
        answers.push(format!("{}", b.total_bytes()));
    }
    assert_eq!(answers[0..2], answers[2..4], "operation {op} on {key:?}");
}

/// Random writes, reads, clears, TTL expiry, timers and checkpoints (full and incremental) on
/// a heap backend and a disk backend: every answer, byte count and snapshot is the same, and a
/// disk backend restored from the heap's chain holds what the heap holds.
#[test]
fn the_disk_backend_answers_as_the_heap_backend() {
    let dir = tempfile::tempdir().unwrap();
    let range = KeyGroupRange::for_subtask(128, 1, 0);
    let mut heap = KeyedStateBackend::new(128, range, StateLimits::default());
    let mut disk = KeyedStateBackend::on_disk(128, range, StateLimits::default(), &dir.path().join("store")).unwrap();
    let mut backends = [heap, disk];
    for b in backends.iter_mut() {
        register(b);
        b.track_changes();
    }
    let mut rng = Lcg(3);
    let mut chain: Vec<KeyedSnapshot> = Vec::new();
    for id in 1..=30u64 {
        let now = id as i64 * 10;
        for _ in 0..80 {
            step(&mut backends, &mut rng, now);
        }
        for b in backends.iter_mut() {
            while b.pop_due(TimeDomain::EventTime, now).is_some() {}
        }
        let since = (id > 1).then(|| id - 1);
        let snapshots: Vec<KeyedSnapshot> = backends.iter_mut().map(|b| b.snapshot_since(now, id, since).unwrap()).collect();
        assert!(contents(&snapshots[0]) == contents(&snapshots[1]), "checkpoint {id}: the snapshots differ");
        let snapshot = snapshots.into_iter().next().unwrap();
        if snapshot.base.is_none() {
            chain.clear();
        }
        chain.push(snapshot);
    }
    [heap, disk] = backends;
    let restored_dir = dir.path().join("restored");
    let mut restored = KeyedStateBackend::on_disk(128, range, StateLimits::default(), &restored_dir).unwrap().restored_from(&chain).unwrap();
    let expected = contents(&heap.snapshot(300).unwrap());
    assert!(contents(&restored.snapshot(300).unwrap()) == expected, "restored on disk from the chain");
    assert!(contents(&disk.snapshot(300).unwrap()) == expected);
    assert_eq!(restored.total_bytes(), heap.total_bytes());
    assert!(restored_dir.exists());
    drop(restored);
    assert!(!restored_dir.exists(), "the store's directory goes with the backend");
}

/// A directory the store cannot be created in is an error naming it, not a panic.
#[test]
fn an_unusable_store_directory_is_a_clear_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let dir = file.path().join("store");
    let e = KeyedStateBackend::on_disk(128, KeyGroupRange::for_subtask(128, 1, 0), StateLimits::default(), &dir).err().unwrap().to_string();
    assert!(e.starts_with("keyed state store: cannot create ") && e.contains(&dir.display().to_string()), "{e}");
}
