//! Kafka metrics: consumer lag per partition and failed offset commits.
//!
//! The Kafka source is a guest; the host runs its client (`connectors/kafka/`) and so sees what
//! the guest cannot misreport: the next offset it hands the guest per partition, and each
//! partition's high watermark. Lag is *high watermark − next offset to read*: the records the
//! subtask has yet to take, Flink's `records-lag` and Kafka's consumer lag (which counts from
//! the committed offset instead, and so lags by up to a checkpoint interval).
//!
//! The high watermarks come for free: librdkafka's statistics (once a second) and the
//! end offsets the source asks for itself. The lag of a partition is updated when a fetch hands
//! its records to the guest and when statistics arrive: per fetch and per second, never per
//! record, and never a request to the broker of its own.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use serde::Serialize;

use super::labels::{PartitionLabels, SubtaskLabels};

/// The Kafka families of a run.
#[derive(Debug)]
pub(super) struct KafkaFamilies {
    lag: Family<PartitionLabels, Gauge>,
    commit_failures: Family<SubtaskLabels, Counter>,
    /// Every lag series, for [`super::JobMetrics::kafka_lag`] (a family cannot be listed).
    index: Mutex<BTreeMap<PartitionLabels, Gauge>>,
}

impl KafkaFamilies {
    pub(super) fn register(registry: &mut Registry) -> Arc<KafkaFamilies> {
        let f = KafkaFamilies { lag: Family::default(), commit_failures: Family::default(), index: Mutex::default() };
        registry.register_with_unit(
            "kafka_consumer_lag",
            "Records of the partition the subtask has yet to read: high watermark minus the next offset handed to the operator.",
            Unit::Other("records".into()),
            f.lag.clone(),
        );
        registry.register(
            "kafka_commit_failures",
            "Offset commits to the consumer group that failed (they do not fail the job: the checkpoint holds the offsets).",
            f.commit_failures.clone(),
        );
        Arc::new(f)
    }

    pub(super) fn lag(&self) -> Vec<KafkaLagView> {
        self.index
            .lock()
            .expect("kafka lag index lock")
            .iter()
            .map(|(l, g)| KafkaLagView { operator: l.operator.clone(), subtask: l.subtask, topic: l.topic.clone(), partition: l.partition, lag: g.get() })
            .collect()
    }
}

/// One partition's lag, as `GET /v1/job` and a dashboard show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct KafkaLagView {
    pub operator: String,
    pub subtask: u32,
    pub topic: String,
    pub partition: i32,
    /// Records yet to read.
    pub lag: i64,
}

/// The Kafka series of one subtask, for the clients its guest creates.
#[derive(Clone, Debug)]
pub struct SubtaskKafka {
    families: Arc<KafkaFamilies>,
    labels: SubtaskLabels,
}

impl SubtaskKafka {
    pub(super) fn new(families: Arc<KafkaFamilies>, labels: SubtaskLabels) -> SubtaskKafka {
        SubtaskKafka { families, labels }
    }

    /// The lag series of a partition (created, at zero, if new).
    pub fn lag(&self, topic: &str, partition: i32) -> Gauge {
        let labels = PartitionLabels { operator: self.labels.operator.clone(), subtask: self.labels.subtask, topic: topic.to_string(), partition };
        let gauge = self.families.lag.get_or_create_owned(&labels);
        self.families.index.lock().expect("kafka lag index lock").entry(labels).or_insert_with(|| gauge.clone());
        gauge
    }

    /// The commit-failure counter of the subtask (created, at zero, with its first consumer: a
    /// subtask that reads no Kafka has none).
    pub fn commit_failures(&self) -> Counter {
        self.families.commit_failures.get_or_create_owned(&self.labels)
    }

    /// The lag of every partition the subtask reads: (topic, partition, lag).
    pub(super) fn lags(&self) -> Vec<(String, i32, i64)> {
        let index = self.families.index.lock().expect("kafka lag index lock");
        index
            .iter()
            .filter(|(l, _)| l.operator == self.labels.operator && l.subtask == self.labels.subtask)
            .map(|(l, g)| (l.topic.clone(), l.partition, g.get()))
            .collect()
    }

    /// Offset commits that failed so far (0 for a subtask that reads no Kafka).
    pub(super) fn commit_failures_so_far(&self) -> u64 {
        self.families.commit_failures.get(&self.labels).map_or(0, |c| c.get())
    }
}
