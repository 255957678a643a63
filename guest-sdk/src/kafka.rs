//! Kafka access for operators granted the `kafka` capability in the job file.
//!
//! The host runs the Kafka client (librdkafka) on the guest's behalf; the guest never opens a
//! socket. These are the contract's types as generated from `wit/wasmflow.wit`: a
//! [`Consumer`] (list partitions, assign, fetch, offsets, commit) and a [`Producer`].
//! Calling them outside wasm (in a native unit test) panics: test Kafka logic behind a trait,
//! as `operators/kafka-source` does.

pub use crate::bindings::wasmflow::operator::kafka::*;

#[cfg(target_arch = "wasm32")]
impl Producer {
    /// Sends every record of `batch` to `topic` (partitioned by key).
    pub fn send_batch(&self, topic: &str, batch: &crate::Batch) -> Result<(), String> {
        self.send(topic, &crate::glue::exports::to_wire(batch.clone()))
    }
}
