//! A keyed deduplicator: emits the first record of each key and drops the repeats for `ttl-ms`
//! of processing time (Flink's deduplication with a `ValueState<Boolean>` and state TTL).
//!
//! The "seen" flag is keyed [`ValueState`] with a TTL: the host forgets it `ttl-ms` after it was
//! written, so the state holds only the keys of the last `ttl-ms` and a key seen again after that
//! is emitted again. Without `ttl-ms` a key is remembered for the life of the job.

use std::time::Duration;

use wasmflow_guest_sdk::prelude::*;

/// Configuration (`[operators.config]` in the job file).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DedupConfig {
    /// How long a key is remembered after its first record, in ms of processing time (default:
    /// forever).
    #[serde(default)]
    pub ttl_ms: Option<u64>,
}

/// See the crate documentation.
pub struct Dedup {
    ttl: Option<Duration>,
    seen: ValueState<bool>,
}

impl KeyedProcessFunction for Dedup {
    fn create(ctx: &RuntimeContext) -> Result<Self> {
        let config: DedupConfig = ctx.config()?;
        Ok(Dedup { ttl: config.ttl_ms.map(Duration::from_millis), seen: ValueState::default() })
    }

    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        self.seen = match self.ttl {
            Some(ttl) => ctx.get_state_with_ttl("seen", ttl)?,
            None => ctx.get_state("seen")?,
        };
        Ok(())
    }

    fn process_element(&mut self, record: Record<'_>, _ctx: &KeyedContext<'_>, out: &mut Collector) -> Result<()> {
        if self.seen.value()?.is_none() {
            self.seen.update(&true)?;
            out.emit_record(&record);
        }
        Ok(())
    }
}

export_keyed!(Dedup);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord};

    use super::WasmflowOperator;

    #[test]
    fn the_first_record_of_each_key_passes() {
        let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("d", 0, 1, serde_json::json!({})).unwrap();
        let input: Vec<OwnedRecord> = ["a", "b", "a", "c", "b"].iter().enumerate().map(|(i, k)| OwnedRecord::keyed(*k, i.to_string())).collect();
        let out: Vec<String> = h.process(&input).unwrap().iter().map(OwnedRecord::value_str).collect();
        assert_eq!(out, ["0", "1", "3"]);
        assert!(h.process(&input).unwrap().is_empty(), "remembered across batches");
        assert_eq!(h.keyed_value::<bool>("seen", b"a").unwrap(), Some(true));
    }

    /// With a TTL the flag expires: a key is emitted again once it is forgotten, and the
    /// snapshot no longer holds it.
    #[test]
    fn a_key_is_forgotten_after_the_ttl() {
        let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("d", 0, 1, serde_json::json!({"ttl-ms": 50})).unwrap();
        assert_eq!(h.process(&[OwnedRecord::keyed("a", "1")]).unwrap().len(), 1);
        assert_eq!(h.process(&[OwnedRecord::keyed("a", "2")]).unwrap().len(), 0);
        std::thread::sleep(std::time::Duration::from_millis(80));
        let snapshot = h.snapshot(1).unwrap();
        assert!(snapshot.keyed.unwrap().groups.is_empty(), "the expired flag is not checkpointed");
        assert_eq!(h.process(&[OwnedRecord::keyed("a", "3")]).unwrap().len(), 1);
    }
}
