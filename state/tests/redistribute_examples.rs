//! The worked examples of docs/state.md, exactly.

mod common;

use common::*;
use wasmflow_state::{Mode, redistribute};

/// Old parallelism 3, SPLIT_DISTRIBUTE `S` = [a,b], [c], [d,e,f] (docs/state.md, worked examples).
fn split_s() -> Vec<Option<wasmflow_state::SubtaskSnapshot>> {
    vec![
        subtask(vec![list_state("S", Mode::SplitDistribute, &["a", "b"])]),
        subtask(vec![list_state("S", Mode::SplitDistribute, &["c"])]),
        subtask(vec![list_state("S", Mode::SplitDistribute, &["d", "e", "f"])]),
    ]
}

#[test]
fn split_unchanged_parallelism_is_identity() {
    // docs/state.md, unchanged parallelism / docs/state.md, worked examples row "3 (unchanged, no union)".
    let r = redistribute(split_s(), 3);
    assert_eq!(all_strings(&r, "S"), vec![v(&["a", "b"]), v(&["c"]), v(&["d", "e", "f"])]);
}

#[test]
fn split_to_1_2_4_6_7() {
    // docs/state.md, worked examples table; segments in ascending old-subtask order (docs/state.md, element order HOST choice).
    let cases: Vec<(usize, Vec<Option<Vec<String>>>)> = vec![
        (1, vec![v(&["a", "b", "c", "d", "e", "f"])]),
        (2, vec![v(&["a", "b", "c"]), v(&["d", "e", "f"])]),
        (4, vec![v(&["a", "b"]), v(&["c", "d"]), v(&["e"]), v(&["f"])]),
        (6, vec![v(&["a"]), v(&["b"]), v(&["c"]), v(&["d"]), v(&["e"]), v(&["f"])]),
        (7, vec![v(&["a"]), v(&["b"]), v(&["c"]), v(&["d"]), v(&["e"]), v(&["f"]), None]),
    ];
    for (new_p, expected) in cases {
        assert_eq!(all_strings(&redistribute(split_s(), new_p), "S"), expected, "newP = {new_p}");
    }
}

#[test]
fn split_pieces_keep_their_old_subtask() {
    // docs/state.md, worked examples newP = 4: subtask 1 gets {c}{d}, two pieces from old subtasks 1 and 2.
    let r = redistribute(split_s(), 4);
    let pieces: Vec<u32> = match &r[1].get("S").unwrap().value {
        wasmflow_state::RestoredValue::List(segments) => segments.iter().map(|s| s.old_subtask).collect(),
        _ => panic!("list expected"),
    };
    assert_eq!(pieces, vec![1, 2]);
}

#[test]
fn second_split_name_starts_after_the_plus_ones() {
    // docs/state.md, worked examples: at newP = 4 `newStart` becomes 2, so T = [x1,x2],[],[x3] gives 2←x1, 3←x2, 0←x3.
    let mut old = split_s();
    let t = [&["x1", "x2"][..], &[][..], &["x3"][..]];
    for (j, items) in t.iter().enumerate() {
        old[j].as_mut().unwrap().states.push(list_state("T", Mode::SplitDistribute, items));
    }
    let r = redistribute(old, 4);
    assert_eq!(all_strings(&r, "S"), vec![v(&["a", "b"]), v(&["c", "d"]), v(&["e"]), v(&["f"])]);
    // Subtask 3 takes x2 and then visits old subtask 1's empty list on the way (docs/state.md, split lists).
    assert_eq!(all_strings(&r, "T"), vec![v(&["x3"]), None, v(&["x1"]), v(&["x2"])]);
}

#[test]
fn union_is_all_to_all_even_at_unchanged_parallelism() {
    // docs/state.md, unchanged parallelism, docs/state.md, union lists, docs/state.md, worked examples union table.
    let old = || {
        vec![
            subtask(vec![list_state("U", Mode::Union, &["a", "b"])]),
            subtask(vec![list_state("U", Mode::Union, &["c"])]),
            subtask(vec![list_state("U", Mode::Union, &["d", "e", "f"])]),
        ]
    };
    for new_p in [3, 2, 4] {
        let r = redistribute(old(), new_p);
        assert_eq!(r.len(), new_p);
        for sub in &r {
            assert_eq!(strings(sub, "U"), v(&["a", "b", "c", "d", "e", "f"]), "newP = {new_p}");
        }
    }
}

#[test]
fn union_at_unchanged_parallelism_keeps_split_state_in_place() {
    // docs/state.md, unchanged parallelism: with union state present, own split/broadcast handles stay as they are.
    let old = vec![
        subtask(vec![list_state("S", Mode::SplitDistribute, &["s0"]), list_state("U", Mode::Union, &["u0"])]),
        subtask(vec![list_state("S", Mode::SplitDistribute, &[]), list_state("U", Mode::Union, &["u1"])]),
    ];
    let r = redistribute(old, 2);
    assert_eq!(all_strings(&r, "S"), vec![v(&["s0"]), v(&[])]);
    assert_eq!(all_strings(&r, "U"), vec![v(&["u0", "u1"]), v(&["u0", "u1"])]);
}

#[test]
fn broadcast_new_i_gets_old_i_mod_old_p() {
    // docs/state.md, worked examples: m0, m1, m2 → newP 2: [m0, m1]; 4: [m0, m1, m2, m0]; 3: unchanged.
    let old = || (0..3).map(|j| subtask(vec![map_state("B", &[("k", &format!("m{j}"))])])).collect::<Vec<_>>();
    let values = |new_p| redistribute(old(), new_p).iter().map(|r| String::from_utf8(r.map("B").unwrap()[0].1.clone()).unwrap()).collect::<Vec<_>>();
    assert_eq!(values(2), vec!["m0", "m1"]);
    assert_eq!(values(4), vec!["m0", "m1", "m2", "m0"]);
    assert_eq!(values(3), vec!["m0", "m1", "m2"]);
}

#[test]
fn broadcast_scale_2_to_5_and_3_to_2() {
    // docs/state.md, broadcast maps: 2→5: new 0, 2, 4 get old 0's copy, 1 and 3 old 1's; 3→2: old 2's copy dropped.
    let old = |n: usize| (0..n).map(|j| subtask(vec![map_state("B", &[("k", &format!("m{j}"))])])).collect::<Vec<_>>();
    let values = |n, new_p| redistribute(old(n), new_p).iter().map(|r| String::from_utf8(r.map("B").unwrap()[0].1.clone()).unwrap()).collect::<Vec<_>>();
    assert_eq!(values(2, 5), vec!["m0", "m1", "m0", "m1", "m0"]);
    assert_eq!(values(3, 2), vec!["m0", "m1"]);
}

#[test]
fn subtasks_without_state_and_empty_totals() {
    // docs/state.md, split lists: T = 0 → nobody receives the name; an old subtask with no state contributes nothing.
    let old = vec![subtask(vec![list_state("S", Mode::SplitDistribute, &[])]), None];
    let r = redistribute(old, 3);
    assert_eq!(all_strings(&r, "S"), vec![None, None, None]);
    let r = redistribute(vec![None, None], 2);
    assert!(r.iter().all(|s| s.states.is_empty()));
}

/// Java's `String.hashCode` and `HashMap` buckets, the inputs of Flink's split order.
#[test]
fn java_hash_codes_buckets_and_capacities() {
    use wasmflow_state::{java_hashmap_bucket, java_hashmap_capacity, java_string_hash};
    assert_eq!(java_string_hash(""), 0);
    assert_eq!(java_string_hash("a"), 97);
    assert_eq!(java_string_hash("probe-list"), -530_163_557);
    assert_eq!(java_string_hash("probe-list2"), 744_798_967);
    assert_eq!(java_hashmap_bucket("probe-list", 16), 13);
    assert_eq!(java_hashmap_bucket("probe-list2", 16), 3);
    assert_eq!((java_hashmap_capacity(1), java_hashmap_capacity(12), java_hashmap_capacity(13), java_hashmap_capacity(25)), (16, 16, 32, 64));
}

/// Checked against real Flink 2.3: split states `probe-list` (bucket 13) and `probe-list2`
/// (bucket 3) restored from 3 to 5 subtasks. Flink's HashMap iterates `probe-list2` first, so it
/// is split from subtask 0 and `probe-list` takes the rotated remainder, starting at subtask 3
/// (the first that got no extra `probe-list2` element). In byte order it would be the reverse.
#[test]
fn several_split_states_follow_flinks_hashmap_order() {
    let old = vec![
        subtask(vec![list_state("probe-list", Mode::SplitDistribute, &["a1", "a2"]), list_state("probe-list2", Mode::SplitDistribute, &["b1"])]),
        subtask(vec![list_state("probe-list", Mode::SplitDistribute, &["a3"]), list_state("probe-list2", Mode::SplitDistribute, &["b2", "b3"])]),
        subtask(vec![list_state("probe-list", Mode::SplitDistribute, &["a4", "a5", "a6"]), list_state("probe-list2", Mode::SplitDistribute, &[])]),
    ];
    let r = redistribute(old, 5);
    assert_eq!(all_strings(&r, "probe-list2"), vec![v(&["b1"]), v(&["b2"]), v(&["b3"]), None, None]);
    assert_eq!(all_strings(&r, "probe-list"), vec![v(&["a4"]), v(&["a5"]), v(&["a6"]), v(&["a1", "a2"]), v(&["a3"])]);
}
