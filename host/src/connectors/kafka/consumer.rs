//! The Kafka consumer a subtask's guest drives.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::fetched::{Cursor, Fetched, FetchedRecord, Room};
use super::metrics::{ConsumerMetrics, MetricsContext};
use super::{KafkaError, KafkaLimits, bootstrap, check_properties, client_config, with_retries};
use crate::metrics::SubtaskMetrics;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Offset queries in flight at once for one consumer.
const CONCURRENT_QUERIES: usize = 16;

/// Where to start reading an assigned partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartPosition {
    Earliest,
    Latest,
    /// The group's committed offset; if none, `auto.offset.reset` (default earliest).
    GroupCommitted,
    /// Exactly this offset (the next record to read).
    Offset(i64),
}

/// Records the poll thread hands over at once: one channel operation (and at most one wake-up of
/// the subtask) per chunk instead of per record.
const CHUNK: usize = 1024;

/// What the poll thread hands over: records, and the error that ended the chunk, if one did
/// (a fetch returns the records before it; the next fetch fails with it).
#[derive(Debug, Default)]
struct Chunk {
    records: Fetched,
    error: Option<KafkaError>,
}

/// A chunk being read by fetches.
#[derive(Debug, Default)]
struct Pending {
    records: Cursor,
    error: Option<KafkaError>,
}

impl From<Chunk> for Pending {
    fn from(c: Chunk) -> Pending {
        Pending { records: Cursor::new(c.records), error: c.error }
    }
}

/// What a consumer reads besides keys and values, and where it reports.
#[derive(Clone, Default)]
pub struct ConsumerOptions {
    /// Whether records carry their headers: librdkafka allocates to parse a record's headers
    /// even when it has none, a cost per record for a reader that does not use them.
    pub headers: bool,
    /// The subtask whose metrics the consumer reports into (lag per partition, commit
    /// failures, time waiting for records), if it runs in a job.
    pub metrics: Option<Arc<SubtaskMetrics>>,
}

/// A consumer with manual assignment (no group rebalancing: partitions are assigned by the
/// operator with Flink's formula) and a poll thread feeding a bounded buffer.
pub struct KafkaConsumer {
    client: Arc<BaseConsumer<MetricsContext>>,
    /// A second client for metadata and offset queries: the fetching client's requests wait
    /// behind its fetch long-poll (~0.5 s each), which made resolving 50 partitions one by one
    /// take longer than a guest call may.
    meta: Arc<BaseConsumer>,
    servers: String,
    limits: KafkaLimits,
    buffer: mpsc::Receiver<Chunk>,
    /// What is left of the chunk a fetch stopped in (it takes at most `max_records`).
    pending: Pending,
    stop: Arc<AtomicBool>,
    /// Next offset to hand to the guest per assigned partition; records the buffer holds for
    /// positions the guest has moved past (none today: assignment only adds) are dropped.
    positions: Arc<Mutex<BTreeMap<(String, i32), i64>>>,
    reset_to_latest: bool,
    /// The newest offsets handed to an asynchronous commit, committed again synchronously when
    /// the consumer is dropped (as Kafka's `close()` finishes pending commits): otherwise the
    /// last commit of a job — the final checkpoint's — could be lost with the client.
    last_commit: Mutex<BTreeMap<(String, i32), i64>>,
    /// Lag, commit failures and waits of the subtask the consumer reads for, if it runs in a job.
    metrics: Option<Arc<ConsumerMetrics>>,
}

/// Longest a dropped consumer waits for its final commit.
const CLOSE_COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

impl Drop for KafkaConsumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let last = std::mem::take(&mut *self.last_commit.lock().expect("commit lock"));
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &last {
            if tpl.add_partition_offset(t, *p, Offset::Offset(*o)).is_err() {
                return;
            }
        }
        if tpl.count() == 0 {
            return;
        }
        // On its own thread with a bound: a broker that is gone must not hang the teardown.
        let (client, (tx, rx)) = (self.client.clone(), std::sync::mpsc::channel());
        let spawned = std::thread::Builder::new().name("wasmflow-kafka-close".into()).spawn(move || {
            let _ = tx.send(client.commit(&tpl, CommitMode::Sync));
        });
        match spawned.map(|_| rx.recv_timeout(CLOSE_COMMIT_TIMEOUT)) {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!("Kafka consumer: the final offset commit failed: {e}");
                if let Some(m) = &self.metrics {
                    m.commit_failed();
                }
            }
            Ok(Err(_)) => tracing::warn!("Kafka consumer: the final offset commit did not finish in {CLOSE_COMMIT_TIMEOUT:?}"),
            Err(e) => tracing::warn!("Kafka consumer: cannot run the final offset commit: {e}"),
        }
    }
}

/// The offsets of a partition list; -1 where the broker has none.
fn offsets_of(tpl: &TopicPartitionList) -> Vec<(String, i32, i64)> {
    tpl.elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(o) => o,
                _ => -1,
            };
            (e.topic().to_string(), e.partition(), offset)
        })
        .collect()
}

fn timestamp_millis(m: &rdkafka::message::BorrowedMessage<'_>) -> i64 {
    m.timestamp().to_millis().unwrap_or(-1)
}

impl KafkaConsumer {
    /// Creates the client and starts its poll thread. Properties are checked first
    /// ([`super::check_properties`]); `enable.auto.commit` is the guest's choice (the Kafka
    /// source turns it off for checkpoint commits, docs/kafka-source.md §4).
    pub fn new(properties: &[(String, String)], limits: KafkaLimits) -> Result<KafkaConsumer, KafkaError> {
        KafkaConsumer::with_options(properties, limits, ConsumerOptions { headers: true, metrics: None })
    }

    /// [`Self::new`] with `options`. With metrics, librdkafka sends statistics once a second,
    /// from which the lag of every assigned partition is refreshed.
    pub fn with_options(properties: &[(String, String)], limits: KafkaLimits, options: ConsumerOptions) -> Result<KafkaConsumer, KafkaError> {
        check_properties(properties)?;
        let mut config = client_config(properties);
        if config.get("group.id").is_none() {
            // librdkafka needs a group id for a consumer even when nothing is committed.
            config.set("group.id", "wasmflow-unused");
            config.set("enable.auto.commit", "false");
        }
        config.set("enable.auto.offset.store", "false");
        config.set("queued.max.messages.kbytes", (limits.max_fetch_bytes / 1024).max(1024).to_string());
        let reset_to_latest = config.get("auto.offset.reset").is_some_and(|v| v == "latest" || v == "largest");
        let meta: Arc<BaseConsumer> = Arc::new(config.create()?);
        let positions: Arc<Mutex<BTreeMap<(String, i32), i64>>> = Arc::default();
        let metrics = options.metrics.map(|s| Arc::new(ConsumerMetrics::new(s, positions.clone())));
        if metrics.is_some() {
            config.set("statistics.interval.ms", super::metrics::STATISTICS_INTERVAL_MS.to_string());
        }
        let client: Arc<BaseConsumer<MetricsContext>> = Arc::new(config.create_with_context(MetricsContext(metrics.clone()))?);
        let (tx, rx) = mpsc::channel(limits.buffered_records.div_ceil(CHUNK).max(1));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s, max_record, headers) = (client.clone(), stop.clone(), limits.max_record_bytes, options.headers);
        std::thread::Builder::new()
            .name("wasmflow-kafka-poll".into())
            .spawn(move || poll_loop(&c, &tx, &s, Reading { max_record, headers }))
            .map_err(|e| KafkaError::Other(e.to_string()))?;
        Ok(KafkaConsumer {
            client,
            servers: bootstrap(properties),
            limits,
            buffer: rx,
            pending: Pending::default(),
            stop,
            positions,
            reset_to_latest,
            last_commit: Mutex::default(),
            meta,
            metrics,
        })
    }

    /// Names of all topics.
    pub async fn list_topics(&self) -> Result<Vec<String>, KafkaError> {
        let c = self.meta.clone();
        with_retries(&self.limits, &self.servers, move || {
            let md = c.fetch_metadata(None, REQUEST_TIMEOUT)?;
            Ok(md.topics().iter().filter(|t| t.error().is_none()).map(|t| t.name().to_string()).collect())
        })
        .await
    }

    /// Partitions of `topics`, sorted. A topic that does not exist is an error naming it.
    pub async fn list_partitions(&self, topics: &[String]) -> Result<Vec<(String, i32)>, KafkaError> {
        let mut out = Vec::new();
        for topic in topics {
            let (c, t) = (self.meta.clone(), topic.clone());
            let parts = with_retries(&self.limits, &self.servers, move || {
                let md = c.fetch_metadata(Some(&t), REQUEST_TIMEOUT)?;
                let tm = md.topics().iter().find(|m| m.name() == t).ok_or_else(|| KafkaError::NoSuchTopic(t.clone()))?;
                if tm.error().is_some() || tm.partitions().is_empty() {
                    return Err(KafkaError::NoSuchTopic(t.clone()));
                }
                Ok(tm.partitions().iter().map(|p| (t.clone(), p.id())).collect::<Vec<_>>())
            })
            .await?;
            out.extend(parts);
        }
        out.sort();
        Ok(out)
    }

    /// `(low, high)` watermarks of a partition: earliest offset, and the offset the next record
    /// will get.
    async fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), KafkaError> {
        let (c, t) = (self.meta.clone(), topic.to_string());
        with_retries(&self.limits, &self.servers, move || Ok(c.fetch_watermarks(&t, partition, REQUEST_TIMEOUT)?)).await
    }

    /// `(low, high)` watermarks of every partition, queried concurrently (at most
    /// [`CONCURRENT_QUERIES`] at a time) on the metadata client.
    async fn all_watermarks(&self, partitions: &[(String, i32)]) -> Result<Vec<(i64, i64)>, KafkaError> {
        let mut out = Vec::with_capacity(partitions.len());
        for chunk in partitions.chunks(CONCURRENT_QUERIES) {
            let found = futures::future::join_all(chunk.iter().map(|(t, p)| self.watermarks(t, *p))).await;
            for w in found {
                out.push(w?);
            }
        }
        // The high watermarks are news for the lag: the guest asked for them anyway.
        if let Some(m) = &self.metrics {
            m.highs(partitions.iter().zip(&out).map(|((t, p), (_, high))| (t.as_str(), *p, *high)));
        }
        Ok(out)
    }

    /// Earliest available offset of each partition.
    pub async fn earliest_offsets(&self, partitions: &[(String, i32)]) -> Result<Vec<(String, i32, i64)>, KafkaError> {
        let w = self.all_watermarks(partitions).await?;
        Ok(partitions.iter().zip(w).map(|((t, p), (low, _))| (t.clone(), *p, low)).collect())
    }

    /// High watermark (next offset to be written) of each partition.
    pub async fn latest_offsets(&self, partitions: &[(String, i32)]) -> Result<Vec<(String, i32, i64)>, KafkaError> {
        let w = self.all_watermarks(partitions).await?;
        Ok(partitions.iter().zip(w).map(|((t, p), (_, high))| (t.clone(), *p, high)).collect())
    }

    /// First offset whose timestamp is >= `timestamp_ms`, or -1 if there is none.
    pub async fn offsets_for_timestamp(&self, partitions: &[(String, i32)], timestamp_ms: i64) -> Result<Vec<(String, i32, i64)>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition_offset(t, *p, Offset::Offset(timestamp_ms))?;
        }
        let c = self.meta.clone();
        let found = with_retries(&self.limits, &self.servers, move || Ok(c.offsets_for_times(tpl.clone(), REQUEST_TIMEOUT)?)).await?;
        Ok(offsets_of(&found))
    }

    /// Offsets committed for this consumer's group (-1 where none).
    pub async fn committed_offsets(&self, partitions: &[(String, i32)]) -> Result<Vec<(String, i32, i64)>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (t, p) in partitions {
            tpl.add_partition(t, *p);
        }
        let c = self.meta.clone();
        let found = with_retries(&self.limits, &self.servers, move || Ok(c.committed_offsets(tpl.clone(), REQUEST_TIMEOUT)?)).await?;
        Ok(offsets_of(&found))
    }

    /// Adds partitions to the assignment. Each start position is resolved to an explicit offset
    /// first (earliest/latest from the watermarks, group-committed from the group or
    /// `auto.offset.reset`), so what is read next is known exactly; returns those offsets.
    pub async fn assign(&self, partitions: &[(String, i32, StartPosition)]) -> Result<Vec<(String, i32, i64)>, KafkaError> {
        // Every query in one go: the group's offsets in one request, watermarks concurrently.
        let group: Vec<(String, i32)> = partitions.iter().filter(|(_, _, s)| *s == StartPosition::GroupCommitted).map(|(t, p, _)| (t.clone(), *p)).collect();
        let committed: BTreeMap<(String, i32), i64> =
            if group.is_empty() { BTreeMap::new() } else { self.committed_offsets(&group).await?.into_iter().map(|(t, p, o)| ((t, p), o)).collect() };
        let needs_watermarks: Vec<(String, i32)> = partitions
            .iter()
            .filter(|(t, p, s)| match s {
                StartPosition::Offset(_) => false,
                StartPosition::GroupCommitted => committed.get(&(t.clone(), *p)).is_none_or(|o| *o < 0),
                StartPosition::Earliest | StartPosition::Latest => true,
            })
            .map(|(t, p, _)| (t.clone(), *p))
            .collect();
        let watermarks: BTreeMap<(String, i32), (i64, i64)> = needs_watermarks.iter().cloned().zip(self.all_watermarks(&needs_watermarks).await?).collect();
        let mut resolved = Vec::new();
        for (t, p, start) in partitions {
            let key = (t.clone(), *p);
            let offset = match start {
                StartPosition::Offset(o) => *o,
                StartPosition::Earliest => watermarks[&key].0,
                StartPosition::Latest => watermarks[&key].1,
                StartPosition::GroupCommitted => match committed.get(&key) {
                    Some(&c) if c >= 0 => c,
                    _ if self.reset_to_latest => watermarks[&key].1,
                    _ => watermarks[&key].0,
                },
            };
            resolved.push((t.clone(), *p, offset));
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in &resolved {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
        }
        self.client.incremental_assign(&tpl)?;
        let mut positions = self.positions.lock().expect("positions lock");
        for (t, p, o) in &resolved {
            positions.insert((t.clone(), *p), *o);
        }
        Ok(resolved)
    }

    /// The next offset the guest will receive for each assigned partition.
    pub fn positions(&self) -> Vec<(String, i32, i64)> {
        self.positions.lock().expect("positions lock").iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect()
    }

    /// Up to `max_records` records (capped by the limits), waiting at most `timeout` for the first.
    pub async fn fetch(&mut self, max_records: usize, timeout: Duration) -> Result<Fetched, KafkaError> {
        let max = max_records.min(self.limits.max_records_per_fetch).max(1);
        let mut chunk = std::mem::take(&mut self.pending);
        if chunk.records.remaining() == 0 && chunk.error.is_none() {
            chunk = match self.buffer.try_recv() {
                Ok(c) => c.into(),
                Err(mpsc::error::TryRecvError::Disconnected) => return Err(KafkaError::Other("the Kafka poll thread stopped".into())),
                Err(mpsc::error::TryRecvError::Empty) => {
                    // Nothing buffered: the guest waits for the broker, which is idle time.
                    let started = std::time::Instant::now();
                    let received = tokio::time::timeout(timeout, self.buffer.recv()).await;
                    if let Some(m) = &self.metrics {
                        m.waited(started.elapsed());
                    }
                    match received {
                        Ok(Some(c)) => c.into(),
                        Ok(None) => return Err(KafkaError::Other("the Kafka poll thread stopped".into())),
                        Err(_) => return Ok(Fetched::default()),
                    }
                }
            };
        }
        // Sized for what is buffered now, so the columns do not grow while runs are appended.
        let records = max.min(chunk.records.remaining() + self.buffer.len() * CHUNK);
        let mut out = Fetched::with_capacity(records, records * chunk.records.average_record_bytes());
        // Records come in runs of one partition: its position is looked up once per run and
        // written back when the run ends, and the run's records move with one copy per column.
        // The partitions this fetch moved are kept for their lag.
        let mut moved: Vec<(String, i32)> = Vec::new();
        let mut positions = self.positions.lock().expect("positions lock");
        loop {
            let Some(run) = chunk.records.run_of() else {
                if chunk.error.is_some() {
                    // The records before the error first (their positions have moved past
                    // them); the next fetch fails.
                    if !out.is_empty() {
                        break;
                    }
                    return Err(chunk.error.take().expect("checked above"));
                }
                match self.buffer.try_recv() {
                    Ok(c) => {
                        chunk = c.into();
                        continue;
                    }
                    Err(_) => break,
                }
            };
            let key = (run.topic.to_string(), run.partition);
            let mut next = positions.get(&key).copied();
            let room = Room { records: max - out.len(), bytes: self.limits.max_fetch_bytes.saturating_sub(out.data.len()) };
            let full = chunk.records.take_run(&mut next, &mut out, room);
            if let (Some(next), Some(slot)) = (next, positions.get_mut(&key)) {
                *slot = next;
                if self.metrics.is_some() {
                    moved.push(key);
                }
            }
            if full {
                break;
            }
        }
        drop(positions);
        self.pending = chunk;
        if let Some(m) = &self.metrics {
            m.update_lag(&moved);
        }
        Ok(out)
    }

    /// Commits `offsets` (each the next record to read) for the group, asynchronously; a
    /// failure is logged by librdkafka and does not fail the job (docs/kafka-source.md §11).
    pub fn commit(&self, offsets: &[(String, i32, i64)]) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in offsets {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
        }
        if tpl.count() > 0 {
            if let Err(e) = self.client.commit(&tpl, CommitMode::Async) {
                if let Some(m) = &self.metrics {
                    m.commit_failed();
                }
                return Err(e.into());
            }
            let mut last = self.last_commit.lock().expect("commit lock");
            for (t, p, o) in offsets {
                last.insert((t.clone(), *p), *o);
            }
        }
        Ok(())
    }
}

/// How the poll thread reads a message.
#[derive(Clone, Copy)]
struct Reading {
    /// Largest key plus value; a larger record is an error.
    max_record: usize,
    headers: bool,
}

/// Polls the client and pushes records into the bounded buffer in chunks of up to [`CHUNK`]
/// (what librdkafka has ready after the first, without waiting); blocks while the buffer is
/// full, which stops polling and lets librdkafka's own bounded queue apply back-pressure.
fn poll_loop(client: &BaseConsumer<MetricsContext>, tx: &mpsc::Sender<Chunk>, stop: &AtomicBool, reading: Reading) {
    // Each chunk is sized like the last one, so appending to it does not grow its buffers.
    let new_chunk = |bytes: usize| Chunk { records: Fetched::with_capacity(CHUNK, bytes), error: None };
    let mut chunk = new_chunk(0);
    while !stop.load(Ordering::Relaxed) {
        // Wait for the first record of a chunk; take the rest only while they are ready.
        let wait = if chunk.records.is_empty() { Duration::from_millis(100) } else { Duration::ZERO };
        match client.poll(wait) {
            Some(result) => {
                append(&mut chunk, result, reading);
                if chunk.records.len() < CHUNK && chunk.error.is_none() {
                    continue;
                }
            }
            None if chunk.records.is_empty() => continue,
            None => {}
        }
        let bytes = chunk.records.data.len();
        let full = std::mem::replace(&mut chunk, new_chunk(bytes));
        if tx.blocking_send(full).is_err() {
            return; // the consumer was dropped
        }
    }
}

/// Appends one polled message to `chunk` (its bytes copied once, into the chunk's buffer), or
/// the error that ends the chunk. End of partition and transient client errors (logged) are
/// nothing the guest sees.
fn append(chunk: &mut Chunk, result: Result<rdkafka::message::BorrowedMessage<'_>, rdkafka::error::KafkaError>, reading: Reading) {
    match result {
        Err(rdkafka::error::KafkaError::PartitionEOF(_)) => {}
        Err(e) => tracing::warn!("Kafka consumer: {e}"),
        Ok(m) => {
            let size = m.payload_len() + m.key().map_or(0, <[u8]>::len);
            if size > reading.max_record {
                chunk.error =
                    Some(KafkaError::RecordTooLarge { topic: m.topic().into(), partition: m.partition(), offset: m.offset(), size, max: reading.max_record });
                return;
            }
            let headers = reading
                .headers
                .then(|| m.headers())
                .flatten()
                .map(|hs| hs.iter().map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec))).collect::<Vec<_>>());
            let record = FetchedRecord {
                topic: m.topic(),
                partition: m.partition(),
                offset: m.offset(),
                timestamp: timestamp_millis(&m),
                key: m.key(),
                value: m.payload().unwrap_or_default(),
            };
            chunk.records.push(record, headers.into_iter().flatten());
        }
    }
}
