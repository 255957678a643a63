//! The metrics of one operator subtask: what it moved (records and bytes, in and out), where its
//! time went, its guest's memory and deadline hits, its barrier alignments.
//!
//! A [`SubtaskMetrics`] holds handles on its own series, looked up once when the subtask is
//! deployed, so recording is an atomic add on a counter the subtask already holds: no label
//! lookup, no lock, and nothing per record (the runtime records per batch). It belongs to the
//! run, not to an attempt: a restarted subtask gets the same handles back, so counters keep
//! counting across restarts, as Prometheus expects of a counter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use wasmflow_types::Batch;

use super::kafka::SubtaskKafka;
use super::labels::SubtaskLabels;

/// Seconds, counted as `f64` (Prometheus counts time in seconds).
pub(super) type Seconds = Counter<f64, AtomicU64>;

/// Barrier alignment takes from nothing (one input, or barriers arriving together) to as long as
/// the slowest input is behind: 1 ms to a minute.
fn alignment_histogram() -> Histogram {
    Histogram::new([0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0])
}

type HistogramFamily = Family<SubtaskLabels, Histogram, fn() -> Histogram>;

/// The per-subtask families, registered once per run.
pub(super) struct SubtaskFamilies {
    records_in: Family<SubtaskLabels, Counter>,
    records_out: Family<SubtaskLabels, Counter>,
    bytes_in: Family<SubtaskLabels, Counter>,
    bytes_out: Family<SubtaskLabels, Counter>,
    busy: Family<SubtaskLabels, Seconds>,
    idle: Family<SubtaskLabels, Seconds>,
    back_pressured: Family<SubtaskLabels, Seconds>,
    memory: Family<SubtaskLabels, Gauge>,
    deadlines: Family<SubtaskLabels, Counter>,
    alignment: HistogramFamily,
}

impl SubtaskFamilies {
    pub(super) fn register(registry: &mut Registry) -> SubtaskFamilies {
        let f = SubtaskFamilies {
            records_in: Family::default(),
            records_out: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            busy: Family::default(),
            idle: Family::default(),
            back_pressured: Family::default(),
            memory: Family::default(),
            deadlines: Family::default(),
            alignment: HistogramFamily::new_with_constructor(alignment_histogram),
        };
        registry.register("input_records", "Records the operator subtask took in (Flink's numRecordsIn).", f.records_in.clone());
        registry.register("output_records", "Records the operator subtask emitted (Flink's numRecordsOut).", f.records_out.clone());
        registry.register_with_unit("input", "Key and value bytes of the records the operator subtask took in.", Unit::Bytes, f.bytes_in.clone());
        registry.register_with_unit("output", "Key and value bytes of the records the operator subtask emitted.", Unit::Bytes, f.bytes_out.clone());
        registry.register_with_unit(
            "subtask_busy",
            "Time the operator subtask spent in its own code (guest calls); rate() is Flink's busyTimeMsPerSecond / 1000.",
            Unit::Seconds,
            f.busy.clone(),
        );
        registry.register_with_unit(
            "subtask_idle",
            "Time the operator subtask waited for input; rate() is Flink's idleTimeMsPerSecond / 1000.",
            Unit::Seconds,
            f.idle.clone(),
        );
        registry.register_with_unit(
            "subtask_backpressured",
            "Time the operator subtask waited for room downstream; rate() is Flink's backPressuredTimeMsPerSecond / 1000.",
            Unit::Seconds,
            f.back_pressured.clone(),
        );
        registry.register_with_unit("guest_memory", "Linear memory of the subtask's wasm instance.", Unit::Bytes, f.memory.clone());
        registry.register("guest_deadline_exceeded", "Guest calls interrupted because they ran past limits.call-timeout-ms.", f.deadlines.clone());
        registry.register_with_unit(
            "checkpoint_alignment",
            "From the first barrier of a checkpoint on one input channel to the same barrier on all of them.",
            Unit::Seconds,
            f.alignment.clone(),
        );
        f
    }

    /// The handles of one subtask's series (created, at zero, if new).
    pub(super) fn subtask(&self, labels: SubtaskLabels, kafka: SubtaskKafka) -> SubtaskMetrics {
        SubtaskMetrics {
            records_in: self.records_in.get_or_create_owned(&labels),
            records_out: self.records_out.get_or_create_owned(&labels),
            bytes_in: self.bytes_in.get_or_create_owned(&labels),
            bytes_out: self.bytes_out.get_or_create_owned(&labels),
            busy: self.busy.get_or_create_owned(&labels),
            idle: self.idle.get_or_create_owned(&labels),
            back_pressured: self.back_pressured.get_or_create_owned(&labels),
            memory: self.memory.get_or_create_owned(&labels),
            deadlines: self.deadlines.get_or_create_owned(&labels),
            alignment: self.alignment.get_or_create_owned(&labels),
            waited_in_call: AtomicU64::new(0),
            started: Instant::now(),
            kafka,
        }
    }
}

/// One operator subtask's series (see the module documentation).
#[derive(Debug)]
pub struct SubtaskMetrics {
    records_in: Counter,
    records_out: Counter,
    bytes_in: Counter,
    bytes_out: Counter,
    pub(super) busy: Seconds,
    pub(super) idle: Seconds,
    pub(super) back_pressured: Seconds,
    memory: Gauge,
    deadlines: Counter,
    alignment: Histogram,
    /// Nanoseconds the host waited for input inside the guest call in progress (a Kafka fetch
    /// with nothing to read): idle time, not busy time, although the guest is in a call.
    waited_in_call: AtomicU64,
    /// When the series were first created: the start of the rates a view computes before it
    /// has an earlier sample.
    pub(super) started: Instant,
    pub(crate) kafka: SubtaskKafka,
}

impl SubtaskMetrics {
    /// The subtask took `batch` in.
    pub fn input(&self, batch: &Batch) {
        self.records_in.inc_by(batch.len() as u64);
        self.bytes_in.inc_by(batch.data_bytes() as u64);
    }

    /// The subtask emitted `batch`.
    pub fn output(&self, batch: &Batch) {
        self.records_out.inc_by(batch.len() as u64);
        self.bytes_out.inc_by(batch.data_bytes() as u64);
    }

    /// The host waited `waited` for input inside a guest call (see [`super::ChainTime::busy`]).
    pub fn waited_in_call(&self, waited: Duration) {
        self.waited_in_call.fetch_add(waited.as_nanos() as u64, Ordering::Relaxed);
    }

    /// What [`Self::waited_in_call`] added up since the last call of this.
    pub(super) fn take_waited_in_call(&self) -> Duration {
        Duration::from_nanos(self.waited_in_call.swap(0, Ordering::Relaxed))
    }

    /// The guest's linear memory is now `bytes`.
    pub fn guest_memory(&self, bytes: usize) {
        self.memory.set(bytes as i64);
    }

    /// A guest call was interrupted at its deadline.
    pub fn deadline_exceeded(&self) {
        self.deadlines.inc();
    }

    /// The subtask's inputs took `took` to align a checkpoint's barriers.
    pub fn aligned(&self, took: Duration) {
        self.alignment.observe(took.as_secs_f64());
    }

    /// Records and bytes, in and out: `[records_in, records_out, bytes_in, bytes_out]`.
    pub(super) fn moved(&self) -> [u64; 4] {
        [self.records_in.get(), self.records_out.get(), self.bytes_in.get(), self.bytes_out.get()]
    }

    /// Seconds busy, idle and back-pressured so far.
    pub(super) fn times(&self) -> [f64; 3] {
        [self.busy.get(), self.idle.get(), self.back_pressured.get()]
    }

    /// Linear memory bytes of the guest, as last reported.
    pub(super) fn memory_bytes(&self) -> i64 {
        self.memory.get()
    }

    /// What a worker reports of this subtask to its job manager (distributed execution).
    pub fn sample(&self) -> SubtaskSample {
        SubtaskSample {
            moved: self.moved(),
            times: self.times(),
            memory: self.memory_bytes(),
            deadlines: self.deadlines.get(),
            kafka_lag: self.kafka.lags(),
            kafka_commit_failures: self.kafka.commit_failures_so_far(),
        }
    }

    /// Adds what a subtask on a worker did between two of its samples, `previous` (the default
    /// for the first) and `now`, so this job manager's series count as if the subtask ran here.
    /// A worker that was replaced counts from zero again: a value below the previous one is a
    /// new worker's whole count.
    pub fn add_since(&self, previous: &SubtaskSample, now: &SubtaskSample) {
        let counters = [&self.records_in, &self.records_out, &self.bytes_in, &self.bytes_out];
        for (i, counter) in counters.into_iter().enumerate() {
            counter.inc_by(delta(now.moved[i], previous.moved[i]));
        }
        for (i, seconds) in [&self.busy, &self.idle, &self.back_pressured].into_iter().enumerate() {
            seconds.inc_by(delta(now.times[i], previous.times[i]));
        }
        self.deadlines.inc_by(delta(now.deadlines, previous.deadlines));
        self.memory.set(now.memory);
        for (topic, partition, lag) in &now.kafka_lag {
            self.kafka.lag(topic, *partition).set(*lag);
        }
        if now.kafka_commit_failures > 0 {
            self.kafka.commit_failures().inc_by(delta(now.kafka_commit_failures, previous.kafka_commit_failures));
        }
    }
}

/// What a count grew by from `before` to `now`; a count below `before` started again from zero
/// (a replaced worker), so all of it is new.
fn delta<T: PartialOrd + std::ops::Sub<Output = T> + Copy>(now: T, before: T) -> T {
    if now >= before { now - before } else { now }
}

/// A subtask's counts so far, as a worker reports them: records and bytes in and out, seconds
/// busy, idle and back-pressured, guest memory, deadline hits, and for a Kafka source the lag
/// of each partition it reads (topic, partition, lag) and its failed offset commits.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SubtaskSample {
    pub moved: [u64; 4],
    pub times: [f64; 3],
    pub memory: i64,
    pub deadlines: u64,
    pub kafka_lag: Vec<(String, i32, i64)>,
    pub kafka_commit_failures: u64,
}
