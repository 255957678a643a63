//! The `kafka` interface: the guest's handle on a host-run Kafka client.
//!
//! Errors the guest can act on (a missing topic, an unreachable broker after the retry budget)
//! come back as `Err(string)`; misuse of the capability (a forbidden property) traps.

use std::time::{Duration, Instant};

use anyhow::Result;
use wasmtime::component::Resource;

use super::{ConsumerHandle, ProducerHandle, StoreData};
use crate::connectors::kafka::{ConsumerOptions, Fetched, KafkaConsumer, KafkaError, KafkaProducer, RecordHeader, StartPosition as Start};
use crate::engine::bindings::wasmflow::operator::kafka::{
    self as wit, Assignment, FetchedBatch, Host, HostConsumer, HostProducer, PartitionOffset, StartPosition, TopicPartition,
};
use crate::engine::bindings::wasmflow::operator::types::Batch;

type GuestResult<T> = Result<Result<T, String>>;

fn tps(partitions: &[TopicPartition]) -> Vec<(String, i32)> {
    partitions.iter().map(|p| (p.topic.clone(), p.partition)).collect()
}

fn offsets(v: Vec<(String, i32, i64)>) -> Vec<PartitionOffset> {
    v.into_iter().map(|(topic, partition, offset)| PartitionOffset { topic, partition, offset }).collect()
}

fn guest<T, E: std::fmt::Display>(r: Result<T, E>) -> GuestResult<T> {
    Ok(r.map_err(|e| e.to_string()))
}

impl StoreData {
    fn consumer(&mut self, h: &Resource<ConsumerHandle>) -> Result<&mut KafkaConsumer> {
        Ok(&mut self.table.get_mut(h)?.0)
    }

    /// The properties a new client gets (the guest's, checked, with the granted brokers), if the
    /// subtask may have another client. Misuse of the capability traps, naming the cause.
    fn kafka_client_properties(&self, guest: &[(String, String)]) -> Result<Vec<(String, String)>> {
        let fail = |e: KafkaError| anyhow::anyhow!("{}: {e}", self.tag);
        if self.kafka_clients >= self.kafka_limits.max_clients {
            return Err(fail(KafkaError::TooManyClients(self.kafka_limits.max_clients)));
        }
        crate::connectors::kafka::guest_properties(guest, &self.kafka_limits.bootstrap_servers).map_err(fail)
    }

    /// Runs a metadata or offset query for the guest. Time the host spends waiting on the
    /// network is added to the guest's call deadline: a slow broker must not make the guest
    /// trap (the query has its own bound, `limits.kafka-connect-timeout-ms`).
    async fn query<T>(&mut self, h: &Resource<ConsumerHandle>, q: impl AsyncFnOnce(&KafkaConsumer) -> Result<T, KafkaError>) -> GuestResult<T> {
        let started = Instant::now();
        let consumer = &self.table.get(h)?.0;
        let result = q(consumer).await;
        if let Some(deadline) = self.call_deadline.as_mut() {
            *deadline += started.elapsed();
        }
        guest(result)
    }
}

impl HostConsumer for StoreData {
    async fn new(&mut self, properties: Vec<(String, String)>, with_headers: bool) -> Result<Resource<ConsumerHandle>> {
        let properties = self.kafka_client_properties(&properties)?;
        let options = ConsumerOptions { headers: with_headers, metrics: self.metrics.clone() };
        let consumer = KafkaConsumer::with_options(&properties, self.kafka_limits.clone(), options).map_err(|e| anyhow::anyhow!("{}: {e}", self.tag))?;
        self.kafka_clients += 1;
        Ok(self.table.push(ConsumerHandle(consumer))?)
    }

    async fn list_topics(&mut self, h: Resource<ConsumerHandle>) -> GuestResult<Vec<String>> {
        self.query(&h, async |c| c.list_topics().await).await
    }

    async fn list_partitions(&mut self, h: Resource<ConsumerHandle>, topics: Vec<String>) -> GuestResult<Vec<TopicPartition>> {
        let r = self.query(&h, async |c| c.list_partitions(&topics).await).await?;
        Ok(r.map(|v| v.into_iter().map(|(topic, partition)| TopicPartition { topic, partition }).collect()))
    }

    async fn assign(&mut self, h: Resource<ConsumerHandle>, partitions: Vec<Assignment>) -> GuestResult<()> {
        let wanted: Vec<(String, i32, Start)> = partitions
            .into_iter()
            .map(|a| {
                let start = match a.start {
                    StartPosition::Earliest => Start::Earliest,
                    StartPosition::Latest => Start::Latest,
                    StartPosition::GroupCommitted => Start::GroupCommitted,
                    StartPosition::Offset(o) => Start::Offset(o),
                };
                (a.topic, a.partition, start)
            })
            .collect();
        self.query(&h, async |c| c.assign(&wanted).await.map(|_| ())).await
    }

    async fn positions(&mut self, h: Resource<ConsumerHandle>) -> GuestResult<Vec<PartitionOffset>> {
        Ok(Ok(offsets(self.consumer(&h)?.positions())))
    }

    async fn fetch(&mut self, h: Resource<ConsumerHandle>, max_records: u32, timeout_ms: u32) -> GuestResult<FetchedBatch> {
        let fetched = match self.consumer(&h)?.fetch(max_records as usize, Duration::from_millis(timeout_ms.min(60_000) as u64)).await {
            Ok(r) => r,
            Err(e) => return Ok(Err(e.to_string())),
        };
        // Already in the contract's layout: every column moves.
        let Fetched { topics, data, key_lens, value_lens, timestamps, topic_indexes, partitions, offsets, headers } = fetched;
        let headers = headers.into_iter().map(|RecordHeader { record, key, value }| wit::RecordHeader { record, key, value }).collect();
        let batch = FetchedBatch { topics, data, key_lens, value_lens, timestamps, topic_indexes, partitions, offsets, headers };
        Ok(Ok(batch))
    }

    async fn earliest_offsets(&mut self, h: Resource<ConsumerHandle>, partitions: Vec<TopicPartition>) -> GuestResult<Vec<PartitionOffset>> {
        self.query(&h, async |c| c.earliest_offsets(&tps(&partitions)).await.map(offsets)).await
    }

    async fn latest_offsets(&mut self, h: Resource<ConsumerHandle>, partitions: Vec<TopicPartition>) -> GuestResult<Vec<PartitionOffset>> {
        self.query(&h, async |c| c.latest_offsets(&tps(&partitions)).await.map(offsets)).await
    }

    async fn offsets_for_timestamp(
        &mut self,
        h: Resource<ConsumerHandle>,
        partitions: Vec<TopicPartition>,
        timestamp_ms: i64,
    ) -> GuestResult<Vec<PartitionOffset>> {
        self.query(&h, async |c| c.offsets_for_timestamp(&tps(&partitions), timestamp_ms).await.map(offsets)).await
    }

    async fn committed_offsets(&mut self, h: Resource<ConsumerHandle>, partitions: Vec<TopicPartition>) -> GuestResult<Vec<PartitionOffset>> {
        self.query(&h, async |c| c.committed_offsets(&tps(&partitions)).await.map(offsets)).await
    }

    async fn commit(&mut self, h: Resource<ConsumerHandle>, to_commit: Vec<PartitionOffset>) -> GuestResult<()> {
        let v: Vec<(String, i32, i64)> = to_commit.into_iter().map(|o| (o.topic, o.partition, o.offset)).collect();
        guest(self.consumer(&h)?.commit(&v))
    }

    async fn drop(&mut self, h: Resource<ConsumerHandle>) -> Result<()> {
        self.table.delete(h)?;
        self.kafka_clients -= 1;
        Ok(())
    }
}

impl HostProducer for StoreData {
    async fn new(&mut self, properties: Vec<(String, String)>) -> Result<Resource<ProducerHandle>> {
        let properties = self.kafka_client_properties(&properties)?;
        let producer = KafkaProducer::new(&properties, self.kafka_limits.clone()).map_err(|e| anyhow::anyhow!("{}: {e}", self.tag))?;
        self.kafka_clients += 1;
        Ok(self.table.push(ProducerHandle(producer))?)
    }

    async fn send(&mut self, h: Resource<ProducerHandle>, topic: String, batch: Batch) -> GuestResult<()> {
        let producer = &self.table.get(&h)?.0;
        // The batch comes straight from the guest: checked before any length in it is used, so a
        // malformed batch is an error for the guest, not a host panic.
        let batch = match crate::engine::wire::batch_from_guest(batch) {
            Ok(b) => b,
            Err(e) => return Ok(Err(format!("malformed batch: {e}"))),
        };
        for r in &batch {
            if let Err(e) = producer.send(&topic, None, r.key, r.value, r.timestamp) {
                return Ok(Err(e.to_string()));
            }
        }
        Ok(Ok(()))
    }

    async fn flush(&mut self, h: Resource<ProducerHandle>, timeout_ms: u32) -> GuestResult<()> {
        let producer = &self.table.get(&h)?.0;
        guest(producer.flush(Duration::from_millis(timeout_ms as u64)))
    }

    async fn drop(&mut self, h: Resource<ProducerHandle>) -> Result<()> {
        self.table.delete(h)?;
        self.kafka_clients -= 1;
        Ok(())
    }
}

impl Host for StoreData {}
