//! The job file (TOML): which operators run, how they are wired, how they checkpoint.
//!
//! ```toml
//! [job]
//! name = "demo"
//!
//! [checkpoints]            # optional; absent = no checkpoints
//! interval-ms = 1000
//! dir = "checkpoints"      # relative to the job file
//!
//! [[operators]]
//! id = "numbers"           # stable id: state is matched by it on restore
//! module = "target/operators/wasmflow_op_generator.wasm"
//! parallelism = 2
//! config = { count = 1000 }
//!
//! [[operators]]
//! id = "out"
//! module = "target/operators/wasmflow_op_sink.wasm"
//! grants = { files = "out" }
//!
//! [[edges]]
//! from = "numbers"
//! to = "out"
//! partitioning = "rebalance"   # forward | rebalance | key-hash
//! ```
//!
//! Errors name the file, the line and the key (serde's `deny_unknown_fields` plus toml's spans).

mod chains;
mod defaults;
mod overrides;
pub mod schema;

pub use chains::Chain;
pub use overrides::{ENV_PREFIX, Origin, Override, Overrides};

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use schemars::JsonSchema;

use crate::checkpoint::Location;
use serde::Deserialize;

/// Longest operator id (it names a directory in every checkpoint).
pub const MAX_ID_LEN: usize = 128;
/// Highest parallelism of an operator.
pub const MAX_PARALLELISM: u32 = 1024;

/// A parsed and checked job file.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Job-wide settings.
    #[serde(default)]
    pub job: JobSection,
    /// Checkpointing; absent means no checkpoints.
    pub checkpoints: Option<CheckpointSpec>,
    /// Where savepoints may be written.
    #[serde(default)]
    pub savepoints: SavepointsSpec,
    /// The object-store client's options (`endpoint`, `region`, `allow-http`, …) for
    /// checkpoints, savepoints and restores on `s3://`; credentials are better left to the
    /// environment (docs/object-storage.md).
    #[serde(default, rename = "object-store")]
    pub object_store: BTreeMap<String, String>,
    /// What happens when a subtask fails.
    #[serde(default)]
    pub restart: RestartSpec,
    /// Default sandbox limits for every operator.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Where keyed state lives while the job runs.
    #[serde(default)]
    pub state: StateSpec,
    /// Operators, in any order.
    pub operators: Vec<OperatorSpec>,
    /// Connections between operators.
    #[serde(default)]
    pub edges: Vec<EdgeSpec>,
    /// Directory of the job file; relative paths in it are relative to this.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Path of the job file itself (for error messages).
    #[serde(skip)]
    pub path: PathBuf,
}

/// `[state]`: the keyed state backend (docs/state.md, state backends).
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StateSpec {
    /// `heap` (default): keyed state in memory. `disk`: in an LSM tree on local disk, for
    /// state larger than memory (Flink's RocksDB backend).
    #[serde(default)]
    pub backend: StateBackendKind,
    /// Local directory of the disk backend's working files, relative to the job file (default:
    /// the system's temporary directory). Each subtask's store is deleted when it stops; the
    /// checkpoints are the durable copy.
    #[serde(default)]
    pub dir: Option<PathBuf>,
}

/// Which keyed state backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackendKind {
    /// In memory.
    #[default]
    Heap,
    /// On local disk.
    Disk,
}

/// `[job]`
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct JobSection {
    /// Name shown in logs and progress.
    #[serde(default)]
    pub name: Option<String>,
    /// Address of the job's HTTP API, dashboard and /metrics (loopback unless set otherwise); default `127.0.0.1:0` (a free port).
    #[serde(default)]
    pub control_address: Option<String>,
    /// Records per batch a source is asked for (default 1024).
    #[serde(default)]
    pub batch_size: Option<u32>,
    /// Batches buffered per channel before back-pressure (default 16).
    #[serde(default)]
    pub channel_capacity: Option<usize>,
    /// Bytes of record data buffered per channel before back-pressure (default 8 MiB); a batch
    /// larger than this still passes, alone. Bounds what the host holds for a guest's output.
    #[serde(default)]
    pub channel_bytes: Option<usize>,
    /// Operator chaining (default true): operators joined by a chainable edge run in one task,
    /// handing batches over without a channel. See [`JobSpec::chains`].
    #[serde(default)]
    pub chaining: Option<bool>,
    /// Number of key groups of keyed state (default 128, at most 32768): the highest
    /// parallelism a keyed operator can ever be rescaled to, fixed for the life of its state.
    #[serde(default)]
    pub max_parallelism: Option<u32>,
}

/// `[checkpoints]`
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct CheckpointSpec {
    /// Time between checkpoint triggers.
    pub interval_ms: u64,
    /// A checkpoint not complete after this long is aborted (default 60000).
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Least time between the end of one checkpoint and the start of the next (default 0).
    #[serde(default)]
    pub min_pause_ms: u64,
    /// Where checkpoints are stored: a directory relative to the job file (default
    /// `checkpoints`), `file:///abs/path`, or an object-store prefix `s3://bucket/prefix`.
    #[serde(default = "default_checkpoint_dir")]
    pub dir: PathBuf,
    /// How many completed checkpoints to keep (default 3). Savepoints are never counted.
    #[serde(default = "default_retain")]
    pub retain: usize,
    /// Consecutive checkpoint failures (declined, timed out, not writable) tolerated before the
    /// job fails and goes through the restart strategy (default 0, as Flink's
    /// `execution.checkpointing.tolerable-failed-checkpoints`).
    #[serde(default)]
    pub tolerable_failures: u32,
    /// Incremental checkpoints of keyed state (default true): a checkpoint writes only the keyed
    /// state that changed since the last complete one, into a shared file that later
    /// checkpoints reference (docs/state.md, incremental checkpoints). Savepoints are always full.
    #[serde(default = "default_incremental")]
    pub incremental: bool,
}

fn default_incremental() -> bool {
    true
}

fn default_timeout() -> u64 {
    60_000
}
fn default_checkpoint_dir() -> PathBuf {
    PathBuf::from("checkpoints")
}
fn default_retain() -> usize {
    3
}

/// `[savepoints]`: savepoints requested over the HTTP API are written below `dir`
/// (default `savepoints` next to the job file), so that a request cannot make the job write
/// anywhere its user can; `allow-any-target = true` lifts that.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SavepointsSpec {
    #[serde(default = "default_savepoint_dir")]
    pub dir: PathBuf,
    #[serde(default)]
    pub allow_any_target: bool,
}

impl Default for SavepointsSpec {
    fn default() -> Self {
        SavepointsSpec { dir: default_savepoint_dir(), allow_any_target: false }
    }
}

fn default_savepoint_dir() -> PathBuf {
    PathBuf::from("savepoints")
}

/// `[restart]`: Flink's fixed-delay restart strategy.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RestartSpec {
    /// Restarts allowed before the job fails (default 0).
    #[serde(default)]
    pub attempts: u32,
    /// Wait before each restart (default 1000).
    #[serde(default = "default_restart_delay")]
    pub delay_ms: u64,
}

impl Default for RestartSpec {
    fn default() -> Self {
        RestartSpec { attempts: 0, delay_ms: default_restart_delay() }
    }
}

fn default_restart_delay() -> u64 {
    1000
}

/// Sandbox limits (`[limits]` for all operators, `limits = {...}` per operator).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsSpec {
    /// Linear memory per subtask, MiB (default 256).
    pub memory_mb: Option<u64>,
    /// Table elements per subtask (default 100000).
    pub table_elements: Option<u32>,
    /// Longest a single call into the guest may run, ms (default 10000).
    pub call_timeout_ms: Option<u64>,
    /// Bytes all states of one subtask may hold (default 256 MiB).
    pub state_bytes: Option<usize>,
    /// Largest single state entry, bytes (default 16 MiB).
    pub state_entry_bytes: Option<usize>,
    /// Most named states per subtask (default 1024).
    pub states: Option<usize>,
    /// Largest batch a guest may return, bytes (default 64 MiB).
    pub batch_bytes: Option<usize>,
    /// Longest log line kept, bytes (default 4096); longer lines are cut.
    pub log_line_bytes: Option<usize>,
    /// Log lines per second per subtask before lines are dropped (default 1000).
    pub log_lines_per_second: Option<u32>,
    /// How long Kafka metadata/offset requests retry before the call fails, ms (default 30000).
    pub kafka_connect_timeout_ms: Option<u64>,
    /// Largest Kafka record (key + value) a guest may receive or send, bytes (default 8 MiB).
    pub kafka_max_record_bytes: Option<usize>,
    /// Kafka clients (consumers + producers) a subtask may hold at once (default 4).
    pub kafka_clients: Option<usize>,
}

/// Checks that `value` (set at `key`) is at most `max`: limits are bounded so that a typo
/// cannot wrap around (memory-mb = 2^44 used to become 0) or make the host panic.
fn at_most<T: PartialOrd + std::fmt::Display + Copy>(file: &Path, key: &str, value: Option<T>, max: T, unit: &str) -> Result<()> {
    match value {
        Some(v) if v > max => bail!("{}: {key} = {v} is over the maximum of {max}{unit}", file.display()),
        _ => Ok(()),
    }
}

fn at_least_one<T: PartialEq + Default + std::fmt::Display + Copy>(file: &Path, key: &str, value: Option<T>) -> Result<()> {
    match value {
        Some(v) if v == T::default() => bail!("{}: {key} must be at least 1", file.display()),
        _ => Ok(()),
    }
}

impl JobSection {
    fn check(&self, file: &Path) -> Result<()> {
        at_least_one(file, "job.channel-capacity", self.channel_capacity)?;
        at_most(file, "job.channel-capacity", self.channel_capacity, 65_536, " batches")?;
        at_least_one(file, "job.channel-bytes", self.channel_bytes)?;
        at_most(file, "job.channel-bytes", self.channel_bytes, 1 << 30, " bytes")?;
        at_least_one(file, "job.batch-size", self.batch_size)?;
        at_most(file, "job.batch-size", self.batch_size, 1 << 20, " records")?;
        at_least_one(file, "job.max-parallelism", self.max_parallelism)?;
        at_most(file, "job.max-parallelism", self.max_parallelism, wasmflow_state::MAX_MAX_PARALLELISM, " key groups")?;
        Ok(())
    }
}

impl LimitsSpec {
    /// Checks every set limit against its bound; `table` names where it was set.
    fn check(&self, file: &Path, table: &str) -> Result<()> {
        let key = |k: &str| format!("{table}.{k}");
        // A wasm32 memory cannot exceed 4 GiB.
        at_least_one(file, &key("memory-mb"), self.memory_mb)?;
        at_most(file, &key("memory-mb"), self.memory_mb, 4096, " MiB (the most a 32-bit wasm memory can address)")?;
        at_most(file, &key("table-elements"), self.table_elements, 10_000_000, "")?;
        at_least_one(file, &key("call-timeout-ms"), self.call_timeout_ms)?;
        at_most(file, &key("call-timeout-ms"), self.call_timeout_ms, 3_600_000, " ms")?;
        at_most(file, &key("state-bytes"), self.state_bytes, 64 << 30, " bytes")?;
        at_most(file, &key("state-entry-bytes"), self.state_entry_bytes, 1 << 30, " bytes")?;
        at_most(file, &key("states"), self.states, 1 << 20, "")?;
        at_most(file, &key("batch-bytes"), self.batch_bytes, 1 << 30, " bytes")?;
        at_most(file, &key("log-line-bytes"), self.log_line_bytes, 1 << 20, " bytes")?;
        at_most(file, &key("log-lines-per-second"), self.log_lines_per_second, 1_000_000, "")?;
        at_most(file, &key("kafka-connect-timeout-ms"), self.kafka_connect_timeout_ms, 3_600_000, " ms")?;
        at_most(file, &key("kafka-max-record-bytes"), self.kafka_max_record_bytes, 1 << 30, " bytes")?;
        at_most(file, &key("kafka-clients"), self.kafka_clients, 64, "")?;
        Ok(())
    }

    /// `self` with unset fields taken from `defaults`.
    pub fn or(&self, defaults: &LimitsSpec) -> LimitsSpec {
        LimitsSpec {
            memory_mb: self.memory_mb.or(defaults.memory_mb),
            table_elements: self.table_elements.or(defaults.table_elements),
            call_timeout_ms: self.call_timeout_ms.or(defaults.call_timeout_ms),
            state_bytes: self.state_bytes.or(defaults.state_bytes),
            state_entry_bytes: self.state_entry_bytes.or(defaults.state_entry_bytes),
            states: self.states.or(defaults.states),
            batch_bytes: self.batch_bytes.or(defaults.batch_bytes),
            log_line_bytes: self.log_line_bytes.or(defaults.log_line_bytes),
            log_lines_per_second: self.log_lines_per_second.or(defaults.log_lines_per_second),
            kafka_connect_timeout_ms: self.kafka_connect_timeout_ms.or(defaults.kafka_connect_timeout_ms),
            kafka_max_record_bytes: self.kafka_max_record_bytes.or(defaults.kafka_max_record_bytes),
            kafka_clients: self.kafka_clients.or(defaults.kafka_clients),
        }
    }
}

/// `[[operators]]`
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OperatorSpec {
    /// Stable id; state is matched by it on restore.
    pub id: String,
    /// Path of the component `.wasm`, relative to the job file; or `native:<name>` for an
    /// operator compiled into an embedding host (see [`crate::native`]).
    pub module: PathBuf,
    /// Number of parallel subtasks (default 1).
    #[serde(default = "one")]
    pub parallelism: u32,
    /// Passed to the operator as JSON at `create`.
    #[serde(default)]
    #[schemars(schema_with = "schema::config_schema")]
    pub config: Option<toml::Table>,
    /// Capabilities granted to this operator.
    #[serde(default)]
    pub grants: Grants,
    /// Limits overriding `[limits]`.
    #[serde(default)]
    pub limits: LimitsSpec,
}

fn one() -> u32 {
    1
}

/// Capabilities an operator is granted. Nothing is granted by default.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Grants {
    /// Kafka access through the host's client, to these brokers only:
    /// `kafka = { bootstrap-servers = "host:port" }`. The guest cannot choose other brokers.
    #[serde(default, deserialize_with = "kafka_grant")]
    #[schemars(schema_with = "schema::kafka_grant_schema")]
    pub kafka: Option<KafkaGrant>,
    /// A directory (relative to the job file) the operator may write exactly-once files in.
    #[serde(default)]
    pub files: Option<PathBuf>,
}

/// What a `kafka` grant allows.
#[derive(Clone, Debug, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KafkaGrant {
    /// The brokers the operator's clients connect to (librdkafka's `bootstrap.servers`).
    pub bootstrap_servers: String,
}

/// `kafka = { bootstrap-servers = ... }`, or `false`; `true` no longer says enough.
fn kafka_grant<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<KafkaGrant>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Flag(bool),
        Grant(toml::Table),
    }
    match Raw::deserialize(d)? {
        Raw::Flag(false) => Ok(None),
        Raw::Flag(true) => Err(serde::de::Error::custom(
            "`kafka = true` does not say which brokers: write grants = { kafka = { bootstrap-servers = \"host:port\" } } (the operator may reach only these)",
        )),
        Raw::Grant(t) => KafkaGrant::deserialize(toml::Value::Table(t)).map(Some).map_err(serde::de::Error::custom),
    }
}

/// How records travel along an edge.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Partitioning {
    /// Subtask i sends to subtask i (parallelisms must be equal).
    #[default]
    Forward,
    /// Batches go round-robin to the downstream subtasks.
    Rebalance,
    /// Each record goes to the downstream subtask that owns its key's key group
    /// (`wasmflow_state::subtask_for_key`), so a keyed operator always sees a key on the subtask
    /// that holds its state. Records without a key go to subtask 0.
    KeyHash,
}

/// `[[edges]]`
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EdgeSpec {
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub partitioning: Partitioning,
    /// Whether this edge may be chained (default true; see [`JobSpec::chains`]). `chain = false`
    /// keeps the two operators in separate tasks, e.g. to give a slow operator its own thread.
    #[serde(default = "chain_by_default")]
    pub chain: bool,
}

fn chain_by_default() -> bool {
    true
}

/// A TOML error as `file:line: message` (the line of its span, when it has one).
pub(crate) fn located(e: &toml::de::Error, text: &str, path: &Path) -> anyhow::Error {
    let msg = e.message().to_string();
    match e.span() {
        Some(span) => {
            let line = text[..span.start].lines().count().max(1);
            let line = if text[..span.start].ends_with('\n') { line + 1 } else { line };
            anyhow::anyhow!("{}:{line}: {msg}", path.display())
        }
        None => anyhow::anyhow!("{}: {msg}", path.display()),
    }
}

impl JobSpec {
    /// Reads and checks a job file. Errors name the file and, for syntax and key errors, the
    /// line and the key.
    pub fn load(path: &Path) -> Result<JobSpec> {
        Self::load_with(path, &Overrides::none())
    }

    /// Reads a job file, applies `overrides` (`--set`, `WASMFLOW__*`) to its TOML, then
    /// deserializes and checks it like [`JobSpec::load`]: the one way every command loads a job.
    /// An error an override causes names it (`--set checkpoints.interval-ms=abc: ...`).
    pub fn load_with(path: &Path, overrides: &Overrides) -> Result<JobSpec> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read job file (check the path)", path.display()))?;
        Self::parse_with(&text, path, overrides)
    }

    /// The job file's text as every worker must run it: its TOML with `overrides` and
    /// `parallelism` (`--parallelism`) applied. The job manager sends this text, so its workers
    /// run exactly the job it checked, whatever their own environment says.
    pub fn effective_text(path: &Path, overrides: &Overrides, parallelism: &BTreeMap<String, u32>) -> Result<String> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read job file (check the path)", path.display()))?;
        let mut doc: toml::Table = toml::from_str(&text).map_err(|e| located(&e, &text, path))?;
        overrides.apply(&mut doc)?;
        if let Some(toml::Value::Array(operators)) = doc.get_mut("operators") {
            for op in operators.iter_mut().filter_map(toml::Value::as_table_mut) {
                if let Some(n) = op.get("id").and_then(toml::Value::as_str).and_then(|id| parallelism.get(id)) {
                    op.insert("parallelism".into(), toml::Value::Integer(i64::from(*n)));
                }
            }
        }
        Ok(toml::to_string(&doc)?)
    }

    /// Parses job-file text; `path` is used for messages and relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<JobSpec> {
        let spec: JobSpec = toml::from_str(text).map_err(|e| located(&e, text, path))?;
        spec.checked(path)
    }

    /// [`JobSpec::parse`] with overrides applied to the parsed TOML before it is deserialized.
    pub fn parse_with(text: &str, path: &Path, overrides: &Overrides) -> Result<JobSpec> {
        if overrides.is_empty() {
            return Self::parse(text, path);
        }
        let file: toml::Table = toml::from_str(text).map_err(|e| located(&e, text, path))?;
        let mut doc = file.clone();
        overrides.apply(&mut doc)?;
        let error = match Self::from_table(doc, path) {
            Ok(spec) => return Ok(spec),
            Err(e) => e,
        };
        // Name the cause: the first override after which the job is wrong, if the file alone is
        // right; the file (with its line numbers) if it is wrong in the same way without them.
        match Self::from_table(file.clone(), path) {
            Ok(_) => {
                let mut doc = file;
                for o in &overrides.0 {
                    o.apply(&mut doc)?;
                    if let Err(e) = Self::from_table(doc.clone(), path) {
                        return Err(e.context(o.to_string()));
                    }
                }
                Err(error)
            }
            Err(alone) if format!("{alone:#}") == format!("{error:#}") => Self::parse(text, path),
            Err(_) => {
                let all: Vec<String> = overrides.0.iter().map(ToString::to_string).collect();
                Err(error.context(format!("with overrides {}", all.join(", "))))
            }
        }
    }

    /// Deserializes and checks a job file's (overridden) TOML.
    fn from_table(doc: toml::Table, path: &Path) -> Result<JobSpec> {
        let spec = JobSpec::deserialize(toml::Value::Table(doc)).map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message().trim_end()))?;
        spec.checked(path)
    }

    fn checked(mut self, path: &Path) -> Result<JobSpec> {
        self.path = path.to_path_buf();
        self.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        if self.base_dir.as_os_str().is_empty() {
            self.base_dir = PathBuf::from(".");
        }
        self.check()?;
        Ok(self)
    }

    /// Sets operators' parallelism (`wasmflow run --parallelism OP=N`, a rescale on restore)
    /// and checks the job again, with the same messages as the file gets: a forward edge
    /// between now unequal parallelisms is refused here, not left to hang at run time.
    pub fn with_parallelism(mut self, overrides: &BTreeMap<String, u32>) -> Result<JobSpec> {
        for (op, n) in overrides {
            let Some(spec) = self.operators.iter_mut().find(|o| &o.id == op) else {
                bail!("--parallelism names operator '{op}', which is not in {}", self.path.display());
            };
            spec.parallelism = *n;
        }
        self.check().with_context(|| format!("after --parallelism {}", overrides.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")))?;
        Ok(self)
    }

    /// Every problem [`JobSpec::problems`] finds, one a line.
    fn check(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() { Ok(()) } else { Err(anyhow::anyhow!(problems.join("\n"))) }
    }

    /// The job's checks, beyond what its types say: every problem (a check that needs what an
    /// earlier one refused, such as cycles among edges to unknown operators, is left out).
    pub fn problems(&self) -> Vec<String> {
        let file = self.path.display();
        let mut problems = Vec::new();
        if self.operators.is_empty() {
            problems.push(format!("{file}: no [[operators]]: a job needs at least one operator"));
        }
        let mut ids = HashMap::new();
        for (i, op) in self.operators.iter().enumerate() {
            // The id names a directory in every checkpoint (`chk-N/<id>/<n>.state`): it must
            // be a short, portable file name that cannot collide with `_metadata` and friends.
            if op.id.is_empty() || !op.id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                problems.push(format!("{file}: operators[{i}].id '{}' must be non-empty and use only letters, digits, '-' and '_'", op.id));
            } else if op.id.len() > MAX_ID_LEN {
                problems.push(format!(
                    "{file}: operators[{i}].id is {} characters long; ids are at most {MAX_ID_LEN} (they name directories in checkpoints)",
                    op.id.len()
                ));
            } else if op.id.starts_with('_') {
                problems.push(format!("{file}: operators[{i}].id '{}' must not start with '_' (reserved for checkpoint files such as _metadata)", op.id));
            }
            if ids.insert(op.id.as_str(), op).is_some() {
                problems.push(format!("{file}: operator id '{}' is used twice; ids must be unique", op.id));
            }
            if op.parallelism == 0 || op.parallelism > MAX_PARALLELISM {
                problems.push(format!("{file}: operator '{}': parallelism must be between 1 and {MAX_PARALLELISM}, got {}", op.id, op.parallelism));
            }
        }
        let mut edges_known = true;
        for (i, e) in self.edges.iter().enumerate() {
            if let Some(j) = self.edges[..i].iter().position(|d| d.from == e.from && d.to == e.to) {
                problems
                    .push(format!("{file}: edges[{i}] and edges[{j}] both connect '{}' to '{}'; every record would arrive twice: remove one", e.from, e.to));
            }
            let unknown: Vec<&String> = [&e.from, &e.to].into_iter().filter(|end| !ids.contains_key(end.as_str())).collect();
            for end in &unknown {
                problems.push(format!("{file}: edges[{i}] names operator '{end}', which is not in [[operators]]"));
            }
            if !unknown.is_empty() {
                edges_known = false;
                continue;
            }
            if e.from == e.to {
                problems.push(format!("{file}: edges[{i}] connects '{}' to itself", e.from));
            }
            let (a, b) = (ids[e.from.as_str()], ids[e.to.as_str()]);
            if e.partitioning == Partitioning::Forward && a.parallelism != b.parallelism {
                problems.push(format!(
                    "{file}: edges[{i}] '{}' -> '{}' is forward but parallelisms differ ({} vs {}); use partitioning = \"rebalance\" or \"key-hash\"",
                    e.from, e.to, a.parallelism, b.parallelism
                ));
            }
        }
        if edges_known && let Err(e) = self.topological_order() {
            problems.push(format!("{e:#}"));
        }
        if let Err(e) = self.job.check(&self.path) {
            problems.push(format!("{e:#}"));
        }
        let max = self.job.max_parallelism();
        if edges_known && let Some(op) = self.operators.iter().find(|o| self.is_keyed(&o.id) && o.parallelism > max) {
            problems.push(format!(
                "{file}: operator '{}' is keyed (its input is key-hash) and has parallelism {}, over job.max-parallelism = {max}: a keyed operator cannot have more subtasks than key groups; raise [job] max-parallelism (before the first checkpoint: it is fixed for the life of keyed state)",
                op.id, op.parallelism
            ));
        }
        if let Err(e) = self.limits.check(&self.path, "limits") {
            problems.push(format!("{e:#}"));
        }
        for op in &self.operators {
            if let Err(e) = op.limits.check(&self.path, &format!("operators '{}' limits", op.id)) {
                problems.push(format!("{e:#}"));
            }
        }
        if let Some(c) = &self.checkpoints {
            if c.interval_ms == 0 {
                problems.push(format!("{file}: checkpoints.interval-ms must be > 0 (remove [checkpoints] to disable them)"));
            }
            if c.retain == 0 {
                problems.push(format!("{file}: checkpoints.retain must be at least 1"));
            }
        }
        match (self.checkpoint_location(), self.savepoint_location()) {
            (Ok(Location::Local(_)), Ok(Location::Object(url))) => problems.push(format!(
                "{file}: savepoints.dir is on object storage ({url}) but checkpoints.dir is a local directory: a job writes savepoints where it can write checkpoints; put checkpoints.dir on object storage too, or savepoints.dir in a directory"
            )),
            (checkpoints, savepoints) => {
                for e in [checkpoints.err(), savepoints.err()].into_iter().flatten() {
                    problems.push(format!("{e:#}"));
                }
            }
        }
        problems
    }

    /// Operator ids in an order where every edge goes forward; an error names a cycle.
    pub fn topological_order(&self) -> Result<Vec<String>> {
        let mut indegree: BTreeMap<&str, usize> = self.operators.iter().map(|o| (o.id.as_str(), 0)).collect();
        for e in &self.edges {
            *indegree.get_mut(e.to.as_str()).expect("edges checked") += 1;
        }
        let mut order = Vec::new();
        let mut ready: Vec<&str> = self.operators.iter().map(|o| o.id.as_str()).filter(|id| indegree[id] == 0).collect();
        while let Some(id) = ready.pop() {
            order.push(id.to_string());
            for e in self.edges.iter().filter(|e| e.from == id) {
                let d = indegree.get_mut(e.to.as_str()).expect("edges checked");
                *d -= 1;
                if *d == 0 {
                    ready.push(e.to.as_str());
                }
            }
        }
        if order.len() != self.operators.len() {
            bail!("{}: the edges form a cycle; a job must be a directed acyclic graph", self.path.display());
        }
        Ok(order)
    }

    /// Where checkpoints are stored: `[checkpoints] dir` (default `checkpoints` next to the job
    /// file), a directory or an object-store prefix.
    pub fn checkpoint_location(&self) -> Result<Location> {
        let dir = self.checkpoints.as_ref().map(|c| c.dir.clone()).unwrap_or_else(default_checkpoint_dir);
        Location::resolve(&dir, &self.base_dir).with_context(|| format!("{}: checkpoints.dir", self.path.display()))
    }

    /// Where savepoints requested over the API go: `[savepoints] dir` (default `savepoints`
    /// next to the job file), a directory or an object-store prefix.
    pub fn savepoint_location(&self) -> Result<Location> {
        Location::resolve(&self.savepoints.dir, &self.base_dir).with_context(|| format!("{}: savepoints.dir", self.path.display()))
    }

    /// Resolves a path written in the job file (relative to the job file's directory).
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() { p.to_path_buf() } else { self.base_dir.join(p) }
    }

    /// The operator with this id.
    pub fn operator(&self, id: &str) -> Option<&OperatorSpec> {
        self.operators.iter().find(|o| o.id == id)
    }

    /// Whether checkpoints write keyed state incrementally (`[checkpoints] incremental`, on by
    /// default; no checkpoints, no increments).
    pub fn incremental_checkpoints(&self) -> bool {
        self.checkpoints.as_ref().is_some_and(|c| c.incremental)
    }

    /// Whether `id` is a keyed operator: it has inputs and every one is a `key-hash` edge, so
    /// each key reaches one subtask and the operator may keep keyed state and timers.
    pub fn is_keyed(&self, id: &str) -> bool {
        let mut inputs = self.edges.iter().filter(|e| e.to == id).peekable();
        inputs.peek().is_some() && inputs.all(|e| e.partitioning == Partitioning::KeyHash)
    }
}

#[cfg(test)]
mod tests;
