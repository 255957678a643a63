//! A Kafka sink, **at-least-once**: records are sent as they arrive, and every checkpoint waits
//! until the broker has acknowledged all of them (`flush` in `snapshot_state`, as Flink's
//! `FlinkKafkaProducer` does with `AT_LEAST_ONCE`). A checkpoint therefore never completes with
//! records still in flight; after a failure, records since the last checkpoint are sent again.
//!
//! Needs `grants = { kafka = { bootstrap-servers = "host:port" } }` in the job file.

use std::collections::BTreeMap;

use wasmflow_guest_sdk::prelude::*;

/// Configuration (`[operators.config]` in the job file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaSinkConfig {
    /// Topic every record is written to (partitioned by key).
    pub topic: String,
    /// librdkafka producer properties (optional). The brokers come from the job file's grant
    /// (`grants = { kafka = { bootstrap-servers = ... } }`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// How long a checkpoint waits for acknowledgements (default 30000).
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout_ms: u32,
}

fn default_flush_timeout() -> u32 {
    30_000
}

/// See the crate documentation.
pub struct KafkaSink {
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    config: KafkaSinkConfig,
    #[cfg(target_arch = "wasm32")]
    producer: Option<wasmflow_guest_sdk::kafka::Producer>,
}

impl KafkaSink {
    fn flush(&mut self) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        if let Some(p) = &self.producer {
            p.flush(self.config.flush_timeout_ms).map_err(|e| anyhow!("flushing to topic '{}': {e}", self.config.topic))?;
        }
        Ok(())
    }
}

impl Sink for KafkaSink {
    fn create(ctx: &RuntimeContext) -> Result<Self> {
        let config: KafkaSinkConfig = ctx.config()?;
        Ok(KafkaSink {
            config,
            #[cfg(target_arch = "wasm32")]
            producer: None,
        })
    }

    fn open(&mut self) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        {
            let props: Vec<(String, String)> = self.config.properties.clone().into_iter().collect();
            self.producer = Some(wasmflow_guest_sdk::kafka::Producer::new(&props));
        }
        Ok(())
    }

    fn invoke(&mut self, input: &Input) -> Result<()> {
        #[cfg(target_arch = "wasm32")]
        if let Some(p) = &self.producer {
            p.send_batch(&self.config.topic, input).map_err(|e| anyhow!("sending to topic '{}': {e}", self.config.topic))?;
        }
        #[cfg(not(target_arch = "wasm32"))]
        let _ = input;
        Ok(())
    }

    fn close(&mut self) -> Result<()> {
        self.flush()
    }

    fn snapshot_state(&mut self, _ctx: &FunctionSnapshotContext) -> Result<()> {
        self.flush()
    }
}

export_sink!(KafkaSink);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::harness::OperatorHarness;

    use super::WasmflowOperator;

    #[test]
    fn unknown_config_keys_are_rejected() {
        let err = OperatorHarness::<WasmflowOperator>::open_fresh("k", 0, 1, serde_json::json!({"topic": "t", "properties": {}, "tpoic": 1}))
            .err()
            .expect("must fail");
        assert!(format!("{err:#}").contains("unknown field `tpoic`"), "{err:#}");
    }
}
