//! A real Kafka-compatible broker for tests: `tansu` with sqlite storage in a temporary
//! directory, on a free loopback port, killed when dropped. Nothing is mocked.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wasmflow_host::connectors::kafka::{KafkaConsumer, KafkaLimits, KafkaProducer};

/// A running broker.
pub struct TestBroker {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

/// The tansu binary: `$TANSU`, else the project's tools folder.
pub fn tansu_bin() -> PathBuf {
    crate::tool_bin("tansu", "TANSU")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl TestBroker {
    /// Starts a broker and waits until it answers.
    pub fn start() -> TestBroker {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(tansu_bin())
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "sqlite://tansu.db"])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        let broker = TestBroker { child, port, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "tansu did not start listening on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        broker
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates `topic` with `partitions` partitions.
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let status = Command::new(tansu_bin())
            .args(["topic", "create", "--broker", &format!("tcp://127.0.0.1:{}", self.port), "--partitions", &partitions.to_string(), topic])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "creating topic {topic}");
    }

    fn props(&self, extra: &[(&str, &str)]) -> Vec<(String, String)> {
        let mut p = vec![("bootstrap.servers".to_string(), self.bootstrap())];
        p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        p
    }

    /// Produces `values` into one partition, in order, with keys `key-<i>` and the given
    /// timestamps (or none), and waits for the broker to acknowledge them.
    pub fn produce(&self, topic: &str, partition: i32, values: &[String], timestamp: Option<i64>) {
        let records: Vec<(String, String, i64)> = values.iter().enumerate().map(|(i, v)| (format!("key-{i}"), v.clone(), timestamp.unwrap_or(-1))).collect();
        self.produce_records(topic, partition, &records);
    }

    /// Produces the values `p<partition>-<i>` for `i` in `from..from + n` into each of the
    /// topic's `partitions`; returns them, sorted.
    pub fn produce_numbered(&self, topic: &str, partitions: i32, from: usize, n: usize) -> Vec<String> {
        let mut all = Vec::new();
        for p in 0..partitions {
            let values: Vec<String> = (from..from + n).map(|i| format!("p{p}-{i:05}")).collect();
            self.produce(topic, p, &values, None);
            all.extend(values);
        }
        all.sort();
        all
    }

    /// Produces `(key, value, timestamp)` records into one partition, in order, and waits for
    /// the broker to acknowledge them.
    pub fn produce_records(&self, topic: &str, partition: i32, records: &[(String, String, i64)]) {
        let producer = KafkaProducer::new(&self.props(&[]), KafkaLimits::default()).unwrap();
        for (k, v, ts) in records {
            producer.send(topic, Some(partition), Some(k.as_bytes()), v.as_bytes(), *ts).unwrap();
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    }

    /// Offsets committed by `group` for `topic`'s partitions `0..partitions` (-1 where none).
    pub async fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer = KafkaConsumer::new(&self.props(&[("group.id", group)]), KafkaLimits::default()).unwrap();
        let tps: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
        consumer.committed_offsets(&tps).await.unwrap().into_iter().map(|(_, _, o)| o).collect()
    }

    /// High watermarks of `topic`'s partitions.
    pub async fn latest(&self, topic: &str, partitions: i32) -> Vec<i64> {
        let consumer = KafkaConsumer::new(&self.props(&[]), KafkaLimits::default()).unwrap();
        let tps: Vec<(String, i32)> = (0..partitions).map(|p| (topic.to_string(), p)).collect();
        consumer.latest_offsets(&tps).await.unwrap().into_iter().map(|(_, _, o)| o).collect()
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
