//! Start-up: compile a module cold, load it from the compiled cache, instantiate a subtask.

use std::fmt::Write as _;
use std::path::Path;

use wasmflow_host::engine::cache::{Origin, load_or_compile};
use wasmflow_host::engine::host::StoreData;
use wasmflow_host::engine::{Engine, OperatorModule, WasmInstance};
use wasmflow_host::job::LimitsSpec;
use wasmflow_host::runtime::limits::subtask_limits;
use wasmflow_state::{OperatorStateStore, StateLimits};
use wasmflow_types::SubtaskTag;

use crate::median_us;

pub fn run(module: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(module)?;
    let engine = Engine::new()?;
    let cold = median_us(3, || {
        load_or_compile(engine.wasmtime(), &bytes, None).unwrap();
    });
    let cache = tempfile::tempdir()?;
    load_or_compile(engine.wasmtime(), &bytes, Some(cache.path()))?;
    let cached = median_us(10, || {
        assert_eq!(load_or_compile(engine.wasmtime(), &bytes, Some(cache.path())).unwrap().1, Origin::Cached);
    });
    let m = OperatorModule::from_bytes(&engine, module, &bytes, &Default::default())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (limits, _) = subtask_limits(&LimitsSpec::default(), None);
    let instantiate = median_us(50, || {
        let data = StoreData::new(SubtaskTag { operator: "bench".into(), subtask: 0 }, OperatorStateStore::new(StateLimits::default()).into(), &limits, None);
        rt.block_on(WasmInstance::instantiate(&engine, &m, data, std::time::Duration::from_secs(10))).unwrap();
    });
    let mut s = String::new();
    writeln!(s, "## Start-up ({}, {} KiB)\n", module.file_name().unwrap().to_string_lossy(), bytes.len() / 1024)?;
    writeln!(s, "| step | median | target |\n|---|---|---|")?;
    writeln!(s, "| compile cold (Cranelift) | {:.1} ms | — |", cold / 1000.0)?;
    writeln!(s, "| load from the compiled cache | {:.2} ms | — |", cached / 1000.0)?;
    let verdict = if instantiate < 1000.0 { "met" } else { "missed" };
    writeln!(s, "| instantiate a subtask (InstancePre) | {:.0} µs | under 1 ms from cache: {verdict} |\n", instantiate)?;
    Ok(s)
}
