//! The Kafka source end to end on a real broker (tansu), README.md, "The Kafka source".

use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::job::ControlRequest;
use wasmflow_host::runtime::{JobReport, RestoreFrom, RunOptions, run_job};
use wasmflow_tests::broker::TestBroker;
use wasmflow_tests::job::KafkaJob;
use wasmflow_tests::{committed_lines, data_and_counts, wasmflow_bin};

const PARTITIONS: i32 = 8;

/// Produces `per_partition` records into each of the 8 partitions; returns every value, sorted.
fn fill(b: &TestBroker, topic: &str, per_partition: usize, from: usize) -> Vec<String> {
    b.produce_numbered(topic, PARTITIONS, from, per_partition)
}

async fn run(spec: &JobSpec, restore: Option<RestoreFrom>) -> JobReport {
    run_job(&Engine::new().unwrap(), spec, RunOptions { restore, ..Default::default() }).await.unwrap()
}

fn output(dir: &Path) -> (Vec<String>, Vec<u64>) {
    data_and_counts(&committed_lines(&dir.join("out")))
}

/// docs/kafka-source.md §11: committed offset = last emitted + 1 once the (final) checkpoint completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_read_of_8_partitions_is_exactly_once_and_commits_offsets() {
    let b = TestBroker::start();
    b.create_topic("orders", PARTITIONS as u32);
    let expected = fill(&b, "orders", 50, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut job = KafkaJob::new(&b.bootstrap(), "orders", "g-bounded");
    job.source_config.push("bounded = true".into());
    let spec = JobSpec::load(&job.write(dir.path())).unwrap();
    let report = run(&spec, None).await;
    assert!(!report.completed_checkpoints.is_empty());
    let (data, counts) = output(dir.path());
    assert_eq!(data, expected, "every record exactly once");
    assert_eq!(counts.iter().sum::<u64>(), 400);
    assert_eq!(b.committed("g-bounded", "orders", PARTITIONS).await, vec![50; 8], "K-IT: 50 records per partition commit 50");
}

/// Runs a job that never ends (unbounded source) until `wanted` records are committed in the
/// sink output, then stops it with a savepoint into `target`.
async fn run_until_then_savepoint(spec: &JobSpec, restore: Option<RestoreFrom>, out: &Path, wanted: usize, target: &Path) -> std::path::PathBuf {
    let (tx, rx) = mpsc::channel(4);
    let engine = Engine::new().unwrap();
    let job = run_job(&engine, spec, RunOptions { restore, control: Some(rx), ..Default::default() });
    let stopper = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while committed_lines(out).len() < wanted {
            assert!(std::time::Instant::now() < deadline, "only {} of {wanted} records arrived", committed_lines(out).len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (reply, answer) = oneshot::channel();
        tx.send(ControlRequest::Stop { savepoint: Some(target.to_path_buf().into()), reply }).await.unwrap();
        answer.await.unwrap().unwrap().unwrap().as_local().unwrap().to_path_buf()
    };
    let (report, path) = tokio::join!(job, stopper);
    assert!(report.unwrap().stopped);
    path
}

/// docs/state.md (union lists) + docs/kafka-source.md §7: a savepoint at parallelism 4 restored at 3 and at 6: every
/// subtask re-filters the whole union list with the assignment formula; no record lost or read
/// twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savepoint_at_4_restored_at_3_and_6_reads_everything_once() {
    for new_p in [3u32, 6] {
        let b = TestBroker::start();
        b.create_topic("clicks", PARTITIONS as u32);
        let mut expected = fill(&b, "clicks", 40, 0);
        let dir = tempfile::tempdir().unwrap();
        let job = KafkaJob::new(&b.bootstrap(), "clicks", "g-rescale");
        let spec = JobSpec::load(&job.write(dir.path())).unwrap();
        let out = dir.path().join("out");
        let savepoint = run_until_then_savepoint(&spec, None, &out, 320, &dir.path().join("sp")).await;

        // More data arrives while the job is down.
        expected.extend(fill(&b, "clicks", 10, 40));
        expected.sort();
        let mut spec = JobSpec::load(&job.write(dir.path())).unwrap();
        spec.operators[0].parallelism = new_p;
        let wanted = expected.len();
        let _ = run_until_then_savepoint(&spec, Some(RestoreFrom::Savepoint(savepoint.into())), &out, wanted, &dir.path().join("sp2")).await;
        let (data, _) = output(dir.path());
        assert_eq!(data, expected, "exactly once across the rescale 4 -> {new_p}");
        let committed = b.committed("g-rescale", "clicks", PARTITIONS).await;
        assert_eq!(committed, vec![50; 8], "offsets committed at the final savepoint, at parallelism {new_p}");
    }
}

/// docs/kafka-source.md §12: with discovery on, partitions that appear while the job runs (here: a new topic
/// matching the subscription pattern — tansu cannot add partitions to a topic) are read from
/// EARLIEST, each by exactly one subtask (the formula owner), exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_discovered_while_running_are_read_from_earliest_once() {
    let b = TestBroker::start();
    b.create_topic("events-a", PARTITIONS as u32);
    let mut expected = fill(&b, "events-a", 20, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut job = KafkaJob::new(&b.bootstrap(), "unused", "g-discovery");
    job.subscription = Some("topic-pattern = \"events-.*\"".into());
    job.source_config.push("partition-discovery-interval-ms = 200".into());
    let spec = JobSpec::load(&job.write(dir.path())).unwrap();
    let out = dir.path().join("out");
    let (tx, rx) = mpsc::channel(4);
    let engine = Engine::new().unwrap();
    let running = run_job(&engine, &spec, RunOptions { control: Some(rx), ..Default::default() });
    let driver = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while committed_lines(&out).len() < 160 {
            assert!(std::time::Instant::now() < deadline, "first topic not read");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        b.create_topic("events-b", 4);
        let mut more = Vec::new();
        for p in 0..4 {
            let values: Vec<String> = (0..15).map(|i| format!("b{p}-{i:05}")).collect();
            b.produce("events-b", p, &values, None);
            more.extend(values);
        }
        while committed_lines(&out).len() < 220 {
            assert!(std::time::Instant::now() < deadline, "discovered partitions not read: {}", committed_lines(&out).len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (reply, answer) = oneshot::channel();
        tx.send(ControlRequest::Stop { savepoint: Some(dir.path().join("sp").into()), reply }).await.unwrap();
        answer.await.unwrap().unwrap();
        more
    };
    let (report, more) = tokio::join!(running, driver);
    assert!(report.unwrap().stopped);
    expected.extend(more);
    expected.sort();
    assert_eq!(output(dir.path()).0, expected);
    let committed_b = b.committed("g-discovery", "events-b", 4).await;
    assert_eq!(committed_b, vec![15; 4]);
}

/// A crashed process (kill -9) resumes from the latest complete checkpoint: every record once,
/// and no offset was ever committed past what a completed checkpoint covered (docs/kafka-source.md §11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_mid_run_then_resume_reads_everything_once() {
    let b = TestBroker::start();
    b.create_topic("payments", PARTITIONS as u32);
    let expected = fill(&b, "payments", 2500, 0);
    let dir = tempfile::tempdir().unwrap();
    let mut job = KafkaJob::new(&b.bootstrap(), "payments", "g-crash");
    job.source_config.push("max-records-per-poll = 1".into()); // slow enough to crash in mid-run
    job.checkpoint_interval_ms = 50;
    let path = job.write(dir.path());
    let mut child = std::process::Command::new(wasmflow_bin()).arg("run").arg(&path).stderr(std::process::Stdio::null()).spawn().unwrap();
    let checkpoints = dir.path().join("checkpoints");
    let complete = || std::fs::read_dir(&checkpoints).map(|d| d.flatten().filter(|e| e.path().join("_metadata").exists()).count()).unwrap_or(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while complete() < 1 || committed_lines(&dir.path().join("out")).is_empty() {
        assert!(std::time::Instant::now() < deadline, "no checkpoint in 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = output(dir.path()).0.len();
    assert!(partial < expected.len(), "crashed before the end ({partial} records)");

    // Nothing committed beyond the newest complete checkpoint's offsets + 1.
    let storage = wasmflow_host::runtime::job::job_storage(&JobSpec::load(&path).unwrap()).unwrap();
    let (newest, _) = storage.complete_checkpoints().unwrap().remove(0);
    let view = wasmflow_host::inspect::describe(&storage.load(&newest).unwrap());
    let mut in_checkpoint = vec![-1i64; PARTITIONS as usize];
    for sub in view["operators"]["source"]["subtasks"].as_array().unwrap() {
        for e in sub["states"][0]["entries"].as_array().unwrap() {
            let (p, o) = (e[1].as_i64().unwrap() as usize, e[2].as_i64().unwrap());
            in_checkpoint[p] = in_checkpoint[p].max(o);
        }
    }
    for (p, c) in b.committed("g-crash", "payments", PARTITIONS).await.into_iter().enumerate() {
        assert!(c <= in_checkpoint[p] + 1, "partition {p}: committed {c} past checkpoint offset {}", in_checkpoint[p]);
    }

    let spec = JobSpec::load(&path).unwrap();
    let _ = run_until_then_savepoint(&spec, Some(RestoreFrom::LatestCheckpoint), &dir.path().join("out"), expected.len(), &dir.path().join("sp")).await;
    assert_eq!(output(dir.path()).0, expected);
    assert_eq!(b.committed("g-crash", "payments", PARTITIONS).await, vec![2500; 8]);
}

async fn failing(job: KafkaJob) -> String {
    let dir = tempfile::tempdir().unwrap();
    let spec = JobSpec::load(&job.write(dir.path())).unwrap();
    format!("{:#}", run_job(&Engine::new().unwrap(), &spec, RunOptions::default()).await.unwrap_err())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_setups_fail_with_clear_errors() {
    let b = TestBroker::start();
    // A topic that does not exist.
    let e = failing(KafkaJob::new(&b.bootstrap(), "nope", "g")).await;
    assert!(e.contains("source[0]: open failed: topic 'nope' does not exist"), "{e}");
    // No Kafka capability granted.
    let mut job = KafkaJob::new(&b.bootstrap(), "t", "g");
    job.grant_kafka = false;
    let e = failing(job).await;
    assert!(
        e.contains(
            "imports `wasmflow:operator/kafka@0.5.0` but the job file does not grant it; add `grants = { kafka = { bootstrap-servers = \"host:port\" } }`"
        ),
        "{e}"
    );
    // An unreachable broker: retries with back-off, then fails in bounded time.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut job = KafkaJob::new(&format!("127.0.0.1:{port}"), "t", "g");
    job.limits.push("kafka-connect-timeout-ms = 1500".into());
    let started = std::time::Instant::now();
    let e = failing(job).await;
    assert!(e.contains(&format!("cannot reach Kafka at 127.0.0.1:{port} after 1 s")), "{e}");
    assert!(started.elapsed() < Duration::from_secs(30), "not a hang");
}

/// The Kafka sink (at-least-once, flush at every checkpoint): every generated record reaches
/// the topic; with no failure, exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_sink_writes_every_record() {
    let b = TestBroker::start();
    b.create_topic("sunk", 3);
    let dir = tempfile::tempdir().unwrap();
    let t = format!(
        r#"[checkpoints]
interval-ms = 100
dir = "checkpoints"

[[operators]]
id = "numbers"
module = "{gen}"
config = {{ count = 900 }}

[[operators]]
id = "to-kafka"
module = "{sink}"
grants = {{ kafka = {{ bootstrap-servers = "{bootstrap}" }} }}
config = {{ topic = "sunk" }}

[[edges]]
from = "numbers"
to = "to-kafka"
"#,
        gen = wasmflow_tests::operator("generator").display(),
        sink = wasmflow_tests::operator("kafka-sink").display(),
        bootstrap = b.bootstrap(),
    );
    std::fs::write(dir.path().join("job.toml"), t).unwrap();
    run(&JobSpec::load(&dir.path().join("job.toml")).unwrap(), None).await;
    assert_eq!(b.latest("sunk", 3).await.iter().sum::<i64>(), 900);
}

fn tagged(values: &[String], partition: i32, from: usize) -> Vec<String> {
    values.iter().filter(|v| v.starts_with(&format!("p{partition}-"))).filter(|v| v[v.len() - 5..].parse::<usize>().unwrap() >= from).cloned().collect()
}

/// docs/kafka-source.md §3 on a real broker: group-offsets (committed offsets), specific-offsets
/// (others fall back to the group offset, then `auto.offset.reset`), latest (only new records).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_modes_read_from_the_right_offset() {
    let b = TestBroker::start();
    b.create_topic("modes", PARTITIONS as u32);
    let all = fill(&b, "modes", 10, 0);

    // group-offsets: the group committed 7 everywhere → records 7, 8, 9 of each partition.
    let c = wasmflow_host::connectors::kafka::KafkaConsumer::new(
        &[("bootstrap.servers".into(), b.bootstrap()), ("group.id".into(), "g-modes".into())],
        Default::default(),
    )
    .unwrap();
    c.commit(&(0..PARTITIONS).map(|p| ("modes".to_string(), p, 7)).collect::<Vec<_>>()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while b.committed("g-modes", "modes", PARTITIONS).await != vec![7; 8] {
        assert!(std::time::Instant::now() < deadline, "commit not visible");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bounded = |mode: &str, group: &str, extra: &[&str]| {
        let mut job = KafkaJob::new(&b.bootstrap(), "modes", group);
        job.startup_mode = mode.into();
        job.source_config.push("bounded = true".into());
        job.source_config.extend(extra.iter().map(|s| s.to_string()));
        job
    };
    let run_bounded = |job: KafkaJob| async move {
        let dir = tempfile::tempdir().unwrap();
        run(&JobSpec::load(&job.write(dir.path())).unwrap(), None).await;
        output(dir.path()).0
    };
    let expected: Vec<String> = {
        let mut v: Vec<String> = (0..PARTITIONS).flat_map(|p| tagged(&all, p, 7)).collect();
        v.sort();
        v
    };
    assert_eq!(run_bounded(bounded("group-offsets", "g-modes", &[])).await, expected, "group-offsets");

    // specific-offsets: partition 0 from 4; the others have no committed offset in this group
    // and auto.offset.reset is latest → nothing.
    let specific = run_bounded(bounded("specific-offsets", "g-specific", &["specific-offsets = { \"modes:0\" = 4 }"])).await;
    assert_eq!(specific, tagged(&all, 0, 4), "specific-offsets");

    // latest: nothing of what is there; bounded at start → ends at once with no records.
    assert_eq!(run_bounded(bounded("latest", "g-latest", &[])).await, Vec::<String>::new(), "latest");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_over_the_limit_fails_naming_it() {
    let b = TestBroker::start();
    b.create_topic("big", 1);
    b.produce("big", 0, &["small".to_string(), "x".repeat(5000)], None);
    let dir = tempfile::tempdir().unwrap();
    let mut job = KafkaJob::new(&b.bootstrap(), "big", "g-big");
    job.source_parallelism = 1;
    job.limits.push("kafka-max-record-bytes = 1024".into());
    let spec = JobSpec::load(&job.write(dir.path())).unwrap();
    let e = format!("{:#}", run_job(&Engine::new().unwrap(), &spec, RunOptions::default()).await.unwrap_err());
    assert!(e.contains("record at big/0@1 has 5005 bytes, over the limit of 1024 bytes"), "{e}");
}

/// The last offset commit of a bounded job (the final checkpoint's) used to be lost about one
/// run in three when the restored source had nothing left to read: the commit was sent
/// asynchronously and the client dropped right after. The host now finishes it before the
/// consumer goes away, as Kafka's `close()` does. Each round restores a source whose state is at
/// offset 9 into a job committing as a new group; the group must end at 10. Run in a loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_commit_of_a_bounded_job_is_never_lost() {
    let b = TestBroker::start();
    b.create_topic("final", 1);
    b.produce("final", 0, &(0..10).map(|i| format!("v{i}")).collect::<Vec<_>>(), None);
    for round in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let mut first = KafkaJob::new(&b.bootstrap(), "final", &format!("g-read-{round}"));
        first.source_parallelism = 1;
        let spec = JobSpec::load(&first.write(dir.path())).unwrap();
        let savepoint = run_until_then_savepoint(&spec, None, &dir.path().join("out"), 10, &dir.path().join("sp")).await;

        let group = format!("g-final-{round}");
        let mut second = KafkaJob::new(&b.bootstrap(), "final", &group);
        second.source_parallelism = 1;
        second.source_config.push("bounded = true".into());
        run(&JobSpec::load(&second.write(dir.path())).unwrap(), Some(RestoreFrom::Savepoint(savepoint.into()))).await;
        assert_eq!(b.committed(&group, "final", 1).await, vec![10], "round {round}: the final checkpoint's commit arrived");
    }
}

/// 100 partitions on one subtask, bounded and discovered. Start and end offsets used to be
/// resolved one partition at a time, each waiting behind the fetch long-poll (~0.5 s): 50
/// partitions ran past the call deadline. Queries now go out together on a metadata client, and
/// time the host waits on the network does not count against the guest's deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_partitions_on_one_subtask_bounded_and_discovered() {
    let b = TestBroker::start();
    let fill_wide = |topic: &str| {
        b.create_topic(topic, 100);
        let mut values = Vec::new();
        for p in 0..100 {
            let v = vec![format!("{topic}-{p:03}")];
            b.produce(topic, p, &v, None);
            values.extend(v);
        }
        values.sort();
        values
    };
    let wide = fill_wide("wide-a");

    // Bounded: start and end offsets of 100 partitions, within a 3 s call deadline.
    let dir = tempfile::tempdir().unwrap();
    let mut job = KafkaJob::new(&b.bootstrap(), "wide-a", "g-wide");
    job.source_parallelism = 1;
    job.source_config.push("bounded = true".into());
    job.limits.push("call-timeout-ms = 3000".into());
    run(&JobSpec::load(&job.write(dir.path())).unwrap(), None).await;
    assert_eq!(output(dir.path()).0, wide, "every record of 100 partitions once");
    assert_eq!(b.committed("g-wide", "wide-a", 100).await, vec![1; 100]);

    // Discovered: a new 100-partition topic matching the pattern while the job runs.
    let dir = tempfile::tempdir().unwrap();
    let mut job = KafkaJob::new(&b.bootstrap(), "unused", "g-wide-discovery");
    job.source_parallelism = 1;
    job.subscription = Some("topic-pattern = \"wide-.*\"".into());
    job.source_config.push("partition-discovery-interval-ms = 200".into());
    job.limits.push("call-timeout-ms = 3000".into());
    let spec = JobSpec::load(&job.write(dir.path())).unwrap();
    let out = dir.path().join("out");
    let (tx, rx) = mpsc::channel(4);
    let engine = Engine::new().unwrap();
    let running = run_job(&engine, &spec, RunOptions { control: Some(rx), ..Default::default() });
    let driver = async {
        let deadline = std::time::Instant::now() + Duration::from_secs(90);
        while committed_lines(&out).len() < 100 {
            assert!(std::time::Instant::now() < deadline, "first topic not read");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let more = fill_wide("wide-b");
        while committed_lines(&out).len() < 200 {
            assert!(std::time::Instant::now() < deadline, "discovered partitions not read: {}", committed_lines(&out).len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (reply, answer) = oneshot::channel();
        tx.send(ControlRequest::Stop { savepoint: None, reply }).await.unwrap();
        answer.await.unwrap().unwrap();
        more
    };
    let (report, more) = tokio::join!(running, driver);
    assert!(report.unwrap().stopped, "the job ran until stopped: discovery did not fail it");
    let mut expected = wide.clone();
    expected.extend(more);
    expected.sort();
    assert_eq!(output(dir.path()).0, expected);
}
