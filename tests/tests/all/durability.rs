//! Durability at the edges: what is on disk stays right when the job's own bookkeeping is lost,
//! rolled back or contended (docs/operations.md, "What survives what").

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::job::job_storage;
use wasmflow_host::runtime::{RestoreFrom, RunOptions, run_job};
use wasmflow_tests::job::PipelineJob;
use wasmflow_tests::{assert_exactly_once, committed_lines, data_and_counts, wait_until, wasmflow_bin};

async fn stop_with_savepoint_after(spec: &JobSpec, after: Duration, target: &Path) -> std::path::PathBuf {
    wasmflow_tests::run_then_stop(spec, after, Some(target)).await.expect("a savepoint")
}

async fn stop_after(spec: &JobSpec, after: Duration) {
    wasmflow_tests::run_then_stop(spec, after, None).await;
}

fn newest_checkpoint_id(spec: &JobSpec) -> u64 {
    job_storage(spec).unwrap().complete_checkpoints().unwrap().first().map(|(_, m)| m.checkpoint_id).unwrap_or(0)
}

/// Sinks name output files by execution attempt. With `_job.json` deleted, a restore used to
/// start attempt numbers again at 1, give new part files the names of committed ones and rename
/// over them on commit: committed records gone. Attempts are now derived from what is on disk
/// as well, and a commit never replaces a committed file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_job_json_loses_no_committed_output() {
    let dir = tempfile::tempdir().unwrap();
    let count = 4000;
    let job = PipelineJob { count, records_per_second: Some(1000), ..Default::default() }.write(dir.path());
    let spec = JobSpec::load(&job).unwrap();
    let savepoint = stop_with_savepoint_after(&spec, Duration::from_millis(600), &dir.path().join("sp")).await;
    let (committed, _) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert!(!committed.is_empty() && committed.len() < count as usize, "output committed in mid-run: {}", committed.len());

    std::fs::remove_file(dir.path().join("checkpoints/_job.json")).unwrap();
    run_job(&Engine::new().unwrap(), &spec, RunOptions { restore: Some(RestoreFrom::Savepoint(savepoint.into())), ..Default::default() }).await.unwrap();
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "after a restore without _job.json");
    assert_eq!(counts.iter().sum::<u64>(), count);
}

/// After `stop --savepoint`, the savepoint's side effects are committed: resuming from the
/// (older) latest checkpoint would repeat them. `--from-latest-checkpoint` names the savepoint
/// to restore from instead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_stop_with_savepoint_the_latest_checkpoint_points_to_the_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 4000, records_per_second: Some(1000), ..Default::default() }.write(dir.path());
    let spec = JobSpec::load(&job).unwrap();
    let savepoint = stop_with_savepoint_after(&spec, Duration::from_millis(600), &dir.path().join("sp")).await;
    let engine = Engine::new().unwrap();
    let e = run_job(&engine, &spec, RunOptions { restore: Some(RestoreFrom::LatestCheckpoint), ..Default::default() }).await.unwrap_err();
    assert!(format!("{e:#}").ends_with(&format!("restore from it: --from-savepoint {}", savepoint.display())), "{e:#}");
    run_job(&engine, &spec, RunOptions { restore: Some(RestoreFrom::Savepoint(savepoint.into())), ..Default::default() }).await.unwrap();
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, 4000, "restored from the stop savepoint");
    assert_eq!(counts.iter().sum::<u64>(), 4000);
}

/// A `_job.json` rolled back to an older copy (a restored backup, a copied directory) used to
/// hand out checkpoint ids below the existing ones: the new checkpoints were pruned at once as
/// "older", and a later resume picked a stale checkpoint. Ids now stay above every checkpoint on
/// disk, and the attempt number above every attempt a checkpoint records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_job_json_does_not_reuse_ids_or_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let count = 4000;
    // A short first run leaves an early `_job.json` to roll back to.
    let early = PipelineJob { count: 10, ..Default::default() }.write(dir.path());
    run_job(&Engine::new().unwrap(), &JobSpec::load(&early).unwrap(), RunOptions::default()).await.unwrap();
    let old_counters = std::fs::read(dir.path().join("checkpoints/_job.json")).unwrap();
    let _ = std::fs::remove_dir_all(dir.path().join("out"));

    let job = PipelineJob { count, records_per_second: Some(1000), ..Default::default() }.write(dir.path());
    let spec = JobSpec::load(&job).unwrap();
    stop_after(&spec, Duration::from_millis(600)).await;
    let before = newest_checkpoint_id(&spec);
    let last_attempt = job_storage(&spec).unwrap().complete_checkpoints().unwrap()[0].1.attempt;

    std::fs::write(dir.path().join("checkpoints/_job.json"), old_counters).unwrap();
    run_job(&Engine::new().unwrap(), &spec, RunOptions { restore: Some(RestoreFrom::LatestCheckpoint), ..Default::default() }).await.unwrap();
    let storage = job_storage(&spec).unwrap();
    let newest = storage.complete_checkpoints().unwrap();
    assert!(newest[0].1.checkpoint_id > before, "the resumed run's checkpoints are the newest ({} after {before})", newest[0].1.checkpoint_id);
    assert!(newest[0].1.attempt > last_attempt, "attempt {} after {last_attempt}", newest[0].1.attempt);
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "after a rollback of _job.json");
    assert_eq!(counts.iter().sum::<u64>(), count);
}

/// Two processes on one checkpoint directory would share ids and attempts and commit over each
/// other's output. The second is refused, naming the first one's pid; the first runs on.
#[test]
fn a_second_run_on_the_same_checkpoint_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let count = 100_000;
    let job = PipelineJob { count, records_per_second: Some(20_000), ..Default::default() }.write(dir.path());
    let mut first = Command::new(wasmflow_bin()).arg("run").arg(&job).stderr(Stdio::null()).spawn().unwrap();
    let control = dir.path().join("checkpoints/_control");
    wait_until("the first job started", Duration::from_secs(30), || control.exists());
    let second = Command::new(wasmflow_bin()).arg("run").arg(&job).output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains(&format!("the checkpoint directory is in use by process {}", first.id())), "{stderr}");
    assert!(first.wait().unwrap().success(), "the first job is not disturbed");
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "the first job's output");
    assert_eq!(counts.iter().sum::<u64>(), count);
}
