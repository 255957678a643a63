//! The limits a subtask runs under: the job file's `[limits]` (with their defaults from
//! [`crate::job`]) turned into what the engine enforces.

use std::time::Duration;

use crate::connectors::kafka::KafkaLimits;
use crate::engine::host::SubtaskLimits;
use crate::job::{KafkaGrant, LimitsSpec};

/// Resolved limits of one operator, and its call deadline.
pub fn subtask_limits(spec: &LimitsSpec, kafka: Option<&KafkaGrant>) -> (SubtaskLimits, Duration) {
    let limits = SubtaskLimits {
        memory_bytes: spec.memory_bytes(),
        table_elements: spec.table_elements(),
        state: spec.state(),
        log_line_bytes: spec.log_line_bytes(),
        log_lines_per_second: spec.log_lines_per_second(),
        batch_bytes: spec.batch_bytes(),
        kafka: KafkaLimits {
            connect_timeout: spec.kafka_connect_timeout(),
            max_record_bytes: spec.kafka_max_record_bytes(),
            max_clients: spec.kafka_clients(),
            bootstrap_servers: kafka.map(|k| k.bootstrap_servers.clone()).unwrap_or_default(),
            ..Default::default()
        },
    };
    (limits, spec.call_timeout())
}
