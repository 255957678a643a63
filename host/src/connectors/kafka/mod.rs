//! The Kafka capability: a librdkafka client (the `rdkafka` crate) run by the host for a guest.
//!
//! * [`KafkaConsumer`]: metadata, explicit assignment at resolved offsets, fetching through a
//!   bounded buffer filled by a dedicated poll thread (a slow broker never blocks a tokio worker,
//!   and a slow guest back-pressures the client instead of growing memory), offset queries and
//!   group commits.
//! * [`KafkaProducer`]: sending batches and flushing.
//!
//! Guests choose librdkafka properties, but not every property: those that read files, load
//! plugins or run commands are refused ([`check_properties`]), so the capability grants network
//! access to Kafka and nothing else.

mod consumer;
mod producer;

use std::time::Duration;

pub use consumer::{FetchedRecord, KafkaConsumer, StartPosition};
pub use producer::KafkaProducer;

/// Caps on what a guest can make the host allocate or wait for through Kafka.
#[derive(Clone, Debug)]
pub struct KafkaLimits {
    /// Most records one `fetch` returns.
    pub max_records_per_fetch: usize,
    /// Most key + value bytes one `fetch` returns (a single larger record is still returned).
    pub max_fetch_bytes: usize,
    /// Largest single record accepted (key + value); a larger one is an error naming it.
    pub max_record_bytes: usize,
    /// Records the poll thread may buffer ahead of the guest.
    pub buffered_records: usize,
    /// How long metadata and offset requests keep retrying (with back-off) before failing.
    pub connect_timeout: Duration,
}

impl Default for KafkaLimits {
    fn default() -> Self {
        KafkaLimits {
            max_records_per_fetch: 10_000,
            max_fetch_bytes: 16 << 20,
            max_record_bytes: 8 << 20,
            buffered_records: 10_000,
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// A Kafka error with what to check.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka property '{0}' is not allowed for operators (it could read files, load code or run commands)")]
    ForbiddenProperty(String),
    #[error("Kafka properties must set \"bootstrap.servers\"")]
    NoBootstrapServers,
    #[error("cannot reach Kafka at {servers} after {seconds} s: {cause}; check bootstrap.servers and that the broker is running")]
    Unreachable { servers: String, seconds: u64, cause: String },
    #[error("topic '{0}' does not exist")]
    NoSuchTopic(String),
    #[error("record at {topic}/{partition}@{offset} has {size} bytes, over the limit of {max} bytes")]
    RecordTooLarge { topic: String, partition: i32, offset: i64, size: usize, max: usize },
    #[error("partition {topic}/{partition} is not assigned to this consumer")]
    NotAssigned { topic: String, partition: i32 },
    #[error("Kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("Kafka: {0}")]
    Other(String),
}

/// Property names a guest may not set: they read files, load shared libraries or run
/// commands on the host.
const FORBIDDEN: &[&str] = &["location", "plugin", "kinit", "engine", "interceptor", "_cb", ".cb", "file", "path", "dir"];

/// Refuses properties that would give a guest more than network access to Kafka.
pub fn check_properties(properties: &[(String, String)]) -> Result<(), KafkaError> {
    for (k, _) in properties {
        let key = k.to_ascii_lowercase();
        if FORBIDDEN.iter().any(|f| key.contains(f)) {
            return Err(KafkaError::ForbiddenProperty(k.clone()));
        }
    }
    if !properties.iter().any(|(k, _)| k == "bootstrap.servers") {
        return Err(KafkaError::NoBootstrapServers);
    }
    Ok(())
}

fn bootstrap(properties: &[(String, String)]) -> String {
    properties.iter().find(|(k, _)| k == "bootstrap.servers").map(|(_, v)| v.clone()).unwrap_or_default()
}

fn client_config(properties: &[(String, String)]) -> rdkafka::ClientConfig {
    let mut config = rdkafka::ClientConfig::new();
    for (k, v) in properties {
        config.set(k, v);
    }
    config
}

/// Runs a blocking client call off the async runtime, retrying with exponential back-off
/// (100 ms doubling to 2 s) until `limits.connect_timeout`.
async fn with_retries<T, F>(limits: &KafkaLimits, servers: &str, f: F) -> Result<T, KafkaError>
where
    T: Send + 'static,
    F: Fn() -> Result<T, KafkaError> + Send + Sync + Clone + 'static,
{
    let start = std::time::Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        let call = f.clone();
        let result = tokio::task::spawn_blocking(call).await.map_err(|e| KafkaError::Other(e.to_string()))?;
        match result {
            Ok(v) => return Ok(v),
            Err(e @ (KafkaError::NoSuchTopic(_) | KafkaError::NotAssigned { .. })) => return Err(e),
            Err(e) if start.elapsed() + delay >= limits.connect_timeout => {
                return Err(KafkaError::Unreachable {
                    servers: servers.to_string(),
                    seconds: limits.connect_timeout.as_secs(),
                    cause: e.to_string(),
                });
            }
            Err(e) => {
                tracing::debug!("Kafka request failed, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p = vec![("bootstrap.servers".to_string(), "127.0.0.1:9".to_string())];
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        p
    }

    #[test]
    fn dangerous_properties_are_refused() {
        for key in ["plugin.library.paths", "ssl.key.location", "sasl.kerberos.kinit.cmd", "ssl.engine.location", "ssl.ca.directory"] {
            let e = check_properties(&props(&[(key, "x")])).unwrap_err();
            assert_eq!(e.to_string(), format!("Kafka property '{key}' is not allowed for operators (it could read files, load code or run commands)"));
        }
        assert!(check_properties(&props(&[("group.id", "g"), ("auto.offset.reset", "earliest")])).is_ok());
        assert!(matches!(check_properties(&[]), Err(KafkaError::NoBootstrapServers)));
    }
}
