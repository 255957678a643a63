//! The source's logic, `FlinkKafkaConsumerBase` turned inside out (the host polls it), over a
//! [`KafkaClient`] so it runs natively in tests and over the host capability in wasm.

use std::collections::{BTreeMap, BTreeSet};

use crate::assigner::assign;
use crate::commit::{Offsets, PendingCommits, to_commit};
use crate::config::{OffsetCommitMode, SourceConfig, StartupMode, parse_topic_partition};
use crate::sentinel::{EARLIEST_OFFSET, GROUP_OFFSET, LATEST_OFFSET, OFFSET_NOT_SET};

/// A topic partition.
pub type Tp = (String, i32);

pub use crate::fetched::{Fetched, KafkaRecord};

/// What the source needs from Kafka (the host's `kafka.consumer` in wasm).
pub trait KafkaClient {
    fn list_topics(&mut self) -> Result<Vec<String>, String>;
    fn list_partitions(&mut self, topics: &[String]) -> Result<Vec<Tp>, String>;
    /// Adds partitions to the assignment, each starting at the given next offset.
    fn assign(&mut self, partitions: &[(String, i32, i64)]) -> Result<(), String>;
    fn earliest_offsets(&mut self, partitions: &[Tp]) -> Result<Vec<(String, i32, i64)>, String>;
    fn latest_offsets(&mut self, partitions: &[Tp]) -> Result<Vec<(String, i32, i64)>, String>;
    fn committed_offsets(&mut self, partitions: &[Tp]) -> Result<Vec<(String, i32, i64)>, String>;
    fn offsets_for_timestamp(&mut self, partitions: &[Tp], timestamp: i64) -> Result<Vec<(String, i32, i64)>, String>;
    fn fetch(&mut self, max_records: u32, timeout_ms: u32) -> Result<Fetched, String>;
    fn commit(&mut self, offsets: &[(String, i32, i64)]) -> Result<(), String>;
}

/// What one poll produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Polled {
    /// Records to emit (possibly none).
    Records(Fetched),
    /// No partitions: the subtask is idle (docs/kafka-source.md §8 step 5).
    Idle,
    /// Bounded mode reached the end offsets.
    Finished,
}

/// The state machine of one subtask.
pub struct KafkaSourceCore {
    config: SourceConfig,
    index: i32,
    parallelism: i32,
    commit_mode: OffsetCommitMode,
    /// `restoredState` (docs/kafka-source.md §6): `None` on a fresh start, `Some` (maybe empty) when restored.
    restored: Option<Offsets>,
    /// `subscribedPartitionsToStartOffsets` then the fetcher's partition states: last emitted
    /// offset, or a sentinel while unresolved.
    subscribed: Offsets,
    /// Partitions ever seen by discovery (docs/kafka-source.md §12), plus restored ones (HOST fix).
    discovered: BTreeSet<Tp>,
    /// Whether the "fetcher" exists: partitions have been assigned to the client.
    running: bool,
    pending: PendingCommits,
    /// Bounded mode: stop when every partition's next offset reaches these.
    end_offsets: Option<BTreeMap<Tp, i64>>,
    /// Bounded: whether a partition may have reached its end since the last check, which
    /// compares every partition's offset with its end (hundreds of map lookups: not every poll).
    end_check_due: bool,
    last_discovery_ms: i64,
    last_periodic_commit_ms: i64,
}

fn to_map(v: Vec<(String, i32, i64)>) -> BTreeMap<Tp, i64> {
    v.into_iter().map(|(t, p, o)| ((t, p), o)).collect()
}

impl KafkaSourceCore {
    /// Creates the core; `restored` is the full union list when the job is restored (docs/kafka-source.md §6).
    pub fn new(config: SourceConfig, index: u32, parallelism: u32, checkpointing: bool, restored: Option<Vec<(String, i32, i64)>>) -> Self {
        let commit_mode = config.commit_mode(checkpointing);
        KafkaSourceCore {
            config,
            index: index as i32,
            parallelism: parallelism as i32,
            commit_mode,
            restored: restored.map(|v| v.into_iter().map(|(t, p, o)| ((t, p), o)).collect()),
            subscribed: Offsets::new(),
            discovered: BTreeSet::new(),
            running: false,
            pending: PendingCommits::default(),
            end_offsets: None,
            end_check_due: true,
            last_discovery_ms: 0,
            last_periodic_commit_ms: 0,
        }
    }

    /// The commit mode decided from the configuration (docs/kafka-source.md §4).
    pub fn commit_mode(&self) -> OffsetCommitMode {
        self.commit_mode
    }

    fn owns(&self, tp: &Tp) -> bool {
        assign(&tp.0, tp.1, self.parallelism) == self.index
    }

    /// `discoverPartitions` (docs/kafka-source.md §12): every current partition is marked seen;
    /// returns the unseen ones this subtask owns. No partition at all is an error.
    fn discover(&mut self, client: &mut dyn KafkaClient) -> Result<Vec<Tp>, String> {
        let topics = match &self.config.topic_pattern {
            None => self.config.topics.clone(),
            Some(_) => client.list_topics()?.into_iter().filter(|t| self.config.matches_topic(t)).collect(),
        };
        let all = if topics.is_empty() { Vec::new() } else { client.list_partitions(&topics)? };
        if all.is_empty() {
            return Err(format!(
                "Unable to retrieve any partitions with KafkaTopicsDescriptor: {}",
                self.config.topic_pattern.clone().unwrap_or_else(|| format!("{:?}", self.config.topics))
            ));
        }
        let mut new = Vec::new();
        for tp in all {
            if self.discovered.insert(tp.clone()) && self.owns(&tp) {
                new.push(tp);
            }
        }
        Ok(new)
    }

    /// `open()` (docs/kafka-source.md §7): the partitions and start offsets of this subtask.
    pub fn open(&mut self, client: &mut dyn KafkaClient) -> Result<(), String> {
        let mine = self.discover(client)?;
        if let Some(restored) = self.restored.clone() {
            let mut state = restored;
            for tp in &mine {
                state.entry(tp.clone()).or_insert(EARLIEST_OFFSET);
            }
            for (tp, off) in state {
                // HOST fix (docs/kafka-source.md §7, §12): restored partitions count as discovered.
                self.discovered.insert(tp.clone());
                if self.owns(&tp) {
                    self.subscribed.insert(tp, off);
                }
            }
            if self.config.filter_restored_partitions_with_subscribed_topics {
                let config = &self.config;
                self.subscribed.retain(|tp, _| {
                    let keep = config.matches_topic(&tp.0);
                    if !keep {
                        wasmflow_guest_sdk::warn!("{}/{} is no longer subscribed and is dropped from the state", tp.0, tp.1);
                    }
                    keep
                });
            }
        } else {
            let start = match self.config.startup_mode {
                StartupMode::Timestamp => {
                    let ts = self.config.startup_timestamp_ms.ok_or("startup-mode timestamp without startup-timestamp-ms")?;
                    let found = to_map(client.offsets_for_timestamp(&mine, ts)?);
                    mine.iter().map(|tp| (tp.clone(), found.get(tp).map_or(LATEST_OFFSET, |&o| if o < 0 { LATEST_OFFSET } else { o - 1 }))).collect()
                }
                StartupMode::SpecificOffsets => {
                    let mut specific = BTreeMap::new();
                    for (k, v) in &self.config.specific_offsets {
                        specific.insert(parse_topic_partition(k)?, *v);
                    }
                    mine.iter().map(|tp| (tp.clone(), specific.get(tp).map_or(GROUP_OFFSET, |o| o - 1))).collect()
                }
                ref mode => {
                    let s = match mode {
                        StartupMode::Earliest => EARLIEST_OFFSET,
                        StartupMode::Latest => LATEST_OFFSET,
                        _ => GROUP_OFFSET,
                    };
                    mine.iter().map(|tp| (tp.clone(), s)).collect()
                }
            };
            self.subscribed = start;
        }
        Ok(())
    }

    /// Resolves sentinels to `position - 1` and assigns the partitions (docs/kafka-source.md §9; Flink's `reassignPartitions`).
    fn assign_partitions(&mut self, client: &mut dyn KafkaClient, partitions: &[Tp]) -> Result<(), String> {
        if partitions.is_empty() {
            return Ok(());
        }
        let need = |s: i64| partitions.iter().filter(|tp| self.subscribed[*tp] == s).cloned().collect::<Vec<_>>();
        let earliest = to_map(client.earliest_offsets(&need(EARLIEST_OFFSET))?);
        let latest = to_map(client.latest_offsets(&need(LATEST_OFFSET))?);
        let group = need(GROUP_OFFSET);
        let committed = to_map(client.committed_offsets(&group)?);
        let missing: Vec<Tp> = group.iter().filter(|tp| committed.get(*tp).is_none_or(|o| *o < 0)).cloned().collect();
        let reset = if self.config.reset_to_earliest() { to_map(client.earliest_offsets(&missing)?) } else { to_map(client.latest_offsets(&missing)?) };
        let mut assignment = Vec::new();
        for tp in partitions {
            let state = self.subscribed[tp];
            let next = match state {
                OFFSET_NOT_SET => return Err(format!("{}/{}: start offset not set", tp.0, tp.1)),
                EARLIEST_OFFSET => earliest[tp],
                LATEST_OFFSET => latest[tp],
                GROUP_OFFSET => committed.get(tp).copied().filter(|o| *o >= 0).unwrap_or_else(|| reset[tp]),
                o => o + 1,
            };
            self.subscribed.insert(tp.clone(), next - 1);
            assignment.push((tp.0.clone(), tp.1, next));
        }
        client.assign(&assignment)
    }

    /// One poll: on the first, creates the "fetcher" (assigns every subscribed partition); runs
    /// discovery when due; fetches and advances each partition's offset to the last record
    /// handed out.
    pub fn poll(&mut self, client: &mut dyn KafkaClient, max_records: u32, now_ms: i64) -> Result<Polled, String> {
        if !self.running {
            let all: Vec<Tp> = self.subscribed.keys().cloned().collect();
            self.assign_partitions(client, &all)?;
            if self.config.bounded {
                let latest = to_map(client.latest_offsets(&all)?);
                self.end_offsets = Some(latest);
            }
            self.running = true;
            self.last_discovery_ms = now_ms;
            self.last_periodic_commit_ms = now_ms;
        }
        if let Some(interval) = self.config.partition_discovery_interval_ms.filter(|_| !self.config.bounded)
            && now_ms - self.last_discovery_ms >= interval
        {
            self.last_discovery_ms = now_ms;
            let new = self.discover(client)?;
            for tp in &new {
                // Discovered partitions start from EARLIEST (docs/kafka-source.md §9, §12) and
                // are in the state before they are assigned.
                self.subscribed.entry(tp.clone()).or_insert(EARLIEST_OFFSET);
            }
            self.assign_partitions(client, &new)?;
        }
        if self.commit_mode == OffsetCommitMode::KafkaPeriodic && now_ms - self.last_periodic_commit_ms >= self.config.auto_commit_interval_ms() {
            self.last_periodic_commit_ms = now_ms;
            client.commit(&to_commit(&self.subscribed, |_| true))?;
        }
        if self.end_check_due
            && let Some(end) = &self.end_offsets
        {
            if self.subscribed.iter().all(|(tp, o)| o + 1 >= end.get(tp).copied().unwrap_or(0)) {
                return Ok(Polled::Finished); // and stays due: every later poll says so too
            }
            self.end_check_due = false;
        }
        if self.subscribed.is_empty() {
            return Ok(Polled::Idle);
        }
        let max = self.config.max_records_per_poll.map_or(max_records, |m| m.min(max_records));
        let mut fetched = client.fetch(max, self.config.fetch_timeout_ms)?;
        // Records come in runs of one partition: its offset (and end, if bounded) is looked up
        // once per run and written back when the run ends, not per record. Usually every record
        // is kept and the fetch is emitted as it came; a record already emitted, past the end, or
        // of a partition not subscribed is dropped.
        let mut keep: Option<Vec<bool>> = None;
        for run in fetched.runs() {
            let tp = (run.topic.to_string(), run.partition);
            let (mut current, end) = (self.subscribed.get(&tp).copied(), self.end_offsets.as_ref().and_then(|e| e.get(&tp)).copied());
            for i in run.records {
                let offset = fetched.offset(i);
                match current.as_mut() {
                    Some(current) if offset > *current && end.is_none_or(|end| offset < end) => *current = offset,
                    _ => keep.get_or_insert_with(|| vec![true; fetched.len()])[i] = false,
                }
            }
            self.end_run(tp, current, end);
        }
        if let Some(keep) = keep {
            fetched.retain(&keep);
        }
        Ok(Polled::Records(fetched))
    }

    /// A run of records of one partition ended: its offset is the last record handed out.
    fn end_run(&mut self, tp: Tp, current: Option<i64>, end: Option<i64>) {
        if let Some(offset) = current
            && let Some(slot) = self.subscribed.get_mut(&tp)
        {
            *slot = offset;
            self.end_check_due |= end.is_some_and(|end| offset + 1 >= end);
        }
    }

    /// `snapshotState` (docs/kafka-source.md §10): the union list entries to write, and the pending commit.
    pub fn snapshot(&mut self, checkpoint_id: u64) -> Vec<(String, i32, i64)> {
        if self.commit_mode == OffsetCommitMode::OnCheckpoints {
            let offsets = if self.running { Some(self.subscribed.clone()) } else { self.restored.clone() };
            self.pending.put(checkpoint_id, offsets);
        }
        self.subscribed.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect()
    }

    /// `notifyCheckpointComplete` (docs/kafka-source.md §11): commits offset + 1 of the owned
    /// partitions recorded for `checkpoint_id`; older pending ids are subsumed.
    pub fn notify_checkpoint_complete(&mut self, client: &mut dyn KafkaClient, checkpoint_id: u64) -> Result<(), String> {
        if !self.running || self.commit_mode != OffsetCommitMode::OnCheckpoints {
            return Ok(());
        }
        let Some(offsets) = self.pending.complete(checkpoint_id) else {
            wasmflow_guest_sdk::warn!("received confirmation for unknown checkpoint id {checkpoint_id}");
            return Ok(());
        };
        let Some(offsets) = offsets else { return Ok(()) };
        let subscribed = &self.subscribed;
        let commit = to_commit(&offsets, |tp| subscribed.contains_key(tp));
        if commit.is_empty() {
            return Ok(());
        }
        client.commit(&commit)
    }

    /// The current partition states (for tests and inspection).
    pub fn subscribed(&self) -> &Offsets {
        &self.subscribed
    }
}
