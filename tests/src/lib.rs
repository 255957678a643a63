//! Support code for the end-to-end tests: where the built operators and the `wasmflow` binary
//! are, job files written into temporary directories, and reading a sink's committed output.
//!
//! The tests need `make operators` (which `make test` runs first); a missing artifact is a
//! failure with that instruction, never a silent skip.

pub mod broker;
pub mod job;
pub mod openmetrics;
pub mod s3;

use std::path::{Path, PathBuf};

use wasmflow_host::native::NativeRegistry;

/// The example operators compiled natively, registered under their crate names
/// (`module = "native:generator"` …), for jobs that compare or mix wasm and native code.
pub fn native_operators() -> NativeRegistry {
    let mut r = NativeRegistry::default();
    r.register::<wasmflow_op_generator::WasmflowOperator>("generator")
        .register::<wasmflow_op_uppercase::WasmflowOperator>("uppercase")
        .register::<wasmflow_op_counter::WasmflowOperator>("counter")
        .register::<wasmflow_op_failing_map::WasmflowOperator>("failing-map")
        .register::<wasmflow_op_null_sink::WasmflowOperator>("null-sink")
        .register::<wasmflow_op_window_count::WasmflowOperator>("window-count")
        .register::<wasmflow_op_dedup::WasmflowOperator>("dedup");
    r
}

/// The repository root.
/// Polls `done` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(what: &str, timeout: std::time::Duration, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out after {timeout:?} waiting until {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// A tool `make tools` installs: `$<env>` if set, else `<tools folder>/bin/<name>` (the tools
/// folder is `$WASMFLOW_TOOLS`, else `.tools/` in the workspace).
pub fn tool_bin(name: &str, env: &str) -> PathBuf {
    let path = std::env::var_os(env).map(PathBuf::from).unwrap_or_else(|| tools_dir().join("bin").join(name));
    assert!(path.exists(), "{} is missing: run `make tools` (make test does)", path.display());
    path
}

/// The tools folder (`$WASMFLOW_TOOLS`, else `.tools/` in the workspace).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("WASMFLOW_TOOLS").map(PathBuf::from).unwrap_or_else(|| workspace_root().join(".tools"))
}

/// Where cargo builds (`CARGO_TARGET_DIR`, else `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target"))
}

/// The component of operator crate `operators/<name>`, as built by `make operators`.
pub fn operator(name: &str) -> PathBuf {
    let path = target_dir().join("operators").join(format!("wasmflow_op_{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "{} is missing: run `make operators` first (make test does)", path.display());
    path
}

/// The release `wasmflow` binary, as built by `make host`.
pub fn wasmflow_bin() -> PathBuf {
    let path = target_dir().join("release").join("wasmflow");
    assert!(path.exists(), "{} is missing: run `make host` first (make test does)", path.display());
    path
}

/// Every committed line in a files-sink directory (pending files are not output), sorted.
pub fn committed_lines(dir: &Path) -> Vec<String> {
    let mut lines = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().into_string().unwrap_or_default();
            if name.starts_with("part-") {
                lines.extend(std::fs::read_to_string(e.path()).expect("readable").lines().map(String::from));
            }
        }
    }
    lines.sort();
    lines
}

/// Splits sink output of the example pipeline into data lines and the counters' totals.
pub fn data_and_counts(lines: &[String]) -> (Vec<String>, Vec<u64>) {
    let (counts, data): (Vec<&String>, Vec<&String>) = lines.iter().partition(|l| l.bytes().all(|b| b.is_ascii_digit()));
    (data.into_iter().cloned().collect(), counts.iter().map(|c| c.parse().expect("digits")).collect())
}

/// The values the generator emits for `0..count`, upper-cased, sorted like `committed_lines`.
pub fn expected_records(count: u64) -> Vec<String> {
    let mut v: Vec<String> = (0..count).map(|n| format!("RECORD-{n}")).collect();
    v.sort();
    v
}

/// Asserts that `data` holds every expected record exactly once; on failure says how many are
/// missing or duplicated (and a few examples) instead of printing thousands of lines.
pub fn assert_exactly_once(data: &[String], count: u64, context: &str) {
    use std::collections::BTreeMap;
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for d in data {
        *seen.entry(d.as_str()).or_default() += 1;
    }
    let expected = expected_records(count);
    let missing: Vec<&String> = expected.iter().filter(|e| !seen.contains_key(e.as_str())).collect();
    let duplicated: Vec<(&&str, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    let unexpected = data.len() - (expected.len() - missing.len()) - duplicated.iter().map(|(_, n)| *n - 1).sum::<usize>();
    assert!(
        missing.is_empty() && duplicated.is_empty() && unexpected == 0,
        "{context}: {} records missing (e.g. {:?}), {} duplicated (e.g. {:?}), {unexpected} unexpected, out of {count}",
        missing.len(),
        missing.iter().take(5).collect::<Vec<_>>(),
        duplicated.len(),
        duplicated.iter().take(5).collect::<Vec<_>>(),
    );
}

/// Each `counter` subtask's total in a checkpoint or savepoint, decoded by `inspect` (the view
/// `wasmflow inspect --json` prints).
pub fn counter_totals(checkpoint: &wasmflow_host::checkpoint::LoadedCheckpoint) -> Vec<u64> {
    let view = wasmflow_host::inspect::describe(checkpoint);
    view["operators"]["counter"]["subtasks"]
        .as_array()
        .expect("a counter operator in the checkpoint")
        .iter()
        .map(|s| s["states"][0]["entries"].as_array().expect("count entries").iter().map(|e| e.as_u64().expect("a count")).sum())
        .collect()
}

/// Runs `spec` for `after`, then stops it — with a savepoint into `savepoint` if given — and
/// returns the savepoint's path. Fails if the job ended by itself first (make it run longer).
pub async fn run_then_stop(spec: &wasmflow_host::job::JobSpec, after: std::time::Duration, savepoint: Option<&Path>) -> Option<PathBuf> {
    run_then_stop_at(spec, after, savepoint.map(|p| p.to_path_buf().into())).await.map(|l| l.as_local().expect("a local savepoint").to_path_buf())
}

/// [`run_then_stop`] with a savepoint target anywhere (a directory or an object-store prefix).
pub async fn run_then_stop_at(
    spec: &wasmflow_host::job::JobSpec,
    after: std::time::Duration,
    savepoint: Option<wasmflow_host::checkpoint::Location>,
) -> Option<wasmflow_host::checkpoint::Location> {
    use wasmflow_host::runtime::job::ControlRequest;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let engine = wasmflow_host::engine::Engine::new().unwrap();
    let job = wasmflow_host::runtime::run_job(&engine, spec, wasmflow_host::runtime::RunOptions { control: Some(rx), ..Default::default() });
    let stopper = async {
        tokio::time::sleep(after).await;
        let (reply, answer) = tokio::sync::oneshot::channel();
        tx.send(ControlRequest::Stop { savepoint, reply }).await.expect("the job ended before the stop: make it run longer");
        answer.await.unwrap().unwrap()
    };
    let (report, path) = tokio::join!(job, stopper);
    assert!(report.unwrap().stopped, "the job was stopped, not finished: make it run longer");
    path
}
