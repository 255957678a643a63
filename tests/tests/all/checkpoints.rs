//! Checkpoints, savepoints, restore and rescale end to end (docs/state.md, docs/operations.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::{JobReport, RestoreFrom, RunOptions, run_job};
use wasmflow_tests::job::PipelineJob;
use wasmflow_tests::{assert_exactly_once, committed_lines, data_and_counts, wait_until, wasmflow_bin};

fn load(job: &Path, counter_parallelism: Option<u32>) -> JobSpec {
    let mut spec = JobSpec::load(job).unwrap();
    if let Some(p) = counter_parallelism {
        spec.operators.iter_mut().find(|o| o.id == "counter").unwrap().parallelism = p;
    }
    spec
}

async fn run(spec: &JobSpec, restore: Option<RestoreFrom>) -> JobReport {
    run_job(&Engine::new().unwrap(), spec, RunOptions { restore, ..Default::default() }).await.unwrap()
}

/// Runs the job until `after` has passed, then stops it with a savepoint into `target`.
async fn run_then_stop_with_savepoint(spec: &JobSpec, after: Duration, target: &Path) -> PathBuf {
    wasmflow_tests::run_then_stop(spec, after, Some(target)).await.expect("a savepoint")
}

fn counter_totals(savepoint: &Path) -> Vec<u64> {
    wasmflow_tests::counter_totals(&wasmflow_host::checkpoint::load_dir(savepoint).unwrap())
}

/// docs/state.md, split lists: a savepoint at counter parallelism 3, restored at 2 and at 5: the split list state
/// is redistributed and the counts still add up to exactly the number of records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_at_3_restores_at_2_and_at_5_with_exact_totals() {
    let count = 4000;
    for new_p in [2u32, 5] {
        let dir = tempfile::tempdir().unwrap();
        let job = PipelineJob { count, records_per_second: Some(2000), ..Default::default() }.write(dir.path());
        let savepoint = run_then_stop_with_savepoint(&load(&job, None), Duration::from_millis(700), &dir.path().join("sp")).await;
        let totals = counter_totals(&savepoint);
        assert_eq!(totals.len(), 3);
        let at_savepoint: u64 = totals.iter().sum();
        assert!(at_savepoint > 0 && at_savepoint < count, "savepoint in mid-run: {at_savepoint}");

        // Relocatable: move the savepoint elsewhere before restoring.
        let moved = dir.path().join("moved-savepoint");
        std::fs::rename(&savepoint, &moved).unwrap();
        let spec = load(&job, Some(new_p));
        let preview =
            wasmflow_host::inspect::preview(&wasmflow_host::checkpoint::load_dir(&moved).unwrap(), &[("counter".to_string(), new_p)].into_iter().collect())
                .unwrap();
        assert_eq!(preview["operators"]["counter"]["subtasks"].as_array().unwrap().len(), new_p as usize);

        let report = run(&spec, Some(RestoreFrom::Savepoint(moved.into()))).await;
        assert!(!report.stopped);
        let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
        assert_exactly_once(&data, count, &format!("every record exactly once across the rescale to {new_p}"));
        assert_eq!(counts.len(), new_p as usize);
        assert_eq!(counts.iter().sum::<u64>(), count, "counter totals exact after rescale to {new_p}");
    }
}

/// A crashed process (kill -9) restarted with `--from-latest-checkpoint` resumes from the latest
/// complete checkpoint: no record lost or duplicated, counter state exact.
#[test]
fn kill_9_and_resume_from_latest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let count = 6000;
    let job = PipelineJob { count, records_per_second: Some(2000), ..Default::default() }.write(dir.path());
    let mut child = Command::new(wasmflow_bin()).arg("run").arg(&job).stderr(Stdio::null()).spawn().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Wait until at least two checkpoints are complete, then crash in mid-run.
    while complete_checkpoints(&checkpoints) < 2 {
        assert!(Instant::now() < deadline, "no checkpoint completed in 30 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (partial, _) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert!(partial.len() < count as usize, "crashed before the end");

    let status = Command::new(wasmflow_bin()).args(["run", "--from-latest-checkpoint"]).arg(&job).stderr(Stdio::null()).status().unwrap();
    assert!(status.success());
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "output");
    assert_eq!(counts.iter().sum::<u64>(), count);
}

fn complete_checkpoints(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.flatten().filter(|e| e.path().join("_metadata").exists()).count()).unwrap_or(0)
}

/// A checkpoint interrupted half-written (no metadata) or damaged (a state file cut short) is
/// skipped with a warning and the previous complete one is used. Operator state stays exact;
/// the sink had already committed the files of the damaged checkpoint, so records after the
/// older checkpoint may appear twice (as in Flink when restoring an older checkpoint) but none
/// is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_latest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 3000, records_per_second: Some(2000), ..Default::default() }.write(dir.path());
    let spec = load(&job, None);
    // Stopped without a savepoint: the latest checkpoint is where a resume starts.
    wasmflow_tests::run_then_stop(&spec, Duration::from_millis(600), None).await;
    let storage = wasmflow_host::runtime::job::job_storage(&spec).unwrap();
    let complete = storage.complete_checkpoints().unwrap();
    assert!(complete.len() >= 2, "retain = 2 keeps two");
    let newest = complete[0].0.clone();
    // Cut the newest checkpoint's first state file in half.
    let state = dir.path().join("checkpoints").join(&newest).join("counter/0.state");
    let bytes = std::fs::read(&state).unwrap();
    std::fs::write(&state, &bytes[..bytes.len() / 2]).unwrap();
    // And leave a newer checkpoint interrupted before its metadata was written.
    let interrupted = dir.path().join("checkpoints/chk-99999/counter");
    std::fs::create_dir_all(&interrupted).unwrap();
    std::fs::write(interrupted.join("0.state"), b"WFST").unwrap();

    let err = wasmflow_host::checkpoint::load_dir(&dir.path().join("checkpoints").join(&newest)).unwrap_err();
    assert!(format!("{err:#}").contains("does not match the metadata"), "{err:#}");
    let report = run(&spec, Some(RestoreFrom::LatestCheckpoint)).await;
    assert!(!report.stopped);
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    let mut unique = data.clone();
    unique.dedup();
    assert_exactly_once(&unique, 3000, "after falling back");
    assert_eq!(counts.iter().sum::<u64>(), 3000, "counter state restored consistently from the older checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_of_a_removed_operator_needs_allow_non_restored_state() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 3000, records_per_second: Some(2000), ..Default::default() }.write(dir.path());
    let savepoint = run_then_stop_with_savepoint(&load(&job, None), Duration::from_millis(400), &dir.path().join("sp")).await;
    let mut spec = load(&job, None);
    spec.operators.iter_mut().find(|o| o.id == "counter").unwrap().id = "counter2".into();
    for e in spec.edges.iter_mut() {
        for end in [&mut e.from, &mut e.to] {
            if end == "counter" {
                *end = "counter2".into();
            }
        }
    }
    let err = run_job(&Engine::new().unwrap(), &spec, RunOptions { restore: Some(RestoreFrom::Savepoint(savepoint.clone().into())), ..Default::default() })
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("has state for operator 'counter', which the job file does not have; pass --allow-non-restored-state"), "{err:#}");
    let opts = RunOptions { restore: Some(RestoreFrom::Savepoint(savepoint.into())), allow_non_restored_state: true, ..Default::default() };
    let report = run_job(&Engine::new().unwrap(), &spec, opts).await.unwrap();
    assert!(!report.stopped);
}

#[test]
fn restoring_a_missing_or_corrupt_savepoint_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = format!("{:#}", wasmflow_host::checkpoint::load_dir(&missing).unwrap_err());
    assert!(e.ends_with("nope: no such checkpoint or savepoint directory"), "{e}");
    std::fs::create_dir_all(dir.path().join("sp")).unwrap();
    let e = format!("{:#}", wasmflow_host::checkpoint::load_dir(&dir.path().join("sp")).unwrap_err());
    assert!(e.ends_with("sp: not a savepoint or checkpoint directory (it has no _metadata); pass a `savepoint-<id>` or `chk-<id>` directory"), "{e}");
    // A directory of savepoints is named for what it holds.
    std::fs::create_dir_all(dir.path().join("many/savepoint-3")).unwrap();
    std::fs::create_dir_all(dir.path().join("many/savepoint-12")).unwrap();
    std::fs::write(dir.path().join("many/savepoint-3/_metadata"), b"{}").unwrap();
    std::fs::write(dir.path().join("many/savepoint-12/_metadata"), b"{}").unwrap();
    let e = format!("{:#}", wasmflow_host::checkpoint::load_dir(&dir.path().join("many")).unwrap_err());
    assert!(e.contains("many: not a savepoint or checkpoint itself, but it contains savepoint-12, savepoint-3; pass one of those directories"), "{e}");
    // A checkpoint interrupted before its metadata: state files, no _metadata.
    std::fs::create_dir_all(dir.path().join("chk-9/counter")).unwrap();
    std::fs::write(dir.path().join("chk-9/counter/0.state"), b"WFST").unwrap();
    let e = format!("{:#}", wasmflow_host::checkpoint::load_dir(&dir.path().join("chk-9")).unwrap_err());
    assert!(e.contains("no _metadata: the checkpoint is incomplete"), "{e}");
    std::fs::write(dir.path().join("sp/_metadata"), br#"{"checksum":"00000000","body":"{}"}"#).unwrap();
    let e = format!("{:#}", wasmflow_host::checkpoint::load_dir(&dir.path().join("sp")).unwrap_err());
    assert!(e.contains("checksum mismatch"), "{e}");
}

/// The CLI against a running job: `savepoint` and `stop --savepoint` over the control endpoint,
/// then `inspect --json` of the result.
#[test]
fn cli_savepoint_stop_and_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 100_000, records_per_second: Some(1000), ..Default::default() }.write(dir.path());
    let mut child = Command::new(wasmflow_bin()).arg("run").arg(&job).stderr(Stdio::null()).spawn().unwrap();
    let control = dir.path().join("checkpoints/_control");
    wait_until("the job started and completed a checkpoint", Duration::from_secs(30), || {
        complete_checkpoints(&dir.path().join("checkpoints")) >= 1 && control.exists()
    });
    let wasmflow = |args: &[&str]| {
        let out = Command::new(wasmflow_bin()).args(args).output().unwrap();
        assert!(out.status.success(), "wasmflow {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let job_arg = job.to_str().unwrap();
    let first = wasmflow(&["savepoint", "--job", job_arg]);
    let first = PathBuf::from(first.trim());
    assert!(first.starts_with(dir.path().canonicalize().unwrap().join("savepoints")), "{}", first.display());
    assert!(first.join("_metadata").exists());
    let target = dir.path().join("savepoints/final");
    let stopped = wasmflow(&["stop", "--job", job_arg, "--savepoint", target.to_str().unwrap()]);
    assert!(stopped.starts_with("stopped; savepoint "), "{stopped}");
    assert!(child.wait().unwrap().success(), "the job exits cleanly after stop");
    let last = PathBuf::from(stopped.trim().trim_start_matches("stopped; savepoint "));
    let view: serde_json::Value = serde_json::from_str(&wasmflow(&["inspect", "--json", last.to_str().unwrap()])).unwrap();
    assert_eq!(view["kind"], "savepoint");
    assert_eq!(view["operators"]["counter"]["parallelism"], 3);
    assert_eq!(view["operators"]["counter"]["subtasks"][0]["states"][0]["name"], "count");
    assert_eq!(view["operators"]["counter"]["subtasks"][0]["states"][0]["mode"], "SPLIT_DISTRIBUTE");
    let preview: serde_json::Value = serde_json::from_str(&wasmflow(&["inspect", "--json", last.to_str().unwrap(), "--parallelism", "counter=5"])).unwrap();
    assert_eq!(preview["operators"]["counter"]["subtasks"].as_array().unwrap().len(), 5);
    let gone = Command::new(wasmflow_bin()).args(["savepoint", "--job", job_arg]).output().unwrap();
    assert!(!gone.status.success(), "no job running any more");
}

/// Stopping a job whose channels are full (back-pressure) is a clean stop with a savepoint, and
/// the savepoint restores to exactly-once output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_under_back_pressure_is_clean() {
    let dir = tempfile::tempdir().unwrap();
    let count = 3_000_000;
    let job = PipelineJob { count, channel_capacity: Some(1), ..Default::default() }.write(dir.path());
    let savepoint = run_then_stop_with_savepoint(&load(&job, None), Duration::from_millis(300), &dir.path().join("sp")).await;
    let report = run(&load(&job, None), Some(RestoreFrom::Savepoint(savepoint.into()))).await;
    assert!(!report.stopped);
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "after a stop under back-pressure");
    assert_eq!(counts.iter().sum::<u64>(), count);
}

/// Pending files stay in the output directory a savepoint was taken with. Restoring into a job
/// whose sink writes elsewhere used to fail with "recovering pending file … No such file or
/// directory"; it now says what is wrong and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restoring_with_another_output_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 4000, records_per_second: Some(1000), ..Default::default() }.write(dir.path());
    let savepoint = run_then_stop_with_savepoint(&load(&job, None), Duration::from_millis(600), &dir.path().join("sp")).await;
    let mut spec = load(&job, None);
    spec.operators.iter_mut().find(|o| o.id == "out").unwrap().grants.files = Some(PathBuf::from("elsewhere"));
    let engine = Engine::new().unwrap();
    let e = run_job(&engine, &spec, RunOptions { restore: Some(RestoreFrom::Savepoint(savepoint.into())), ..Default::default() }).await.unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("out[0]: initialize-state failed") || e.contains("out[1]: initialize-state failed"), "{e}");
    assert!(
        e.contains("which is not in this operator's output directory: restore with the same output directory (grants.files) the savepoint was taken with"),
        "{e}"
    );
}
