//! Writing job files for tests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::operator;

/// The example pipeline (generator → uppercase → failing map (optional) → counter → exactly-once
/// file sink) written into `dir`, with absolute module paths.
pub struct PipelineJob {
    pub count: u64,
    pub records_per_second: Option<u32>,
    pub source_parallelism: u32,
    pub counter_parallelism: u32,
    pub sink_parallelism: u32,
    pub checkpoint_interval_ms: Option<u64>,
    pub restart_attempts: u32,
    /// Key at which a failing map between uppercase and counter fails in attempt 1.
    pub fail_on_key: Option<u64>,
    /// `[job] channel-capacity` (batches per channel), default the runtime's.
    pub channel_capacity: Option<usize>,
    /// Operators (by crate name: `generator`, `counter`, …) to run as `native:` modules instead
    /// of wasm; the run needs [`crate::native_operators`] in its options.
    pub native: Vec<&'static str>,
    /// `[job] chaining` (default: the runtime's, on).
    pub chaining: Option<bool>,
    /// Partitioning of the counter → sink edge (default `rebalance`; `forward` needs equal
    /// parallelisms and chains the two).
    pub counter_to_sink: &'static str,
    /// `[checkpoints] dir` (default `checkpoints`), e.g. an `s3://` prefix.
    pub checkpoint_dir: String,
    /// More `[checkpoints]` lines.
    pub checkpoint_extra: String,
    /// Tables appended to the job file (e.g. `[object-store]`).
    pub extra_tables: String,
}

impl Default for PipelineJob {
    fn default() -> Self {
        PipelineJob {
            count: 1000,
            records_per_second: None,
            source_parallelism: 2,
            counter_parallelism: 3,
            sink_parallelism: 2,
            checkpoint_interval_ms: Some(100),
            restart_attempts: 0,
            fail_on_key: None,
            channel_capacity: None,
            native: Vec::new(),
            chaining: None,
            counter_to_sink: "rebalance",
            checkpoint_dir: "checkpoints".into(),
            checkpoint_extra: String::new(),
            extra_tables: String::new(),
        }
    }
}

impl PipelineJob {
    /// Writes `job.toml` into `dir`; output goes to `dir/out`, checkpoints to `dir/checkpoints`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let mut t = String::from("[job]\nname = \"pipeline\"\nbatch-size = 64\n");
        if let Some(c) = self.channel_capacity {
            writeln!(t, "channel-capacity = {c}").unwrap();
        }
        if let Some(on) = self.chaining {
            writeln!(t, "chaining = {on}").unwrap();
        }
        t.push('\n');
        if let Some(ms) = self.checkpoint_interval_ms {
            writeln!(t, "[checkpoints]\ninterval-ms = {ms}\ndir = \"{}\"\nretain = 2\n{}", self.checkpoint_dir, self.checkpoint_extra).unwrap();
        }
        writeln!(t, "{}", self.extra_tables).unwrap();
        writeln!(t, "[restart]\nattempts = {}\ndelay-ms = 50\n", self.restart_attempts).unwrap();
        let rate = self.records_per_second.map(|r| format!(", records-per-second = {r}")).unwrap_or_default();
        let op = |t: &mut String, id: &str, module: &str, p: u32, extra: &str| {
            let module = if self.native.contains(&module) { format!("native:{module}") } else { operator(module).display().to_string() };
            writeln!(t, "[[operators]]\nid = \"{id}\"\nmodule = \"{module}\"\nparallelism = {p}\n{extra}").unwrap();
        };
        op(&mut t, "numbers", "generator", self.source_parallelism, &format!("config = {{ count = {}{rate} }}\n", self.count));
        op(&mut t, "upper", "uppercase", self.source_parallelism, "");
        let mut chain = vec![("numbers", "upper", "forward")];
        if let Some(key) = self.fail_on_key {
            op(&mut t, "fail", "failing-map", self.source_parallelism, &format!("config = {{ fail-on-key = \"{key}\" }}\n"));
            chain.push(("upper", "fail", "forward"));
            chain.push(("fail", "counter", "key-hash"));
        } else {
            chain.push(("upper", "counter", "key-hash"));
        }
        op(&mut t, "counter", "counter", self.counter_parallelism, "");
        op(&mut t, "out", "sink", self.sink_parallelism, "grants = { files = \"out\" }\n");
        chain.push(("counter", "out", self.counter_to_sink));
        for (from, to, p) in chain {
            writeln!(t, "[[edges]]\nfrom = \"{from}\"\nto = \"{to}\"\npartitioning = \"{p}\"\n").unwrap();
        }
        let path = dir.join("job.toml");
        std::fs::write(&path, t).unwrap();
        path
    }
}

/// Kafka source → counter → exactly-once file sink, written into `dir`.
pub struct KafkaJob {
    pub bootstrap: String,
    pub topic: String,
    pub group: String,
    pub source_parallelism: u32,
    pub counter_parallelism: u32,
    pub checkpoint_interval_ms: u64,
    /// Extra `key = value` pairs for the source's config table (TOML syntax).
    pub source_config: Vec<String>,
    /// `topics = [...]` (default: the one topic) — replace with `topic-pattern = "..."` etc.
    pub subscription: Option<String>,
    /// Whether the source is granted Kafka access (default true).
    pub grant_kafka: bool,
    /// Extra lines for the `[limits]` table.
    pub limits: Vec<String>,
    /// The source's startup mode (default `earliest`).
    pub startup_mode: String,
    /// `[checkpoints] dir` (default `checkpoints`), e.g. an `s3://` prefix.
    pub checkpoint_dir: String,
    /// Tables appended to the job file (e.g. `[object-store]`).
    pub extra_tables: String,
}

impl KafkaJob {
    /// A job reading `topic` from `bootstrap` as consumer group `group`.
    pub fn new(bootstrap: &str, topic: &str, group: &str) -> Self {
        KafkaJob {
            bootstrap: bootstrap.into(),
            topic: topic.into(),
            group: group.into(),
            source_parallelism: 4,
            counter_parallelism: 2,
            checkpoint_interval_ms: 200,
            source_config: Vec::new(),
            subscription: None,
            grant_kafka: true,
            limits: Vec::new(),
            startup_mode: "earliest".into(),
            checkpoint_dir: "checkpoints".into(),
            extra_tables: String::new(),
        }
    }

    /// Writes `job.toml` into `dir`; output goes to `dir/out`.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let mut config = vec![
            self.subscription.clone().unwrap_or_else(|| format!("topics = [\"{}\"]", self.topic)),
            format!("startup-mode = \"{}\"", self.startup_mode),
            format!("properties = {{ \"group.id\" = \"{}\" }}", self.group),
        ];
        config.extend(self.source_config.iter().cloned());
        let t = format!(
            r#"[job]
name = "kafka"

[checkpoints]
interval-ms = {interval}
dir = "{checkpoint_dir}"

{extra_tables}

[limits]
{limits}

[[operators]]
id = "source"
module = "{source}"
parallelism = {sp}
grants = {{ {grant} }}
config = {{ {config} }}

[[operators]]
id = "counter"
module = "{counter}"
parallelism = {cp}

[[operators]]
id = "out"
module = "{sink}"
parallelism = 2
grants = {{ files = "out" }}

[[edges]]
from = "source"
to = "counter"
partitioning = "rebalance"

[[edges]]
from = "counter"
to = "out"
partitioning = "rebalance"
"#,
            interval = self.checkpoint_interval_ms,
            checkpoint_dir = self.checkpoint_dir,
            extra_tables = self.extra_tables,
            source = operator("kafka-source").display(),
            counter = operator("counter").display(),
            sink = operator("sink").display(),
            sp = self.source_parallelism,
            cp = self.counter_parallelism,
            config = config.join(", "),
            limits = self.limits.join("\n"),
            grant = if self.grant_kafka { format!("kafka = {{ bootstrap-servers = \"{}\" }}", self.bootstrap) } else { "kafka = false".into() },
        );
        let path = dir.join("job.toml");
        std::fs::write(&path, t).unwrap();
        path
    }
}
