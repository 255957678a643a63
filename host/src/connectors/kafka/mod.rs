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
mod fetched;
mod metrics;
mod producer;

use std::time::Duration;

pub use consumer::{ConsumerOptions, KafkaConsumer, StartPosition};
pub use fetched::{Fetched, FetchedRecord, RecordHeader};
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
    /// The brokers the job file grants (`grants.kafka.bootstrap-servers`); the guest's
    /// properties cannot name others.
    pub bootstrap_servers: String,
    /// Kafka clients (consumers and producers) one subtask may hold at once.
    pub max_clients: usize,
}

impl Default for KafkaLimits {
    fn default() -> Self {
        KafkaLimits {
            max_records_per_fetch: 10_000,
            max_fetch_bytes: 16 << 20,
            max_record_bytes: 8 << 20,
            buffered_records: 10_000,
            connect_timeout: Duration::from_secs(30),
            bootstrap_servers: String::new(),
            max_clients: 4,
        }
    }
}

/// A Kafka error with what to check.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka property '{0}' is not allowed for operators (it could read files, load code or run commands)")]
    ForbiddenProperty(String),
    #[error("no Kafka brokers: grant them in the job file with grants = {{ kafka = {{ bootstrap-servers = \"host:port\" }} }}")]
    NoBootstrapServers,
    #[error("Kafka property '{0}' is not allowed for operators: {1}")]
    NotAllowedProperty(String, &'static str),
    #[error("the operator asks for Kafka brokers \"{asked}\" but the job file grants \"{granted}\"; leave bootstrap.servers out of the operator's properties")]
    OtherBrokers { asked: String, granted: String },
    #[error("too many Kafka clients: at most {0} per subtask (limits.kafka-clients)")]
    TooManyClients(usize),
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

/// What a guest may set: the properties a job author needs, nothing that reads files, loads
/// code, runs commands, writes librdkafka's own (unbudgeted) logs, or names other brokers.
/// Buffer sizes are clamped by the host to [`CLAMPED`]'s bounds.
const GUEST_ALLOWED: &[&str] = &[
    "group.id",
    "group.instance.id",
    "client.id",
    "auto.offset.reset",
    "isolation.level",
    "enable.auto.commit",
    "auto.commit.interval.ms",
    "fetch.min.bytes",
    "fetch.wait.max.ms",
    "fetch.queue.backoff.ms",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "fetch.message.max.bytes",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "socket.timeout.ms",
    "request.timeout.ms",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "acks",
    "request.required.acks",
    "compression.type",
    "compression.codec",
    "linger.ms",
    "queue.buffering.max.ms",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "batch.size",
    "batch.num.messages",
    "message.max.bytes",
    "enable.idempotence",
    "retries",
    "retry.backoff.ms",
    "partitioner",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "sasl.username",
    "sasl.password",
    "ssl.ca.pem",
    "ssl.certificate.pem",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.endpoint.identification.algorithm",
];

/// Properties whose value sets how much memory librdkafka buffers: the guest's value is
/// lowered to this bound (the guest's own memory limit does not cover the host's buffers).
const CLAMPED: &[(&str, u64)] = &[
    ("fetch.max.bytes", 64 << 20),
    ("max.partition.fetch.bytes", 16 << 20),
    ("fetch.message.max.bytes", 16 << 20),
    ("queued.max.messages.kbytes", 64 << 10),
    ("queued.min.messages", 100_000),
    ("queue.buffering.max.messages", 100_000),
    ("queue.buffering.max.kbytes", 64 << 10),
    ("batch.size", 16 << 20),
    ("batch.num.messages", 100_000),
    ("message.max.bytes", 16 << 20),
];

/// The guest's properties made safe for the host: only [`GUEST_ALLOWED`] names, buffer sizes
/// clamped, and `bootstrap.servers` set to the granted brokers (a guest may repeat them, not
/// name others).
pub fn guest_properties(properties: &[(String, String)], granted_servers: &str) -> Result<Vec<(String, String)>, KafkaError> {
    let mut out = Vec::with_capacity(properties.len() + 1);
    for (k, v) in properties {
        if k == "bootstrap.servers" {
            if v != granted_servers {
                return Err(KafkaError::OtherBrokers { asked: v.clone(), granted: granted_servers.to_string() });
            }
            continue;
        }
        if k == "debug" {
            return Err(KafkaError::NotAllowedProperty(k.clone(), "librdkafka's debug output would bypass the operator's log budget"));
        }
        if !GUEST_ALLOWED.contains(&k.as_str()) {
            check_properties(&[(k.clone(), v.clone()), ("bootstrap.servers".into(), String::new())])?;
            return Err(KafkaError::NotAllowedProperty(k.clone(), "not one of the properties operators may set"));
        }
        let value = match CLAMPED.iter().find(|(name, _)| name == k) {
            Some((_, max)) => match v.parse::<u64>() {
                Ok(n) if n > *max => max.to_string(),
                Ok(_) => v.clone(),
                Err(_) => return Err(KafkaError::NotAllowedProperty(k.clone(), "must be a whole number")),
            },
            None => v.clone(),
        };
        out.push((k.clone(), value));
    }
    if granted_servers.is_empty() {
        return Err(KafkaError::NoBootstrapServers);
    }
    out.push(("bootstrap.servers".to_string(), granted_servers.to_string()));
    Ok(out)
}

/// Property names that are never accepted, even from host code: they read files, load shared
/// libraries or run commands on the host.
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
                return Err(KafkaError::Unreachable { servers: servers.to_string(), seconds: limits.connect_timeout.as_secs(), cause: e.to_string() });
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

    /// Guests set only listed properties; buffers are clamped; the brokers come from the grant.
    #[test]
    fn guest_properties_are_an_allowlist_with_clamped_buffers_and_granted_brokers() {
        let p = |kv: &[(&str, &str)]| kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
        let ok = guest_properties(&p(&[("group.id", "g"), ("queue.buffering.max.kbytes", "5000000"), ("fetch.queue.backoff.ms", "10")]), "b:9092").unwrap();
        assert_eq!(ok, p(&[("group.id", "g"), ("queue.buffering.max.kbytes", "65536"), ("fetch.queue.backoff.ms", "10"), ("bootstrap.servers", "b:9092")]));
        let e = guest_properties(&p(&[("socket.send.buffer.bytes", "1")]), "b:9092").unwrap_err();
        assert_eq!(e.to_string(), "Kafka property 'socket.send.buffer.bytes' is not allowed for operators: not one of the properties operators may set");
        let e = guest_properties(&p(&[("debug", "all")]), "b:9092").unwrap_err();
        assert_eq!(e.to_string(), "Kafka property 'debug' is not allowed for operators: librdkafka's debug output would bypass the operator's log budget");
        let e = guest_properties(&p(&[("bootstrap.servers", "evil:1")]), "b:9092").unwrap_err();
        assert!(e.to_string().starts_with("the operator asks for Kafka brokers \"evil:1\" but the job file grants \"b:9092\""), "{e}");
        assert!(guest_properties(&p(&[("bootstrap.servers", "b:9092")]), "b:9092").is_ok());
        let e = guest_properties(&p(&[("ssl.key.location", "/etc/x")]), "b:9092").unwrap_err();
        assert!(e.to_string().contains("could read files"), "{e}");
    }
}
