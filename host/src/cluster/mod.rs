//! Distributed execution: a job's subtasks in worker processes, coordinated by the job manager.
//!
//! `wasmflow run --workers N` makes the job manager (the process that owns the job: checkpoint
//! coordinator, restart strategy, HTTP API, checkpoint storage lease) start N `wasmflow worker`
//! processes, or wait for N started elsewhere. Each worker attaches to the job manager with a
//! control stream and serves a data plane; subtask `i` of every operator runs on worker
//! `i mod N` ([`placement`]). Channels inside a worker stay in-process; channels between
//! workers are gRPC streams ([`network`]) carrying the same messages — records, in-band
//! barriers, watermarks — so alignment and exactly-once work exactly as in one process.
//!
//! * [`protocol`]: the messages; [`codec`]: their encoding; [`grpc`]: the service and calls.
//! * [`auth`]: the shared secret every stream carries.
//! * [`manager`]: the job manager's workers and attempts across them.
//! * [`worker`]: the `wasmflow worker` process.
//! * [`announced`]: a worker's snapshots wait for their checkpoint's announcement.
//!
//! Failure: a worker that dies closes its control stream; the job manager fails the attempt,
//! every worker tears it down, a replacement worker attaches (started by the job manager, or by
//! Kubernetes), and the whole job restores from the last complete checkpoint — Flink's
//! region-less full restart. A job manager that dies takes its workers with it (they exit when
//! their control stream closes); `wasmflow run --resume --workers N` starts over from storage.

pub mod announced;
pub mod auth;
pub mod codec;
pub mod grpc;
pub mod manager;
pub mod network;
pub mod placement;
pub mod protocol;
pub mod worker;

pub use auth::Secret;
pub use manager::{ClusterOptions, WorkerPool};
pub use placement::{Network, Placement, Slice};
pub use protocol::{ChannelId, ToWorker};
