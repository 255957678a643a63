//! What a running job says about itself, as the HTTP API serves it (`GET /v1/job`,
//! `/v1/checkpoints`, `/v1/exceptions`): plain serde types, described in the OpenAPI document.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::job::{JobSpec, Partitioning};

/// Where the job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    /// Operators are being loaded and the first attempt deployed.
    Created,
    /// An attempt runs.
    Running,
    /// An attempt failed; the job waits out the restart delay.
    Restarting,
    /// Every source emitted everything and the final checkpoint completed.
    Finished,
    /// Stopped by `wasmflow stop` / `POST /v1/stop` or a signal.
    Stopped,
    /// Failed past its restart strategy.
    Failed,
}

/// `GET /v1/job`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    /// `[job] name` (empty when unnamed).
    pub name: String,
    pub state: JobState,
    /// The running attempt's number (restarts and earlier runs count up).
    pub attempt: u64,
    /// Restarts after failures in this run.
    pub restarts: u32,
    /// When this `wasmflow run` started, milliseconds since the Unix epoch.
    pub started_at_ms: u64,
    /// The job file.
    pub job_file: String,
    pub operators: Vec<OperatorView>,
    pub edges: Vec<EdgeView>,
    /// The tasks: operators chained together, head first.
    pub chains: Vec<Vec<String>>,
    /// The newest completed checkpoint, if any.
    pub last_checkpoint: Option<u64>,
}

/// One operator of the job graph.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OperatorView {
    pub id: String,
    /// The module path as the job file names it (or `native:<name>`).
    pub module: String,
    pub parallelism: u32,
    /// Whether it has keyed state (an input partitioned by key).
    pub keyed: bool,
    /// Index into [`JobView::chains`].
    pub chain: usize,
}

/// One edge of the job graph.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EdgeView {
    pub from: String,
    pub to: String,
    /// `forward`, `rebalance` or `key-hash`.
    pub partitioning: String,
    /// Whether the two operators run in one task.
    pub chained: bool,
}

/// What kind of snapshot. Checkpoints and savepoints are told apart everywhere they are counted
/// or shown: a savepoint is not a checkpoint (it is never used for recovery), and a failed
/// savepoint says something else than a failed checkpoint.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointKind {
    Checkpoint,
    Savepoint,
}

impl CheckpointKind {
    /// `Savepoint` when `is_savepoint`, else `Checkpoint`.
    pub fn of(is_savepoint: bool) -> CheckpointKind {
        if is_savepoint { CheckpointKind::Savepoint } else { CheckpointKind::Checkpoint }
    }

    /// `checkpoint` or `savepoint`: the word in `_metadata`, metric labels and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckpointKind::Checkpoint => "checkpoint",
            CheckpointKind::Savepoint => "savepoint",
        }
    }
}

/// Where a checkpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CheckpointStatus {
    InProgress,
    Completed,
    Failed,
}

/// One checkpoint or savepoint, as Flink's checkpoint history shows it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub id: u64,
    pub kind: CheckpointKind,
    pub status: CheckpointStatus,
    /// The attempt that took it.
    pub attempt: u64,
    /// Trigger time, milliseconds since the Unix epoch.
    pub triggered_at_ms: u64,
    /// Trigger → complete (or → failed); `None` while in progress.
    pub duration_ms: Option<f64>,
    /// The longest synchronous snapshot phase of any subtask.
    pub max_sync_ms: f64,
    /// Bytes written for it (with incremental checkpoints only what changed).
    pub state_bytes: u64,
    /// Bytes of state it consists of, shared files it builds on included.
    pub total_bytes: u64,
    /// Where it is (completed ones).
    pub location: Option<String>,
    /// Why it failed.
    pub failure: Option<String>,
    /// Acknowledgements received so far, in arrival order.
    pub acks: Vec<AckView>,
}

/// One subtask's acknowledgement of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AckView {
    pub operator: String,
    pub subtask: u32,
    /// Trigger → this acknowledgement.
    pub after_ms: f64,
    /// The subtask's synchronous snapshot phase.
    pub sync_ms: f64,
    /// Bytes it wrote for this checkpoint.
    pub state_bytes: u64,
}

/// `GET /v1/checkpoints`: counts and the newest checkpoints, newest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CheckpointHistory {
    pub completed: u64,
    pub failed: u64,
    pub in_progress: u64,
    /// At most [`super::HISTORY`] entries, newest first.
    pub history: Vec<CheckpointView>,
}

/// One failure that restarted (or ended) the job.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ExceptionView {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The attempt that failed.
    pub attempt: u64,
    /// The failing operator and subtask, when a subtask failed (not e.g. a checkpoint rule).
    pub operator: Option<String>,
    pub subtask: Option<u32>,
    /// The error, causes included.
    pub message: String,
    /// The guest's stack (wasm frames), when it trapped.
    pub backtrace: Vec<String>,
    /// Whether the job restarted after it (false: the restart strategy was exhausted).
    pub restarted: bool,
}

/// `GET /v1/exceptions`: newest first.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ExceptionHistory {
    /// Failures since the job started (more than `exceptions` holds, if old ones were dropped).
    pub total: u64,
    pub exceptions: Vec<ExceptionView>,
}

impl JobView {
    /// The graph of `job`, before anything runs.
    pub fn of(job: &JobSpec, started_at_ms: u64) -> JobView {
        let chains: Vec<Vec<String>> = job.chains().into_iter().map(|c| c.operators).collect();
        let chain_of = |id: &str| chains.iter().position(|c| c.iter().any(|o| o == id)).unwrap_or(0);
        JobView {
            name: job.job.name.clone().unwrap_or_default(),
            state: JobState::Created,
            attempt: 0,
            restarts: 0,
            started_at_ms,
            job_file: job.path.display().to_string(),
            operators: job
                .operators
                .iter()
                .map(|o| OperatorView {
                    id: o.id.clone(),
                    module: o.module.display().to_string(),
                    parallelism: o.parallelism,
                    keyed: job.is_keyed(&o.id),
                    chain: chain_of(&o.id),
                })
                .collect(),
            edges: job
                .edges
                .iter()
                .enumerate()
                .map(|(i, e)| EdgeView {
                    from: e.from.clone(),
                    to: e.to.clone(),
                    partitioning: match e.partitioning {
                        Partitioning::Forward => "forward",
                        Partitioning::Rebalance => "rebalance",
                        Partitioning::KeyHash => "key-hash",
                    }
                    .into(),
                    chained: job.is_chained(i),
                })
                .collect(),
            chains,
            last_checkpoint: None,
        }
    }
}
