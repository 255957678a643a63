//! Running a job: subtasks on tokio connected by channels, and the checkpoint coordinator.
//!
//! * [`message`]: what travels on channels (records, in-band barriers, end of input).
//! * [`channel`]: partitioning and barrier alignment.
//! * [`operator`]: what a subtask runs — a wasm instance or a native operator.
//! * [`subtask`]: one subtask's task.
//! * [`job`]: deploys the subtasks, coordinates checkpoints, restarts on failure.
//! * [`restore`]: turns a checkpoint into each new subtask's initial state (rescale included).

pub mod channel;
pub mod control;
pub mod job;
pub mod message;
pub mod operator;
pub mod restore;
pub mod subtask;

pub use job::{CheckpointStats, JobReport, RestoreFrom, RunOptions, run_job};
