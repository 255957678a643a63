//! Native operators (`module = "native:<name>"`): the same operator code compiled into the host
//! runs through the same runtime, produces the same output, and reads and writes the same state
//! as its wasm build — so a job can move an operator between the two across a restore.

use std::path::Path;

use wasmflow_host::checkpoint::CheckpointStorage;
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::{JobReport, RestoreFrom, RunOptions, run_job};
use wasmflow_tests::job::PipelineJob;
use wasmflow_tests::{assert_exactly_once, committed_lines, data_and_counts, native_operators};

async fn run(spec: &JobSpec, restore: Option<RestoreFrom>) -> anyhow::Result<JobReport> {
    run_job(&Engine::new()?, spec, RunOptions { restore, native: native_operators(), ..Default::default() }).await
}

fn with_counter_parallelism(job: &Path, p: u32) -> JobSpec {
    let mut spec = JobSpec::load(job).unwrap();
    spec.operators.iter_mut().find(|o| o.id == "counter").unwrap().parallelism = p;
    spec
}

/// Each counter subtask's total in the newest checkpoint of `dir/checkpoints`.
fn latest_counter_totals(dir: &Path) -> Vec<u64> {
    let storage = wasmflow_host::checkpoint::LocalStorage::new(dir.join("checkpoints")).unwrap();
    let (name, _) = storage.complete_checkpoints().unwrap().into_iter().next().expect("a complete checkpoint");
    wasmflow_tests::counter_totals(&storage.load(&name).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_operators_produce_exactly_the_output_and_state_of_their_wasm_builds() {
    let mut outputs = Vec::new();
    for native in [vec![], vec!["generator", "uppercase", "counter"]] {
        let dir = tempfile::tempdir().unwrap();
        let job = PipelineJob { count: 2000, native, ..Default::default() }.write(dir.path());
        let report = run(&JobSpec::load(&job).unwrap(), None).await.unwrap();
        assert_eq!(report.restarts, 0);
        let (mut data, mut counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
        assert_exactly_once(&data, 2000, "output");
        data.sort();
        counts.sort();
        outputs.push((data, counts, latest_counter_totals(dir.path())));
    }
    assert_eq!(outputs[0], outputs[1], "wasm and native runs differ");
    assert_eq!(outputs[0].2.iter().sum::<u64>(), 2000);
}

/// State written by the wasm counter restores into the native counter at another parallelism
/// and back (docs/state.md: split list state cut into contiguous chunks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_moves_between_wasm_and_native_builds_across_restores_and_rescales() {
    let dir = tempfile::tempdir().unwrap();
    let wasm_job = PipelineJob { count: 1500, ..Default::default() }.write(dir.path());
    run(&with_counter_parallelism(&wasm_job, 3), None).await.unwrap();
    let at_3 = latest_counter_totals(dir.path());
    assert_eq!((at_3.len(), at_3.iter().sum::<u64>()), (3, 1500));

    // The same directory, the counter (and the finished generator) now native, at parallelism 2:
    // old elements [a], [b], [c] → new subtask 0 gets [a, b], subtask 1 gets [c].
    let native_job = PipelineJob { count: 1500, native: vec!["generator", "uppercase", "counter"], ..Default::default() }.write(dir.path());
    run(&with_counter_parallelism(&native_job, 2), Some(RestoreFrom::LatestCheckpoint)).await.unwrap();
    assert_eq!(latest_counter_totals(dir.path()), vec![at_3[0] + at_3[1], at_3[2]]);

    let wasm_job = PipelineJob { count: 1500, ..Default::default() }.write(dir.path());
    run(&with_counter_parallelism(&wasm_job, 1), Some(RestoreFrom::LatestCheckpoint)).await.unwrap();
    assert_eq!(latest_counter_totals(dir.path()), vec![1500]);

    // Every operator was restored as finished (the first run's final checkpoint records it,
    // Flink's FLIP-147): nothing ran again, so the counters' totals, emitted when they closed in
    // the first run, are in the output once — while their state moved across both rescales.
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, 1500, "output over three runs");
    assert_eq!((counts.len(), counts.iter().sum::<u64>()), (3, 1500));
}

/// A panic in native code is caught and handled like a wasm trap: restart from the latest
/// checkpoint with exact state (docs/architecture.md), or fail naming the subtask.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_native_panic_restarts_the_job_or_fails_it_naming_the_subtask() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob {
        count: 3000,
        records_per_second: Some(3000),
        restart_attempts: 1,
        fail_on_key: Some(2500),
        native: vec!["failing-map", "counter"],
        ..Default::default()
    }
    .write(dir.path());
    let report = run(&JobSpec::load(&job).unwrap(), None).await.unwrap();
    assert_eq!(report.restarts, 1);
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, 3000, "no record lost or duplicated");
    assert_eq!(counts.iter().sum::<u64>(), 3000);

    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 500, fail_on_key: Some(100), native: vec!["failing-map"], ..Default::default() }.write(dir.path());
    let err = format!("{:#}", run(&JobSpec::load(&job).unwrap(), None).await.unwrap_err());
    assert!(err.contains("subtask fail[") && err.contains("process trapped: native operator panicked: failing on purpose at key 100"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_native_operators_and_grants_to_native_code_are_rejected_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 10, native: vec!["counter"], ..Default::default() }.write(dir.path());

    let mut spec = JobSpec::load(&job).unwrap();
    spec.operators.iter_mut().find(|o| o.id == "counter").unwrap().module = "native:countr".into();
    let err = format!("{:#}", run(&spec, None).await.unwrap_err());
    assert!(err.contains("operator 'counter': no native operator named 'countr' in this host; it has: counter, dedup, failing-map"), "{err}");

    // The plain CLI host has no native operators.
    let err = format!("{:#}", run_job(&Engine::new().unwrap(), &JobSpec::load(&job).unwrap(), RunOptions::default()).await.unwrap_err());
    assert!(err.contains("this host has none compiled in") && err.contains("point `module` at a .wasm file"), "{err}");

    let mut spec = JobSpec::load(&job).unwrap();
    spec.operators.iter_mut().find(|o| o.id == "counter").unwrap().grants.kafka =
        Some(wasmflow_host::job::KafkaGrant { bootstrap_servers: "127.0.0.1:9".into() });
    let err = format!("{:#}", run(&spec, None).await.unwrap_err());
    assert!(err.contains("operator 'counter': native operators get no capabilities"), "{err}");
}
