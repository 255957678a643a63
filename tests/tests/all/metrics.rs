//! Prometheus metrics end to end (docs/operations.md, "Metrics"): jobs run with a `JobMetrics`,
//! the OpenMetrics page parsed strictly (`wasmflow_tests::openmetrics`), and its numbers held
//! against what the job is known to have done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::metrics::JobMetrics;
use wasmflow_host::runtime::channel::key_partition;
use wasmflow_host::runtime::job::ControlRequest;
use wasmflow_host::runtime::{RunOptions, run_job};
use wasmflow_tests::broker::TestBroker;
use wasmflow_tests::job::{KafkaJob, PipelineJob};
use wasmflow_tests::openmetrics::{Page, parse};

/// Records and key + value bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Moved {
    records: u64,
    bytes: u64,
}

impl Moved {
    fn add(&mut self, bytes: usize) {
        self.records += 1;
        self.bytes += bytes as u64;
    }
}

fn page(metrics: &JobMetrics) -> Page {
    let text = metrics.encode();
    parse(&text).unwrap_or_else(|e| panic!("not OpenMetrics: {e}\n{text}"))
}

fn subtask_value(page: &Page, name: &str, op: &str, subtask: u32) -> f64 {
    page.value(name, &[("operator", op), ("subtask", &subtask.to_string())]).unwrap_or_else(|| panic!("no {name} for {op}/{subtask}"))
}

/// generator (2) → uppercase (2, chained) → counter (3, key-hash) → sink (3, forward: chained
/// to the counter). Every subtask's records and bytes are known exactly: subtask `i` of the
/// generator emits the numbers `n ≡ i mod 2` (key `n`, value `record-n`), the counter subtask
/// that owns key `n` takes it, and each counter subtask adds one `count` record at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_job_s_page_counts_every_record_and_checkpoint_exactly() {
    let count = 3000u64;
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count, counter_parallelism: 3, sink_parallelism: 3, counter_to_sink: "forward", ..Default::default() };
    let spec = JobSpec::load(&job.write(dir.path())).unwrap();
    let metrics = Arc::new(JobMetrics::new("pipeline"));
    let started = Instant::now();
    let report = run_job(&Engine::new().unwrap(), &spec, RunOptions { metrics: Some(metrics.clone()), ..Default::default() }).await.unwrap();
    let wall = started.elapsed().as_secs_f64();
    let page = page(&metrics);

    // What each subtask must have moved: (operator, subtask) → (in, out).
    let mut expected: BTreeMap<(&str, u32), (Moved, Moved)> = BTreeMap::new();
    for n in 0..count {
        let (key, value) = (n.to_string(), format!("record-{n}"));
        let bytes = key.len() + value.len();
        let source = (n % 2) as u32;
        expected.entry(("numbers", source)).or_default().1.add(bytes);
        let upper = expected.entry(("upper", source)).or_default();
        upper.0.add(bytes);
        upper.1.add(bytes); // upper-cased: the same length
        let c = key_partition(Some(key.as_bytes()), spec.job.max_parallelism(), 3) as u32;
        let counter = expected.entry(("counter", c)).or_default();
        counter.0.add(bytes);
        counter.1.add(bytes);
    }
    for c in 0..3 {
        let counter = expected.get_mut(&("counter", c)).unwrap();
        let total = counter.0.records;
        counter.1.add("count".len() + total.to_string().len());
        let out = counter.1;
        expected.insert(("out", c), (out, Moved::default()));
    }
    assert_eq!(expected.len(), 10);
    for (&(op, i), (input, output)) in &expected {
        let got = |name| subtask_value(&page, name, op, i) as u64;
        let got_in = Moved { records: got("wasmflow_input_records_total"), bytes: got("wasmflow_input_bytes_total") };
        let got_out = Moved { records: got("wasmflow_output_records_total"), bytes: got("wasmflow_output_bytes_total") };
        assert_eq!((got_in, got_out), (*input, *output), "{op}/{i}: (in, out)");
    }
    // No other subtask has series.
    let listed: BTreeSet<(String, String)> =
        page.samples("wasmflow_input_records_total").map(|s| (s.labels["operator"].clone(), s.labels["subtask"].clone())).collect();
    assert_eq!(listed.len(), expected.len());

    // Busy, idle and back-pressured time for every subtask, each a share of the run's wall
    // time (a loop's intervals never overlap); every operator was busy.
    for &(op, i) in expected.keys() {
        let t = |name| subtask_value(&page, &format!("wasmflow_subtask_{name}_seconds_total"), op, i);
        let (busy, idle, back_pressured) = (t("busy"), t("idle"), t("backpressured"));
        assert!(busy > 0.0, "{op}/{i} ran guest code");
        assert!(busy + idle + back_pressured <= wall * 1.01 + 0.05, "{op}/{i}: {busy} + {idle} + {back_pressured} > {wall}");
        assert!(subtask_value(&page, "wasmflow_guest_memory_bytes", op, i) > 0.0, "{op}/{i}: a wasm instance has memory");
        assert_eq!(subtask_value(&page, "wasmflow_guest_deadline_exceeded_total", op, i), 0.0);
    }

    // Checkpoints: the counter is the report's.
    let completed = report.completed_checkpoints.len() as f64;
    assert!(completed >= 1.0, "the final checkpoint");
    assert_eq!(page.value("wasmflow_checkpoints_completed_total", &[("kind", "checkpoint")]), Some(completed));
    assert_eq!(page.value("wasmflow_checkpoint_duration_seconds_count", &[("kind", "checkpoint")]), Some(completed));
    let failed = page.value("wasmflow_checkpoints_failed_total", &[("kind", "checkpoint")]).unwrap();
    assert_eq!(metrics.checkpoint_counts(), (completed as u64, failed as u64));
    assert_eq!(page.value("wasmflow_checkpoints_completed_total", &[("kind", "savepoint")]), Some(0.0));
    let last = report.checkpoint_stats.last().unwrap();
    assert_eq!(page.value("wasmflow_last_checkpoint_size_bytes", &[("kind", "checkpoint")]), Some(last.state_bytes as f64));
    assert_eq!(page.value("wasmflow_last_checkpoint_full_size_bytes", &[("kind", "checkpoint")]), Some(last.total_bytes as f64));
    assert_eq!(page.value("wasmflow_restarts_total", &[]), Some(0.0));
    assert_eq!(page.value("wasmflow_job_info", &[("job_name", "pipeline")]), Some(1.0));
    // The counter aligns two input channels: every completed checkpoint was aligned at each of
    // its subtasks (an acknowledgement needs it), an aborted one may have been.
    for c in 0..3 {
        let aligned = subtask_value(&page, "wasmflow_checkpoint_alignment_seconds_count", "counter", c);
        assert!(aligned >= completed && aligned <= completed + failed, "counter/{c}: {aligned} alignments, {completed} completed, {failed} failed");
    }
    // The job is over: its channels are gone, and so is their gauge.
    assert_eq!(page.samples("wasmflow_output_channel_fill_ratio").count(), 0);

    // The JSON view tells the same counts.
    let view = serde_json::to_value(metrics.operators()).unwrap();
    let counter = view.as_array().unwrap().iter().find(|o| o["operator"] == "counter").unwrap();
    let records_in: Vec<u64> = counter["subtasks"].as_array().unwrap().iter().map(|s| s["records_in"].as_u64().unwrap()).collect();
    assert_eq!(records_in, (0..3).map(|c| expected[&("counter", c)].0.records).collect::<Vec<_>>());
    for s in counter["subtasks"].as_array().unwrap() {
        for k in ["busy_ms_per_second", "idle_ms_per_second", "back_pressured_ms_per_second"] {
            let v = s[k].as_f64().unwrap();
            assert!((0.0..=1000.0).contains(&v), "{k} = {v}");
        }
    }
}

/// While a job runs, each channel edge leaving a subtask has a fill gauge (chained edges have no
/// channel, so none); the page parses at every scrape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_fill_is_on_the_page_while_the_job_runs() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob {
        count: 1_000_000,
        records_per_second: Some(2000),
        counter_parallelism: 3,
        sink_parallelism: 3,
        counter_to_sink: "forward",
        ..Default::default()
    };
    let spec = JobSpec::load(&job.write(dir.path())).unwrap();
    let metrics = Arc::new(JobMetrics::new("pipeline"));
    let (tx, rx) = mpsc::channel(4);
    let engine = Engine::new().unwrap();
    let running = run_job(&engine, &spec, RunOptions { metrics: Some(metrics.clone()), control: Some(rx), ..Default::default() });
    let driver = async {
        let deadline = Instant::now() + Duration::from_secs(60);
        let fills = loop {
            let page = page(&metrics);
            let fills: BTreeMap<(String, String, String), f64> = page
                .samples("wasmflow_output_channel_fill_ratio")
                .map(|s| ((s.labels["operator"].clone(), s.labels["subtask"].clone(), s.labels["target"].clone()), s.value))
                .collect();
            // A subtask's series appear when it is deployed: until then, none counted.
            let counted =
                (0..3).filter_map(|c| page.value("wasmflow_input_records_total", &[("operator", "counter"), ("subtask", &c.to_string())])).sum::<f64>();
            if counted > 0.0 && !fills.is_empty() {
                break fills;
            }
            assert!(Instant::now() < deadline, "no records reached the counter");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let (reply, answer) = oneshot::channel();
        tx.send(ControlRequest::Stop { savepoint: None, reply }).await.unwrap();
        answer.await.unwrap().unwrap();
        fills
    };
    let (report, fills) = tokio::join!(running, driver);
    assert!(report.unwrap().stopped);
    let edges: Vec<(&str, &str, &str)> = fills.keys().map(|(o, s, t)| (o.as_str(), s.as_str(), t.as_str())).collect();
    assert_eq!(edges, vec![("upper", "0", "counter"), ("upper", "1", "counter")]);
    assert!(fills.values().all(|f| (0.0..=1.0).contains(f)), "{fills:?}");
}

/// A bounded Kafka read: once everything is read, each partition's lag is 0, named by topic and
/// partition, and each source subtask emitted 50 records per partition it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_lag_reaches_zero_on_every_partition() {
    const PARTITIONS: i32 = 8;
    let b = TestBroker::start();
    b.create_topic("lagged", PARTITIONS as u32);
    for p in 0..PARTITIONS {
        let values: Vec<String> = (0..50).map(|i| format!("p{p}-{i:05}")).collect();
        b.produce("lagged", p, &values, None);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut job = KafkaJob::new(&b.bootstrap(), "lagged", "g-metrics");
    job.source_config.push("bounded = true".into());
    let spec = JobSpec::load(&job.write(dir.path())).unwrap();
    let metrics = Arc::new(JobMetrics::new("kafka"));
    run_job(&Engine::new().unwrap(), &spec, RunOptions { metrics: Some(metrics.clone()), ..Default::default() }).await.unwrap();
    let page = page(&metrics);
    let lag: Vec<_> = page.samples("wasmflow_kafka_consumer_lag_records").collect();
    let mut partitions_of: BTreeMap<String, u64> = BTreeMap::new();
    for p in 0..PARTITIONS {
        let of_p: Vec<_> = lag.iter().filter(|s| s.labels["topic"] == "lagged" && s.labels["partition"] == p.to_string()).collect();
        assert_eq!(of_p.len(), 1, "one lag series for partition {p}: {lag:?}");
        assert_eq!(of_p[0].labels["operator"], "source");
        assert_eq!(of_p[0].value, 0.0, "partition {p} read to its end");
        *partitions_of.entry(of_p[0].labels["subtask"].clone()).or_default() += 1;
    }
    assert_eq!(lag.len(), PARTITIONS as usize);
    for s in 0..4u32 {
        let read = partitions_of.get(&s.to_string()).copied().unwrap_or(0);
        assert_eq!(subtask_value(&page, "wasmflow_output_records_total", "source", s), (50 * read) as f64, "source/{s} reads {read} partitions");
        assert_eq!(subtask_value(&page, "wasmflow_kafka_commit_failures_total", "source", s), 0.0);
    }
    let view = metrics.kafka_lag();
    assert_eq!(view.len(), PARTITIONS as usize);
    assert!(view.iter().all(|l| l.lag == 0 && l.topic == "lagged"), "{view:?}");
}

/// A guest loops forever in `process`: each attempt hits the call deadline once, the job
/// restarts once and then fails. The deadline counter counts both attempts (a subtask keeps its
/// series across restarts) and the restart counter is the report's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_hits_and_restarts_are_counted_across_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[job]\nname = \"looping\"\n\n[restart]\nattempts = 1\ndelay-ms = 10\n\n[limits]\ncall-timeout-ms = 500\n\n\
         [[operators]]\nid = \"numbers\"\nmodule = \"{}\"\nconfig = {{ count = 100 }}\n\n\
         [[operators]]\nid = \"bad\"\nmodule = \"{}\"\nconfig = {{ behavior = \"loop-in-process\" }}\n\
         grants = {{ kafka = {{ bootstrap-servers = \"127.0.0.1:9\" }} }}\n\n\
         [[edges]]\nfrom = \"numbers\"\nto = \"bad\"\n",
        wasmflow_tests::operator("generator").display(),
        wasmflow_tests::operator("hostile").display(),
    );
    let path = dir.path().join("job.toml");
    std::fs::write(&path, text).unwrap();
    let spec = JobSpec::load(&path).unwrap();
    let metrics = Arc::new(JobMetrics::new("looping"));
    let e = run_job(&Engine::new().unwrap(), &spec, RunOptions { metrics: Some(metrics.clone()), ..Default::default() }).await.unwrap_err();
    assert!(format!("{e:#}").contains("1 restart(s) allowed, 1 used"), "{e:#}");
    let page = page(&metrics);
    assert_eq!(page.value("wasmflow_restarts_total", &[]), Some(1.0));
    assert_eq!(subtask_value(&page, "wasmflow_guest_deadline_exceeded_total", "bad", 0), 2.0);
    assert_eq!(subtask_value(&page, "wasmflow_guest_deadline_exceeded_total", "numbers", 0), 0.0);
    assert!(subtask_value(&page, "wasmflow_guest_memory_bytes", "bad", 0) > 0.0);
}

/// Without a watermark query of its own (a start at an explicit offset), a consumer learns the
/// high watermark from librdkafka's statistics, once a second: the lag then shows what the
/// operator has yet to read, and a fetch brings it down at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_learns_its_lag_from_librdkafka_statistics() {
    use wasmflow_host::connectors::kafka::{ConsumerOptions, KafkaConsumer, KafkaLimits, StartPosition};
    let b = TestBroker::start();
    b.create_topic("stats", 1);
    b.produce("stats", 0, &(0..10).map(|i| format!("v{i}")).collect::<Vec<_>>(), None);
    let metrics = JobMetrics::new("stats");
    let props = vec![("bootstrap.servers".to_string(), b.bootstrap()), ("group.id".to_string(), "g-stats".to_string())];
    let mut c =
        KafkaConsumer::with_options(&props, KafkaLimits::default(), ConsumerOptions { headers: false, metrics: Some(metrics.subtask("source", 0)) }).unwrap();
    c.assign(&[("stats".into(), 0, StartPosition::Offset(0))]).await.unwrap();
    let lag = || metrics.kafka_lag().iter().map(|l| (l.topic.clone(), l.partition, l.lag)).collect::<Vec<_>>();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut read = 0;
    while read < 4 {
        assert!(Instant::now() < deadline, "only {read} records fetched");
        read += c.fetch(4 - read, Duration::from_millis(200)).await.unwrap().len();
    }
    while lag() != vec![("stats".to_string(), 0, 6)] {
        assert!(Instant::now() < deadline, "no lag from the statistics: {:?}", lag());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    while read < 10 {
        assert!(Instant::now() < deadline, "only {read} records fetched");
        read += c.fetch(10, Duration::from_millis(200)).await.unwrap().len();
    }
    assert_eq!(lag(), vec![("stats".to_string(), 0, 0)], "the fetch that read the rest set the lag");
    let page = page(&metrics);
    assert_eq!(
        page.value("wasmflow_kafka_consumer_lag_records", &[("operator", "source"), ("subtask", "0"), ("topic", "stats"), ("partition", "0")]),
        Some(0.0)
    );
}
