//! A stateless map: upper-cases each record's value (ASCII), keeping key and timestamp.
//! The smallest possible wasmflow operator: one function and one macro.

use wasmflow_guest_sdk::prelude::*;

/// Emits the record with its value upper-cased.
pub fn uppercase(record: Record<'_>, out: &mut Collector) -> Result<()> {
    out.emit_with(record.key, record.timestamp, |value| value.extend(record.value.iter().map(u8::to_ascii_uppercase)));
    Ok(())
}

export_map!(uppercase);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord};

    use super::WasmflowOperator;

    #[test]
    fn uppercases_values_and_keeps_keys() {
        let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("upper", 0, 1, serde_json::json!({})).unwrap();
        let out = h.process(&[OwnedRecord::keyed("k", "abc-1"), OwnedRecord::value("")]).unwrap();
        assert_eq!(out, vec![OwnedRecord::keyed("k", "ABC-1"), OwnedRecord::value("")]);
    }
}
