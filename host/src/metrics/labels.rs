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
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct EdgeLabels {
    pub operator: String,
    pub subtask: u32,
    pub target: String,
}

/// Checkpoints and savepoints are counted apart: a savepoint is not a checkpoint (it is never
/// used for recovery), and a failed savepoint says something else than a failed checkpoint.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum CheckpointKind {
    Checkpoint,
    Savepoint,
}

impl CheckpointKind {
    /// `savepoint` when `is_savepoint`, else `checkpoint`.
    pub fn of(is_savepoint: bool) -> CheckpointKind {
        if is_savepoint { CheckpointKind::Savepoint } else { CheckpointKind::Checkpoint }
    }
}

impl EncodeLabelValue for CheckpointKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        encoder.write_str(match self {
            CheckpointKind::Checkpoint => "checkpoint",
            CheckpointKind::Savepoint => "savepoint",
        })
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
