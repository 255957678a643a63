//! A pass-through map that carries a fixed amount of operator state and rewrites all of it at
//! every snapshot — the pattern of Flink's buffering functions (`state.update(buffer)` in
//! `snapshotState`). The checkpoint benchmark uses it to measure checkpoints by state size.
//!
//! The state is list state (split on rescale) of 64 KiB text chunks adding up to `state-bytes`;
//! after a restore the operator keeps what it received.

use wasmflow_guest_sdk::prelude::*;

/// Configuration (`[operators.config]` in the job file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct BallastConfig {
    /// Bytes of state this subtask holds on a fresh start.
    pub state_bytes: usize,
}

/// One list element: large enough to keep per-element costs small, far under the entry limit.
const CHUNK_BYTES: usize = 64 << 10;

/// See the crate documentation.
pub struct StateBallast {
    config: BallastConfig,
    chunks: Vec<String>,
    state: ListState<String>,
}

fn chunks_of(total: usize) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut left = total;
    while left > 0 {
        let n = left.min(CHUNK_BYTES);
        chunks.push("x".repeat(n));
        left -= n;
    }
    chunks
}

impl Transform for StateBallast {
    fn create(ctx: &RuntimeContext) -> Result<Self> {
        Ok(StateBallast { config: ctx.config()?, chunks: Vec::new(), state: ListState::default() })
    }

    fn process(&mut self, input: &Input, out: &mut Collector) -> Result<()> {
        for record in input {
            out.emit_record(&record);
        }
        Ok(())
    }

    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        let state = ctx.get_list_state::<String>("ballast")?;
        self.chunks = if ctx.is_restored() { state.get()? } else { chunks_of(self.config.state_bytes) };
        self.state = state;
        Ok(())
    }

    fn snapshot_state(&mut self, _ctx: &FunctionSnapshotContext) -> Result<()> {
        self.state.update(&self.chunks)
    }
}

export_transform!(StateBallast);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord};

    use super::WasmflowOperator;

    #[test]
    fn holds_exactly_state_bytes_in_64_kib_chunks_and_passes_records_through() {
        let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("b", 0, 1, serde_json::json!({"state-bytes": 150_000})).unwrap();
        assert_eq!(h.process(&[OwnedRecord::value("a")]).unwrap(), vec![OwnedRecord::value("a")]);
        h.snapshot(1).unwrap();
        let chunks: Vec<String> = h.list_state("ballast").unwrap();
        assert_eq!(chunks.iter().map(String::len).collect::<Vec<_>>(), vec![65_536, 65_536, 18_928]);
    }
}
