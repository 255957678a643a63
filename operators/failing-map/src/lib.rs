//! A pass-through map that fails on purpose, for testing recovery (like Flink's `FailingMapper`).
//!
//! It panics when it sees the record whose key is `fail-on-key`, but only in execution attempt
//! `fail-in-attempt` (the host increases the attempt at every start and restart), so the job
//! recovers on the next attempt. `mode = "trap"` panics; `mode = "error"` returns an error.

use wasmflow_guest_sdk::prelude::*;

/// Configuration (`[operators.config]` in the job file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FailingConfig {
    /// Key (as text) of the record that triggers the failure.
    pub fail_on_key: String,
    /// Execution attempt in which to fail (default 1: the first run in a checkpoint directory).
    #[serde(default = "first")]
    pub fail_in_attempt: u64,
    /// `trap` (panic, default) or `error`.
    #[serde(default)]
    pub mode: FailMode,
}

/// How to fail.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum FailMode {
    #[default]
    Trap,
    Error,
}

fn first() -> u64 {
    1
}

/// See the crate documentation.
pub struct FailingMap {
    config: FailingConfig,
    armed: bool,
}

impl Transform for FailingMap {
    fn create(ctx: &RuntimeContext) -> Result<Self> {
        let config: FailingConfig = ctx.config()?;
        let armed = ctx.attempt() == config.fail_in_attempt;
        Ok(FailingMap { config, armed })
    }

    fn process(&mut self, input: &Input, out: &mut Collector) -> Result<()> {
        for record in input {
            if self.armed && record.key == Some(self.config.fail_on_key.as_bytes()) {
                match self.config.mode {
                    FailMode::Trap => panic!("failing on purpose at key {}", self.config.fail_on_key),
                    FailMode::Error => bail!("failing on purpose at key {}", self.config.fail_on_key),
                }
            }
            out.emit_record(&record);
        }
        Ok(())
    }
}

export_transform!(FailingMap);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::RuntimeContext;
    use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord};
    use wasmflow_state::{OperatorStateStore, StateLimits};

    use super::WasmflowOperator;

    fn harness(attempt: u64) -> OperatorHarness<WasmflowOperator> {
        let ctx = RuntimeContext::new("f", 0, 1, serde_json::json!({"fail-on-key": "3", "mode": "error"})).with_attempt(attempt);
        OperatorHarness::open_with(ctx, OperatorStateStore::new(StateLimits::default()), None).unwrap()
    }

    #[test]
    fn fails_only_in_the_configured_attempt() {
        let input = [OwnedRecord::keyed("2", "a"), OwnedRecord::keyed("3", "b")];
        let err = harness(1).process(&input).unwrap_err();
        assert_eq!(err.to_string(), "failing on purpose at key 3");
        assert_eq!(harness(2).process(&input).unwrap(), input.to_vec());
    }
}
