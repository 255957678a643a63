//! Where checkpoints are stored. Behind a trait so object storage (S3 via `object_store`) can
//! follow; every location is a path *relative* to the storage root.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use wasmflow_state::SubtaskSnapshot;

use super::metadata::{CheckpointMetadata, METADATA_FILE, StateFileRef};
use super::state_file::{decode_state_file, encode_state_file};

/// Counters that must keep increasing across restarts of a job (kept in `_job.json`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounters {
    /// The next checkpoint id to use.
    pub next_checkpoint_id: u64,
    /// The number of the current execution attempt.
    pub attempt: u64,
}

/// Durable storage of checkpoints.
pub trait CheckpointStorage: Send + Sync {
    /// Writes one subtask's snapshot into checkpoint `dir` (e.g. `chk-7`); returns its reference.
    fn write_state(&self, dir: &str, operator: &str, subtask: u32, snapshot: &SubtaskSnapshot) -> Result<StateFileRef>;
    /// Writes `_metadata` last and atomically; after this returns the checkpoint is complete.
    fn commit(&self, dir: &str, metadata: &CheckpointMetadata) -> Result<()>;
    /// Reads and verifies a complete checkpoint and all its state files.
    fn load(&self, dir: &str) -> Result<LoadedCheckpoint>;
    /// Complete checkpoints, newest first; corrupt or incomplete ones are skipped with a warning.
    fn complete_checkpoints(&self) -> Result<Vec<(String, CheckpointMetadata)>>;
    /// Deletes all but the newest `retain` complete checkpoints, and incomplete ones older than
    /// the newest complete one.
    fn prune(&self, retain: usize) -> Result<()>;
    /// Reserves the next checkpoint id (persisted before use, so ids never repeat).
    fn reserve_checkpoint_id(&self) -> Result<u64>;
    /// Starts a new execution attempt and returns its number.
    fn next_attempt(&self) -> Result<u64>;
    /// Where this storage lives, for messages.
    fn describe(&self, dir: &str) -> String;
}

/// A checkpoint read back: metadata plus every subtask's snapshot, by operator id.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    pub location: String,
    pub metadata: CheckpointMetadata,
    pub states: BTreeMap<String, Vec<SubtaskSnapshot>>,
}

/// Checkpoints in a local directory.
#[derive(Clone, Debug)]
pub struct LocalStorage {
    root: PathBuf,
}

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` durably and atomically: temp file, fsync, rename, fsync directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| anyhow!("{} has no parent directory", path.display()))?;
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    fsync_dir(dir)?;
    Ok(())
}

fn checkpoint_number(name: &str) -> Option<u64> {
    name.strip_prefix("chk-").or_else(|| name.strip_prefix("savepoint-"))?.parse().ok()
}

impl LocalStorage {
    /// Storage rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalStorage> {
        let root = root.into();
        fs::create_dir_all(&root).with_context(|| format!("cannot create checkpoint directory {}", root.display()))?;
        Ok(LocalStorage { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn counters(&self) -> Result<JobCounters> {
        let path = self.root.join("_job.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{}: corrupt job counters", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // First run in this directory: start above any checkpoint already present.
                let max = self.dir_names()?.iter().filter_map(|n| checkpoint_number(n)).max().unwrap_or(0);
                Ok(JobCounters { next_checkpoint_id: max + 1, attempt: 0 })
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn save_counters(&self, c: &JobCounters) -> Result<()> {
        write_atomic(&self.root.join("_job.json"), &serde_json::to_vec_pretty(c)?)
    }

    fn dir_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = fs::read_dir(&self.root)
            .with_context(|| format!("cannot list {}", self.root.display()))?
            .filter_map(|e| {
                let e = e.ok()?;
                e.file_type().ok()?.is_dir().then(|| e.file_name().into_string().ok())?
            })
            .filter(|n| checkpoint_number(n).is_some())
            .collect();
        names.sort_by_key(|n| std::cmp::Reverse(checkpoint_number(n)));
        Ok(names)
    }
}

impl CheckpointStorage for LocalStorage {
    fn write_state(&self, dir: &str, operator: &str, subtask: u32, snapshot: &SubtaskSnapshot) -> Result<StateFileRef> {
        let rel = format!("{operator}/{subtask}.state");
        let bytes = encode_state_file(snapshot)?;
        let path = self.root.join(dir).join(&rel);
        write_atomic(&path, &bytes)?;
        Ok(StateFileRef { path: rel, size: bytes.len() as u64, crc32: crc32fast::hash(&bytes) })
    }

    fn commit(&self, dir: &str, metadata: &CheckpointMetadata) -> Result<()> {
        write_atomic(&self.root.join(dir).join(METADATA_FILE), &metadata.encode()?)
    }

    fn load(&self, dir: &str) -> Result<LoadedCheckpoint> {
        load_dir(&self.root.join(dir))
    }

    fn complete_checkpoints(&self) -> Result<Vec<(String, CheckpointMetadata)>> {
        let mut out = Vec::new();
        for name in self.dir_names()? {
            let path = self.root.join(&name).join(METADATA_FILE);
            match fs::read(&path) {
                Ok(bytes) => match CheckpointMetadata::decode(&bytes, &path.display().to_string()) {
                    Ok(meta) => out.push((name, meta)),
                    Err(e) => tracing::warn!("skipping checkpoint {name}: {e:#}"),
                },
                Err(_) => tracing::debug!("skipping incomplete checkpoint {name} (no {METADATA_FILE})"),
            }
        }
        Ok(out)
    }

    fn prune(&self, retain: usize) -> Result<()> {
        let complete = self.complete_checkpoints()?;
        let keep: Vec<&String> = complete.iter().take(retain).map(|(n, _)| n).collect();
        let newest = complete.first().and_then(|(n, _)| checkpoint_number(n)).unwrap_or(0);
        for name in self.dir_names()? {
            let n = checkpoint_number(&name).unwrap_or(0);
            let is_complete = complete.iter().any(|(c, _)| *c == name);
            let drop = if is_complete { !keep.contains(&&name) } else { n < newest };
            if drop && name.starts_with("chk-") {
                fs::remove_dir_all(self.root.join(&name)).with_context(|| format!("cannot delete old checkpoint {name}"))?;
            }
        }
        Ok(())
    }

    fn reserve_checkpoint_id(&self) -> Result<u64> {
        let mut c = self.counters()?;
        let id = c.next_checkpoint_id;
        c.next_checkpoint_id += 1;
        self.save_counters(&c)?;
        Ok(id)
    }

    fn next_attempt(&self) -> Result<u64> {
        let mut c = self.counters()?;
        c.attempt += 1;
        self.save_counters(&c)?;
        Ok(c.attempt)
    }

    fn describe(&self, dir: &str) -> String {
        self.root.join(dir).display().to_string()
    }
}

/// Reads and verifies a checkpoint or savepoint directory anywhere on disk (savepoints are
/// relocatable: every path inside is relative).
pub fn load_dir(dir: &Path) -> Result<LoadedCheckpoint> {
    if !dir.is_dir() {
        bail!("{}: no such checkpoint or savepoint directory", dir.display());
    }
    let meta_path = dir.join(METADATA_FILE);
    let bytes = fs::read(&meta_path).map_err(|_| {
        anyhow!("{}: no {METADATA_FILE}: the checkpoint is incomplete (it was interrupted); use an earlier one", dir.display())
    })?;
    let metadata = CheckpointMetadata::decode(&bytes, &meta_path.display().to_string())?;
    let mut states = BTreeMap::new();
    for (op, om) in &metadata.operators {
        if om.subtasks.len() != om.parallelism as usize {
            bail!("{}: operator '{op}' lists {} state files for parallelism {}", meta_path.display(), om.subtasks.len(), om.parallelism);
        }
        let mut subtasks = Vec::with_capacity(om.subtasks.len());
        for r in &om.subtasks {
            if r.path.starts_with('/') || r.path.split('/').any(|c| c == "..") {
                bail!("{}: state file path '{}' must be relative and inside the checkpoint", meta_path.display(), r.path);
            }
            let path = dir.join(&r.path);
            let what = path.display().to_string();
            let bytes = fs::read(&path).map_err(|e| anyhow!("{what}: cannot read state file: {e}"))?;
            if bytes.len() as u64 != r.size || crc32fast::hash(&bytes) != r.crc32 {
                bail!("{what}: state file does not match the metadata (size or checksum): it is corrupt or was cut short");
            }
            subtasks.push(decode_state_file(&bytes, &what)?);
        }
        states.insert(op.clone(), subtasks);
    }
    Ok(LoadedCheckpoint { location: dir.display().to_string(), metadata, states })
}
