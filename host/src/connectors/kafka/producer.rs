//! The Kafka producer a sink's guest drives.

use std::time::Duration;

use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::{KafkaError, KafkaLimits, check_properties, client_config};

/// A producer whose delivery reports are served by librdkafka's background thread.
pub struct KafkaProducer {
    client: ThreadedProducer<DefaultProducerContext>,
    limits: KafkaLimits,
}

impl KafkaProducer {
    /// Creates the producer; properties are checked as for consumers.
    pub fn new(properties: &[(String, String)], limits: KafkaLimits) -> Result<KafkaProducer, KafkaError> {
        check_properties(properties)?;
        Ok(KafkaProducer { client: client_config(properties).create()?, limits })
    }

    /// Queues one record for `topic`, into `partition` or else partitioned by key. A full local
    /// queue waits briefly for deliveries instead of failing.
    pub fn send(&self, topic: &str, partition: Option<i32>, key: Option<&[u8]>, value: &[u8], timestamp: i64) -> Result<(), KafkaError> {
        let size = value.len() + key.map_or(0, <[u8]>::len);
        if size > self.limits.max_record_bytes {
            return Err(KafkaError::Other(format!("record of {size} bytes for topic '{topic}' is over the limit of {} bytes", self.limits.max_record_bytes)));
        }
        let mut record = BaseRecord::<[u8], [u8]>::to(topic).payload(value);
        if let Some(k) = key {
            record = record.key(k);
        }
        if timestamp >= 0 {
            record = record.timestamp(timestamp);
        }
        if let Some(p) = partition {
            record = record.partition(p);
        }
        loop {
            match self.client.send(record) {
                Ok(()) => return Ok(()),
                Err((rdkafka::error::KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Waits until every queued record is acknowledged, at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.client.flush(timeout)?;
        Ok(())
    }
}
