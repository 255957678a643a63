//! What a consumer reports into its subtask's metrics (`crate::metrics`, Kafka): lag per
//! partition, failed commits, and the time a fetch waits for records.
//!
//! Lag is *high watermark − next offset handed to the guest*. The positions are the
//! consumer's own; high watermarks are learnt without a request of their own: from librdkafka's
//! statistics (every [`STATISTICS_INTERVAL_MS`], taken from its fetch responses) and from the
//! watermark queries the guest makes anyway (start and end offsets). A partition's lag is set
//! when a fetch moves it and when statistics arrive, so it costs per fetch and per second,
//! never per record.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaResult;
use serde::Deserialize;

use crate::metrics::SubtaskMetrics;

/// How often librdkafka sends a consumer's statistics when its subtask has metrics.
pub const STATISTICS_INTERVAL_MS: u32 = 1000;

type Partition = (String, i32);

/// One consumer's metrics.
pub struct ConsumerMetrics {
    subtask: Arc<SubtaskMetrics>,
    commit_failures: Counter,
    /// The consumer's positions (next offset to hand to the guest), shared with it.
    positions: Arc<Mutex<BTreeMap<Partition, i64>>>,
    /// The newest high watermark known per partition, and its lag series.
    partitions: Mutex<BTreeMap<Partition, (i64, Option<Gauge>)>>,
}

impl ConsumerMetrics {
    pub fn new(subtask: Arc<SubtaskMetrics>, positions: Arc<Mutex<BTreeMap<Partition, i64>>>) -> ConsumerMetrics {
        let commit_failures = subtask.kafka.commit_failures();
        ConsumerMetrics { subtask, commit_failures, positions, partitions: Mutex::default() }
    }

    /// An offset commit failed.
    pub fn commit_failed(&self) {
        self.commit_failures.inc();
    }

    /// A fetch waited `d` for its first record (idle time of the subtask).
    pub fn waited(&self, d: Duration) {
        self.subtask.waited_in_call(d);
    }

    /// High watermarks learnt (a negative one is "unknown" and ignored); the lag of the
    /// partitions they belong to is updated.
    pub fn highs<'a>(&self, highs: impl IntoIterator<Item = (&'a str, i32, i64)>) {
        let mut moved = Vec::new();
        {
            let mut partitions = self.partitions.lock().expect("kafka metrics lock");
            for (topic, partition, high) in highs {
                if high < 0 || partition < 0 {
                    continue;
                }
                let key = (topic.to_string(), partition);
                let entry = partitions.entry(key.clone()).or_insert((high, None));
                entry.0 = entry.0.max(high);
                moved.push(key);
            }
        }
        self.update_lag(&moved);
    }

    /// Sets the lag of `moved` partitions: those with a known high watermark and a position.
    pub fn update_lag(&self, moved: &[Partition]) {
        if moved.is_empty() {
            return;
        }
        let positions = self.positions.lock().expect("positions lock");
        let mut partitions = self.partitions.lock().expect("kafka metrics lock");
        for key in moved {
            let (Some(&position), Some((high, gauge))) = (positions.get(key), partitions.get_mut(key)) else { continue };
            // A high watermark older than the records already read is behind: no lag then.
            let lag = (*high - position).max(0);
            gauge.get_or_insert_with(|| self.subtask.kafka.lag(&key.0, key.1)).set(lag);
        }
    }
}

/// The part of librdkafka's statistics the lag needs: each partition's high watermark.
#[derive(Deserialize)]
struct Statistics {
    #[serde(default)]
    topics: HashMap<String, TopicStatistics>,
}

#[derive(Deserialize)]
struct TopicStatistics {
    #[serde(default)]
    partitions: HashMap<String, PartitionStatistics>,
}

#[derive(Deserialize)]
struct PartitionStatistics {
    #[serde(default = "unknown")]
    hi_offset: i64,
}

fn unknown() -> i64 {
    -1
}

/// The fetching client's context: its statistics and commit results go to the metrics (when
/// there are any); everything else is librdkafka's default.
pub struct MetricsContext(pub Option<Arc<ConsumerMetrics>>);

impl ClientContext for MetricsContext {
    fn stats_raw(&self, statistics: &[u8]) {
        let Some(m) = &self.0 else { return };
        match serde_json::from_slice::<Statistics>(statistics) {
            Ok(s) => m.highs(
                s.topics
                    .iter()
                    .flat_map(|(topic, t)| t.partitions.iter().filter_map(move |(p, ps)| Some((topic.as_str(), p.parse::<i32>().ok()?, ps.hi_offset)))),
            ),
            Err(e) => tracing::debug!("Kafka consumer statistics not understood: {e}"),
        }
    }
}

impl ConsumerContext for MetricsContext {
    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let (Err(e), Some(m)) = (result, &self.0) {
            tracing::debug!("Kafka offset commit failed: {e}");
            m.commit_failed();
        }
    }
}
