//! # wasmflow host
//!
//! The native half of wasmflow: it loads operators compiled to WebAssembly components, wires them
//! into a job, and owns everything durable — operator state, checkpoints, savepoints, restore and
//! rescale — with Apache Flink's semantics.
//!
//! One module per concept:
//! * [`job`]: the job file.
//! * [`instance`]: the lifecycle every operator goes through, whether wasm or native.
//! * [`engine`]: wasmtime engine, module loading, one store per subtask, the host side of the
//!   contract's imports.
//! * [`native`]: operators compiled into the host (trusted, not sandboxed), for embedders.
//! * [`runtime`]: subtasks on tokio, channels, partitioning, barriers.
//! * [`checkpoint`]: durable checkpoints and savepoints.
//! * [`connectors`]: the Kafka capability.
//! * [`status`]: what a running job records about itself (graph, checkpoint history, failures).
//! * [`api`]: the running job's HTTP API and dashboard.
//! * [`metrics`]: the Prometheus metrics of a run.
pub mod api;
pub mod build;
pub mod checkpoint;
pub mod cli;
pub mod cluster;
pub mod connectors;
pub mod engine;
pub mod inspect;
pub mod instance;
pub mod job;
pub mod metrics;
pub mod native;
pub mod runtime;
pub mod scaffold;
pub mod status;
pub mod untrusted;
