//! The Kafka source end to end on a real broker (tansu), shared/flink-semantics.md §3.

use std::path::Path;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::job::ControlRequest;
use wasmflow_host::runtime::{JobReport, RestoreFrom, RunOptions, run_job};
use wasmflow_tests::broker::TestBroker;
use wasmflow_tests::job::KafkaJob;
use wasmflow_tests::{committed_lines, data_and_counts};

const PARTITIONS: i32 = 8;

/// Produces `per_partition` records into each of the 8 partitions; returns every value, sorted.
fn fill(b: &TestBroker, topic: &str, per_partition: usize, from: usize) -> Vec<String> {
    let mut all = Vec::new();
    for p in 0..PARTITIONS {
        let values: Vec<String> = (from..from + per_partition).map(|i| format!("p{p}-{i:05}")).collect();
        b.produce(topic, p, &values, None);
        all.extend(values);
    }
    all.sort();
    all
}

async fn run(spec: &JobSpec, restore: Option<RestoreFrom>) -> JobReport {
    run_job(&Engine::new().unwrap(), spec, RunOptions { restore, ..Default::default() }).await.unwrap()
}

fn output(dir: &Path) -> (Vec<String>, Vec<u64>) {
    data_and_counts(&committed_lines(&dir.join("out")))
}

/// §3.11: committed offset = last emitted + 1 once the (final) checkpoint completed.
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
        tx.send(ControlRequest::Stop { savepoint: Some(target.to_path_buf()), reply }).await.unwrap();
        answer.await.unwrap().unwrap().unwrap()
    };
    let (report, path) = tokio::join!(job, stopper);
    assert!(report.unwrap().stopped);
    path
}

/// §1.4.3 + §3.7: a savepoint at parallelism 4 restored at 3 and at 6: every subtask re-filters
/// the whole union list with the assignment formula; no record lost or read twice.
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
        let _ = run_until_then_savepoint(&spec, Some(RestoreFrom::Savepoint(savepoint)), &out, wanted, &dir.path().join("sp2")).await;
        let (data, _) = output(dir.path());
        assert_eq!(data, expected, "exactly once across the rescale 4 -> {new_p}");
        let committed = b.committed("g-rescale", "clicks", PARTITIONS).await;
        assert_eq!(committed, vec![50; 8], "offsets committed at the final savepoint, at parallelism {new_p}");
    }
}
