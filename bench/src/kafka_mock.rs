//! The Kafka source's own cost: the wasm Kafka source against plain rdkafka consumers, both
//! reading from librdkafka's in-process mock cluster (`rdkafka::mocking::MockCluster`), which
//! serves records far faster than tansu, so the readers set the pace and not the broker.
//!
//! Method:
//!
//! - One mock broker holds a topic of [`PARTITIONS`] partitions with [`RECORDS_PER_PARTITION`]
//!   records of [`VALUE_BYTES`] B each (10 M in all). The mock keeps at most 5 MB per partition
//!   and deletes older segments beyond that, so 10 M records cannot sit in a few partitions; in
//!   400 partitions each holds about 3 MB. The data is produced once, before any reader runs,
//!   and every partition's watermarks are checked to be exactly `0..RECORDS_PER_PARTITION` before
//!   and after the measurements, so every reader reads exactly the same records.
//! - The producer writes large batches (`batch.size` 1 MB): the mock answers a fetch with one
//!   stored batch per partition, so this gives fetches of the size a real broker returns with
//!   the default `max.partition.fetch.bytes` (1 MB).
//! - At parallelism `p`, the plain reader is `p` threads, each a `BaseConsumer` assigned a
//!   round-robin share of the partitions from offset 0, polling one message at a time, reading
//!   its payload length and checking that each partition's offsets arrive in order without gaps
//!   or repeats ([`Plain::Offsets`]: librdkafka's cost alone, no byte of a record read); a second
//!   plain reader also copies each key and value into a batch buffer and reads the timestamp, as
//!   an application handing records on does ([`Plain::Records`]). The wasm reader is a job `kafka-source → null-sink` at parallelism `p`
//!   (forward edge, bounded, no checkpoints); the null sink's input count must equal 10 M.
//! - Both get the same librdkafka fetch properties ([`FETCH_PROPERTIES`], plus
//!   `queued.max.messages.kbytes`, which the host sets for its consumers and the plain consumer
//!   gets set to the same value). Timings run from creating the clients (starting the job) to
//!   the last record, median of [`RUNS`] runs; the runs alternate plain and wasm.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::metrics::JobMetrics;
use wasmflow_host::runtime::{RunOptions, run_job};

const TOPIC: &str = "bench-mock";
const PARTITIONS: i32 = 400;
const RECORDS_PER_PARTITION: i64 = 25_000;
const RECORDS: u64 = PARTITIONS as u64 * RECORDS_PER_PARTITION as u64;
const VALUE_BYTES: usize = 100;
const RUNS: usize = 3;
const PARALLELISM: [u32; 3] = [1, 2, 4];

/// librdkafka fetch properties both readers get, tuned for the mock broker (which, unlike a
/// real broker, never answers a waiting fetch early when it has no data for it).
pub const FETCH_PROPERTIES: &[(&str, &str)] = &[
    // Partitions already at their end are in every fetch; the mock makes each such fetch wait
    // this long before it answers, so the last records of a run would wait for it.
    ("fetch.wait.max.ms", "10"),
    ("fetch.min.bytes", "1"),
    // Fetch a partition again while it has fewer than this many records queued (the default;
    // also the host's upper bound for guests).
    ("queued.min.messages", "100000"),
    // All of one fetch's partitions (one 1 MB batch each) up to 64 MB (the host's upper bound).
    ("fetch.max.bytes", "67108864"),
    ("max.partition.fetch.bytes", "1048576"),
    // A partition whose queue is over its bounds is fetched again only after this long
    // (librdkafka's default: 1000 ms). Here every partition's queue fills within one fetch, so
    // with the default both readers spent most of the run waiting out that pause, and the
    // comparison measured the pause rather than the readers.
    ("fetch.queue.backoff.ms", "10"),
];

/// The per-partition queue bound the host gives its consumers (`KafkaLimits::max_fetch_bytes`
/// / 1024, overriding a guest's value); the plain consumer gets the same.
const QUEUED_MAX_KBYTES: &str = "16384";

pub struct Row {
    pub reader: &'static str,
    pub parallelism: u32,
    pub records: u64,
    pub seconds: f64,
    /// CPU time of the whole process (user + system, all threads, the mock broker included).
    pub cpu_seconds: f64,
}

impl Row {
    fn rate(&self) -> f64 {
        self.records as f64 / self.seconds
    }

    fn per_cpu_second(&self) -> f64 {
        self.records as f64 / self.cpu_seconds
    }
}

/// User + system CPU time of this process so far, in seconds.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Produces the whole topic once: partition by partition, keys `key-<offset>`, 1 MB batches.
fn produce(cluster: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> Result<()> {
    cluster.create_topic(TOPIC, PARTITIONS, 1)?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", cluster.bootstrap_servers())
        .set("batch.size", "1000000")
        .set("batch.num.messages", "100000")
        .set("linger.ms", "50")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    let value = vec![b'v'; VALUE_BYTES];
    for p in 0..PARTITIONS {
        for i in 0..RECORDS_PER_PARTITION {
            let key = format!("key-{i}");
            let mut record = BaseRecord::to(TOPIC).partition(p).key(&key).payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        record = r;
                        producer.poll(Duration::from_millis(10));
                    }
                    Err((e, _)) => bail!("producing to the mock cluster: {e}"),
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Every partition holds exactly offsets `0..RECORDS_PER_PARTITION` (nothing deleted by the
/// mock's retention, nothing missing).
fn check_watermarks(bootstrap: &str) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new().set("bootstrap.servers", bootstrap).set("group.id", "bench-mock-check").create()?;
    for p in 0..PARTITIONS {
        let w = consumer.fetch_watermarks(TOPIC, p, Duration::from_secs(10))?;
        ensure!(w == (0, RECORDS_PER_PARTITION), "partition {p} holds offsets {}..{}, expected 0..{RECORDS_PER_PARTITION}", w.0, w.1);
    }
    Ok(())
}

fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", bootstrap).set("group.id", group).set("enable.auto.commit", "false").set("queued.max.messages.kbytes", QUEUED_MAX_KBYTES);
    for (k, v) in FETCH_PROPERTIES {
        c.set(*k, *v);
    }
    c
}

/// What a plain consumer does with each message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plain {
    /// Checks its offset and counts its payload length: no byte of the record is read, so this
    /// is librdkafka's own cost per record (the target's reference).
    Offsets,
    /// Also copies its key and value into a batch buffer (cleared every 1024 records) and reads
    /// its timestamp: what any reader that hands records on does, the source included.
    Records,
}

impl Plain {
    fn reader(self) -> &'static str {
        match self {
            Plain::Offsets => "plain rdkafka consumer",
            Plain::Records => "plain rdkafka consumer, copying records",
        }
    }
}

/// One plain consumer thread: reads its partitions from offset 0 to the end, checking that
/// each partition's offsets come in order without gaps or repeats; returns records and bytes.
fn plain_share(bootstrap: &str, parallelism: u32, index: u32, mode: Plain) -> Result<(u64, u64)> {
    let consumer: BaseConsumer = consumer_config(bootstrap, "bench-mock-plain").create()?;
    let mut tpl = TopicPartitionList::new();
    let mine: Vec<i32> = (0..PARTITIONS).filter(|p| *p as u32 % parallelism == index).collect();
    for p in &mine {
        tpl.add_partition_offset(TOPIC, *p, Offset::Offset(0))?;
    }
    consumer.assign(&tpl)?;
    let mut next = vec![0i64; PARTITIONS as usize];
    let total = mine.len() as u64 * RECORDS_PER_PARTITION as u64;
    let (mut seen, mut bytes) = (0u64, 0u64);
    let (mut batch, mut batched, mut timestamps) = (Vec::<u8>::with_capacity(1 << 20), 0, 0i64);
    let deadline = Instant::now() + Duration::from_secs(600);
    while seen < total {
        ensure!(Instant::now() < deadline, "plain consumer {index}/{parallelism} read {seen} of {total} records in 600 s");
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                let slot = &mut next[m.partition() as usize];
                ensure!(m.offset() == *slot, "plain consumer: partition {} gave offset {} where {} was next", m.partition(), m.offset(), *slot);
                *slot += 1;
                bytes += m.payload_len() as u64;
                seen += 1;
                if mode == Plain::Records {
                    batch.extend_from_slice(m.key().unwrap_or_default());
                    batch.extend_from_slice(m.payload().unwrap_or_default());
                    timestamps = timestamps.wrapping_add(m.timestamp().to_millis().unwrap_or(-1));
                    batched += 1;
                    if batched == 1024 {
                        std::hint::black_box(&batch);
                        batch.clear();
                        batched = 0;
                    }
                }
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => bail!("plain consumer: {e}"),
        }
    }
    std::hint::black_box((&batch, timestamps));
    Ok((seen, bytes))
}

/// `parallelism` plain consumers, one thread each, reading all partitions between them.
fn plain(bootstrap: &str, parallelism: u32, mode: Plain) -> Result<Row> {
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let shares: Vec<Result<(u64, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..parallelism).map(|i| s.spawn(move || plain_share(bootstrap, parallelism, i, mode))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("plain consumer thread panicked")))).collect()
    });
    let (seconds, cpu_seconds) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let (mut records, mut bytes) = (0, 0);
    for share in shares {
        let (r, b) = share?;
        records += r;
        bytes += b;
    }
    ensure!(records == RECORDS, "the plain consumers read {records} records, expected {RECORDS}");
    ensure!(bytes == RECORDS * VALUE_BYTES as u64, "the plain consumers read {bytes} payload bytes, expected {}", RECORDS * VALUE_BYTES as u64);
    Ok(Row { reader: mode.reader(), parallelism, records, seconds, cpu_seconds })
}

fn job_text(bootstrap: &str, parallelism: u32, run: usize) -> String {
    crate::kafka::source_to_null_job("kafka-mock-bench", bootstrap, TOPIC, parallelism, &format!("bench-mock-{parallelism}-{run}"), FETCH_PROPERTIES)
}

/// The job `kafka-source → null-sink` at `parallelism`, run to its bounded end; the sink must
/// have received every record.
async fn wasm(engine: &Engine, bootstrap: &str, parallelism: u32, run: usize) -> Result<Row> {
    let dir = tempfile::tempdir()?;
    let spec = JobSpec::parse(&job_text(bootstrap, parallelism, run), &dir.path().join("kafka-mock-bench.toml"))?;
    let metrics = Arc::new(JobMetrics::new("kafka-mock-bench"));
    let (started, cpu) = (Instant::now(), cpu_seconds());
    run_job(engine, &spec, RunOptions { metrics: Some(metrics.clone()), ..RunOptions::default() }).await?;
    let (seconds, cpu_seconds) = (started.elapsed().as_secs_f64(), cpu_seconds() - cpu);
    let records = metrics.records().into_iter().find(|(op, _, _)| op == "out").context("no metrics for the sink")?.1;
    ensure!(records == RECORDS, "the wasm source delivered {records} records to the sink, expected {RECORDS}");
    Ok(Row { reader: "wasm Kafka source", parallelism, records, seconds, cpu_seconds })
}

fn median(mut rows: Vec<Row>) -> Row {
    rows.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    rows.swap_remove(rows.len() / 2)
}

/// With `WASMFLOW_KAFKA_MOCK_ONLY=wasm:<p>` (or `plain:<p>`, `plain-records:<p>`), only that reader runs, repeatedly,
/// for a profiler to attach to; the report is then not written.
fn profile_only() -> Option<(String, u32)> {
    let v = std::env::var("WASMFLOW_KAFKA_MOCK_ONLY").ok()?;
    let (reader, p) = v.split_once(':')?;
    Some((reader.to_string(), p.parse().ok()?))
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok())).unwrap_or(f64::NAN)
}

pub fn measure(rt: &tokio::runtime::Runtime) -> Result<Vec<Row>> {
    let cluster = MockCluster::new(1)?;
    let bootstrap = cluster.bootstrap_servers();
    let started = Instant::now();
    produce(&cluster)?;
    check_watermarks(&bootstrap)?;
    eprintln!("kafka-mock: {RECORDS} records in {PARTITIONS} partitions produced in {:.1} s", started.elapsed().as_secs_f64());
    let engine = Engine::new()?;
    rt.block_on(wasm(&engine, &bootstrap, 1, 99))?; // warm-up: compile, broker, allocator
    if let Some((reader, p)) = profile_only() {
        for run in 0..RUNS {
            let row = match reader.as_str() {
                "plain" => plain(&bootstrap, p, Plain::Offsets)?,
                "plain-records" => plain(&bootstrap, p, Plain::Records)?,
                _ => rt.block_on(wasm(&engine, &bootstrap, p, run))?,
            };
            eprintln!("kafka-mock: {} at parallelism {p}: {:.2} s, {:.0}/s, {:.1} CPU s", row.reader, row.seconds, row.rate(), row.cpu_seconds);
        }
        bail!("WASMFLOW_KAFKA_MOCK_ONLY is set: profiling run only, no report");
    }
    let mut rows = Vec::new();
    for p in PARALLELISM {
        let (mut plains, mut copying, mut wasms) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..RUNS {
            plains.push(plain(&bootstrap, p, Plain::Offsets)?);
            copying.push(plain(&bootstrap, p, Plain::Records)?);
            wasms.push(rt.block_on(wasm(&engine, &bootstrap, p, run))?);
        }
        for row in [median(plains), median(copying), median(wasms)] {
            eprintln!("kafka-mock: parallelism {p}: {} {:.0}/s ({:.1} CPU s)", row.reader, row.rate(), row.cpu_seconds);
            rows.push(row);
        }
    }
    check_watermarks(&bootstrap)?;
    Ok(rows)
}

pub fn report(rows: &[Row], load: (f64, f64)) -> Result<String> {
    let mut s = String::new();
    writeln!(s, "## Kafka source's own cost (librdkafka mock broker)\n")?;
    writeln!(
        s,
        "{RECORDS} records ({VALUE_BYTES} B values, keys `key-<offset>`) in a {PARTITIONS}-partition topic on librdkafka's \
         in-process mock cluster (`rdkafka::mocking::MockCluster`, one broker), which serves records far faster than tansu. \
         The mock keeps at most 5 MB per partition, hence {PARTITIONS} partitions of {RECORDS_PER_PARTITION}; the data is \
         produced once in 1 MB batches (the mock answers a fetch with one stored batch per partition, so fetches are as \
         large as a real broker's with the default `max.partition.fetch.bytes`) and every partition's watermarks are \
         checked to be exactly 0..{RECORDS_PER_PARTITION} before and after, so all readers read the same records. \
         The plain reader at parallelism p is p threads with one `BaseConsumer` each, a round-robin share of the partitions \
         assigned from offset 0, checking every partition's offsets arrive without gap or repeat (no byte of a record is read: \
         librdkafka's own cost, the target's reference); the plain reader *copying records* also copies each key and value \
         into a batch buffer and reads each timestamp, as any reader that hands records on does; the wasm reader is the job \
         kafka-source → null-sink at parallelism p (bounded, no checkpoints), whose sink must count exactly {RECORDS} records. \
         Both from creating the clients (starting the job) to the last record; median of {RUNS} runs, alternating.\n"
    )?;
    let props: Vec<String> = FETCH_PROPERTIES.iter().map(|(k, v)| format!("`{k}={v}`")).collect();
    writeln!(
        s,
        "Fetch settings on both sides: {}, and `queued.max.messages.kbytes={QUEUED_MAX_KBYTES}` (what the host sets for its \
         consumers). Two of them decide what is measured: `fetch.wait.max.ms`, since the mock holds every fetch that finds \
         no new data for that long (default 500 ms) and partitions that reached their end are in every fetch; and \
         `fetch.queue.backoff.ms`, since every partition's queue fills within one fetch here and librdkafka then waits \
         that long before fetching the partition again (default 1000 ms). With that default both readers spent most of \
         the run waiting: earlier reports measured 0.24 M records/s for the plain consumer at parallelism 1, against \
         1.8 M with 10 ms. Job batch size: the default 1024.\n",
        props.join(", ")
    )?;
    writeln!(
        s,
        "| reader | parallelism | records | seconds | records/s | against plain | target ≥ 0.9 | against plain copying records | CPU s | records per CPU s | against plain (CPU) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|"
    )?;
    let reference = |mode: Plain, p: u32| rows.iter().find(|r| r.reader == mode.reader() && r.parallelism == p);
    for r in rows {
        let plain = reference(Plain::Offsets, r.parallelism);
        let ratio = r.rate() / plain.map_or(f64::NAN, Row::rate);
        let cpu_ratio = r.per_cpu_second() / plain.map_or(f64::NAN, Row::per_cpu_second);
        let verdict = crate::kafka::verdict(r.reader, ratio);
        let against_copying = match reference(Plain::Records, r.parallelism) {
            Some(c) if !r.reader.starts_with("plain") => format!("{:.2}", r.rate() / c.rate()),
            _ => "—".into(),
        };
        writeln!(
            s,
            "| {} | {} | {} | {:.2} | {:.0} | {ratio:.2} | {verdict} | {against_copying} | {:.1} | {:.0} | {cpu_ratio:.2} |",
            r.reader,
            r.parallelism,
            r.records,
            r.seconds,
            r.rate(),
            r.cpu_seconds,
            r.per_cpu_second()
        )?;
    }
    writeln!(
        s,
        "\nThe CPU columns count the whole process's CPU time during the read (every thread, the mock broker's included, \
         which serves the same bytes to both readers). They are the steadier measure of cost when the machine is shared: \
         the 1-minute load average was {} when this part started and {} when it ended, on {} cores; above the core count, \
         other processes took CPU from both readers, and wall-clock rates then grow with the number of threads a reader \
         runs, not only with its work. A reader whose CPU time stays about the same while its wall time falls as \
         parallelism grows spends most of its time waiting for fetches (librdkafka keeps one fetch in flight per broker \
         connection; the mock broker answers from one thread), so its wall-clock rate is not its cost.\n",
        load.0,
        load.1,
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )?;
    let rate = |reader: &str| rows.iter().find(|r| r.reader.starts_with(reader) && r.parallelism == 1).map_or(f64::NAN, Row::rate);
    let single = rate("wasm") / rate("plain");
    writeln!(
        s,
        "**Where the source's time goes.** Both readers are CPU-bound (see the CPU columns), so the ratio is what the \
         source costs per record beyond a plain consumer. Profiles (`perf record -g`; `WASMFLOW_KAFKA_MOCK_ONLY=wasm:1` \
         runs only that reader, `WASMFLOW_PERF_MAP=1` names guest functions) led to three rounds of changes. First, \
         per-record allocations: an owned topic, key and value per record on the host's poll thread, copied again into \
         allocations of their own in the guest, per-record lookups in maps keyed by topic string, and a check of all 400 \
         partitions against their end offsets at every poll; the poll thread now appends each message to a batch in \
         the contract's `fetched-batch` layout and the end check runs only after a partition may have reached its end \
         (CPU time at parallelism 1: 18.7 to about 12 s). Second, the guest boundary: a fetch crossed as a list of \
         records, which the canonical ABI lowers field by field (`options_memory_mut`, `linear_store_list_to_memory` \
         and `realloc` were a fifth of the subtask thread), and the guest rebuilt it into records and then copied each \
         into its output batch; since contract 0.4.0 a fetch crosses column by column, each list one bulk copy, with \
         keys, values and timestamps laid out as a batch, so the source emits a fetch whose records it all keeps as its \
         output without copying one. Third, the poll thread: it read every record's headers, for which librdkafka \
         allocates and frees a parsing buffer even when a record has none (`rd_kafka_message_headers`), and handed over \
         chunks of 256 records, each waking the subtask; headers now come only to a consumer created with \
         `with-headers` (the source emits no headers and does not ask), and chunks hold 1024 records (parallelism 1: \
         about 9.5 CPU s). What is left above the plain consumer: the poll thread appends every record (topic name read \
         and compared, timestamp, seven column pushes: the reference loop reads only partition, offset and payload \
         length; the plain reader copying records shows what reading them costs natively), the subtask copies runs out \
         of the chunks, and the fetch and the output cross the guest boundary (one bulk copy each); the null sink, a \
         second guest, is called once per batch but no longer receives its records (since contract 0.5.0 a guest is \
         lent its input and copies it only if it reads it; that saved a copy of each batch but moved the CPU \
         ratios by less than run-to-run noise). At parallelism 1 that \
         work runs on the second core beside the poll thread (wall-clock ratio {single:.2} here); from parallelism 2 on, \
         poll threads and librdkafka's broker threads keep both cores busy, so the extra CPU shows in the wall time as \
         well. In the profile at parallelism 2 the hand-over between poll thread and subtask (wake-ups, the copy out \
         of chunks) is about 5 % of the CPU; most of the rest is the per-record work above.\n"
    )?;
    Ok(s)
}
