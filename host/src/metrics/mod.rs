//! Prometheus metrics of a job run: [`JobMetrics`].
//!
//! One [`JobMetrics`] per `wasmflow run` process, created before the first attempt and kept
//! across restarts, so its counters count the whole run. It owns a
//! [`prometheus_client`] registry with every family below and encodes it as OpenMetrics text
//! ([`JobMetrics::encode`], what `GET /metrics` serves). Names, labels and meanings are listed
//! in docs/operations.md, "Metrics".
//!
//! * [`labels`]: the label sets (`operator`, `subtask`, `topic`, `partition`, …).
//! * [`subtask`]: per operator subtask: records and bytes, time, guest memory, deadlines,
//!   barrier alignment.
//! * [`time`]: busy / idle / back-pressured time of a chain's members.
//! * [`channels`]: output channel fill, computed at scrape time.
//! * [`checkpoints`]: checkpoint counts, durations, sizes; restarts.
//! * [`kafka`]: consumer lag and commit failures.
//! * [`view`]: the per-operator JSON view (Flink's web UI numbers).
//!
//! Why `prometheus-client` (the Prometheus project's own Rust client): it writes OpenMetrics
//! text, the format Prometheus negotiates first, and its counters are plain atomics we can hold
//! a handle on, so the runtime records without a label lookup.

pub mod channels;
mod checkpoints;
mod kafka;
pub mod labels;
mod subtask;
mod time;
mod view;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use self::channels::ChannelFill;
pub use self::channels::EdgeProbe;
use self::checkpoints::CheckpointMetrics;
use self::kafka::KafkaFamilies;
pub use self::kafka::{KafkaLagView, SubtaskKafka};
use self::labels::{CheckpointKind, JobLabels, SubtaskLabels};
use self::subtask::SubtaskFamilies;
pub use self::subtask::{SubtaskMetrics, SubtaskSample};
pub use self::time::ChainTime;
use self::view::RateWindow;
pub use self::view::{OperatorMetricsView, SubtaskMetricsView, WINDOW};
use crate::runtime::CheckpointStats;

/// The content type of [`JobMetrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of one job run (see the module documentation).
pub struct JobMetrics {
    registry: Registry,
    subtask_families: SubtaskFamilies,
    /// Every subtask's handles, by (operator, subtask): the same handles on every attempt.
    subtasks: Mutex<BTreeMap<(String, u32), Arc<SubtaskMetrics>>>,
    channels: Arc<ChannelFill>,
    checkpoints: CheckpointMetrics,
    kafka: Arc<KafkaFamilies>,
    rates: Mutex<RateWindow>,
}

impl std::fmt::Debug for JobMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobMetrics").finish_non_exhaustive()
    }
}

impl JobMetrics {
    /// The families of a run of the job named `job_name` (the `[job] name`; may be empty). The
    /// name is on one series, `wasmflow_job_info{job_name="…"} 1`, rather than a label on every
    /// series: Prometheus's target labels already tell one process's series from another's.
    pub fn new(job_name: &str) -> JobMetrics {
        let mut registry = Registry::with_prefix("wasmflow");
        registry.register("job", "The job this process runs (its [job] name).", Info::new(JobLabels { job_name: job_name.to_string() }));
        let subtask_families = SubtaskFamilies::register(&mut registry);
        let checkpoints = CheckpointMetrics::register(&mut registry);
        let kafka = KafkaFamilies::register(&mut registry);
        let channels = Arc::new(ChannelFill::default());
        registry.register_collector(Box::new(channels.clone()));
        JobMetrics { registry, subtask_families, subtasks: Mutex::default(), channels, checkpoints, kafka, rates: Mutex::default() }
    }

    /// Everything, as OpenMetrics text (ends with `# EOF`), to serve as [`CONTENT_TYPE`].
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Each operator's subtasks: records and bytes moved, and busy / idle / back-pressured
    /// milliseconds per second over the last few seconds ([`WINDOW`]), by operator id.
    pub fn operators(&self) -> Vec<OperatorMetricsView> {
        let subtasks = self.subtasks.lock().expect("subtask metrics lock");
        self.rates.lock().expect("rates lock").view(&subtasks)
    }

    /// Every Kafka partition a subtask reads, with its lag.
    pub fn kafka_lag(&self) -> Vec<KafkaLagView> {
        self.kafka.lag()
    }

    /// Records in and out per operator, summed over its subtasks (a progress line's numbers).
    pub fn records(&self) -> Vec<(String, u64, u64)> {
        self.operators()
            .into_iter()
            .map(|op| {
                let (i, o) = op.records();
                (op.operator, i, o)
            })
            .collect()
    }

    /// Checkpoints (not savepoints) completed and failed so far in this run.
    pub fn checkpoint_counts(&self) -> (u64, u64) {
        let [completed, failed] = self.checkpoints.counts(CheckpointKind::Checkpoint);
        (completed, failed)
    }

    /// The handles of subtask `subtask` of `operator`: created on first deployment, the same
    /// ones on every later attempt.
    pub fn subtask(&self, operator: &str, subtask: u32) -> Arc<SubtaskMetrics> {
        let mut all = self.subtasks.lock().expect("subtask metrics lock");
        all.entry((operator.to_string(), subtask))
            .or_insert_with(|| {
                let labels = SubtaskLabels { operator: operator.to_string(), subtask };
                Arc::new(self.subtask_families.subtask(labels.clone(), SubtaskKafka::new(self.kafka.clone(), labels)))
            })
            .clone()
    }

    /// Each output edge's fill now: `(operator, subtask, target)` and the fullest channel's
    /// ratio (what a worker reports to its job manager).
    pub fn channel_fills(&self) -> Vec<(labels::EdgeLabels, f64)> {
        self.channels.values()
    }

    /// What worker `worker` reported of its output edges (nothing: its part ended).
    pub fn worker_channel_fills(&self, worker: usize, fills: Vec<(labels::EdgeLabels, f64)>) {
        self.channels.reported(worker, fills);
    }

    /// A new attempt's output channels (replacing the previous attempt's).
    pub fn channels(&self, edges: Vec<EdgeProbe>) {
        self.channels.replace(edges);
    }

    /// A checkpoint or savepoint completed.
    pub fn checkpoint_completed(&self, kind: CheckpointKind, stats: &CheckpointStats) {
        self.checkpoints.completed(kind, stats);
    }

    /// A checkpoint or savepoint was aborted.
    pub fn checkpoint_failed(&self, kind: CheckpointKind) {
        self.checkpoints.failed(kind);
    }

    /// The job restarts after a failure.
    pub fn restarted(&self) {
        self.checkpoints.restarts.inc();
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use wasmflow_types::Batch;

    use super::*;
    use crate::runtime::channel::channel;
    use crate::runtime::message::Message;

    fn batch(records: &[(&str, &str)]) -> Batch {
        let mut b = Batch::new();
        for (k, v) in records {
            b.push(Some(k.as_bytes()), v.as_bytes(), 0);
        }
        b
    }

    fn stats(id: u64, duration_ms: u64, written: u64, total: u64) -> CheckpointStats {
        CheckpointStats {
            checkpoint_id: id,
            triggered: Instant::now(),
            duration: Duration::from_millis(duration_ms),
            state_bytes: written,
            total_bytes: total,
            max_sync: Duration::ZERO,
        }
    }

    /// The sample lines of `page` (no comments), sorted (a family's series come in hash order).
    fn samples(page: &str) -> Vec<&str> {
        let mut lines: Vec<&str> = page.lines().filter(|l| !l.starts_with('#')).collect();
        lines.sort();
        lines
    }

    fn has(page: &str, line: &str) {
        assert!(page.lines().any(|l| l == line), "missing line {line:?} in:\n{page}");
    }

    /// Every family the runtime records into is on the page, with its type, unit and labels,
    /// and the values recorded come back exactly.
    #[test]
    fn every_family_is_encoded_with_its_type_unit_and_labels() {
        let m = JobMetrics::new("demo");
        let source = m.subtask("numbers", 0);
        let map = m.subtask("upper", 1);
        source.output(&batch(&[("k1", "value"), ("k2", "v")]));
        map.input(&batch(&[("k1", "value"), ("k2", "v")]));
        map.output(&batch(&[("k1", "VALUE")]));
        map.guest_memory(1 << 20);
        map.deadline_exceeded();
        map.aligned(Duration::from_millis(3));
        m.checkpoint_completed(CheckpointKind::Checkpoint, &stats(1, 30, 100, 400));
        m.checkpoint_completed(CheckpointKind::Checkpoint, &stats(2, 70, 50, 450));
        m.checkpoint_failed(CheckpointKind::Checkpoint);
        m.checkpoint_completed(CheckpointKind::Savepoint, &stats(3, 20, 450, 450));
        m.restarted();
        source.kafka.lag("orders", 3).set(42);
        source.kafka.commit_failures().inc();
        let page = m.encode();
        assert!(page.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");
        for (family, kind) in [
            ("wasmflow_job", "info"),
            ("wasmflow_input_records", "counter"),
            ("wasmflow_output_records", "counter"),
            ("wasmflow_input_bytes", "counter"),
            ("wasmflow_output_bytes", "counter"),
            ("wasmflow_subtask_busy_seconds", "counter"),
            ("wasmflow_subtask_idle_seconds", "counter"),
            ("wasmflow_subtask_backpressured_seconds", "counter"),
            ("wasmflow_guest_memory_bytes", "gauge"),
            ("wasmflow_guest_deadline_exceeded", "counter"),
            ("wasmflow_checkpoint_alignment_seconds", "histogram"),
            ("wasmflow_checkpoints_completed", "counter"),
            ("wasmflow_checkpoints_failed", "counter"),
            ("wasmflow_checkpoint_duration_seconds", "histogram"),
            ("wasmflow_last_checkpoint_size_bytes", "gauge"),
            ("wasmflow_last_checkpoint_full_size_bytes", "gauge"),
            ("wasmflow_restarts", "counter"),
            ("wasmflow_kafka_consumer_lag_records", "gauge"),
            ("wasmflow_kafka_commit_failures", "counter"),
        ] {
            has(&page, &format!("# TYPE {family} {kind}"));
        }
        has(&page, "# UNIT wasmflow_subtask_busy_seconds seconds");
        has(&page, "# UNIT wasmflow_input_bytes bytes");
        has(&page, "wasmflow_job_info{job_name=\"demo\"} 1");
        has(&page, "wasmflow_output_records_total{operator=\"numbers\",subtask=\"0\"} 2");
        has(&page, "wasmflow_output_bytes_total{operator=\"numbers\",subtask=\"0\"} 10");
        has(&page, "wasmflow_input_records_total{operator=\"upper\",subtask=\"1\"} 2");
        has(&page, "wasmflow_input_bytes_total{operator=\"upper\",subtask=\"1\"} 10");
        has(&page, "wasmflow_output_records_total{operator=\"upper\",subtask=\"1\"} 1");
        has(&page, "wasmflow_output_bytes_total{operator=\"upper\",subtask=\"1\"} 7");
        has(&page, "wasmflow_guest_memory_bytes{operator=\"upper\",subtask=\"1\"} 1048576");
        has(&page, "wasmflow_guest_deadline_exceeded_total{operator=\"upper\",subtask=\"1\"} 1");
        has(&page, "wasmflow_checkpoint_alignment_seconds_count{operator=\"upper\",subtask=\"1\"} 1");
        has(&page, "wasmflow_checkpoints_completed_total{kind=\"checkpoint\"} 2");
        has(&page, "wasmflow_checkpoints_completed_total{kind=\"savepoint\"} 1");
        has(&page, "wasmflow_checkpoints_failed_total{kind=\"checkpoint\"} 1");
        has(&page, "wasmflow_checkpoints_failed_total{kind=\"savepoint\"} 0");
        has(&page, "wasmflow_checkpoint_duration_seconds_count{kind=\"checkpoint\"} 2");
        has(&page, "wasmflow_checkpoint_duration_seconds_sum{kind=\"checkpoint\"} 0.1");
        has(&page, "wasmflow_checkpoint_duration_seconds_bucket{le=\"0.05\",kind=\"checkpoint\"} 1");
        has(&page, "wasmflow_last_checkpoint_size_bytes{kind=\"checkpoint\"} 50");
        has(&page, "wasmflow_last_checkpoint_full_size_bytes{kind=\"checkpoint\"} 450");
        has(&page, "wasmflow_restarts_total 1");
        has(&page, "wasmflow_kafka_consumer_lag_records{operator=\"numbers\",subtask=\"0\",topic=\"orders\",partition=\"3\"} 42");
        has(&page, "wasmflow_kafka_commit_failures_total{operator=\"numbers\",subtask=\"0\"} 1");
        // Every subtask has its three times, at zero before it ran.
        for (op, i) in [("numbers", 0), ("upper", 1)] {
            for t in ["busy", "idle", "backpressured"] {
                has(&page, &format!("wasmflow_subtask_{t}_seconds_total{{operator=\"{op}\",subtask=\"{i}\"}} 0.0"));
            }
        }
        assert_eq!(m.checkpoint_counts(), (2, 1));
        assert_eq!(m.kafka_lag(), vec![KafkaLagView { operator: "numbers".into(), subtask: 0, topic: "orders".into(), partition: 3, lag: 42 }]);
    }

    /// A run without Kafka, channels or checkpoints shows none of their series; the job name is
    /// escaped as a label value must be.
    #[test]
    fn families_without_series_stay_off_the_page_and_the_job_name_is_escaped() {
        let m = JobMetrics::new("say \"hi\"\\now");
        let page = m.encode();
        has(&page, "wasmflow_job_info{job_name=\"say \\\"hi\\\"\\\\now\"} 1");
        assert_eq!(
            samples(&page),
            vec![
                "wasmflow_checkpoints_completed_total{kind=\"checkpoint\"} 0",
                "wasmflow_checkpoints_completed_total{kind=\"savepoint\"} 0",
                "wasmflow_checkpoints_failed_total{kind=\"checkpoint\"} 0",
                "wasmflow_checkpoints_failed_total{kind=\"savepoint\"} 0",
                "wasmflow_job_info{job_name=\"say \\\"hi\\\"\\\\now\"} 1",
                "wasmflow_restarts_total 0",
            ]
        );
    }

    /// A restarted subtask gets the same series back: its counters go on counting.
    #[test]
    fn a_subtask_keeps_its_series_across_attempts() {
        let m = JobMetrics::new("j");
        m.subtask("op", 0).input(&batch(&[("a", "b")]));
        let again = m.subtask("op", 0);
        again.input(&batch(&[("c", "d"), ("e", "f")]));
        has(&m.encode(), "wasmflow_input_records_total{operator=\"op\",subtask=\"0\"} 3");
        let view = m.operators();
        assert_eq!(view.len(), 1);
        assert_eq!((view[0].operator.as_str(), view[0].subtasks.len(), view[0].subtasks[0].records_in, view[0].subtasks[0].bytes_in), ("op", 1, 3, 6));
        assert_eq!(m.records(), vec![("op".to_string(), 3, 0)]);
    }

    /// In a chain, a member's guest call is its own busy time, back-pressure for the members
    /// before it and idle time for those after it; waiting inside a call is idle.
    #[test]
    fn chain_time_is_charged_as_if_the_members_ran_alone() {
        let m = JobMetrics::new("j");
        let members: Vec<_> = (0..3).map(|i| m.subtask(&format!("op{i}"), 0)).collect();
        let time = ChainTime::new(members.clone());
        time.busy(1, Instant::now() - Duration::from_millis(100));
        let t = |i: usize| members[i].times();
        let call = t(1)[0];
        assert!(call >= 0.1, "{call}");
        assert_eq!((t(0), t(1), t(2)), ([0.0, 0.0, call], [call, 0.0, 0.0], [0.0, call, 0.0]));
        // Member 0 (a source) waited 40 ms of a 100 ms call for the broker.
        members[0].waited_in_call(Duration::from_millis(40));
        time.busy(0, Instant::now() - Duration::from_millis(100));
        let [busy, idle, _] = t(0);
        assert!((idle - 0.04).abs() < 1e-9 && busy >= 0.06 - 1e-9, "busy {busy}, idle {idle}");
        let before: Vec<[f64; 3]> = (0..3).map(t).collect();
        time.idle(Duration::from_millis(250));
        time.back_pressured(Duration::from_millis(500));
        for (i, before) in before.iter().enumerate() {
            let after = t(i);
            assert!((after[1] - before[1] - 0.25).abs() < 1e-9, "waiting for input is every member's idle time");
            assert!((after[2] - before[2] - 0.5).abs() < 1e-9, "waiting for room is every member's back-pressure");
            assert_eq!(after[0], before[0]);
        }
        // The view's rates stay within a second per second.
        for op in m.operators() {
            let s = &op.subtasks[0];
            for v in [s.busy_ms_per_second, s.idle_ms_per_second, s.back_pressured_ms_per_second] {
                assert!((0.0..=1000.0).contains(&v), "{op:?}");
            }
        }
    }

    /// The channel gauge reads the fullest channel of an edge at scrape time, by messages or by
    /// bytes, and goes away with the channels.
    #[tokio::test]
    async fn channel_fill_is_read_at_scrape_time() {
        let m = JobMetrics::new("j");
        let (tx_a, _rx_a) = channel(4, 1 << 20);
        let (tx_b, _rx_b) = channel(4, 1000);
        let labels = labels::EdgeLabels { operator: "a".into(), subtask: 0, target: "b".into() };
        m.channels(vec![EdgeProbe { labels, channels: vec![tx_a.probe(), tx_b.probe()] }]);
        has(&m.encode(), "wasmflow_output_channel_fill_ratio{operator=\"a\",subtask=\"0\",target=\"b\"} 0.0");
        tx_a.send(Message::Watermark(1)).await.unwrap();
        has(&m.encode(), "wasmflow_output_channel_fill_ratio{operator=\"a\",subtask=\"0\",target=\"b\"} 0.25");
        let mut big = Batch::new();
        big.push(None, &[b'x'; 484], 0);
        tx_b.send(Message::Records(big)).await.unwrap();
        has(&m.encode(), "wasmflow_output_channel_fill_ratio{operator=\"a\",subtask=\"0\",target=\"b\"} 0.5");
        drop((tx_a, tx_b));
        assert!(!m.encode().contains("output_channel_fill_ratio"));
    }
}
