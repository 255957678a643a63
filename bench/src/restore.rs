//! Union-state restore at scale: a union list of N partition offsets, restored at parallelism
//! 1, 8 and 64. Time and peak host heap of redistribution plus building every subtask's store.

use std::fmt::Write as _;

use wasmflow_state::{Mode, NamedStateSnapshot, OperatorStateStore, StateLimits, StateValue, SubtaskSnapshot, TypeInfo, redistribute};

use crate::alloc;

const OLD_PARALLELISM: usize = 8;

fn snapshots(entries: usize) -> Vec<Option<SubtaskSnapshot>> {
    (0..OLD_PARALLELISM)
        .map(|j| {
            let items = (0..entries / OLD_PARALLELISM).map(|i| format!("topic-{j}:{i}:{}", i * 7).into_bytes()).collect();
            Some(SubtaskSnapshot {
                states: vec![NamedStateSnapshot {
                    name: "topic-partition-offset-states".into(),
                    mode: Mode::Union,
                    element_type: TypeInfo::default(),
                    value_type: None,
                    value: StateValue::List(items),
                }],
                keyed: None,
            })
        })
        .collect()
}

fn restore(input: Vec<Option<SubtaskSnapshot>>, new_p: usize) -> Vec<OperatorStateStore> {
    redistribute(input, new_p).into_iter().map(|r| OperatorStateStore::restore(r, StateLimits::default())).collect()
}

/// Median time of restoring `entries` at `new_p`, input built outside the timed part.
fn time_restore(entries: usize, new_p: usize) -> f64 {
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let input = snapshots(entries);
            let t = std::time::Instant::now();
            drop(restore(input, new_p));
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[2]
}

pub fn run() -> anyhow::Result<String> {
    let mut s = String::new();
    writeln!(s, "## Union-state restore at scale\n")?;
    writeln!(s, "Old parallelism {OLD_PARALLELISM}; every new subtask restores the whole union list (docs/state.md, union lists).\n")?;
    writeln!(s, "| entries | new parallelism | time (median) | heap added by the restore | as a share of the input |\n|---|---|---|---|---|")?;
    let mut per_entry = Vec::new();
    for entries in [10_000usize, 100_000] {
        let input_bytes = {
            let base = alloc::reset_peak();
            let s = snapshots(entries);
            let b = alloc::peak() - base;
            drop(s);
            b
        };
        for new_p in [1usize, 8, 64] {
            let t = time_restore(entries, new_p);
            let input = snapshots(entries);
            let base = alloc::reset_peak();
            let stores = restore(input, new_p);
            let peak = alloc::peak().saturating_sub(base);
            drop(stores);
            // The input is already allocated before the peak is reset, so `peak` is what the
            // restore adds on top of it.
            let extra = peak;
            per_entry.push((entries, new_p, extra as f64 / input_bytes as f64));
            writeln!(
                s,
                "| {entries} | {new_p} | {:.2} ms | {:.1} KiB | {:.1} % |",
                t / 1000.0,
                extra as f64 / 1024.0,
                100.0 * extra as f64 / input_bytes as f64
            )?;
        }
    }
    // Linear means no subtask gets its own copy: at parallelism 64 the restore adds well under
    // one input's worth of heap (a copy per subtask would add 64 inputs).
    let linear = per_entry.iter().all(|(_, _, ratio)| *ratio < 1.0);
    writeln!(
        s,
        "\nTarget: grows linearly with entries, not with entries x parallelism: {}. Restored union lists are shared segments (`Arc`), so 64 subtasks hold one copy until a subtask changes its list; a guest that reads the list still copies it into its own memory (not measured here).\n",
        if linear { "met" } else { "missed" }
    )?;
    Ok(s)
}
