//! Operator chaining (docs/architecture.md, chaining): chained and unchained runs of the same
//! job produce the same records and the same operator state, and a savepoint taken with chaining
//! on restores with it off and the other way round.

use std::sync::Arc;
use std::time::Duration;

use wasmflow_host::engine::Engine;
use wasmflow_host::job::{Chain, JobSpec};
use wasmflow_host::metrics::JobMetrics;
use wasmflow_host::runtime::{RestoreFrom, RunOptions, run_job};
use wasmflow_tests::job::PipelineJob;
use wasmflow_tests::{assert_exactly_once, committed_lines, data_and_counts};

/// generator → uppercase (forward) → counter (key-hash) → sink (forward): two chains when
/// chaining is on.
fn pipeline(count: u64, rate: Option<u32>, chaining: bool) -> PipelineJob {
    PipelineJob {
        count,
        records_per_second: rate,
        counter_parallelism: 2,
        sink_parallelism: 2,
        counter_to_sink: "forward",
        chaining: Some(chaining),
        ..Default::default()
    }
}

fn chains(spec: &JobSpec) -> Vec<String> {
    spec.chains().iter().map(Chain::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_and_unchained_runs_commit_the_same_records_counts_and_metrics() {
    let count = 3000;
    for chaining in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let spec = JobSpec::load(&pipeline(count, None, chaining).write(dir.path())).unwrap();
        let expected_chains: Vec<&str> = if chaining { vec!["numbers -> upper", "counter -> out"] } else { vec!["numbers", "upper", "counter", "out"] };
        assert_eq!(chains(&spec), expected_chains);
        let metrics = Arc::new(JobMetrics::new("pipeline"));
        let report = run_job(&Engine::new().unwrap(), &spec, RunOptions { metrics: Some(metrics.clone()), ..Default::default() }).await.unwrap();
        assert!(!report.stopped);
        let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
        assert_exactly_once(&data, count, &format!("chaining = {chaining}"));
        assert_eq!(counts.len(), 2, "one count per counter subtask");
        assert_eq!(counts.iter().sum::<u64>(), count, "chaining = {chaining}");
        // Metrics stay per operator inside a chain.
        let records = metrics.records();
        let get = |op: &str| records.iter().find(|(id, _, _)| id == op).map(|(_, i, o)| (*i, *o)).unwrap();
        assert_eq!(get("numbers"), (0, count), "chaining = {chaining}");
        assert_eq!(get("upper"), (count, count), "chaining = {chaining}");
        // The counter passes every record through and emits one count per subtask at the end.
        assert_eq!(get("counter"), (count, count + 2), "chaining = {chaining}");
        assert_eq!(get("out"), (count + 2, 0), "chaining = {chaining}");
    }
}

/// Chaining changes how batches move, not what a checkpoint holds: a savepoint taken with one
/// setting restores with the other, every record exactly once and the counts exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_restores_across_a_change_of_chaining() {
    let count = 4000;
    for (before, after) in [(true, false), (false, true)] {
        let dir = tempfile::tempdir().unwrap();
        let job = pipeline(count, Some(2000), before).write(dir.path());
        let spec = JobSpec::load(&job).unwrap();
        let savepoint = wasmflow_tests::run_then_stop(&spec, Duration::from_millis(700), Some(&dir.path().join("sp"))).await.expect("a savepoint");
        let totals = wasmflow_tests::counter_totals(&wasmflow_host::checkpoint::load_dir(&savepoint).unwrap());
        let at_savepoint: u64 = totals.iter().sum();
        assert!(at_savepoint > 0 && at_savepoint < count, "savepoint in mid-run: {at_savepoint}");

        let job = pipeline(count, Some(20_000), after).write(dir.path());
        let spec = JobSpec::load(&job).unwrap();
        let options = RunOptions { restore: Some(RestoreFrom::Savepoint(savepoint.into())), ..Default::default() };
        let report = run_job(&Engine::new().unwrap(), &spec, options).await.unwrap();
        assert!(!report.stopped);
        let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
        assert_exactly_once(&data, count, &format!("savepoint with chaining {before}, restored with {after}"));
        assert_eq!(counts.iter().sum::<u64>(), count, "counts exact, chaining {before} -> {after}");
    }
}

/// A failure inside a chain fails the attempt; the restart restores every member of the chain
/// from the last checkpoint, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_inside_a_chain_restarts_it_exactly_once() {
    let count = 3000;
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { fail_on_key: Some(1700), restart_attempts: 1, records_per_second: Some(6000), ..pipeline(count, None, true) };
    let spec = JobSpec::load(&job.write(dir.path())).unwrap();
    assert_eq!(chains(&spec), vec!["numbers -> upper -> fail", "counter -> out"]);
    let report = run_job(&Engine::new().unwrap(), &spec, RunOptions::default()).await.unwrap();
    assert_eq!(report.restarts, 1);
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "after a failure in the chain");
    assert_eq!(counts.iter().sum::<u64>(), count);
}

/// `wasmflow run` says which tasks it built.
#[test]
fn wasmflow_run_shows_its_chains() {
    for (chaining, expected) in
        [(true, "tasks: numbers -> upper (x2), counter -> out (x2)"), (false, "tasks (chaining off): numbers (x2), upper (x2), counter (x2), out (x2)")]
    {
        let dir = tempfile::tempdir().unwrap();
        let job = pipeline(200, None, chaining).write(dir.path());
        let out = std::process::Command::new(wasmflow_tests::wasmflow_bin()).arg("run").arg(&job).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.lines().any(|l| l == format!("wasmflow: {expected}")), "{stderr}");
    }
}
