//! The lifecycle across stops, failures and restores: close runs once, finished work is not
//! redone (Flink's FLIP-147), control works in every phase, savepoints belong to the user, and a
//! checkpoint that cannot be written fails the job instead of looping (docs/operations.md).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use wasmflow_host::checkpoint::load_dir;
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::job::{ControlRequest, job_storage};
use wasmflow_host::runtime::{RestoreFrom, RunOptions, run_job};
use wasmflow_tests::job::PipelineJob;
use wasmflow_tests::{assert_exactly_once, committed_lines, data_and_counts, operator, wasmflow_bin};

/// Writes a job file into `dir` from `[[operators]]`/`[[edges]]` text, with checkpoints.
fn write_job(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("job.toml");
    std::fs::write(&path, format!("[job]\nname = \"recovery\"\nbatch-size = 64\n\n[checkpoints]\ninterval-ms = 100\nretain = 1\n\n{body}")).unwrap();
    path
}

/// `close` used to run twice for every non-source subtask (at end of input and again at
/// shutdown): a null sink logged its count twice.
#[test]
fn close_runs_once_per_subtask() {
    let dir = tempfile::tempdir().unwrap();
    let job = write_job(
        dir.path(),
        &format!(
            "[[operators]]\nid = \"numbers\"\nmodule = \"{}\"\nparallelism = 2\nconfig = {{ count = 500 }}\n\n\
             [[operators]]\nid = \"discard\"\nmodule = \"{}\"\nparallelism = 2\n\n\
             [[edges]]\nfrom = \"numbers\"\nto = \"discard\"\n",
            operator("generator").display(),
            operator("null-sink").display()
        ),
    );
    let out = Command::new(wasmflow_bin()).arg("run").arg(&job).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let closes: Vec<&str> = stderr.lines().filter(|l| l.contains("discarded ") && l.contains(" records")).collect();
    assert_eq!(closes.len(), 2, "one close per null-sink subtask: {closes:#?}");
}

/// Resuming a job that already finished (its final checkpoint records every subtask as
/// finished) must not run `close` again: the counters' totals, emitted at close, used to be
/// committed a second time.
#[test]
fn resuming_a_finished_job_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let count = 2000;
    let job = PipelineJob { count, ..Default::default() }.write(dir.path());
    let run = |args: &[&str]| {
        let out = Command::new(wasmflow_bin()).arg("run").args(args).arg(&job).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&[]);
    let first = committed_lines(&dir.path().join("out"));
    let (data, counts) = data_and_counts(&first);
    assert_exactly_once(&data, count, "first run");
    assert_eq!(counts.len(), 3, "one total per counter subtask");
    let checkpoint = &job_storage(&JobSpec::load(&job).unwrap()).unwrap().complete_checkpoints().unwrap()[0].1;
    assert!(checkpoint.operators.values().all(|o| o.fully_finished()), "the final checkpoint records every subtask as finished");

    run(&["--from-latest-checkpoint"]);
    assert_eq!(committed_lines(&dir.path().join("out")), first, "nothing re-run, nothing committed twice");
}

/// An operator added to the job since the savepoint has no state in it, so it is not restored
/// (`is_restored` false) and starts fresh, as in Flink: a Kafka source would apply its startup
/// mode. It used to be told it was restored. The state-ballast operator shows it: fresh, it
/// fills its state with `state-bytes`; restored, it keeps what it received (nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_added_since_the_savepoint_is_not_restored() {
    let dir = tempfile::tempdir().unwrap();
    let generator = format!(
        "[[operators]]\nid = \"numbers\"\nmodule = \"{}\"\nparallelism = 2\nconfig = {{ count = 4000, records-per-second = 1000 }}\n\n",
        operator("generator").display()
    );
    let sink = format!("[[operators]]\nid = \"discard\"\nmodule = \"{}\"\nparallelism = 2\n\n", operator("null-sink").display());
    let before = write_job(dir.path(), &format!("{generator}{sink}[[edges]]\nfrom = \"numbers\"\nto = \"discard\"\n"));
    let (tx, rx) = mpsc::channel(1);
    let spec = JobSpec::load(&before).unwrap();
    let engine = Engine::new().unwrap();
    let job = run_job(&engine, &spec, RunOptions { control: Some(rx), ..Default::default() });
    let stop = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (reply, answer) = oneshot::channel();
        tx.send(ControlRequest::Stop { savepoint: Some(dir.path().join("sp").into()), reply }).await.unwrap();
        answer.await.unwrap().unwrap().unwrap()
    };
    let (report, savepoint) = tokio::join!(job, stop);
    assert!(report.unwrap().stopped);

    let ballast = format!(
        "[[operators]]\nid = \"ballast\"\nmodule = \"{}\"\nparallelism = 2\nconfig = {{ state-bytes = 100000 }}\n\n",
        operator("state-ballast").display()
    );
    let after = write_job(
        dir.path(),
        &format!("{generator}{ballast}{sink}[[edges]]\nfrom = \"numbers\"\nto = \"ballast\"\n\n[[edges]]\nfrom = \"ballast\"\nto = \"discard\"\n"),
    );
    let spec = JobSpec::load(&after).unwrap();
    let engine = Engine::new().unwrap();
    let report = run_job(&engine, &spec, RunOptions { restore: Some(RestoreFrom::Savepoint(savepoint)), ..Default::default() }).await.unwrap();
    let last = job_storage(&spec).unwrap().load(&format!("chk-{}", report.completed_checkpoints.last().unwrap())).unwrap();
    for (i, subtask) in last.states["ballast"].iter().enumerate() {
        let bytes: usize = subtask
            .states
            .iter()
            .map(|s| match &s.value {
                wasmflow_state::StateValue::List(items) => items.iter().map(Vec::len).sum::<usize>(),
                wasmflow_state::StateValue::Map(_) => 0,
            })
            .sum();
        // bincode adds a length prefix per string; the text itself is 100000 bytes.
        assert!(bytes >= 100_000, "ballast[{i}] started fresh with its 100000 bytes, not as restored: {bytes}");
    }
}

/// After a restart the control receiver used to be gone: `stop` answered "the job ended" and
/// only `kill -9` ended the job. The failing map fails once; after the restart a stop with a
/// savepoint works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_with_savepoint_works_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let count = 6000;
    let job = PipelineJob { count, records_per_second: Some(1000), restart_attempts: 1, fail_on_key: Some(300), ..Default::default() }.write(dir.path());
    let spec = JobSpec::load(&job).unwrap();
    let (tx, rx) = mpsc::channel(4);
    let engine = Engine::new().unwrap();
    let run = run_job(&engine, &spec, RunOptions { control: Some(rx), ..Default::default() });
    let stop = async {
        // Key 300 comes after ~0.15 s; the restart is 50 ms later. Stop well after it.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (reply, answer) = oneshot::channel();
        tx.send(ControlRequest::Stop { savepoint: Some(dir.path().join("sp").into()), reply }).await.expect("the job still takes requests");
        answer.await.unwrap()
    };
    let (report, stopped) = tokio::join!(run, stop);
    let report = report.unwrap();
    assert_eq!(report.restarts, 1, "the failing map failed once");
    assert!(report.stopped);
    let savepoint = stopped.unwrap().unwrap();

    // And the savepoint restores to exactly-once output.
    run_job(&Engine::new().unwrap(), &spec, RunOptions { restore: Some(RestoreFrom::Savepoint(savepoint)), ..Default::default() }).await.unwrap();
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "after stop with savepoint past a restart");
    assert_eq!(counts.iter().sum::<u64>(), count);
}

/// SIGTERM during the restart delay (here a minute long) ends the process cleanly at once; it
/// used to be ignored after the first attempt.
#[test]
fn sigterm_during_the_restart_delay_stops_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let job =
        PipelineJob { count: 100_000, records_per_second: Some(1000), restart_attempts: 1, fail_on_key: Some(100), ..Default::default() }.write(dir.path());
    let text = std::fs::read_to_string(&job).unwrap().replace("delay-ms = 50", "delay-ms = 60000");
    std::fs::write(&job, text).unwrap();
    let mut child = Command::new(wasmflow_bin()).arg("run").arg(&job).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "the job ended before its restart");
        if line.contains("restart 1/1 in 60000 ms") {
            break;
        }
    }
    let started = Instant::now();
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "a clean stop");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "SIGTERM was ignored during the restart delay");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Savepoints belong to the user: written straight into their target directory (nothing of
/// them in the checkpoint directory), never counted toward `retain`, never pruned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoints_are_written_in_place_and_never_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 4000, records_per_second: Some(1000), ..Default::default() }.write(dir.path());
    let spec = JobSpec::load(&job).unwrap();
    let (tx, rx) = mpsc::channel(4);
    let engine = Engine::new().unwrap();
    let run = run_job(&engine, &spec, RunOptions { control: Some(rx), ..Default::default() });
    let savepoints = async {
        let mut paths = Vec::new();
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (reply, answer) = oneshot::channel();
            tx.send(ControlRequest::Savepoint { target: dir.path().join("sp").into(), reply }).await.unwrap();
            paths.push(answer.await.unwrap().unwrap().as_local().unwrap().to_path_buf());
        }
        paths
    };
    let (report, paths) = tokio::join!(run, savepoints);
    let report = report.unwrap();
    assert_eq!(report.savepoints.len(), 2);
    for path in &paths {
        assert_eq!(path.parent().unwrap(), dir.path().join("sp"));
        assert_eq!(load_dir(path).unwrap().metadata.kind, "savepoint", "{} is still there and complete", path.display());
    }
    let storage = job_storage(&spec).unwrap();
    let kept = storage.complete_checkpoints().unwrap();
    assert_eq!(kept.len(), 2, "retain = 2 checkpoints, savepoints not counted");
    assert!(kept.iter().all(|(_, m)| m.kind == "checkpoint"));
    let in_checkpoint_dir: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .filter(|n| n.starts_with("chk-"))
        .collect();
    assert_eq!(in_checkpoint_dir.len(), 2, "only the retained checkpoints: {in_checkpoint_dir:?}");
}

/// A checkpoint that can never be written (here: every checkpoint directory name is taken by
/// a file) used to be re-triggered forever by a bounded job's end, reserving thousands of ids.
/// Now, as Flink's tolerable-failed-checkpoints, more consecutive failures than tolerated fail
/// the job with a clear error, and failed checkpoints are retried at the checkpoint interval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_that_cannot_be_written_fails_the_job_after_tolerable_failures() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 200, ..Default::default() }.write(dir.path());
    let text = std::fs::read_to_string(&job).unwrap().replace("retain = 2", "retain = 2\ntolerable-failures = 2");
    std::fs::write(&job, text).unwrap();
    let checkpoints = dir.path().join("checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    for id in 1..=1000 {
        std::fs::write(checkpoints.join(format!("chk-{id}")), b"not a directory").unwrap();
    }
    let spec = JobSpec::load(&job).unwrap();
    let engine = Engine::new().unwrap();
    let run = run_job(&engine, &spec, RunOptions::default());
    let e = tokio::time::timeout(Duration::from_secs(60), run).await.expect("the job ends instead of retrying forever").unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("3 consecutive checkpoint failure(s), more than checkpoints.tolerable-failures = 2 allows"), "{e}");
    assert!(e.contains("chk-3"), "names what could not be written: {e}");
    let counters = std::fs::read_to_string(checkpoints.join("_job.json")).unwrap();
    assert!(counters.contains("next_checkpoint_id\\\":4"), "three ids reserved, one per try: {counters}");
}

/// `--resume`, what a supervisor (a Kubernetes Job) runs, starts fresh when the job never ran,
/// and after a stop with a savepoint continues from that savepoint — its side effects are out,
/// so the older newest checkpoint would repeat them: every record exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_starts_fresh_then_continues_from_the_stop_savepoint() {
    let dir = tempfile::tempdir().unwrap();
    let count = 6000;
    let job = PipelineJob { count, records_per_second: Some(3000), ..Default::default() }.write(dir.path());
    let spec = JobSpec::load(&job).unwrap();
    let fresh = RunOptions { restore: Some(RestoreFrom::Resume), control: None, ..Default::default() };
    let (tx, rx) = mpsc::channel(4);
    let engine = Engine::new().unwrap();
    let run = run_job(&engine, &spec, RunOptions { control: Some(rx), ..fresh });
    let stop = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (reply, answer) = oneshot::channel();
        tx.send(ControlRequest::Stop { savepoint: Some(dir.path().join("sp").into()), reply }).await.expect("the job started fresh and runs");
        answer.await.unwrap().unwrap().expect("a savepoint")
    };
    let (report, savepoint) = tokio::join!(run, stop);
    assert!(report.unwrap().stopped);
    let (partial, _) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert!(partial.len() < count as usize, "stopped before the end");
    // The newest checkpoint's state is not even read when the stop savepoint wins: damage it,
    // and nothing says so.
    let storage = wasmflow_host::runtime::job::job_storage(&spec).unwrap();
    let (newest, _) = storage.complete_checkpoints().unwrap().remove(0);
    std::fs::write(dir.path().join("checkpoints").join(&newest).join("counter/0.state"), b"damaged").unwrap();

    let out = Command::new(wasmflow_bin()).args(["run", "--resume"]).arg(&job).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("resuming from {savepoint}, the savepoint the job was stopped with")), "{stderr}");
    assert!(!stderr.contains("is damaged"), "the checkpoint older than the stop savepoint was read: {stderr}");
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "output after stop with savepoint and --resume");
    assert_eq!(counts.iter().sum::<u64>(), count);
}
