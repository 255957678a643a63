//! The `clock` interface: the only time source a guest has.

use super::StoreData;
use crate::engine::bindings::wasmflow::operator::clock::Host;

impl Host for StoreData {
    fn now_millis(&mut self) -> anyhow::Result<i64> {
        Ok(super::keyed::now_millis())
    }

    fn current_watermark(&mut self) -> anyhow::Result<i64> {
        Ok(self.state.watermark)
    }

    fn monotonic_nanos(&mut self) -> anyhow::Result<u64> {
        Ok(self.started.elapsed().as_nanos() as u64)
    }
}

/// `types` declares only types; its (empty) host trait still needs an impl to be linked.
impl crate::engine::bindings::wasmflow::operator::types::Host for StoreData {}
