//! A sink that discards every record (Flink's `DiscardingSink`): the end of a pipeline in
//! benchmarks and dry runs. It logs how many records it dropped when its input ends.

use wasmflow_guest_sdk::prelude::*;

/// See the crate documentation.
pub struct NullSink {
    discarded: u64,
}

impl Sink for NullSink {
    fn create(_ctx: &RuntimeContext) -> Result<Self> {
        Ok(NullSink { discarded: 0 })
    }

    fn invoke(&mut self, input: &Input) -> Result<()> {
        self.discarded += input.len() as u64;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        info!("discarded {} records", self.discarded);
        Ok(())
    }
}

export_sink!(NullSink);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord};
    use wasmflow_guest_sdk::log::{Level, take_captured};

    use super::WasmflowOperator;

    #[test]
    fn discards_records_and_reports_how_many() {
        let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("null", 0, 1, serde_json::json!({})).unwrap();
        assert_eq!(h.process(&[OwnedRecord::value("a"), OwnedRecord::value("b")]).unwrap(), vec![]);
        assert_eq!(h.close().unwrap(), vec![]);
        assert!(take_captured().contains(&(Level::Info, "discarded 2 records".to_string())));
    }
}
