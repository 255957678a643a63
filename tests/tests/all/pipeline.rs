//! The example pipeline end to end: exact output, failure recovery, restart strategy.

use std::path::Path;

use wasmflow_host::checkpoint::load_dir;
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::{JobReport, RunOptions, run_job};
use wasmflow_tests::job::PipelineJob;
use wasmflow_tests::{assert_exactly_once, committed_lines, data_and_counts};

async fn run(job: &Path) -> anyhow::Result<JobReport> {
    let spec = JobSpec::load(job)?;
    run_job(&Engine::new()?, &spec, RunOptions::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_job_emits_every_record_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 2000, ..Default::default() }.write(dir.path());
    let report = run(&job).await.unwrap();
    assert!(!report.completed_checkpoints.is_empty(), "the final checkpoint completes");
    // Statistics for every completed checkpoint; the last one's size is its state files' sizes.
    let ids: Vec<u64> = report.checkpoint_stats.iter().map(|c| c.checkpoint_id).collect();
    assert_eq!(ids, report.completed_checkpoints);
    let last = report.checkpoint_stats.last().unwrap();
    let meta = load_dir(&dir.path().join("checkpoints").join(format!("chk-{}", last.checkpoint_id))).unwrap().metadata;
    let file_bytes: u64 = meta.operators.values().flat_map(|o| o.subtasks.iter().map(|f| f.size)).sum();
    assert_eq!(last.state_bytes, file_bytes);
    assert!(last.max_sync <= last.duration);
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, 2000, "output");
    assert_eq!(counts.len(), 3, "one total per counter subtask");
    assert_eq!(counts.iter().sum::<u64>(), 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_checkpoints_the_sink_commits_at_end_of_input() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 300, checkpoint_interval_ms: None, ..Default::default() }.write(dir.path());
    let report = run(&job).await.unwrap();
    assert!(report.completed_checkpoints.is_empty());
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, 300, "output");
    assert_eq!(counts.iter().sum::<u64>(), 300);
}

/// A trap in one subtask restarts the job from the latest complete checkpoint (fixed-delay
/// restart strategy); state and output stay exactly-once: docs/architecture.md.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_restarts_from_the_latest_checkpoint_with_exact_state() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 3000, records_per_second: Some(3000), restart_attempts: 1, fail_on_key: Some(2500), ..Default::default() }.write(dir.path());
    let report = run(&job).await.unwrap();
    assert_eq!(report.restarts, 1);
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, 3000, "no record lost or duplicated");
    assert_eq!(counts.iter().sum::<u64>(), 3000, "counter state exact after recovery");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_restarts_a_trap_fails_the_job_naming_the_subtask() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 500, fail_on_key: Some(100), ..Default::default() }.write(dir.path());
    let err = format!("{:#}", run(&job).await.unwrap_err());
    assert!(err.contains("job failed (restart strategy: 0 restart(s) allowed, 0 used)"), "{err}");
    assert!(err.contains("subtask fail[") && err.contains("process trapped"), "{err}");
}

/// `jobs/example.toml` itself (the job `make example` runs), with its output and checkpoint
/// directories moved into a temporary directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_job_file_produces_its_exact_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = JobSpec::load(&wasmflow_tests::workspace_root().join("jobs/example.toml")).unwrap();
    spec.checkpoints.as_mut().unwrap().dir = dir.path().join("checkpoints");
    spec.operators.iter_mut().find(|o| o.id == "out").unwrap().grants.files = Some(dir.path().join("out"));
    let report = run_job(&Engine::new().unwrap(), &spec, RunOptions::default()).await.unwrap();
    assert_eq!(report.restarts, 0);
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, 1000, "example job");
    assert_eq!(counts.len(), 3, "counter parallelism 3");
    assert_eq!(counts.iter().sum::<u64>(), 1000);
}

/// Logs going to a file or a pipe are plain text: no ANSI colour codes (they used to be there
/// whatever stderr was). A terminal still gets colour unless NO_COLOR is set.
#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 100, ..Default::default() }.write(dir.path());
    let out = std::process::Command::new(wasmflow_tests::wasmflow_bin()).arg("run").arg(&job).output().unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("checkpoint") && stderr.contains(" INFO "), "logs were written: {stderr}");
    assert!(!stderr.contains('\x1b'), "no escape sequences in piped logs: {stderr:?}");
}

/// `--parallelism` overrides are checked like the job file: a forward edge between operators
/// that would differ in parallelism used to pass, then hang the job and lose records. It now
/// fails at once with the job file's message; out-of-range values are refused too.
#[test]
fn a_parallelism_override_that_breaks_a_forward_edge_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob::default().write(dir.path());
    let run = |p: &str| std::process::Command::new(wasmflow_tests::wasmflow_bin()).arg("run").arg(&job).args(["--parallelism", p]).output().unwrap();
    let out = run("upper=3");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("after --parallelism upper=3:"), "{stderr}");
    assert!(stderr.contains("edges[0] 'numbers' -> 'upper' is forward but parallelisms differ (2 vs 3)"), "{stderr}");
    for bad in ["upper=0", "upper=1025"] {
        let stderr = String::from_utf8_lossy(&run(bad).stderr).to_string();
        assert!(stderr.contains(&format!("--parallelism {bad}: parallelism must be between 1 and 1024")), "{stderr}");
    }
}
