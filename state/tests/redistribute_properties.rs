//! Properties of the redistribution for random lists and parallelisms (docs/state.md, redistribution).

mod common;

use common::*;
use proptest::prelude::*;
use wasmflow_state::{Mode, SubtaskSnapshot, redistribute};

fn lists() -> impl Strategy<Value = Vec<Vec<String>>> {
    prop::collection::vec(prop::collection::vec("[a-z]{1,3}", 0..6), 1..7)
}

fn snapshots(lists: &[Vec<String>], mode: Mode) -> Vec<Option<SubtaskSnapshot>> {
    lists.iter().map(|l| subtask(vec![list_state("S", mode, &l.iter().map(String::as_str).collect::<Vec<_>>())])).collect()
}

proptest! {
    /// docs/state.md, split lists: the concatenation in old-subtask order is cut into contiguous chunks; chunk k goes
    /// to subtask k (start 0 for the first name); the first T mod newP chunks have one more.
    #[test]
    fn split_is_contiguous_chunks_of_the_concatenation(lists in lists(), new_p in 1usize..9) {
        let old_p = lists.len();
        let concat: Vec<String> = lists.iter().flatten().cloned().collect();
        let r = redistribute(snapshots(&lists, Mode::SplitDistribute), new_p);
        prop_assert_eq!(r.len(), new_p);
        if new_p == old_p {
            for (i, l) in lists.iter().enumerate() {
                prop_assert_eq!(strings(&r[i], "S"), Some(l.clone()));
            }
        } else {
            let (t, base, extra) = (concat.len(), concat.len() / new_p, concat.len() % new_p);
            let mut pos = 0;
            for (k, sub) in r.iter().enumerate() {
                let size = base + usize::from(k < extra);
                let got = strings(sub, "S").unwrap_or_default();
                prop_assert_eq!(&got[..], &concat[pos..pos + size]);
                pos += size;
            }
            prop_assert_eq!(pos, t);
        }
    }

    /// docs/state.md, union lists: every new subtask restores the full concatenation, in old-subtask order.
    #[test]
    fn union_gives_everyone_everything(lists in lists(), new_p in 1usize..9) {
        let concat: Vec<String> = lists.iter().flatten().cloned().collect();
        for sub in redistribute(snapshots(&lists, Mode::Union), new_p) {
            prop_assert_eq!(strings(&sub, "S"), Some(concat.clone()));
        }
    }

    /// docs/state.md, broadcast maps: new subtask i gets old subtask (i mod oldP)'s map.
    #[test]
    fn broadcast_is_i_mod_old_p(old_p in 1usize..7, new_p in 1usize..9) {
        let old = (0..old_p).map(|j| subtask(vec![map_state("B", &[("k", &j.to_string())])])).collect();
        for (i, sub) in redistribute(old, new_p).iter().enumerate() {
            prop_assert_eq!(sub.map("B").unwrap()[0].1.clone(), (i % old_p).to_string().into_bytes());
        }
    }

    /// Two split names: each is split as above, the second starting where the first's +1s end.
    #[test]
    fn split_multiset_preserved_for_two_names(a in lists(), b_seed in prop::collection::vec("[a-z]{1,2}", 0..20), new_p in 1usize..9) {
        let old_p = a.len();
        let mut old = snapshots(&a, Mode::SplitDistribute);
        let mut b_all = Vec::new();
        for (j, snap) in old.iter_mut().enumerate() {
            let items: Vec<String> = b_seed.iter().skip(j).step_by(old_p).cloned().collect();
            b_all.extend(items.clone());
            snap.as_mut().unwrap().states.push(list_state("T", Mode::SplitDistribute, &items.iter().map(String::as_str).collect::<Vec<_>>()));
        }
        let r = redistribute(old, new_p);
        let mut got_t: Vec<String> = r.iter().flat_map(|s| strings(s, "T").unwrap_or_default()).collect();
        got_t.sort();
        b_all.sort();
        prop_assert_eq!(got_t, b_all);
        let sizes: Vec<usize> = r.iter().map(|s| strings(s, "T").map(|l| l.len()).unwrap_or(0)).collect();
        let (mn, mx) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
        prop_assert!(mx - mn <= 1, "uneven split {:?}", sizes);
    }
}
