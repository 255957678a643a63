//! A stateful counter: passes records through and counts them, keeping the count in
//! **list state** (SPLIT_DISTRIBUTE) so it survives failures and rescales.
//!
//! On rescale a subtask may receive several old counts (or none); it adds them up, so the sum
//! over all subtasks is exact whatever the parallelism. At end of input it emits one record
//! `count` = its total (configurable), which lets tests check the totals exactly.

use wasmflow_guest_sdk::prelude::*;

/// Configuration (`[operators.config]` in the job file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CounterConfig {
    /// Emit a `count` record with this subtask's total when the input ends (default true).
    #[serde(default = "yes")]
    pub emit_count_on_close: bool,
}

fn yes() -> bool {
    true
}

/// See the crate documentation.
pub struct Counter {
    config: CounterConfig,
    count: u64,
    state: ListState<u64>,
}

impl Transform for Counter {
    fn create(ctx: &RuntimeContext) -> Result<Self> {
        Ok(Counter { config: ctx.config()?, count: 0, state: ListState::default() })
    }

    fn process(&mut self, input: &Input, out: &mut Collector) -> Result<()> {
        self.count += input.len() as u64;
        // Every record passes unchanged: hand the batch on instead of copying it record by record.
        out.forward_input();
        Ok(())
    }

    fn close(&mut self, out: &mut Collector) -> Result<()> {
        if self.config.emit_count_on_close {
            out.emit(Some(b"count"), self.count.to_string().as_bytes(), 0);
        }
        Ok(())
    }

    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        let state = ctx.get_list_state::<u64>("count")?;
        self.count = state.get()?.iter().sum();
        if ctx.is_restored() {
            info!("restored count {}", self.count);
        }
        self.state = state;
        Ok(())
    }

    fn snapshot_state(&mut self, _ctx: &FunctionSnapshotContext) -> Result<()> {
        self.state.update(&[self.count])
    }
}

export_transform!(Counter);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord, ParallelHarness};

    use super::WasmflowOperator;

    fn records(n: usize) -> Vec<OwnedRecord> {
        (0..n).map(|i| OwnedRecord::value(format!("r{i}"))).collect()
    }

    #[test]
    fn passes_records_through_and_counts_them() {
        let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("counter", 0, 1, serde_json::json!({})).unwrap();
        assert_eq!(h.process(&records(3)).unwrap(), records(3));
        h.snapshot(1).unwrap();
        assert_eq!(h.list_state::<u64>("count").unwrap(), vec![3]);
        assert_eq!(h.close().unwrap(), vec![OwnedRecord::keyed("count", "3")]);
    }

    /// docs/state.md: split list state is cut into contiguous chunks; the
    /// counts of 3 subtasks restored at 2 and at 5 still add up to the same total.
    #[test]
    fn totals_survive_rescale_3_to_2_and_to_5() {
        let mut job = ParallelHarness::<WasmflowOperator>::open_fresh("counter", 3, serde_json::json!({})).unwrap();
        for (i, sub) in job.subtasks.iter_mut().enumerate() {
            sub.process(&records(10 * (i + 1))).unwrap(); // 10, 20, 30
        }
        let snapshots = job.snapshot(7).unwrap();
        for new_p in [2u32, 5] {
            let mut restored = ParallelHarness::<WasmflowOperator>::restore("counter", serde_json::json!({}), snapshots.clone(), 7, new_p).unwrap();
            let counts: Vec<String> = restored.subtasks.iter_mut().map(|s| s.close().unwrap()[0].value_str()).collect();
            let expected: Vec<&str> = if new_p == 2 { vec!["30", "30"] } else { vec!["10", "20", "30", "0", "0"] };
            assert_eq!(counts, expected, "at parallelism {new_p}");
        }
    }
}
