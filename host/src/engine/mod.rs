//! Loading and running operator modules with wasmtime.
//!
//! * [`Engine`]: one per process. Epoch interruption drives both the async yield that keeps a
//!   busy guest from starving other subtasks and the per-call deadline.
//! * [`OperatorModule`]: a component compiled once, checked against the contract and the job
//!   file's grants, and pre-linked ([`InstancePre`](wasmtime::component::InstancePre)).
//! * [`WasmInstance`]: one `Store` per subtask, with typed calls for every lifecycle step.
//! * `wire`: the only place generated types meet the shared vocabulary ([`wasmflow_types`]).

pub mod bindings;
pub mod cache;
pub mod host;
mod instance;
mod module;
pub(crate) mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

pub use instance::{GuestError, WasmInstance};
pub use module::{Capability, ModuleInfo, OperatorModule};

/// How often the epoch advances. A guest yields to the scheduler at every tick, and call
/// deadlines are checked at every tick, so this is also their resolution.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The process-wide wasmtime engine plus the thread that advances its epoch.
#[derive(Clone)]
pub struct Engine {
    inner: wasmtime::Engine,
    _ticker: Arc<Ticker>,
}

struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Engine {
    /// Creates the engine: component model, epoch interruption, bounded guest stack.
    pub fn new() -> anyhow::Result<Engine> {
        let mut config = wasmtime::Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // A deep recursion traps with "call stack exhausted" instead of taking the host down.
        config.max_wasm_stack(1 << 20);
        // `WASMFLOW_PERF_MAP=1`: the JIT writes /tmp/perf-PID.map, so `perf report` names
        // guest functions (docs/authoring.md, writing for speed).
        if std::env::var_os("WASMFLOW_PERF_MAP").is_some_and(|v| v == "1") {
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let inner = wasmtime::Engine::new(&config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, flag) = (inner.clone(), stop.clone());
        std::thread::Builder::new().name("wasmflow-epoch".into()).spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })?;
        Ok(Engine { inner, _ticker: Arc::new(Ticker { stop }) })
    }

    /// The wasmtime engine.
    pub fn wasmtime(&self) -> &wasmtime::Engine {
        &self.inner
    }
}
