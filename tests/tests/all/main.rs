//! wasmflow's end-to-end tests, one test binary grouped by feature (as wasmtime's `tests/all`):
//! real wasm operators, real checkpoints on disk, the real `wasmflow` CLI and a real Kafka broker
//! (tansu). One binary links wasmtime and rdkafka once instead of once per feature.
//!
//! Run one feature with `cargo test -p wasmflow-tests --release -- kafka_source::`.

mod api;
mod chaining;
mod checkpoints;
mod cli;
mod dashboard;
mod data_path;
mod deploy;
mod distributed;
mod durability;
mod kafka_connector;
mod kafka_source;
mod keyed;
mod metrics;
mod native;
mod object_storage;
mod pipeline;
mod recovery;
mod sandbox;
mod scaffold;
