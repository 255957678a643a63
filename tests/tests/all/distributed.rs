//! Distributed execution (docs/distributed.md): a job manager and worker processes on loopback.
//! A Kafka → counter → exactly-once files job on three workers survives `kill -9` of a worker and
//! then of the job manager, recovering from checkpoints on a real S3-compatible server; a
//! savepoint taken on two workers restores at other parallelisms exactly as in one process;
//! only holders of the cluster secret can attach.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use wasmflow_tests::broker::TestBroker;
use wasmflow_tests::job::{KafkaJob, PipelineJob};
use wasmflow_tests::s3::S3Server;
use wasmflow_tests::{assert_exactly_once, committed_lines, data_and_counts, wait_until, wasmflow_bin};

const PARTITIONS: i32 = 8;

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after its closing paren.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)).and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out.sort();
    out
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
}

fn kill_9(pid: u32) {
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
}

/// Runs `wasmflow` with `args`, its log going to `log`.
fn spawn_logged(args: &[&str], job: &Path, log: &Path) -> Child {
    Command::new(wasmflow_bin()).args(args).arg(job).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap()
}

fn log_of(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The scenario: Kafka (8 partitions, 4 source subtasks) → counter → exactly-once
/// files on three worker processes, checkpoints on S3. Records arrive in three rounds. After the
/// first, `kill -9` of a worker: the job manager restarts the job from the object store on the
/// survivors and a new worker. After the second, `kill -9` of the job manager: its workers exit,
/// and `run --resume --workers 3` carries on with the third round until it is stopped with a
/// savepoint. Every record once, offsets committed to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_job_on_three_workers_survives_a_worker_then_the_job_manager_killed() {
    let b = TestBroker::start();
    b.create_topic("payments", PARTITIONS as u32);
    let mut expected = b.produce_numbered("payments", PARTITIONS, 0, 500);
    let s3 = S3Server::start("flows");
    let dir = tempfile::tempdir().unwrap();
    let mut job = KafkaJob::new(&b.bootstrap(), "payments", "g-workers");
    job.checkpoint_interval_ms = 100;
    job.checkpoint_dir = s3.url("jobs/payments");
    job.extra_tables = format!("{}\n[restart]\nattempts = 3\ndelay-ms = 100\n", S3Server::options_toml(s3.port));
    let path = job.write(dir.path());
    let out = dir.path().join("out");
    let records = || data_and_counts(&committed_lines(&out)).0.len();
    let log = dir.path().join("jm.log");

    let mut jm = spawn_logged(&["run", "--resume", "--workers", "3"], &path, &log);
    wait_until("three workers", Duration::from_secs(30), || children_of(jm.id()).len() == 3);
    let workers = children_of(jm.id());
    wait_until("the first round through", Duration::from_secs(60), || records() == expected.len());

    // A worker dies: the attempt fails, a replacement starts, the job restores from S3.
    kill_9(workers[1]);
    wait_until("the job manager restarting the job", Duration::from_secs(30), || log_of(&log).contains("restart 1/3"));
    expected.extend(b.produce_numbered("payments", PARTITIONS, 500, 500));
    wait_until("the second round through after the restart", Duration::from_secs(60), || records() == expected.len());
    let now = children_of(jm.id());
    assert_eq!(now.len(), 3, "a replacement worker: {now:?}");
    assert!(!now.contains(&workers[1]));

    // The job manager dies: its workers exit with it.
    kill_9(jm.id());
    jm.wait().unwrap();
    wait_until("the orphaned workers to exit", Duration::from_secs(30), || now.iter().all(|&w| !alive(w)));
    expected.extend(b.produce_numbered("payments", PARTITIONS, 1000, 500));

    let mut resumed = spawn_logged(&["run", "--resume", "--workers", "3"], &path, &log);
    wait_until("the third round through after --resume", Duration::from_secs(60), || records() == expected.len());
    // The job manager's API shows the lag its workers' Kafka sources report: nothing left to read.
    let lag_is_zero = || {
        let out = Command::new(wasmflow_bin()).args(["status", "--json", "--job"]).arg(&path).output().unwrap();
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let lags = status["job"]["kafka_lag"].as_array().cloned().unwrap_or_default();
        lags.len() == PARTITIONS as usize && lags.iter().all(|l| l["lag"] == 0 && l["operator"] == "source")
    };
    wait_until("every partition's lag, reported by the workers, at 0", Duration::from_secs(30), lag_is_zero);
    let stop = Command::new(wasmflow_bin()).args(["stop", "--savepoint", "--job"]).arg(&path).output().unwrap();
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    assert!(resumed.wait().unwrap().success(), "{}", log_of(&log));
    assert!(log_of(&log).contains("restoring from s3://flows/jobs/payments/chk-"), "{}", log_of(&log));
    let mut data = data_and_counts(&committed_lines(&out)).0;
    data.sort();
    expected.sort();
    assert_eq!(data, expected, "every record exactly once after a worker and the job manager were killed");
    assert_eq!(b.committed("g-workers", "payments", PARTITIONS).await, vec![1500; PARTITIONS as usize]);
}

/// Stop with a savepoint on two workers, then restore it at other parallelisms on two workers
/// and — from a copy of the same directory — in one process: the outputs are identical, line
/// for line (union and split state were redistributed the same way), and every record arrived
/// once.
#[test]
fn a_savepoint_from_two_workers_restores_at_other_parallelisms_as_in_one_process() {
    let dir = tempfile::tempdir().unwrap();
    let count = 6000;
    let pipeline = PipelineJob { count, records_per_second: Some(3000), source_parallelism: 3, ..Default::default() };
    let job = pipeline.write(dir.path());
    let log = dir.path().join("jm.log");
    let mut jm = spawn_logged(&["run", "--workers", "2"], &job, &log);
    wait_until("output", Duration::from_secs(30), || committed_lines(&dir.path().join("out")).len() > 200);
    let stop = Command::new(wasmflow_bin()).args(["stop", "--json", "--savepoint", "--job"]).arg(&job).output().unwrap();
    assert!(stop.status.success(), "{}\n{}", String::from_utf8_lossy(&stop.stderr), log_of(&log));
    let stopped: serde_json::Value = serde_json::from_slice(&stop.stdout).unwrap();
    let savepoint = stopped["savepoint"].as_str().expect("a savepoint").to_string();
    assert!(jm.wait().unwrap().success(), "{}", log_of(&log));
    let (partial, _) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert!(partial.len() < count as usize, "stopped before the end");

    // The same directory twice: one restores on workers, the other in one process.
    let copy = tempfile::tempdir().unwrap();
    assert!(Command::new("cp").arg("-a").arg(format!("{}/.", dir.path().display())).arg(copy.path()).status().unwrap().success());
    let rescale = ["--parallelism", "counter=2,numbers=2,upper=2,out=3", "--from-savepoint", &savepoint];
    let on_workers = Command::new(wasmflow_bin()).args(["run", "--workers", "2"]).args(rescale).arg(&job).output().unwrap();
    assert!(on_workers.status.success(), "{}", String::from_utf8_lossy(&on_workers.stderr));
    let in_process = Command::new(wasmflow_bin()).arg("run").args(rescale).arg(copy.path().join("job.toml")).output().unwrap();
    assert!(in_process.status.success(), "{}", String::from_utf8_lossy(&in_process.stderr));

    let mut distributed = committed_lines(&dir.path().join("out"));
    let mut local = committed_lines(&copy.path().join("out"));
    distributed.sort();
    local.sort();
    let (data, counts) = data_and_counts(&distributed);
    assert_exactly_once(&data, count, "a savepoint from two workers restored on two workers");
    assert_eq!(counts.len(), 2, "one total per new counter subtask");
    assert_eq!(counts.iter().sum::<u64>(), count);
    assert_eq!(distributed, local, "restored on workers exactly as in one process");
}

/// Workers started by someone else (`--external-workers`): one with the wrong secret is refused
/// and exits naming the secret; one with the right secret runs the job to exact output. Either
/// side without a secret is a usage error naming the variable.
#[test]
fn only_workers_with_the_cluster_secret_can_attach() {
    let dir = tempfile::tempdir().unwrap();
    let count = 500;
    let job = PipelineJob { count, source_parallelism: 1, counter_parallelism: 1, sink_parallelism: 1, ..Default::default() }.write(dir.path());
    let secret = "0123456789abcdef0123456789abcdef";

    let no_secret =
        Command::new(wasmflow_bin()).args(["run", "--workers", "1", "--external-workers"]).arg(&job).env_remove("WASMFLOW_CLUSTER_SECRET").output().unwrap();
    assert_eq!(no_secret.status.code(), Some(2), "a usage error");
    assert!(String::from_utf8_lossy(&no_secret.stderr).contains("WASMFLOW_CLUSTER_SECRET is not set"), "{}", String::from_utf8_lossy(&no_secret.stderr));
    let short = Command::new(wasmflow_bin()).args(["worker", "--job-manager", "127.0.0.1:1"]).env("WASMFLOW_CLUSTER_SECRET", "short").output().unwrap();
    assert_eq!(short.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 16"), "{}", String::from_utf8_lossy(&short.stderr));

    let log = dir.path().join("jm.log");
    let mut jm = Command::new(wasmflow_bin())
        .args(["run", "--workers", "1", "--external-workers", "--cluster-listen", "127.0.0.1:0"])
        .arg(&job)
        .env("WASMFLOW_CLUSTER_SECRET", secret)
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until("the job manager listening for workers", Duration::from_secs(30), || log_of(&log).contains("attach at"));
    let address = log_of(&log).split("attach at ").nth(1).unwrap().split_whitespace().next().unwrap().to_string();

    let intruder = Command::new(wasmflow_bin())
        .args(["worker", "--job-manager", &address])
        .env("WASMFLOW_CLUSTER_SECRET", "not-the-secret-but-long-enough")
        .output()
        .unwrap();
    assert!(!intruder.status.success());
    assert!(String::from_utf8_lossy(&intruder.stderr).contains("wrong or missing cluster secret"), "{}", String::from_utf8_lossy(&intruder.stderr));
    assert!(jm.try_wait().unwrap().is_none(), "the job manager waits on for a real worker");

    let worker = Command::new(wasmflow_bin())
        .args(["worker", "--once", "--job-manager", &address])
        .env("WASMFLOW_CLUSTER_SECRET", secret)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(jm.wait().unwrap().success(), "{}", log_of(&log));
    let mut worker = worker;
    assert!(worker.wait().unwrap().success(), "the worker exits when its job manager is done");
    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "a job on an external worker");
    assert_eq!(counts, vec![count]);
}

/// A worker started by a cluster manager outlives its job manager: when one job manager is done
/// (or replaced), the worker drops what it ran and serves the next one at the same address.
#[test]
fn an_external_worker_serves_one_job_manager_after_another() {
    let secret = "fedcba9876543210fedcba9876543210";
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let address = format!("127.0.0.1:{port}");
    let mut worker =
        Command::new(wasmflow_bin()).args(["worker", "--job-manager", &address]).env("WASMFLOW_CLUSTER_SECRET", secret).stderr(Stdio::null()).spawn().unwrap();
    for count in [300, 700] {
        let dir = tempfile::tempdir().unwrap();
        let job = PipelineJob { count, source_parallelism: 1, counter_parallelism: 1, sink_parallelism: 1, ..Default::default() }.write(dir.path());
        let out = Command::new(wasmflow_bin())
            .args(["run", "--workers", "1", "--external-workers", "--cluster-listen", &address])
            .arg(&job)
            .env("WASMFLOW_CLUSTER_SECRET", secret)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
        assert_exactly_once(&data, count, "a job on a worker that served another job manager before");
        assert_eq!(counts, vec![count]);
        assert!(worker.try_wait().unwrap().is_none(), "the worker waits for the next job manager");
    }
    worker.kill().unwrap();
    worker.wait().unwrap();
}

/// The job manager's metrics count what the subtasks on its workers did, exactly as if they had
/// run in its own process: the workers report their counts, the job manager adds them up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_managers_metrics_count_the_workers_records() {
    use std::collections::BTreeMap;
    use std::sync::Arc;
    use wasmflow_host::job::JobSpec;
    use wasmflow_host::metrics::JobMetrics;
    use wasmflow_host::runtime::{RunOptions, run_job};

    let dir = tempfile::tempdir().unwrap();
    let count = 3000;
    let path = PipelineJob { count, ..Default::default() }.write(dir.path());
    let spec = JobSpec::load(&path).unwrap();
    let pool = two_workers(&path).await;
    let metrics = Arc::new(JobMetrics::new("pipeline"));
    let engine = wasmflow_host::engine::Engine::new().unwrap();
    run_job(&engine, &spec, RunOptions { metrics: Some(metrics.clone()), workers: Some(pool), ..Default::default() }).await.unwrap();

    let (data, counts) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_exactly_once(&data, count, "a job on two workers");
    let records: BTreeMap<String, (u64, u64)> = metrics.records().into_iter().map(|(op, i, o)| (op, (i, o))).collect();
    assert_eq!(records["numbers"], (0, count));
    assert_eq!(records["upper"], (count, count));
    assert_eq!(records["counter"], (count, count + counts.len() as u64), "the counter's records and its totals");
    assert_eq!(records["out"], (count + counts.len() as u64, 0));
}

/// The workers a job manager starts log in its format to its stderr: with `--log-format json`
/// every line is still a JSON object, the workers' among them; in text, a worker's lines say
/// which worker wrote them.
#[test]
fn workers_log_in_their_job_managers_format() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 300, ..Default::default() }.write(dir.path());
    let out =
        Command::new(wasmflow_bin()).args(["--log-format", "json", "run", "--workers", "2"]).arg(&job).env_remove("WASMFLOW_LOG_FORMAT").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> =
        stderr.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{stderr}"))).collect();
    assert!(lines.iter().any(|l| l["target"] == "wasmflow_host::cluster::worker"), "the workers' lines are there: {stderr}");

    let out = Command::new(wasmflow_bin()).args(["run", "--workers", "2"]).arg(&job).env_remove("WASMFLOW_LOG_FORMAT").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let attached: Vec<&str> = stderr.lines().filter(|l| l.contains("attached to")).collect();
    assert_eq!(attached.len(), 2, "{stderr}");
    for line in attached {
        let pid = line.split("worker ").nth(1).and_then(|r| r.split(':').next()).unwrap_or_default();
        assert!(line.starts_with(&format!("worker {pid}: ")) && pid.parse::<u32>().is_ok(), "a worker's line names it: {line}");
    }
}

/// While a job runs on two workers, the job manager's page has the fill of every output edge of
/// every subtask, whichever worker runs it; when the job ends, none is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_job_manager_shows_the_workers_channel_fill() {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use tokio::sync::{mpsc, oneshot};
    use wasmflow_host::job::JobSpec;
    use wasmflow_host::metrics::JobMetrics;
    use wasmflow_host::runtime::job::ControlRequest;
    use wasmflow_host::runtime::{RunOptions, run_job};

    let dir = tempfile::tempdir().unwrap();
    let path = PipelineJob { count: 1_000_000, records_per_second: Some(2000), ..Default::default() }.write(dir.path());
    let spec = JobSpec::load(&path).unwrap();
    let pool = two_workers(&path).await;
    let metrics = Arc::new(JobMetrics::new("pipeline"));
    let (tx, rx) = mpsc::channel(4);
    let engine = wasmflow_host::engine::Engine::new().unwrap();
    let running = run_job(&engine, &spec, RunOptions { metrics: Some(metrics.clone()), workers: Some(pool), control: Some(rx), ..Default::default() });
    let edges = |m: &JobMetrics| -> BTreeSet<(String, u32, String)> { m.channel_fills().into_iter().map(|(l, _)| (l.operator, l.subtask, l.target)).collect() };
    let expected: BTreeSet<(String, u32, String)> =
        [("upper", 0, "counter"), ("upper", 1, "counter"), ("counter", 0, "out"), ("counter", 1, "out"), ("counter", 2, "out")]
            .into_iter()
            .map(|(o, s, t)| (o.to_string(), s, t.to_string()))
            .collect();
    let driver = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while edges(&metrics) != expected {
            assert!(std::time::Instant::now() < deadline, "edges on the page: {:?}", edges(&metrics));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (reply, answer) = oneshot::channel();
        tx.send(ControlRequest::Stop { savepoint: None, reply }).await.unwrap();
        answer.await.unwrap().unwrap();
    };
    let (report, ()) = tokio::join!(running, driver);
    assert!(report.unwrap().stopped);
    assert!(metrics.channel_fills().is_empty(), "the workers' channels are gone with the job: {:?}", metrics.channel_fills());
}

/// A job manager's pool of two local workers for the job at `path`, as `run --workers 2` makes it.
async fn two_workers(path: &Path) -> wasmflow_host::cluster::WorkerPool {
    use wasmflow_host::cluster::{ClusterOptions, Secret, WorkerPool};
    use wasmflow_host::job::{JobSpec, Overrides};
    let text = JobSpec::effective_text(path, &Overrides::none(), &std::collections::BTreeMap::new()).unwrap();
    let options = ClusterOptions {
        workers: 2,
        listen: "127.0.0.1:0".parse().unwrap(),
        spawn: Some(wasmflow_bin()),
        secret: Secret::generate().unwrap(),
        worker_env: Vec::new(),
    };
    WorkerPool::start(options, path.display().to_string(), text).await.unwrap()
}
