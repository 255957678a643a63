//! What an optional key of the job file means when it is left out: every default lives here,
//! beside the keys it fills in, and the runtime asks these methods instead of choosing its own.

use std::time::Duration;

use wasmflow_state::StateLimits;

use super::{JobSection, LimitsSpec};

impl JobSection {
    /// `[job] batch-size`: records per batch a source is asked for (default 1024).
    pub fn batch_size(&self) -> u32 {
        self.batch_size.unwrap_or(1024).max(1)
    }

    /// `[job] channel-capacity`: batches buffered per channel before back-pressure (default 16).
    pub fn channel_capacity(&self) -> usize {
        self.channel_capacity.unwrap_or(16).max(1)
    }

    /// `[job] channel-bytes`: bytes of record data buffered per channel (default 8 MiB).
    pub fn channel_bytes(&self) -> usize {
        self.channel_bytes.unwrap_or(8 << 20)
    }

    /// `[job] chaining`: whether chainable edges are chained (default true, as in Flink).
    pub fn chaining(&self) -> bool {
        self.chaining.unwrap_or(true)
    }

    /// `[job] max-parallelism`: the number of key groups (default 128, as Flink's minimum).
    pub fn max_parallelism(&self) -> u32 {
        self.max_parallelism.unwrap_or(wasmflow_state::DEFAULT_MAX_PARALLELISM)
    }
}

impl LimitsSpec {
    /// `memory-mb`: linear memory per subtask (default 256 MiB).
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb.unwrap_or(256) as usize) << 20
    }

    /// `table-elements` (default 100 000).
    pub fn table_elements(&self) -> usize {
        self.table_elements.unwrap_or(100_000) as usize
    }

    /// `call-timeout-ms`: the longest one call into the guest may run (default 10 s).
    pub fn call_timeout(&self) -> Duration {
        Duration::from_millis(self.call_timeout_ms.unwrap_or(10_000))
    }

    /// `states`, `state-entry-bytes`, `state-bytes` (defaults 1024 states, 16 MiB, 256 MiB).
    pub fn state(&self) -> StateLimits {
        StateLimits {
            max_states: self.states.unwrap_or(1024),
            max_entry_bytes: self.state_entry_bytes.unwrap_or(16 << 20),
            // The host holds a subtask's state, and copies it at every checkpoint: by default no
            // more than the guest's own memory, so a small guest cannot make the host hold GBs.
            max_total_bytes: self.state_bytes.unwrap_or(256 << 20),
        }
    }

    /// `log-line-bytes` (default 4096).
    pub fn log_line_bytes(&self) -> usize {
        self.log_line_bytes.unwrap_or(4096)
    }

    /// `log-lines-per-second` (default 1000).
    pub fn log_lines_per_second(&self) -> u32 {
        self.log_lines_per_second.unwrap_or(1000)
    }

    /// `batch-bytes`: the largest batch a guest may return (default 64 MiB).
    pub fn batch_bytes(&self) -> usize {
        self.batch_bytes.unwrap_or(64 << 20)
    }

    /// `kafka-connect-timeout-ms` (default 30 s).
    pub fn kafka_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.kafka_connect_timeout_ms.unwrap_or(30_000))
    }

    /// `kafka-max-record-bytes` (default 8 MiB).
    pub fn kafka_max_record_bytes(&self) -> usize {
        self.kafka_max_record_bytes.unwrap_or(8 << 20)
    }

    /// `kafka-clients`: clients a subtask may hold at once (default 4).
    pub fn kafka_clients(&self) -> usize {
        self.kafka_clients.unwrap_or(4)
    }
}
