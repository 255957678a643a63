//! Counts records per key in keyed `ValueState<u64>` — the keyed-state benchmark's operator
//! (Flink's `keyBy(...).map(...)` with a `ValueState<Long>` count). Every record reads and
//! writes its key's count; nothing is emitted, so the benchmark measures state access, not a
//! downstream. The counts are in every checkpoint, by key group.

use wasmflow_guest_sdk::prelude::*;

/// See the crate documentation.
#[derive(Default)]
pub struct KeyedCounter {
    count: ValueState<u64>,
}

impl KeyedProcessFunction for KeyedCounter {
    fn create(_ctx: &RuntimeContext) -> Result<Self> {
        Ok(KeyedCounter::default())
    }

    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        self.count = ctx.get_state("count")?;
        Ok(())
    }

    fn process_element(&mut self, _record: Record<'_>, _ctx: &KeyedContext<'_>, _out: &mut Collector) -> Result<()> {
        let n = self.count.value()?.unwrap_or(0);
        self.count.update(&(n + 1))
    }
}

export_keyed!(KeyedCounter);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord};

    use super::WasmflowOperator;

    #[test]
    fn counts_per_key() {
        let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("c", 0, 1, serde_json::json!({})).unwrap();
        let input: Vec<OwnedRecord> = ["a", "b", "a"].iter().map(|k| OwnedRecord::keyed(*k, "")).collect();
        assert!(h.process(&input).unwrap().is_empty());
        assert_eq!(h.keyed_value::<u64>("count", b"a").unwrap(), Some(2));
        assert_eq!(h.keyed_value::<u64>("count", b"b").unwrap(), Some(1));
    }
}
