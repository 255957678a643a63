//! Incremental keyed snapshots (docs/state.md, incremental checkpoints): a full snapshot
//! followed by the increments of later checkpoints restores exactly what a full snapshot at the
//! last of them holds, whatever was written, cleared, expired or fired in between, and whichever
//! checkpoints were aborted.

use std::collections::{BTreeMap, BTreeSet};

mod common;

use common::{Lcg, ty};
use wasmflow_state::{KeyGroupRange, KeyedSnapshot, KeyedStateBackend, KeyedValue, StateLimits, TimeDomain, subtask_for_key};

type Contents = (BTreeMap<(String, Vec<u8>), KeyedValue>, BTreeSet<(TimeDomain, i64, Vec<u8>)>);

/// What reads see at `now`: entries whose TTL (value state 30 ms, map state 45 ms, as
/// [`tracked`] registers them) has passed are left out.
fn visible(c: Contents, now: i64) -> Contents {
    let entries =
        c.0.into_iter()
            .filter_map(|((state, key), value)| {
                let value = match value {
                    KeyedValue::Value(_, written) if written + 30 <= now => return None,
                    KeyedValue::Map(m) => {
                        let live: Vec<_> = m.into_iter().filter(|(_, _, written)| written + 45 > now).collect();
                        if live.is_empty() {
                            return None;
                        }
                        KeyedValue::Map(live)
                    }
                    other => other,
                };
                Some(((state, key), value))
            })
            .collect();
    (entries, c.1)
}

/// Everything a snapshot holds, independent of entry order.
fn contents(s: &KeyedSnapshot) -> Contents {
    assert_eq!(s.base, None, "a full snapshot");
    let mut entries = BTreeMap::new();
    let mut timers = BTreeSet::new();
    for g in &s.groups {
        assert!(g.removed_timers.is_empty());
        for e in g.decode_entries().unwrap() {
            assert_ne!(e.value, KeyedValue::Deleted);
            assert!(entries.insert((s.states[e.state as usize].name.clone(), e.key), e.value).is_none(), "an entry twice");
        }
        timers.extend(g.timers.iter().map(|t| (t.domain, t.timestamp, t.key.clone())));
    }
    (entries, timers)
}

/// Random writes, clears, TTL expiry and timers on one subtask of `p`.
fn mutate(b: &mut KeyedStateBackend, rng: &mut Lcg, p: u32, index: u32, now: i64) {
    let keys: Vec<Vec<u8>> = (0..200).map(|i| format!("key-{i}").into_bytes()).filter(|k| subtask_for_key(k, 128, p) == index).collect();
    let (v, l, m) = (b.id_of("v").unwrap(), b.id_of("l").unwrap(), b.id_of("m").unwrap());
    for _ in 0..60 {
        let key = &keys[rng.below(keys.len() as u64) as usize];
        let n = rng.below(100) as u8;
        match rng.below(9) {
            0 | 1 => b.value_update(v, key, vec![n], now).unwrap(),
            2 => b.clear(v, key).unwrap(),
            3 => b.list_add(l, key, vec![n]).unwrap(),
            4 => b.list_update(l, key, vec![]).unwrap(),
            5 => b.map_put(m, key, vec![n % 4], vec![n], now).unwrap(),
            6 => b.map_remove(m, key, &[n % 4]).unwrap(),
            7 => b.register_timer(TimeDomain::EventTime, key, now + i64::from(n)).unwrap(),
            _ => b.delete_timer(TimeDomain::EventTime, key, now + i64::from(n % 10)).unwrap(),
        }
    }
    while b.pop_due(TimeDomain::EventTime, now).is_some() {}
}

fn tracked(p: u32, index: u32) -> KeyedStateBackend {
    let mut b = KeyedStateBackend::new(128, KeyGroupRange::for_subtask(128, p, index), StateLimits::default());
    b.register_value("v", ty("u8"), Some(30)).unwrap();
    b.register_list("l", ty("u8")).unwrap();
    b.register_map("m", ty("u8"), ty("u8"), Some(45)).unwrap();
    // State that never changes, so that a checkpoint's changes are a small part of it (a
    // snapshot is full when more than a tenth of the entries changed).
    let l = b.id_of("l").unwrap();
    for key in (0..2000).map(|i| format!("stable-{i}").into_bytes()).filter(|k| subtask_for_key(k, 128, p) == index) {
        b.list_add(l, &key, vec![1]).unwrap();
    }
    b.track_changes();
    b
}

/// Checkpoints 1..=40, a third of them aborted: after each complete one, the chain the
/// checkpoint references (the full snapshot it builds on and every increment since) merges into
/// exactly the subtask's state, and restores into a backend holding exactly that.
#[test]
fn a_chain_of_increments_restores_what_a_full_snapshot_holds() {
    for seed in 0..8 {
        let mut rng = Lcg(seed);
        let mut b = tracked(1, 0);
        let mut complete: Option<u64> = None;
        let mut chains: BTreeMap<u64, Vec<KeyedSnapshot>> = BTreeMap::new();
        let mut increments = 0;
        for id in 1..=40u64 {
            let now = id as i64 * 10;
            mutate(&mut b, &mut rng, 1, 0, now);
            let snapshot = b.snapshot_since(now, id, complete).unwrap();
            let chain = match snapshot.base {
                None => vec![snapshot],
                Some(base) => {
                    assert_eq!(Some(base), complete, "an increment builds on the newest complete checkpoint");
                    increments += 1;
                    [chains[&base].clone(), vec![snapshot]].concat()
                }
            };
            if rng.below(3) == 0 {
                continue; // aborted: never a base, never restored
            }
            // Increments may carry entries that expired since (they are dropped at full
            // snapshots only): compare what reads see.
            let expected = visible(contents(&b.snapshot(now).unwrap()), now);
            let merged = KeyedStateBackend::merge_chain(&chain).unwrap();
            assert!(visible(contents(&merged), now) == expected, "seed {seed}, checkpoint {id}: the merged chain differs");
            let mut restored = KeyedStateBackend::restore(128, b.range(), StateLimits::default(), &chain).unwrap();
            assert!(contents(&restored.snapshot(now).unwrap()) == expected, "seed {seed}, checkpoint {id}: the state restored from the chain differs");
            complete = Some(id);
            chains.insert(id, chain);
        }
        assert!(increments > 20, "seed {seed}: most snapshots are increments ({increments})");
    }
}

/// A snapshot for which more than a tenth of the entries changed is full (cheaper to take than
/// looking up each changed key, and it restarts the chain).
#[test]
fn a_snapshot_is_full_when_most_entries_changed() {
    let mut b = KeyedStateBackend::new(128, KeyGroupRange::for_subtask(128, 1, 0), StateLimits::default());
    let v = b.register_value("v", ty("u8"), None).unwrap();
    b.track_changes();
    for i in 0..100 {
        b.value_update(v, format!("key-{i}").as_bytes(), vec![1], 0).unwrap();
    }
    b.snapshot_since(0, 1, None).unwrap();
    for i in 0..10 {
        b.value_update(v, format!("key-{i}").as_bytes(), vec![2], 0).unwrap();
    }
    assert_eq!(b.snapshot_since(0, 2, Some(1)).unwrap().base, Some(1), "a tenth changed: an increment");
    for i in 0..11 {
        b.value_update(v, format!("key-{i}").as_bytes(), vec![3], 0).unwrap();
    }
    assert_eq!(b.snapshot_since(0, 3, Some(2)).unwrap().base, None, "more than a tenth: full");
}

/// An increment holds what changed, not the whole state: one changed key of a thousand.
#[test]
fn an_increment_holds_only_what_changed() {
    let mut b = tracked(1, 0);
    let v = b.id_of("v").unwrap();
    for i in 0..1000 {
        b.value_update(v, format!("key-{i}").as_bytes(), vec![1; 8], 0).unwrap();
    }
    let full = b.snapshot_since(0, 1, None).unwrap();
    assert_eq!(full.base, None);
    b.value_update(v, b"key-7", vec![2; 8], 1).unwrap();
    b.clear(v, b"key-8").unwrap();
    let delta = b.snapshot_since(1, 2, Some(1)).unwrap();
    assert_eq!(delta.base, Some(1));
    let entries: Vec<_> =
        delta.groups.iter().flat_map(|g| g.decode_entries().unwrap()).map(|e| (e.key, e.value)).collect::<BTreeMap<_, _>>().into_iter().collect();
    assert_eq!(entries, vec![(b"key-7".to_vec(), KeyedValue::Value(vec![2; 8], 1)), (b"key-8".to_vec(), KeyedValue::Deleted)]);
    let bytes = |s: &KeyedSnapshot| s.groups.iter().map(|g| g.entries.len()).sum::<usize>();
    assert!(bytes(&delta) * 100 < bytes(&full), "{} vs {}", bytes(&delta), bytes(&full));
    // Nothing changed: an empty increment.
    assert!(b.snapshot_since(1, 3, Some(2)).unwrap().groups.is_empty());
}

/// Without change tracking, or when the newest complete checkpoint is not one this backend
/// snapshotted (a restored or rescaled subtask), the snapshot is full.
#[test]
fn a_snapshot_is_full_without_tracking_or_a_known_base() {
    let mut untracked = KeyedStateBackend::new(128, KeyGroupRange::for_subtask(128, 1, 0), StateLimits::default());
    untracked.register_value("v", ty("u8"), None).unwrap();
    untracked.snapshot_since(0, 1, None).unwrap();
    assert_eq!(untracked.snapshot_since(0, 2, Some(1)).unwrap().base, None);
    let mut b = tracked(1, 0);
    assert_eq!(b.snapshot_since(0, 5, Some(4)).unwrap().base, None, "checkpoint 4 was taken before this backend existed");
    assert_eq!(b.snapshot_since(0, 6, Some(5)).unwrap().base, Some(5));
}

/// The chains of two old subtasks restore at other parallelisms: each new subtask gets its key
/// groups with every increment applied.
#[test]
fn chains_rescale_by_key_group() {
    let mut rng = Lcg(7);
    let mut olds: Vec<(KeyedStateBackend, Vec<KeyedSnapshot>)> = (0..2).map(|i| (tracked(2, i), Vec::new())).collect();
    for id in 1..=6u64 {
        for (i, (b, chain)) in olds.iter_mut().enumerate() {
            mutate(b, &mut rng, 2, i as u32, id as i64);
            let snapshot = b.snapshot_since(id as i64, id, id.checked_sub(1).filter(|&c| c > 0)).unwrap();
            if snapshot.base.is_none() {
                chain.clear();
            }
            chain.push(snapshot);
        }
    }
    let mut expected = visible(contents(&olds[0].0.snapshot(6).unwrap()), 6);
    let second = visible(contents(&olds[1].0.snapshot(6).unwrap()), 6);
    expected.0.extend(second.0);
    expected.1.extend(second.1);
    for new_p in [3u32, 1] {
        let mut got: Contents = Default::default();
        for i in 0..new_p {
            let chains = olds.iter().flat_map(|(_, c)| c.iter());
            let mut b = KeyedStateBackend::restore(128, KeyGroupRange::for_subtask(128, new_p, i), StateLimits::default(), chains).unwrap();
            let (e, t) = contents(&b.snapshot(6).unwrap());
            got.0.extend(e);
            got.1.extend(t);
        }
        assert!(
            got == expected,
            "at parallelism {new_p}: {} entries and {} timers, {} and {} expected",
            got.0.len(),
            got.1.len(),
            expected.0.len(),
            expected.1.len()
        );
    }
}

#[test]
fn a_chain_must_start_with_a_full_snapshot() {
    let mut b = tracked(1, 0);
    b.snapshot_since(0, 1, None).unwrap();
    let delta = b.snapshot_since(0, 2, Some(1)).unwrap();
    let e = KeyedStateBackend::merge_chain(&[delta]).unwrap_err().to_string();
    assert!(e.contains("must be one full snapshot followed by increments"), "{e}");
}

/// A period that changes more than a tenth of the entries stops noting keys (the set would cost
/// time and memory for a full snapshot anyway): its snapshot is full, and so is any later one
/// that would have to repeat it (its checkpoint aborted, the base still older).
#[test]
fn a_period_past_a_tenth_of_the_entries_stops_noting_and_snapshots_in_full() {
    let mut b = KeyedStateBackend::new(128, KeyGroupRange::for_subtask(128, 1, 0), StateLimits::default());
    let v = b.register_value("v", ty("u8"), None).unwrap();
    b.track_changes();
    let keys: Vec<Vec<u8>> = (0..20_000).map(|i| format!("key-{i}").into_bytes()).collect();
    for k in &keys {
        b.value_update(v, k, vec![1], 0).unwrap();
    }
    assert_eq!(b.snapshot_since(0, 1, None).unwrap().base, None);
    // A tenth of 20 000 is 2 000: 2 500 changed keys overflow the period.
    for k in &keys[..2500] {
        b.value_update(v, k, vec![2], 0).unwrap();
    }
    assert_eq!(b.snapshot_since(0, 2, Some(1)).unwrap().base, None, "overflowed: full");
    // Checkpoint 2 aborted: a snapshot since 1 must repeat period 2, which it cannot list.
    b.value_update(v, &keys[0], vec![3], 0).unwrap();
    let again = b.snapshot_since(0, 3, Some(1)).unwrap();
    assert_eq!(again.base, None, "a later snapshot over the overflowed period is full too");
    // Once a complete checkpoint follows it, increments resume.
    b.value_update(v, &keys[1], vec![4], 0).unwrap();
    let increment = b.snapshot_since(0, 4, Some(3)).unwrap();
    assert_eq!(increment.base, Some(3));
    let entries: Vec<_> = increment.groups.iter().flat_map(|g| g.decode_entries().unwrap()).map(|e| e.key).collect();
    assert_eq!(entries, vec![keys[1].clone()]);
}
