//! Limits a subtask runs under, resolved from the job file's `[limits]` (defaults here).

use std::time::Duration;

use wasmflow_state::StateLimits;

use crate::engine::host::SubtaskLimits;
use crate::job::{KafkaGrant, LimitsSpec};

/// Bytes of record data one channel holds before its sender waits (`[job] channel-bytes`).
pub const DEFAULT_CHANNEL_BYTES: usize = 8 << 20;

/// Bytes of operator state one subtask may hold, by default (`limits.state-bytes`).
pub const DEFAULT_STATE_BYTES: usize = 256 << 20;

/// Resolved limits of one operator.
pub fn subtask_limits(spec: &LimitsSpec, kafka: Option<&KafkaGrant>) -> (SubtaskLimits, Duration) {
    let limits = SubtaskLimits {
        memory_bytes: (spec.memory_mb.unwrap_or(256) as usize) << 20,
        table_elements: spec.table_elements.unwrap_or(100_000) as usize,
        state: StateLimits {
            max_states: spec.states.unwrap_or(1024),
            max_entry_bytes: spec.state_entry_bytes.unwrap_or(16 << 20),
            // The host holds a subtask's state, and copies it at every checkpoint: by default no
            // more than the guest's own memory, so a small guest cannot make the host hold GBs.
            max_total_bytes: spec.state_bytes.unwrap_or(DEFAULT_STATE_BYTES),
        },
        log_line_bytes: spec.log_line_bytes.unwrap_or(4096),
        log_lines_per_second: spec.log_lines_per_second.unwrap_or(1000),
        batch_bytes: spec.batch_bytes.unwrap_or(64 << 20),
        kafka: crate::connectors::kafka::KafkaLimits {
            connect_timeout: Duration::from_millis(spec.kafka_connect_timeout_ms.unwrap_or(30_000)),
            max_record_bytes: spec.kafka_max_record_bytes.unwrap_or(8 << 20),
            max_clients: spec.kafka_clients.unwrap_or(4),
            bootstrap_servers: kafka.map(|k| k.bootstrap_servers.clone()).unwrap_or_default(),
            ..Default::default()
        },
    };
    (limits, Duration::from_millis(spec.call_timeout_ms.unwrap_or(10_000)))
}
