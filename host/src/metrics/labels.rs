//! The label sets of wasmflow's metric families.
//!
//! Labels follow Flink's scopes: `operator` is the operator id from the job file and `subtask`
//! its subtask index, so a series names the same thing a checkpoint, a log line or
//! `wasmflow inspect` does. The job itself is not a label: one `wasmflow run` process runs one
//! job, so Prometheus's target labels (`job`, `instance`) already tell jobs apart, and the job's
//! name is on one series of its own, `wasmflow_job_info` (see [`super::JobMetrics`]).

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

/// One operator subtask.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct SubtaskLabels {
    pub operator: String,
    pub subtask: u32,
}

/// One Kafka partition read by one operator subtask.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct PartitionLabels {
    pub operator: String,
    pub subtask: u32,
    pub topic: String,
    pub partition: i32,
}

/// The channels of one edge leaving one operator subtask (`target` is the downstream operator).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet, serde::Serialize, serde::Deserialize)]
pub struct EdgeLabels {
    pub operator: String,
    pub subtask: u32,
    pub target: String,
}

pub use crate::status::view::CheckpointKind;

impl EncodeLabelValue for CheckpointKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(self.as_str())
    }
}

/// A [`CheckpointKind`] as a label set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: CheckpointKind,
}

/// The job's name, on `wasmflow_job_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job_name: String,
}
