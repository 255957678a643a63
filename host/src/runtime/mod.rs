//! Running a job: subtasks on tokio connected by channels, and the checkpoint coordinator.
//!
//! * [`message`]: what travels on channels (records, in-band barriers, end of input).
//! * [`channel`]: partitioning and barrier alignment.
//! * [`operator`]: what a subtask runs — a wasm instance or a native operator.
//! * [`subtask`]: one subtask's task.
//! * [`job`]: runs a job to its end: options, report, the restart loop.
//! * [`attempt`]: one deployment — channels wired, subtasks instantiated and started.
//! * [`coordinator`]: checkpoints, savepoints and control requests of one attempt.
//! * [`limits`]: the limits a subtask runs under, from the job file.
//! * [`restore`]: turns a checkpoint into each new subtask's initial state (rescale included).
//! * [`keyed_files`]: the shared files of a subtask's keyed state under incremental checkpoints.

pub(crate) mod attempt;
pub mod channel;
mod coordinator;
pub mod job;
mod keyed_files;
pub mod limits;
pub mod message;
pub mod operator;
pub mod restore;
pub mod subtask;

pub use job::{CheckpointStats, JobReport, RestoreFrom, RunOptions, run_job};
