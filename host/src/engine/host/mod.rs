//! The per-subtask data behind a wasmtime `Store`, and the host side of the contract's imports.
//!
//! One [`StoreData`] per (operator, subtask) attempt. It owns that subtask's operator state,
//! so a guest can only ever reach its own state: there is no API that names another subtask.

mod clock;
mod files;
pub(crate) mod input;
mod kafka;
mod keyed;
pub(crate) mod log;
mod state;

use std::sync::Arc;
use std::time::Instant;

use wasmflow_state::{StateLimits, SubtaskState};
use wasmflow_types::SubtaskTag;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

pub use self::files::{FilesDir, record_attempt, recorded_attempt};
pub(crate) use self::keyed::now_millis;
pub use self::log::LogBudget;

/// A registered list state, as handed to the guest (index into the subtask's store).
pub struct ListStateHandle(pub(crate) usize);
/// A registered broadcast state, as handed to the guest.
pub struct BroadcastStateHandle(pub(crate) usize);
/// A registered keyed state (value, list or map), as handed to the guest.
pub struct KeyedStateHandle(pub(crate) usize);
/// A Kafka consumer the host runs for the guest.
pub struct ConsumerHandle(pub(crate) crate::connectors::kafka::KafkaConsumer);
/// A Kafka producer the host runs for the guest.
pub struct ProducerHandle(pub(crate) crate::connectors::kafka::KafkaProducer);

/// Which lifecycle call the guest is in; state registration is only allowed in
/// `initialize-state` (Flink registers operator state in `initializeState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Create,
    InitializeState,
    Running,
    Snapshot,
    Closed,
}

/// Everything one subtask's `Store` holds.
pub struct StoreData {
    pub(crate) tag: SubtaskTag,
    pub(crate) table: ResourceTable,
    pub(crate) state: SubtaskState,
    pub(crate) phase: Phase,
    pub(crate) memory: StoreLimits,
    /// Linear memory limit, bytes (for the message when a guest hits it).
    pub(crate) memory_limit: usize,
    pub(crate) files: Option<FilesDir>,
    pub(crate) log: LogBudget,
    pub(crate) started: Instant,
    /// Deadline of the guest call in progress (checked on every epoch tick).
    pub(crate) call_deadline: Option<Instant>,
    /// Processing time (ms since the epoch) when the guest call in progress began: the "now" of
    /// keyed-state TTL.
    pub(crate) call_millis: i64,
    /// Largest batch the guest may return.
    pub(crate) max_batch_bytes: usize,
    pub(crate) kafka_limits: crate::connectors::kafka::KafkaLimits,
    /// Kafka clients the guest holds now (bounded by `kafka_limits.max_clients`).
    pub(crate) kafka_clients: usize,
    /// The subtask's metrics, when it runs in a job (guest memory, deadline hits, Kafka).
    pub(crate) metrics: Option<Arc<crate::metrics::SubtaskMetrics>>,
    /// Linear memory of the instance's memories, bytes (the guest memory gauge, tests).
    pub(crate) memory_bytes: usize,
}

/// The limits a subtask runs under, resolved from the job file.
#[derive(Clone, Debug)]
pub struct SubtaskLimits {
    pub memory_bytes: usize,
    pub table_elements: usize,
    pub state: StateLimits,
    pub log_line_bytes: usize,
    pub log_lines_per_second: u32,
    pub batch_bytes: usize,
    pub kafka: crate::connectors::kafka::KafkaLimits,
}

impl StoreData {
    /// The tag and the state, for a subtask that runs natively (no store, no sandbox).
    pub fn into_parts(self) -> (SubtaskTag, SubtaskState) {
        (self.tag, self.state)
    }

    /// The linear memory the guest has grown to, in bytes (what `limits.memory-mb` bounds).
    pub fn guest_memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    /// Data for a new subtask attempt. `state` is empty or restored.
    pub fn new(tag: SubtaskTag, state: SubtaskState, limits: &SubtaskLimits, files: Option<FilesDir>) -> Self {
        StoreData {
            tag,
            table: ResourceTable::new(),
            state,
            phase: Phase::Create,
            memory: StoreLimitsBuilder::new()
                .memory_size(limits.memory_bytes)
                .table_elements(limits.table_elements)
                .instances(4)
                .tables(8)
                .memories(2)
                .trap_on_grow_failure(true)
                .build(),
            memory_limit: limits.memory_bytes,
            files,
            log: LogBudget::new(limits.log_line_bytes, limits.log_lines_per_second),
            started: Instant::now(),
            call_deadline: None,
            call_millis: 0,
            max_batch_bytes: limits.batch_bytes,
            kafka_limits: limits.kafka.clone(),
            kafka_clients: 0,
            metrics: None,
            memory_bytes: 0,
        }
    }

    /// Records the subtask's guest memory, deadline hits and Kafka clients in `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::SubtaskMetrics>) -> Self {
        // A new attempt's instance starts without memory; what the last one had is gone.
        metrics.guest_memory(0);
        self.metrics = Some(metrics);
        self
    }

    /// The subtask's state (to snapshot it after `snapshot-state`).
    pub fn state(&self) -> &SubtaskState {
        &self.state
    }

    /// The subtask's state, mutably (timers are taken from it as they fire).
    pub fn state_mut(&mut self) -> &mut SubtaskState {
        &mut self.state
    }

    /// The subtask's tag.
    pub fn tag(&self) -> &SubtaskTag {
        &self.tag
    }

    /// Log lines dropped by the rate limit so far.
    pub fn dropped_log_lines(&self) -> u64 {
        self.log.dropped()
    }
}

impl ResourceLimiter for StoreData {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            return Err(wasmtime::Error::msg(format!(
                "out of memory: the guest's linear memory would grow to {desired} bytes, over its limit of {} bytes (limits.memory-mb = {})",
                self.memory_limit,
                self.memory_limit >> 20
            )));
        }
        let grows = self.memory.memory_growing(current, desired, maximum)?;
        if grows {
            // `current` is 0 when a memory is created: the sum covers every memory of the store.
            self.memory_bytes = self.memory_bytes + desired - current;
            if let Some(m) = &self.metrics {
                m.guest_memory(self.memory_bytes);
            }
        }
        Ok(grows)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.memory.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.memory.instances()
    }

    fn tables(&self) -> usize {
        self.memory.tables()
    }

    fn memories(&self) -> usize {
        self.memory.memories()
    }
}
