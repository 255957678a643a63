//! Host bindings generated from `wit/wasmflow.wit` (the single source of truth).
//!
//! Kafka calls are `async` on the host so a slow broker never blocks a tokio worker; the state,
//! log, clock and files calls are synchronous (they are cheap and bounded). Every import is
//! `trappable` so the host can turn misuse (exceeded limits, a handle used after close) into a
//! trap that fails only the offending subtask.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "operator-module",
    imports: {
        "wasmflow:operator/kafka": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        // Registered by hand (engine/host/input.rs), so `read` lowers the lent batch uncopied.
        "wasmflow:operator/input.input-batch": crate::engine::host::input::InputBatch,
        "wasmflow:operator/state.list-state": crate::engine::host::ListStateHandle,
        "wasmflow:operator/state.broadcast-state": crate::engine::host::BroadcastStateHandle,
        "wasmflow:operator/keyed.value-state": crate::engine::host::KeyedStateHandle,
        "wasmflow:operator/keyed.keyed-list-state": crate::engine::host::KeyedStateHandle,
        "wasmflow:operator/keyed.map-state": crate::engine::host::KeyedStateHandle,
        "wasmflow:operator/kafka.consumer": crate::engine::host::ConsumerHandle,
        "wasmflow:operator/kafka.producer": crate::engine::host::ProducerHandle,
    },
    anyhow: true,
    // Batches travel between subtasks inside `runtime::Message`, which must be serializable so a
    // channel can later cross a machine boundary.
    additional_derives: [serde::Serialize, serde::Deserialize],
});
