//! Who a subtask is, what kind of operator it runs, and what a source's poll says.

use std::fmt;

/// What kind of operator a module implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OperatorKind {
    /// Produces records when polled; has no input.
    Source,
    /// Consumes batches and emits batches.
    Transform,
    /// Consumes batches and emits nothing downstream.
    Sink,
}

impl fmt::Display for OperatorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OperatorKind::Source => "source",
            OperatorKind::Transform => "transform",
            OperatorKind::Sink => "sink",
        })
    }
}

/// What a source's `poll` returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollStatus {
    /// Records may have been emitted; poll again.
    Ready,
    /// Nothing to do now (Flink's `markAsTemporarilyIdle`); poll again after this many ms.
    Idle(u32),
    /// A bounded source has emitted everything.
    Finished,
}

/// What one poll of a source produced (Flink's `SourceContext`: records, a watermark, idleness).
#[derive(Debug)]
pub struct SourceOutput {
    /// The records, emitted before the watermark.
    pub batch: crate::Batch,
    /// Poll again, wait, or finished.
    pub status: PollStatus,
    /// The watermark to emit after the records.
    pub watermark: Option<i64>,
    /// The source's output is idle until it emits again.
    pub idle: bool,
}

impl SourceOutput {
    /// Records and a status, no watermark.
    pub fn records(batch: crate::Batch, status: PollStatus) -> SourceOutput {
        SourceOutput { batch, status, watermark: None, idle: false }
    }
}

/// Identity of one subtask, as Flink's `RuntimeContext` gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskInfo {
    /// Operator id from the job file (stable across restarts; state is matched by it).
    pub operator_id: String,
    /// Index of this subtask, from 0.
    pub subtask_index: u32,
    /// Parallelism of the operator.
    pub parallelism: u32,
    /// Whether the job takes checkpoints.
    pub checkpointing_enabled: bool,
    /// Execution attempt of the job: strictly increases at every start, restart or restore from
    /// the same checkpoint directory.
    pub attempt: u64,
}

/// Names a subtask in logs and errors: `operator[subtask]`.
///
/// ```
/// let tag = wasmflow_types::SubtaskTag { operator: "count".into(), subtask: 2 };
/// assert_eq!(tag.to_string(), "count[2]");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct SubtaskTag {
    /// The operator's id.
    pub operator: String,
    /// The subtask's index.
    pub subtask: u32,
}

impl fmt::Display for SubtaskTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.operator, self.subtask)
    }
}

/// Severity of an operator's log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected but handled.
    Warn,
    /// A failure.
    Error,
}
