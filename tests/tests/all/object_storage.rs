//! Checkpoints and savepoints on a real S3-compatible server (moto_server on loopback):
//! recovery after `kill -9` from the object store, a server outage in mid-run, savepoints on
//! object storage restored at other parallelisms, and a second job manager fencing the first
//! (docs/object-storage.md).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmflow_host::checkpoint::SnapshotWriter;
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::{RestoreFrom, RunOptions, run_job};
use wasmflow_host::status::JobStatus;
use wasmflow_tests::job::PipelineJob;
use wasmflow_tests::s3::{Outage, S3Server};
use wasmflow_tests::{assert_exactly_once, committed_lines, data_and_counts, wait_until, wasmflow_bin};

/// The example pipeline with its checkpoints below `s3://<bucket>/<prefix>` on the server at
/// `port` (the server itself, or a proxy in front of it).
fn pipeline_on_s3(server: &S3Server, port: u16, prefix: &str, count: u64, rate: u32) -> PipelineJob {
    PipelineJob { count, records_per_second: Some(rate), checkpoint_dir: server.url(prefix), extra_tables: S3Server::options_toml(port), ..Default::default() }
}

/// Waits (without blocking the job polled beside it) until `done`, at most 30 s.
async fn poll_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out after 30 s waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A job whose checkpoints are on S3 is killed (`kill -9`) in mid-run and resumed (`--resume`)
/// from the newest checkpoint in the object store: every record exactly once, counter totals exact, and
/// retention left only complete checkpoints behind.
#[test]
fn kill_9_and_resume_from_the_object_store() {
    let s3 = S3Server::start("flows");
    let dir = tempfile::tempdir().unwrap();
    let count = 6000;
    let job = pipeline_on_s3(&s3, s3.port, "jobs/pipeline", count, 2000).write(dir.path());
    // `--resume` (what the Kubernetes Job runs) starts fresh on an empty prefix.
    let mut child = Command::new(wasmflow_bin()).args(["run", "--resume"]).arg(&job).stderr(Stdio::null()).spawn().unwrap();
    wait_until("two checkpoints complete on S3", Duration::from_secs(30), || s3.complete_checkpoints("jobs/pipeline").len() >= 2);
    std::thread::sleep(Duration::from_millis(150));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let (partial, _) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert!(partial.len() < count as usize, "crashed before the end");
    assert!(!dir.path().join("checkpoints").exists(), "nothing was written to a local checkpoint directory");

    let out = Command::new(wasmflow_bin()).args(["run", "--resume"]).arg(&job).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("restoring from s3://flows/jobs/pipeline/chk-"));
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "output after kill -9 and resume from S3");
    assert_eq!(counts.iter().sum::<u64>(), count);

    // Retention (retain = 2) deleted the older checkpoints; nothing incomplete is left.
    let keys = s3.keys("jobs/pipeline/");
    let dirs: std::collections::BTreeSet<&str> =
        keys.iter().filter_map(|k| k.strip_prefix("jobs/pipeline/")?.split('/').next()).filter(|d| d.starts_with("chk-")).collect();
    let complete = s3.complete_checkpoints("jobs/pipeline");
    assert_eq!(complete.len(), 2, "{keys:#?}");
    assert_eq!(dirs.len(), 2, "only the retained checkpoints remain: {dirs:?}");
    assert!(keys.contains(&"jobs/pipeline/_job.json".to_string()));
}

/// The object store goes away in mid-run (connections refused) and comes back: the checkpoints
/// in between fail, the job keeps running and the next checkpoint completes; the output is
/// exact. A partial upload left in the store is never restored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_store_outage_fails_checkpoints_not_the_job() {
    let s3 = S3Server::start("flows");
    let mut proxy = Outage::start(s3.port);
    let dir = tempfile::tempdir().unwrap();
    let count = 8000;
    let mut pipeline = pipeline_on_s3(&s3, proxy.port, "outage", count, 2000);
    pipeline.checkpoint_extra = "tolerable-failures = 1000\ntimeout-ms = 3000\n".into();
    let spec = JobSpec::load(&pipeline.write(dir.path())).unwrap();
    let status = JobStatus::new(&spec);
    let engine = Engine::new().unwrap();
    let run = run_job(&engine, &spec, RunOptions { status: Some(status.clone()), ..Default::default() });
    let outage = async {
        poll_until("a first checkpoint on S3", || !s3.complete_checkpoints("outage").is_empty()).await;
        proxy.cut();
        let cut_at = s3.complete_checkpoints("outage");
        let failed_before = status.checkpoints().failed;
        poll_until("checkpoints failing during the outage", || status.checkpoints().failed >= failed_before + 2).await;
        assert_eq!(s3.complete_checkpoints("outage"), cut_at, "nothing completes while the store is away");
        proxy.restore();
        cut_at
    };
    let (report, cut_at) = tokio::join!(run, outage);
    let report = report.expect("the outage fails checkpoints, not the job");
    assert_eq!(report.restarts, 0);
    let after: Vec<u64> = report.completed_checkpoints.iter().copied().filter(|id| id > cut_at.last().unwrap()).collect();
    assert!(!after.is_empty(), "checkpoints complete again after the outage: {:?}", report.completed_checkpoints);
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "output across an object-store outage");
    assert_eq!(counts.iter().sum::<u64>(), count);

    // A newer checkpoint with state files but no _metadata (an interrupted upload) is not
    // restored: the newest complete one is, and the partial one is deleted at start.
    let newest = *s3.complete_checkpoints("outage").last().unwrap();
    s3.put(&format!("outage/chk-{}/counter/0.state", newest + 10), b"WFST partial");
    let resumed = JobStatus::new(&spec);
    let report = run_job(
        &Engine::new().unwrap(),
        &spec,
        RunOptions { restore: Some(RestoreFrom::LatestCheckpoint), status: Some(resumed.clone()), ..Default::default() },
    )
    .await
    .unwrap();
    assert!(report.completed_checkpoints.is_empty() || report.completed_checkpoints[0] > newest + 10, "ids stay above every id present");
    assert!(!s3.keys("outage/").iter().any(|k| k.starts_with(&format!("outage/chk-{}/", newest + 10))), "the partial checkpoint was removed");
    let (data, _) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "the finished job resumed from its newest complete checkpoint adds nothing");
}

/// Stop with a savepoint to S3, then restore it at other parallelisms: union and split state
/// redistribute exactly as from a local savepoint, and every record arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_on_s3_restores_at_other_parallelisms() {
    let s3 = S3Server::start("flows");
    let dir = tempfile::tempdir().unwrap();
    let count = 6000;
    let job = pipeline_on_s3(&s3, s3.port, "rescale/chk", count, 3000).write(dir.path());
    let spec = JobSpec::load(&job).unwrap();
    let target = s3.url("rescale/savepoints").parse().unwrap();
    let savepoint = wasmflow_tests::run_then_stop_at(&spec, Duration::from_millis(800), Some(target)).await.expect("a savepoint");
    assert!(savepoint.to_string().starts_with("s3://flows/rescale/savepoints/savepoint-"), "{savepoint}");
    assert!(s3.keys("rescale/savepoints/").iter().any(|k| k.ends_with("/_metadata")));
    let (partial, _) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert!(partial.len() < count as usize, "stopped before the end");

    // `inspect` reads it from the store too.
    let inspected = Command::new(wasmflow_bin())
        .args(["inspect", "--json", &savepoint.to_string()])
        .envs([
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", s3.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "t".into()),
            ("AWS_SECRET_ACCESS_KEY", "t".into()),
            ("AWS_REGION", "us-east-1".into()),
        ])
        .output()
        .unwrap();
    assert!(inspected.status.success(), "{}", String::from_utf8_lossy(&inspected.stderr));
    let view: serde_json::Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(view["kind"], "savepoint");

    // Restore with the CLI at counter parallelism 2 (from 3), running to the end.
    let out = Command::new(wasmflow_bin())
        .args(["run", "--parallelism", "counter=2,numbers=3,upper=3", "--from-savepoint", &savepoint.to_string()])
        .arg(&job)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "every record once across a savepoint on S3 and a rescale");
    assert_eq!(counts.len(), 2, "one total per new counter subtask");
    assert_eq!(counts.iter().sum::<u64>(), count);
}

/// A second job manager started on the same prefix (a restarted pod beside a stale one) takes
/// the storage over: the first is fenced at its next checkpoint and stops with an error naming
/// the fencing, the second resumes from the newest checkpoint and finishes with exact output.
#[test]
fn a_second_job_manager_fences_the_first() {
    let s3 = S3Server::start("flows");
    let dir = tempfile::tempdir().unwrap();
    let count = 8000;
    // Restarts allowed: a fenced job manager must still not restart.
    let job = PipelineJob { restart_attempts: 3, ..pipeline_on_s3(&s3, s3.port, "fenced", count, 2000) }.write(dir.path());
    let first = Command::new(wasmflow_bin()).arg("run").arg(&job).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_until("two checkpoints complete on S3", Duration::from_secs(30), || s3.complete_checkpoints("fenced").len() >= 2);
    let started = Instant::now();
    let second = Command::new(wasmflow_bin()).args(["run", "--from-latest-checkpoint"]).arg(&job).output().unwrap();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let first = first.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&first.stderr);
    assert_eq!(first.status.code(), Some(3), "the fenced job manager fails (exit code 3, no restart): {stderr}");
    assert!(!stderr.contains("restart 1/"), "a fenced job manager does not restart: {stderr}");
    assert!(stderr.contains("fenced: a newer job manager (generation 2, this one is 1) took this checkpoint storage over"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "output with two job managers on one prefix");
    assert_eq!(counts.iter().sum::<u64>(), count);
}

/// A state object above 64 MiB is uploaded in 16 MiB parts (one PUT is limited to 5 GiB, and a
/// failed part is retried alone), appears whole, and restores byte for byte.
#[test]
fn a_large_state_object_is_uploaded_in_parts() {
    use wasmflow_host::checkpoint::{CheckpointStorage, ObjectStorage};
    use wasmflow_state::{Mode, NamedStateSnapshot, StateValue, SubtaskSnapshot, TypeInfo};
    let s3 = S3Server::start("flows");
    let options = S3Server::options(s3.port);
    let Ok(wasmflow_host::checkpoint::Location::Object(url)) = s3.url("large").parse() else { unreachable!() };
    let storage = ObjectStorage::open(&url, &options).unwrap();
    storage.take_over().unwrap();
    let items: Vec<Vec<u8>> = (0..80u32 * 1024).map(|i| i.to_le_bytes().repeat(256)).collect();
    let state = NamedStateSnapshot {
        name: "big".into(),
        mode: Mode::SplitDistribute,
        element_type: TypeInfo::default(),
        value_type: None,
        value: StateValue::List(items.clone()),
    };
    let id = storage.reserve_checkpoint_id().unwrap();
    let file = storage.write_state(id, "op", 0, &SubtaskSnapshot { states: vec![state], keyed: None }, vec![]).unwrap();
    assert!(file.size > 80 << 20, "{}", file.size);
    let etag = s3.etag(&format!("large/chk-{id}/op/0.state")).expect("the object exists");
    assert!(etag.ends_with(&format!("-{}", file.size.div_ceil(16 << 20))), "uploaded in 16 MiB parts: ETag {etag}");
    let meta = wasmflow_host::checkpoint::CheckpointMetadata {
        format_version: wasmflow_host::checkpoint::FORMAT_VERSION,
        checkpoint_id: id,
        timestamp: 0,
        kind: "checkpoint".into(),
        job_name: "large".into(),
        attempt: 1,
        generation: storage.generation(),
        operators: [("op".to_string(), wasmflow_host::checkpoint::OperatorMetadata { parallelism: 1, subtasks: vec![file], finished: vec![] })].into(),
    };
    storage.commit(id, &meta).unwrap();
    let loaded = storage.load(&format!("chk-{id}")).unwrap();
    assert!(matches!(&loaded.states["op"][0].states[0].value, StateValue::List(back) if *back == items));
}

/// Operating a job on object storage from the command line: `status` and `stop --savepoint`
/// find the job through `_control` on S3, the savepoint goes to the job's `s3://` savepoint
/// directory, and `--resume` then continues from it to exact output.
#[test]
fn status_and_stop_with_savepoint_reach_a_job_through_the_object_store() {
    let s3 = S3Server::start("flows");
    let dir = tempfile::tempdir().unwrap();
    let count = 6000;
    let mut pipeline = pipeline_on_s3(&s3, s3.port, "cli/chk", count, 2000);
    pipeline.extra_tables = format!("{}\n[savepoints]\ndir = \"{}\"\n", pipeline.extra_tables, s3.url("cli/savepoints"));
    let job = pipeline.write(dir.path());
    let mut child = Command::new(wasmflow_bin()).arg("run").arg(&job).stderr(Stdio::null()).spawn().unwrap();
    wait_until("the job's _control on S3", Duration::from_secs(30), || s3.keys("cli/chk/").contains(&"cli/chk/_control".to_string()));
    let wasmflow = |args: &[&str]| {
        let out = Command::new(wasmflow_bin()).args(args).arg("--job").arg(&job).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let status: serde_json::Value = serde_json::from_str(&wasmflow(&["status", "--json"])).unwrap();
    assert_eq!(status["job"]["name"], "pipeline");
    let stopped: serde_json::Value = serde_json::from_str(&wasmflow(&["stop", "--savepoint", "--json"])).unwrap();
    let savepoint = stopped["savepoint"].as_str().expect("a savepoint").to_string();
    assert!(savepoint.starts_with("s3://flows/cli/savepoints/savepoint-"), "{savepoint}");
    assert!(child.wait().unwrap().success());
    assert!(!s3.keys("cli/chk/").contains(&"cli/chk/_control".to_string()), "a stopped job removes its _control");

    let out = Command::new(wasmflow_bin()).args(["run", "--resume"]).arg(&job).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("resuming from {savepoint}, the savepoint the job was stopped with")), "{stderr}");
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "stop with a savepoint on S3, then --resume");
    assert_eq!(counts.iter().sum::<u64>(), count);
}
