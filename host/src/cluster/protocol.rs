//! What the job manager and its workers say to each other: serde types, sent in the one bincode
//! codec ([`super::grpc`]).
//!
//! * The **control stream** (one per worker, opened by the worker): [`FromWorker`] up,
//!   [`ToWorker`] down. Losing it is how the job manager learns a worker died.
//! * The **data plane** (one stream per channel that crosses workers, opened by the sending
//!   worker): a [`DataFrame::Open`] naming the channel, then the channel's [`Message`]s in order —
//!   records, barriers (in-band, so alignment works as in one process), watermarks, end of input.

use serde::{Deserialize, Serialize};
use wasmflow_types::SubtaskTag;

use crate::metrics::SubtaskSample;
use crate::metrics::labels::EdgeLabels;
use crate::runtime::message::Message;
use crate::runtime::subtask::{Control, Event};

/// Job manager → worker.
#[derive(Debug, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run your slice of an attempt.
    Deploy(Box<Deployment>),
    /// Checkpoint `id` is about to be triggered; a savepoint's files go to `savepoint` (a
    /// location the job manager created). Sent to every worker before any source is triggered.
    Announce { id: u64, savepoint: Option<String> },
    /// A control for one of your subtasks (the chain whose head is `tag`).
    Control { attempt: u64, tag: SubtaskTag, control: Control },
    /// Tear attempt `attempt` down: abort its subtasks and data streams.
    Cancel { attempt: u64 },
}

/// One worker's part of an attempt.
#[derive(Debug, Serialize, Deserialize)]
pub struct Deployment {
    pub attempt: u64,
    /// The job file's path (relative paths in it resolve against its directory) and its
    /// effective text: the file with `--set`, `WASMFLOW__*` and `--parallelism` applied, so
    /// every worker runs exactly the job the job manager checked.
    pub job_path: String,
    pub job_text: String,
    /// The checkpoint or savepoint to restore from (a directory or an object-store URL).
    pub restore: Option<String>,
    pub allow_non_restored_state: bool,
    /// Which worker you are, and every worker's data-plane address, by worker index.
    pub worker: u32,
    pub data_addresses: Vec<String>,
}

/// Worker → job manager.
#[derive(Debug, Serialize, Deserialize)]
pub enum FromWorker {
    /// The first message on a control stream: where this worker's data plane listens.
    Hello { data_address: String, pid: u32 },
    /// The slice of `attempt` is instantiated, restored and running.
    Deployed { attempt: u64 },
    /// The slice could not be deployed.
    DeployFailed { attempt: u64, message: String },
    /// A subtask's report (acks, declines, finished, failed).
    Event { attempt: u64, event: Event },
    /// The counts of the slice's subtasks so far and the fill of their output channels (every
    /// second, and before `Stopped`), for the job manager's metrics, status and dashboard.
    Metrics { attempt: u64, subtasks: Vec<(SubtaskTag, SubtaskSample)>, channels: Vec<(EdgeLabels, f64)> },
    /// Every subtask of the slice has ended (after a shutdown).
    Stopped { attempt: u64 },
}

/// A channel between two subtasks: edge `edge` (its index in the job file) from upstream
/// subtask `from` to downstream subtask `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChannelId {
    pub edge: usize,
    pub from: u32,
    pub to: u32,
}

/// One frame of a data stream.
#[derive(Debug, Serialize, Deserialize)]
pub enum DataFrame {
    /// The first frame: which channel of which attempt this stream carries.
    Open {
        attempt: u64,
        channel: ChannelId,
    },
    Message(Message),
}
