//! A Kafka source with the exact semantics of Flink's legacy `FlinkKafkaConsumerBase`
//! (docs/kafka-source.md), as a wasmflow operator.
//!
//! * Partition offsets live in **union list state** `topic-partition-offset-states`, one element
//!   `(topic, partition, last emitted offset)` per owned partition (docs/kafka-source.md §2).
//! * Partitions are owned by the subtask given by Flink's assignment formula
//!   (docs/kafka-source.md §5), so a restore at any parallelism re-filters the full union list
//!   locally (docs/kafka-source.md §7).
//! * Startup modes apply to fresh starts only; offsets are committed (+1) when a checkpoint
//!   completes (docs/kafka-source.md §4, §11); new partitions are discovered at an interval
//!   (docs/kafka-source.md §12).
//!
//! Needs `grants = { kafka = { bootstrap-servers = "host:port" } }` in the job file.
//! Configuration: see [`config::SourceConfig`] and docs/kafka-source.md.

pub mod assigner;
pub mod commit;
pub mod config;
pub mod core;
pub mod fetched;
pub mod sentinel;

use wasmflow_guest_sdk::prelude::*;

use crate::config::SourceConfig;
use std::time::Duration;

use wasmflow_guest_sdk::watermarks::PartitionWatermarks;

use crate::core::{KafkaClient, KafkaSourceCore, Polled, Tp};

/// `OFFSETS_STATE_NAME` (docs/kafka-source.md §1).
pub const OFFSETS_STATE_NAME: &str = "topic-partition-offset-states";

/// The operator.
pub struct KafkaSource {
    core: KafkaSourceCore,
    config: SourceConfig,
    ctx: RuntimeContext,
    state: ListState<(String, i32, i64)>,
    client: Option<Box<dyn KafkaClient>>,
    /// Per-partition watermark generators, with `watermark-delay-ms`.
    watermarks: Option<PartitionWatermarks<Tp>>,
}

/// Per-partition generators as configured (docs/kafka-source.md §13).
fn watermarks(config: &SourceConfig) -> Option<PartitionWatermarks<Tp>> {
    let generators = PartitionWatermarks::new(Duration::from_millis(config.watermark_delay_ms?));
    Some(match config.idle_timeout_ms {
        Some(ms) => generators.with_idleness(Duration::from_millis(ms)),
        None => generators,
    })
}

impl KafkaSource {
    /// Uses `client` instead of the host capability (native tests).
    pub fn with_client(mut self, client: Box<dyn KafkaClient>) -> Self {
        self.client = Some(client);
        self
    }
}

impl Source for KafkaSource {
    fn create(ctx: &RuntimeContext) -> Result<Self> {
        let config: SourceConfig = ctx.config()?;
        config.validate(wasmflow_guest_sdk::log::now_millis()).map_err(|e| anyhow!("kafka source config: {e}"))?;
        let core = KafkaSourceCore::new(config.clone(), ctx.subtask_index(), ctx.parallelism(), ctx.checkpointing_enabled(), None);
        Ok(KafkaSource { core, watermarks: watermarks(&config), config, ctx: ctx.clone(), state: ListState::default(), client: None })
    }

    fn open(&mut self) -> Result<()> {
        if self.client.is_none() {
            self.client = Some(host::client(&self.config)?);
        }
        let client = self.client.as_deref_mut().expect("set above");
        self.core.open(client).map_err(|e| anyhow!(e))
    }

    fn poll(&mut self, out: &mut Collector, max_records: usize) -> Result<PollStatus> {
        let client = self.client.as_deref_mut().context("poll before open")?;
        let now = wasmflow_guest_sdk::log::now_millis();
        match self.core.poll(client, max_records as u32, now).map_err(|e| anyhow!(e))? {
            Polled::Records(fetched) => {
                if let Some(w) = self.watermarks.as_mut() {
                    // Once per run of one partition's records, with the run's highest timestamp
                    // (what a record at a time would leave behind): no key built per record.
                    for run in fetched.runs() {
                        w.on_event((run.topic.to_string(), run.partition), fetched.highest_timestamp(run.records), now);
                    }
                    // A partition without records yet holds the watermark back (as in Flink),
                    // unless it is idle. Only partitions new to the generator are added (no
                    // copy of every partition's key at every poll).
                    for tp in self.core.subscribed().keys() {
                        if !w.has_partition(tp) {
                            w.add_partition(tp.clone(), now);
                        }
                    }
                    match w.current_watermark(now) {
                        Some(watermark) => out.emit_watermark(watermark),
                        None => out.mark_idle(),
                    }
                }
                // The fetch is laid out as a batch: emitted as it is, no record copied.
                out.emit_batch(fetched.into_batch());
                Ok(PollStatus::Ready)
            }
            Polled::Idle => {
                // No partitions: idle, so downstream watermarks do not wait for this subtask
                // (docs/kafka-source.md §8 step 5).
                out.mark_idle();
                Ok(PollStatus::Idle(self.config.partition_discovery_interval_ms.unwrap_or(1000).clamp(1, 60_000) as u32))
            }
            Polled::Finished => Ok(PollStatus::Finished),
        }
    }

    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        let state = ctx.get_union_list_state::<(String, i32, i64)>(OFFSETS_STATE_NAME)?;
        // docs/kafka-source.md §6: restored (possibly empty) is not the same as a fresh start.
        let restored = if ctx.is_restored() { Some(state.get()?) } else { None };
        self.core = KafkaSourceCore::new(self.config.clone(), self.ctx.subtask_index(), self.ctx.parallelism(), self.ctx.checkpointing_enabled(), restored);
        self.state = state;
        Ok(())
    }

    fn snapshot_state(&mut self, ctx: &FunctionSnapshotContext) -> Result<()> {
        let entries = self.core.snapshot(ctx.checkpoint_id());
        self.state.update(&entries)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        if let Some(client) = self.client.as_deref_mut() {
            self.core.notify_checkpoint_complete(client, checkpoint_id).map_err(|e| anyhow!(e))?;
        }
        Ok(())
    }
}

export_source!(KafkaSource);

/// The host's Kafka capability as a [`KafkaClient`].
mod host {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    pub fn client(config: &SourceConfig) -> Result<Box<dyn KafkaClient>> {
        // The source emits keys, values and timestamps: headers would cost the host per record.
        Ok(Box::new(WitClient(wasmflow_guest_sdk::kafka::Consumer::new(&config.client_properties(), false))))
    }

    #[cfg(not(target_arch = "wasm32"))]
    pub fn client(_config: &SourceConfig) -> Result<Box<dyn KafkaClient>> {
        bail!("natively the Kafka capability does not exist: give the source a client with KafkaSource::with_client")
    }

    #[cfg(target_arch = "wasm32")]
    struct WitClient(wasmflow_guest_sdk::kafka::Consumer);

    #[cfg(target_arch = "wasm32")]
    mod wit_impl {
        use wasmflow_guest_sdk::Columns;
        use wasmflow_guest_sdk::kafka::{Assignment, PartitionOffset, StartPosition, TopicPartition};

        use super::WitClient;
        use crate::core::{Fetched, KafkaClient, Tp};

        fn tps(v: &[Tp]) -> Vec<TopicPartition> {
            v.iter().map(|(topic, partition)| TopicPartition { topic: topic.clone(), partition: *partition }).collect()
        }

        fn offs(v: Vec<PartitionOffset>) -> Vec<(String, i32, i64)> {
            v.into_iter().map(|o| (o.topic, o.partition, o.offset)).collect()
        }

        impl KafkaClient for WitClient {
            fn list_topics(&mut self) -> Result<Vec<String>, String> {
                self.0.list_topics()
            }
            fn list_partitions(&mut self, topics: &[String]) -> Result<Vec<Tp>, String> {
                Ok(self.0.list_partitions(topics)?.into_iter().map(|p| (p.topic, p.partition)).collect())
            }
            fn assign(&mut self, partitions: &[(String, i32, i64)]) -> Result<(), String> {
                let a: Vec<Assignment> = partitions
                    .iter()
                    .map(|(topic, partition, o)| Assignment { topic: topic.clone(), partition: *partition, start: StartPosition::Offset(*o) })
                    .collect();
                self.0.assign(&a)
            }
            fn earliest_offsets(&mut self, p: &[Tp]) -> Result<Vec<(String, i32, i64)>, String> {
                if p.is_empty() {
                    return Ok(vec![]);
                }
                Ok(offs(self.0.earliest_offsets(&tps(p))?))
            }
            fn latest_offsets(&mut self, p: &[Tp]) -> Result<Vec<(String, i32, i64)>, String> {
                if p.is_empty() {
                    return Ok(vec![]);
                }
                Ok(offs(self.0.latest_offsets(&tps(p))?))
            }
            fn committed_offsets(&mut self, p: &[Tp]) -> Result<Vec<(String, i32, i64)>, String> {
                if p.is_empty() {
                    return Ok(vec![]);
                }
                Ok(offs(self.0.committed_offsets(&tps(p))?))
            }
            fn offsets_for_timestamp(&mut self, p: &[Tp], ts: i64) -> Result<Vec<(String, i32, i64)>, String> {
                if p.is_empty() {
                    return Ok(vec![]);
                }
                Ok(offs(self.0.offsets_for_timestamp(&tps(p), ts)?))
            }
            fn fetch(&mut self, max_records: u32, timeout_ms: u32) -> Result<Fetched, String> {
                let b = self.0.fetch(max_records, timeout_ms)?;
                let columns = Columns { data: b.data, key_lens: b.key_lens, value_lens: b.value_lens, timestamps: b.timestamps };
                Fetched::new(b.topics, columns, b.topic_indexes, b.partitions, b.offsets)
            }
            fn commit(&mut self, offsets: &[(String, i32, i64)]) -> Result<(), String> {
                let o: Vec<PartitionOffset> =
                    offsets.iter().map(|(topic, partition, offset)| PartitionOffset { topic: topic.clone(), partition: *partition, offset: *offset }).collect();
                self.0.commit(&o)
            }
        }
    }
}
