//! Where checkpoints are stored: the contract every storage keeps ([`CheckpointStorage`]), the
//! job counters they persist, and [`open`], which picks the storage a job's `[checkpoints] dir`
//! names — a local directory ([`super::local`]) or an object-store prefix ([`super::object`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use wasmflow_state::{KeyedSnapshot, SubtaskSnapshot};

use super::control_file::ControlFile;
use super::local::{DirLock, LocalStorage};
use super::location::Location;
use super::metadata::{CheckpointMetadata, StateFileRef};
use super::object::{ObjectStorage, StoreOptions};

/// Counters that must keep increasing across restarts of a job (kept in `_job.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounters {
    /// The next checkpoint id to use.
    pub next_checkpoint_id: u64,
    /// The number of the current execution attempt.
    pub attempt: u64,
    /// The savepoint the job was last stopped with (id, location). Its side effects were
    /// committed, so resuming from an older checkpoint would repeat them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_with: Option<(u64, Location)>,
    /// Object storage: the generation of the job manager that owns the storage (each job
    /// manager that takes the storage over raises it; an older one is fenced).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    /// Object storage: per takeover, the newest checkpoint the new generation found complete.
    /// A checkpoint of an older generation above that id was committed by a fenced job
    /// manager after the takeover and is never restored (`checkpoint::object`, fencing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub takeovers: Vec<Takeover>,
}

/// One takeover of an object storage by a new job manager generation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Takeover {
    pub generation: u64,
    /// The newest complete checkpoint when that generation took over (0: none).
    pub newest_complete: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl JobCounters {
    /// Whether `meta` was committed by a fenced job manager after a newer one took over.
    pub fn fenced_out(&self, meta: &CheckpointMetadata) -> bool {
        self.takeovers.iter().any(|t| meta.generation < t.generation && meta.checkpoint_id > t.newest_complete)
    }
}

/// What a subtask needs of the checkpoint storage: somewhere to write its snapshot.
pub trait SnapshotWriter: Send + Sync {
    /// Writes one subtask's snapshot for checkpoint `id`; returns its reference, which lists
    /// `shared`: the shared files that hold the subtask's keyed state, if they do.
    fn write_state(&self, id: u64, operator: &str, subtask: u32, snapshot: &SubtaskSnapshot, shared: Vec<StateFileRef>) -> Result<StateFileRef>;
    /// Writes one subtask's keyed state for checkpoint `id` (full or an increment) as a shared
    /// file, which later checkpoints may reference too; returns its reference.
    fn write_shared(&self, id: u64, operator: &str, subtask: u32, keyed: &KeyedSnapshot) -> Result<StateFileRef>;
}

/// Durable storage of checkpoints (below the storage's root) and savepoints (each in a location
/// the user chose, owned by the user: never pruned or counted toward retention).
pub trait CheckpointStorage: SnapshotWriter {
    /// Where the storage lives.
    fn root(&self) -> Location;
    /// Takes the storage for this process's job manager; held until the lease is dropped. A
    /// local directory is locked (a second job on it is refused); an object store gets a new
    /// job manager generation, which fences out any older job manager still running on it.
    fn take_over(&self) -> Result<StorageLease>;
    /// The job manager generation this process holds (0 on local storage).
    fn generation(&self) -> u64;
    /// Deletes checkpoints without `_metadata` (left by a crash or an abort). Only safe while
    /// this process holds the storage and no checkpoint is in flight (at start).
    fn remove_incomplete(&self) -> Result<()>;
    /// Makes checkpoint `id` a savepoint written to `<target>/savepoint-<id>` (which must not
    /// exist yet): its state files and metadata go there, nowhere else.
    fn begin_savepoint(&self, id: u64, target: &Location) -> Result<Location>;
    /// Where checkpoint or savepoint `id` is written.
    fn location(&self, id: u64) -> Location;
    /// Where a worker's subtasks write their files for savepoint `id`: `location`, which the job
    /// manager's [`CheckpointStorage::begin_savepoint`] created (distributed execution).
    fn join_savepoint(&self, id: u64, location: &Location) -> Result<()>;
    /// Writes `_metadata` last and atomically, never over an existing one; after this returns
    /// the checkpoint is complete. Fails with [`Fenced`] when a newer job manager took over.
    fn commit(&self, id: u64, metadata: &CheckpointMetadata) -> Result<()>;
    /// Checkpoint `id` will never complete: deletes what was written of it (best effort), and
    /// refuses state files that still arrive for it.
    fn abort(&self, id: u64);
    /// Reads and verifies a complete checkpoint (by its name, `chk-<id>`) and all its files.
    fn load(&self, name: &str) -> Result<LoadedCheckpoint>;
    /// Complete checkpoints, newest first; corrupt or incomplete ones are skipped with a warning.
    fn complete_checkpoints(&self) -> Result<Vec<(String, CheckpointMetadata)>>;
    /// Deletes all but the newest `retain` complete checkpoints, incomplete ones older than the
    /// newest complete one, and shared files no retained checkpoint references (none newer than
    /// the newest complete checkpoint: those may belong to one in flight).
    fn prune(&self, retain: usize) -> Result<()>;
    /// Reserves the next checkpoint id (persisted before use, so ids never repeat).
    fn reserve_checkpoint_id(&self) -> Result<u64>;
    /// Starts a new execution attempt and returns its number: above every attempt recorded,
    /// and above `floor` (the highest attempt the job's outputs show was used).
    fn next_attempt(&self, floor: u64) -> Result<u64>;
    /// Records that the job stopped with savepoint `id` at `location` (its side effects committed).
    fn record_stop_savepoint(&self, id: u64, location: &Location) -> Result<()>;
    /// The savepoint the job was last stopped with, if it is newer than checkpoint `than`.
    fn stop_savepoint_newer_than(&self, than: u64) -> Result<Option<Location>>;
    /// How to name checkpoint `name` in messages.
    fn describe(&self, name: &str) -> String;
    /// Publishes how to reach the running job (`_control`, readable by its user only).
    fn publish_control(&self, control: &ControlFile) -> Result<()>;
    /// How to reach the job running on this storage.
    fn read_control(&self) -> Result<ControlFile>;
    /// The job ended: `_control` no longer points anywhere (best effort).
    fn remove_control(&self);
}

/// A job manager's hold on its checkpoint storage (see [`CheckpointStorage::take_over`]).
#[derive(Debug)]
pub struct StorageLease {
    pub(super) _lock: Option<DirLock>,
}

/// A newer job manager took the checkpoint storage over: this one must stop at once (a restart
/// would only be fenced again) and must not commit anything.
#[derive(Debug, thiserror::Error)]
#[error(
    "{storage}: fenced: a newer job manager (generation {newer}, this one is {ours}) took this checkpoint storage over; this job manager stops without committing"
)]
pub struct Fenced {
    pub storage: String,
    pub ours: u64,
    pub newer: u64,
}

/// A checkpoint read back: metadata plus every subtask's snapshot, by operator id.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    pub location: String,
    pub metadata: CheckpointMetadata,
    pub states: BTreeMap<String, Vec<SubtaskSnapshot>>,
}

/// The storage at `root`: a local directory, or an object-store prefix reached with `options`.
pub fn open(root: &Location, options: &StoreOptions) -> Result<Arc<dyn CheckpointStorage>> {
    Ok(match root {
        Location::Local(dir) => Arc::new(LocalStorage::new(dir)?),
        Location::Object(url) => Arc::new(ObjectStorage::open(url, options)?),
    })
}

/// Reads and verifies a checkpoint or savepoint wherever it is (savepoints are relocatable:
/// every path inside is relative).
pub fn load_location(location: &Location, options: &StoreOptions) -> Result<LoadedCheckpoint> {
    match location {
        Location::Local(dir) => super::local::load_dir(dir),
        Location::Object(url) => super::object::load_prefix(url, options),
    }
}

/// Directory, inside the checkpoint storage, of the files several checkpoints share.
pub const SHARED_DIR: &str = "shared";

/// How many of `checkpoints` reference each shared file: a file is needed while its count is
/// above zero. Counted from the metadata itself, the durable record, so a crash between writing
/// a checkpoint and updating a separate count can never leave a count wrong.
pub fn shared_references(checkpoints: &[&CheckpointMetadata]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for meta in checkpoints {
        for file in meta.operators.values().flat_map(|o| &o.subtasks).flat_map(|r| &r.shared) {
            *counts.entry(file.path.clone()).or_default() += 1;
        }
    }
    counts
}

/// The checkpoint id of a shared file's name (`<id>-<subtask>.keyed`).
pub fn shared_file_checkpoint(name: &str) -> Option<u64> {
    name.split('-').next()?.parse().ok()
}

/// Name of the job counters file inside a checkpoint storage.
pub const JOB_FILE: &str = "_job.json";

#[derive(Serialize, Deserialize)]
struct CountersEnvelope {
    /// Hex SHA-256 of `body` (the exact JSON text).
    checksum: String,
    body: String,
}

pub fn encode_counters(c: &JobCounters) -> Result<Vec<u8>> {
    let body = serde_json::to_string(c)?;
    Ok(serde_json::to_vec_pretty(&CountersEnvelope { checksum: super::metadata::sha256_hex(body.as_bytes()), body })?)
}

pub fn decode_counters(bytes: &[u8]) -> Result<JobCounters> {
    let envelope: CountersEnvelope = serde_json::from_slice(bytes).context("not a wasmflow job counters file")?;
    if super::metadata::sha256_hex(envelope.body.as_bytes()) != envelope.checksum {
        bail!("checksum mismatch: the job counters are corrupt");
    }
    serde_json::from_str(&envelope.body).context("malformed job counters")
}

/// The checkpoint id of a checkpoint's name (`chk-<id>`).
pub fn checkpoint_number(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

/// The least counters a storage's contents allow: above every checkpoint id present (`names`,
/// complete or not), and at least the newest attempt a complete checkpoint names. A lost,
/// corrupt or rolled-back `_job.json` must not make ids or attempt numbers repeat: a repeated
/// id is pruned at once as "older", and a repeated attempt makes a sink reuse the names of
/// committed files.
pub fn counters_at_least(saved: JobCounters, names: &[String], complete: &[(String, CheckpointMetadata)]) -> JobCounters {
    let next_checkpoint_id = names.iter().filter_map(|n| checkpoint_number(n)).max().map_or(1, |n| n + 1);
    let attempt = complete.iter().map(|(_, m)| m.attempt).max().unwrap_or(0);
    let generation = complete.iter().map(|(_, m)| m.generation).max().unwrap_or(0);
    JobCounters {
        next_checkpoint_id: saved.next_checkpoint_id.max(next_checkpoint_id).max(1),
        attempt: saved.attempt.max(attempt),
        generation: saved.generation.max(generation),
        ..saved
    }
}
