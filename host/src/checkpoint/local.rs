//! Checkpoints in a local directory: files written atomically (temp file, fsync, rename, fsync
//! of the directory), the directory locked by the one process that runs the job.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use wasmflow_state::{KeyedSnapshot, SubtaskSnapshot};

use super::control_file::{CONTROL_FILE, ControlFile};
use super::load::{Fetch, load};
use super::location::Location;
use super::metadata::{CheckpointMetadata, METADATA_FILE, StateFileRef};
use super::state_file::encode_state_file;
use super::storage::{
    CheckpointStorage, JOB_FILE, JobCounters, LoadedCheckpoint, SHARED_DIR, SnapshotWriter, StorageLease, checkpoint_number, counters_at_least,
    decode_counters, encode_counters, shared_file_checkpoint, shared_references,
};
use crate::untrusted::{Symlinks, read_regular_file};

/// Checkpoints in a local directory.
#[derive(Clone, Debug)]
pub struct LocalStorage {
    root: PathBuf,
    /// Savepoints in progress (id → their directory) and aborted ids, shared by every clone.
    in_flight: std::sync::Arc<std::sync::Mutex<InFlight>>,
    /// The job counters once read: the process that runs the job holds the directory's lock, so
    /// after the first read (which checks them against the disk) nobody else changes them, and
    /// triggering a checkpoint does not re-read every retained `_metadata`.
    counters: std::sync::Arc<std::sync::Mutex<Option<JobCounters>>>,
}

#[derive(Debug, Default)]
struct InFlight {
    savepoints: BTreeMap<u64, PathBuf>,
    aborted: std::collections::BTreeSet<u64>,
}

/// Exclusive use of a checkpoint directory by this process: an OS file lock on `<dir>/_lock`,
/// released when dropped or when the process dies (even by `kill -9`), so a stale lock file
/// never blocks a restart. Two jobs on one directory would share attempt numbers and checkpoint
/// ids, and one would commit over the other's output.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Name of the lock file inside a checkpoint directory.
pub const LOCK_FILE: &str = "_lock";

fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes `bytes` to `path` durably and atomically: temp file, fsync, rename, fsync directory.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
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

impl LocalStorage {
    /// Storage rooted at `root` (created if missing).
    pub fn new(root: impl Into<PathBuf>) -> Result<LocalStorage> {
        let root = root.into();
        fs::create_dir_all(&root).with_context(|| format!("cannot create checkpoint directory {}", root.display()))?;
        Ok(LocalStorage { root, in_flight: Default::default(), counters: Default::default() })
    }

    fn remove_incomplete_dirs(&self) -> Result<()> {
        for name in self.dir_names()? {
            let dir = self.root.join(&name);
            if !dir.join(METADATA_FILE).exists() {
                tracing::info!("removing incomplete checkpoint {}", dir.display());
                fs::remove_dir_all(&dir).with_context(|| format!("cannot delete incomplete checkpoint {}", dir.display()))?;
            }
        }
        Ok(())
    }

    /// Takes the directory for this process, or fails naming the process that holds it.
    pub fn lock(&self) -> Result<DirLock> {
        let path = self.root.join(LOCK_FILE);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let holder = fs::read_to_string(&path).unwrap_or_default();
                let holder = holder.trim();
                let holder = if holder.is_empty() { "another process".to_string() } else { format!("process {holder}") };
                bail!(
                    "{}: the checkpoint directory is in use by {holder} (a job runs on it); stop that job first (`wasmflow stop --job JOB.toml`), or give this job another [checkpoints] dir",
                    self.root.display()
                );
            }
            Err(fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
        file.set_len(0)?;
        file.write_all(std::process::id().to_string().as_bytes())?;
        file.sync_all()?;
        Ok(DirLock { _file: file })
    }

    /// The job counters: `_job.json`, but never below what the checkpoints on disk prove was
    /// used ([`counters_at_least`]).
    fn counters(&self) -> Result<JobCounters> {
        if let Some(c) = self.counters.lock().expect("counters lock").clone() {
            return Ok(c);
        }
        let c = self.read_counters()?;
        *self.counters.lock().expect("counters lock") = Some(c.clone());
        Ok(c)
    }

    fn read_counters(&self) -> Result<JobCounters> {
        let path = self.root.join(JOB_FILE);
        let saved = match fs::read(&path) {
            Ok(bytes) => match decode_counters(&bytes) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("{}: {e}; deriving checkpoint ids and attempt numbers from the checkpoints on disk", path.display());
                    JobCounters::default()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => JobCounters::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        Ok(counters_at_least(saved, &self.dir_names()?, &self.complete_checkpoints()?))
    }

    fn save_counters(&self, c: &JobCounters) -> Result<()> {
        write_atomic(&self.root.join(JOB_FILE), &encode_counters(c)?)?;
        *self.counters.lock().expect("counters lock") = Some(c.clone());
        Ok(())
    }

    /// The directory checkpoint or savepoint `id` is written to.
    fn dir_of(&self, id: u64) -> PathBuf {
        match self.in_flight.lock().expect("in-flight lock").savepoints.get(&id) {
            Some(dir) => dir.clone(),
            None => self.root.join(format!("chk-{id}")),
        }
    }

    fn refuse_aborted(&self, id: u64) -> Result<()> {
        if self.in_flight.lock().expect("in-flight lock").aborted.contains(&id) {
            bail!("checkpoint {id} was aborted");
        }
        Ok(())
    }

    /// Deletes the shared files of checkpoints up to `newest` that `references` does not hold:
    /// those of pruned or aborted checkpoints whose files no retained checkpoint builds on.
    fn prune_shared(&self, references: &BTreeMap<String, usize>, newest: u64) -> Result<()> {
        let shared = self.root.join(SHARED_DIR);
        let Ok(operators) = fs::read_dir(&shared) else { return Ok(()) };
        for operator in operators.flatten() {
            let Ok(files) = fs::read_dir(operator.path()) else { continue };
            for file in files.flatten() {
                let name = file.file_name().to_string_lossy().into_owned();
                let Some(id) = shared_file_checkpoint(&name) else { continue };
                let rel = format!("{SHARED_DIR}/{}/{name}", operator.file_name().to_string_lossy());
                if id <= newest && !references.contains_key(&rel) {
                    fs::remove_file(file.path()).with_context(|| format!("cannot delete unreferenced shared file {}", file.path().display()))?;
                }
            }
        }
        Ok(())
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

impl SnapshotWriter for LocalStorage {
    fn write_state(&self, id: u64, operator: &str, subtask: u32, snapshot: &SubtaskSnapshot, shared: Vec<StateFileRef>) -> Result<StateFileRef> {
        self.refuse_aborted(id)?;
        let rel = format!("{operator}/{subtask}.state");
        let bytes = encode_state_file(snapshot)?;
        let path = self.dir_of(id).join(&rel);
        write_atomic(&path, &bytes)?;
        Ok(StateFileRef { shared, ..StateFileRef::new(rel, &bytes) })
    }

    fn write_shared(&self, id: u64, operator: &str, subtask: u32, keyed: &KeyedSnapshot) -> Result<StateFileRef> {
        self.refuse_aborted(id)?;
        let rel = format!("{SHARED_DIR}/{operator}/{id}-{subtask}.keyed");
        // A state file holding keyed state only: same format, checksum and limits.
        let bytes = encode_state_file(&SubtaskSnapshot { states: Vec::new(), keyed: Some(keyed.clone()) })?;
        write_atomic(&self.root.join(&rel), &bytes)?;
        Ok(StateFileRef::new(rel, &bytes))
    }
}

impl CheckpointStorage for LocalStorage {
    fn root(&self) -> Location {
        Location::Local(self.root.clone())
    }

    fn take_over(&self) -> Result<StorageLease> {
        Ok(StorageLease { _lock: Some(self.lock()?) })
    }

    fn generation(&self) -> u64 {
        0
    }

    fn remove_incomplete(&self) -> Result<()> {
        self.remove_incomplete_dirs()
    }

    fn begin_savepoint(&self, id: u64, target: &Location) -> Result<Location> {
        let Location::Local(target) = target else {
            bail!(
                "savepoint target {target}: this job keeps its checkpoints in the local directory {}, so its savepoints go to local directories too; give a directory, or put [checkpoints] dir on object storage",
                self.root.display()
            );
        };
        let dir = create_savepoint_dir(target, id)?;
        self.in_flight.lock().expect("in-flight lock").savepoints.insert(id, dir.clone());
        Ok(Location::Local(dir))
    }

    fn location(&self, id: u64) -> Location {
        Location::Local(self.dir_of(id))
    }

    fn join_savepoint(&self, id: u64, location: &Location) -> Result<()> {
        let Location::Local(dir) = location else { bail!("savepoint {location}: a job with local checkpoints writes savepoints to local directories") };
        self.in_flight.lock().expect("in-flight lock").savepoints.insert(id, dir.clone());
        Ok(())
    }

    fn commit(&self, id: u64, metadata: &CheckpointMetadata) -> Result<()> {
        write_atomic(&self.dir_of(id).join(METADATA_FILE), &metadata.encode()?)?;
        self.in_flight.lock().expect("in-flight lock").savepoints.remove(&id);
        Ok(())
    }

    fn abort(&self, id: u64) {
        let dir = {
            let mut in_flight = self.in_flight.lock().expect("in-flight lock");
            in_flight.aborted.insert(id);
            in_flight.savepoints.remove(&id).unwrap_or_else(|| self.root.join(format!("chk-{id}")))
        };
        remove_aborted(&dir);
    }

    fn load(&self, name: &str) -> Result<LoadedCheckpoint> {
        load_dir(&self.root.join(name))
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
            if drop {
                fs::remove_dir_all(self.root.join(&name)).with_context(|| format!("cannot delete old checkpoint {name}"))?;
            }
        }
        let retained: Vec<&CheckpointMetadata> = complete.iter().take(retain).map(|(_, m)| m).collect();
        self.prune_shared(&shared_references(&retained), newest)
    }

    fn reserve_checkpoint_id(&self) -> Result<u64> {
        let mut c = self.counters()?;
        let id = c.next_checkpoint_id;
        c.next_checkpoint_id += 1;
        self.save_counters(&c)?;
        Ok(id)
    }

    fn next_attempt(&self, floor: u64) -> Result<u64> {
        let mut c = self.counters()?;
        c.attempt = c.attempt.max(floor) + 1;
        self.save_counters(&c)?;
        Ok(c.attempt)
    }

    fn record_stop_savepoint(&self, id: u64, location: &Location) -> Result<()> {
        let mut c = self.counters()?;
        c.stopped_with = Some((id, location.clone()));
        self.save_counters(&c)
    }

    fn stop_savepoint_newer_than(&self, than: u64) -> Result<Option<Location>> {
        Ok(self.counters()?.stopped_with.filter(|(id, _)| *id > than).map(|(_, location)| location))
    }

    fn describe(&self, name: &str) -> String {
        self.root.join(name).display().to_string()
    }

    fn publish_control(&self, control: &ControlFile) -> Result<()> {
        control.write(&self.root.join(CONTROL_FILE))
    }

    fn read_control(&self) -> Result<ControlFile> {
        ControlFile::read(&self.root.join(CONTROL_FILE))
    }

    fn remove_control(&self) {
        let _ = fs::remove_file(self.root.join(CONTROL_FILE));
    }
}

/// Why a directory without `_metadata` cannot be restored: an interrupted checkpoint (it has
/// state files), a directory that holds savepoints or checkpoints (name them), or something else.
fn not_a_checkpoint(dir: &Path) -> anyhow::Error {
    let mut inner: Vec<String> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(METADATA_FILE).is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    inner.sort_by_key(|n| std::cmp::Reverse(n.rsplit('-').next().and_then(|i| i.parse::<u64>().ok())));
    let has_state = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().is_dir())
        .any(|e| fs::read_dir(e.path()).into_iter().flatten().flatten().any(|f| f.path().extension().is_some_and(|x| x == "state")));
    if let Some(newest) = inner.first() {
        anyhow!(
            "{}: not a savepoint or checkpoint itself, but it contains {}; pass one of those directories, e.g. {}",
            dir.display(),
            inner.join(", "),
            dir.join(newest).display()
        )
    } else if has_state {
        anyhow!("{}: no {METADATA_FILE}: the checkpoint is incomplete (it was interrupted); use an earlier one", dir.display())
    } else {
        anyhow!("{}: not a savepoint or checkpoint directory (it has no {METADATA_FILE}); pass a `savepoint-<id>` or `chk-<id>` directory", dir.display())
    }
}

/// Creates `<target>/savepoint-<id>` (and `target` if missing); an existing one is an error.
pub(super) fn create_savepoint_dir(target: &Path, id: u64) -> Result<PathBuf> {
    fs::create_dir_all(target).with_context(|| format!("cannot create savepoint directory {}", target.display()))?;
    let dir = target.join(format!("savepoint-{id}"));
    fs::create_dir(&dir).with_context(|| format!("cannot create savepoint {} (a savepoint is never written over an existing directory)", dir.display()))?;
    Ok(dir)
}

/// Deletes what an aborted checkpoint or savepoint wrote to `dir` (best effort: logged).
pub(super) fn remove_aborted(dir: &Path) {
    if let Err(e) = fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!("cannot delete aborted checkpoint {}: {e}", dir.display());
    }
}

/// Reads and verifies a checkpoint or savepoint directory anywhere on disk (savepoints are
/// relocatable: every path inside is relative). Shared files live beside checkpoint
/// directories, in the storage's root.
pub fn load_dir(dir: &Path) -> Result<LoadedCheckpoint> {
    if !dir.is_dir() {
        bail!("{}: no such checkpoint or savepoint directory", dir.display());
    }
    let meta_path = dir.join(METADATA_FILE);
    if !meta_path.exists() && meta_path.symlink_metadata().is_err() {
        return Err(not_a_checkpoint(dir));
    }
    load(&DirFetch { dir }, dir.display().to_string())
}

/// Reads a checkpoint's files from its directory: regular files only, never through a symlink.
struct DirFetch<'a> {
    dir: &'a Path,
}

impl DirFetch<'_> {
    fn root(&self) -> Result<&Path> {
        self.dir.parent().ok_or_else(|| anyhow!("{}: a checkpoint directory has a parent", self.dir.display()))
    }
}

impl Fetch for DirFetch<'_> {
    fn checkpoint_file(&self, rel: &str, max: u64, what: &str) -> Result<Vec<u8>> {
        read_regular_file(&self.dir.join(rel), max, Symlinks::Refuse, what)
    }

    fn shared_file(&self, rel: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let path = self.root()?.join(rel);
        if !path.exists() && path.symlink_metadata().is_err() {
            return Ok(None);
        }
        read_regular_file(&path, max, Symlinks::Refuse, "shared state file").map(Some)
    }

    fn name(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    fn shared_name(&self, rel: &str) -> String {
        match self.dir.parent() {
            Some(root) => root.join(rel).display().to_string(),
            None => rel.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use wasmflow_state::{KeyedStateBackend, TypeInfo};

    use super::*;
    use crate::checkpoint::{count_snapshot as snapshot, one_operator_metadata};

    fn checkpoint(storage: &LocalStorage, id: u64, count: u64) -> String {
        commit_one(storage, id, "counter", &snapshot(count), vec![]);
        format!("chk-{id}")
    }

    /// Writes one subtask's state file (referencing `shared`) and commits checkpoint `id` with it.
    fn commit_one(storage: &LocalStorage, id: u64, operator: &str, snapshot: &SubtaskSnapshot, shared: Vec<StateFileRef>) -> StateFileRef {
        let file = storage.write_state(id, operator, 0, snapshot, shared).unwrap();
        let meta = one_operator_metadata(id, operator, file.clone(), 0);
        storage.commit(id, &meta).unwrap();
        file
    }

    /// A savepoint can come from anywhere: a state file that is a symlink (here to /dev/zero,
    /// which used to be read without end) is refused before anything is read.
    #[test]
    fn a_state_file_that_is_a_symlink_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(root.path()).unwrap();
        let dir = checkpoint(&storage, 1, 10);
        let file = root.path().join(&dir).join("counter/0.state");
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &file).unwrap();
        let e = format!("{:#}", storage.load(&dir).unwrap_err());
        assert!(e.ends_with("counter/0.state: state file is a symbolic link, which is not allowed here"), "{e}");
    }

    /// A state file that is a FIFO fails at once (opening it does not wait for a writer), and
    /// so does a `_metadata` that is a symlink to /dev/zero, and a state file longer than the
    /// metadata records (read no further than that size).
    #[test]
    fn a_fifo_state_file_a_device_metadata_and_an_overlong_state_file_fail_fast() {
        let root = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(root.path()).unwrap();
        let dir = checkpoint(&storage, 1, 10);
        let file = root.path().join(&dir).join("counter/0.state");
        let good = fs::read(&file).unwrap();
        fs::remove_file(&file).unwrap();
        rustix::fs::mkfifoat(rustix::fs::CWD, &file, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let e = format!("{:#}", storage.load(&dir).unwrap_err());
        assert!(e.ends_with("counter/0.state: state file is not a regular file (a device, FIFO or socket); it must be a regular file"), "{e}");
        fs::remove_file(&file).unwrap();
        fs::write(&file, [good.as_slice(), &[0u8; 4096]].concat()).unwrap();
        let e = format!("{:#}", storage.load(&dir).unwrap_err());
        assert!(e.contains("counter/0.state: state file is") && e.contains(&format!("more than the {} bytes expected", good.len())), "{e}");
        let meta = root.path().join(&dir).join(METADATA_FILE);
        fs::remove_file(&meta).unwrap();
        std::os::unix::fs::symlink("/dev/zero", &meta).unwrap();
        let e = format!("{:#}", storage.load(&dir).unwrap_err());
        assert!(e.ends_with("_metadata: checkpoint metadata is a symbolic link, which is not allowed here"), "{e}");
    }

    #[test]
    fn a_locked_directory_is_refused_with_the_holders_pid() {
        let root = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(root.path()).unwrap();
        let held = storage.lock().unwrap();
        let e = format!("{:#}", storage.lock().unwrap_err());
        assert!(e.contains(&format!("in use by process {}", std::process::id())), "{e}");
        drop(held);
        storage.lock().expect("free again once the holder is gone");
    }

    /// An older state file of the same size swapped into a newer checkpoint is detected: the
    /// metadata binds each state file by its SHA-256.
    #[test]
    fn a_swapped_state_file_of_the_same_size_is_detected() {
        let root = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(root.path()).unwrap();
        let old = checkpoint(&storage, 1, 10);
        let new = checkpoint(&storage, 2, 20);
        let (old_file, new_file) = (root.path().join(&old).join("counter/0.state"), root.path().join(&new).join("counter/0.state"));
        assert_eq!(fs::metadata(&old_file).unwrap().len(), fs::metadata(&new_file).unwrap().len());
        assert!(storage.load(&new).is_ok());
        fs::copy(&old_file, &new_file).unwrap();
        let e = format!("{:#}", storage.load(&new).unwrap_err());
        assert!(e.contains("does not match the metadata (size or SHA-256)"), "{e}");
        assert!(e.contains("counter/0.state"), "names the file: {e}");
    }

    fn commit_keyed(storage: &LocalStorage, id: u64, shared: Vec<StateFileRef>) -> StateFileRef {
        commit_one(storage, id, "count", &SubtaskSnapshot::default(), shared)
    }

    fn values(keyed: &KeyedSnapshot) -> BTreeMap<Vec<u8>, Vec<u8>> {
        let entries = keyed.groups.iter().flat_map(|g| g.decode_entries().unwrap());
        entries
            .map(|e| match e.value {
                wasmflow_state::KeyedValue::Value(v, _) => (e.key, v),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    /// A checkpoint's keyed state in shared files: the full snapshot and the increment on it
    /// load merged; retention keeps the files a retained checkpoint references (though the
    /// checkpoint that wrote them is gone) and deletes the others once a newer full snapshot
    /// replaced them, but never a file newer than the newest complete checkpoint (in flight).
    #[test]
    fn shared_keyed_files_are_merged_on_load_and_kept_while_referenced() {
        let root = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(root.path()).unwrap();
        let mut b = KeyedStateBackend::new(128, wasmflow_state::KeyGroupRange::for_subtask(128, 1, 0), wasmflow_state::StateLimits::default());
        let v = b.register_value("v", TypeInfo::default(), None).unwrap();
        b.track_changes();
        // Enough keys that changing two of them makes an increment (a tenth or less changed).
        for i in 0..30u8 {
            b.value_update(v, &[b'k', i], vec![i], 0).unwrap();
        }
        b.value_update(v, b"a", vec![1], 0).unwrap();
        b.value_update(v, b"b", vec![2], 0).unwrap();
        let f1 = storage.write_shared(1, "count", 0, &b.snapshot_since(0, 1, None).unwrap()).unwrap();
        commit_keyed(&storage, 1, vec![f1.clone()]);
        b.value_update(v, b"a", vec![3], 0).unwrap();
        b.clear(v, b"b").unwrap();
        let s2 = b.snapshot_since(0, 2, Some(1)).unwrap();
        assert_eq!(s2.base, Some(1));
        let f2 = storage.write_shared(2, "count", 0, &s2).unwrap();
        commit_keyed(&storage, 2, vec![f1.clone(), f2.clone()]);
        storage.prune(1).unwrap();
        assert!(!root.path().join("chk-1").exists());
        assert!(root.path().join(&f1.path).exists() && root.path().join(&f2.path).exists(), "checkpoint 2 needs both");
        let loaded = storage.load("chk-2").unwrap();
        let mut expected: BTreeMap<Vec<u8>, Vec<u8>> = (0..30u8).map(|i| (vec![b'k', i], vec![i])).collect();
        expected.insert(b"a".to_vec(), vec![3]);
        assert_eq!(values(loaded.states["count"][0].keyed.as_ref().unwrap()), expected);

        let f3 = storage.write_shared(3, "count", 0, &b.snapshot_since(0, 3, None).unwrap()).unwrap();
        commit_keyed(&storage, 3, vec![f3.clone()]);
        storage.abort(4);
        assert!(storage.write_shared(4, "count", 0, &b.snapshot(0).unwrap()).is_err(), "an aborted checkpoint writes no shared file");
        let in_flight = storage.write_shared(5, "count", 0, &b.snapshot(0).unwrap()).unwrap();
        storage.prune(1).unwrap();
        assert!(!root.path().join(&f1.path).exists() && !root.path().join(&f2.path).exists(), "no retained checkpoint references them");
        assert!(root.path().join(&f3.path).exists() && root.path().join(&in_flight.path).exists());

        // A changed or missing shared file is an error naming it, not a silent partial restore.
        let path = root.path().join(&f3.path);
        let good = fs::read(&path).unwrap();
        let mut bad = good.clone();
        bad[9] ^= 1;
        fs::write(&path, &bad).unwrap();
        let e = format!("{:#}", storage.load("chk-3").unwrap_err());
        assert!(e.contains("3-0.keyed: shared state file does not match the metadata"), "{e}");
        fs::remove_file(&path).unwrap();
        let e = format!("{:#}", storage.load("chk-3").unwrap_err());
        assert!(e.contains("3-0.keyed: shared state file missing") && e.contains("copy that directory along"), "{e}");
    }

    /// Shared files are referenced by checkpoints only: a savepoint's metadata that refers to
    /// one, or a reference outside `shared/`, is refused.
    #[test]
    fn shared_references_must_stay_inside_the_storage_and_out_of_savepoints() {
        let root = tempfile::tempdir().unwrap();
        let storage = LocalStorage::new(root.path()).unwrap();
        let b = KeyedStateBackend::new(128, wasmflow_state::KeyGroupRange::for_subtask(128, 1, 0), wasmflow_state::StateLimits::default()).snapshot(0).unwrap();
        let f1 = storage.write_shared(1, "count", 0, &b).unwrap();
        let outside = StateFileRef { path: "shared/../chk-1/count/0.state".into(), ..f1.clone() };
        commit_keyed(&storage, 1, vec![outside]);
        let e = format!("{:#}", storage.load("chk-1").unwrap_err());
        assert!(e.contains("must be inside the storage's shared/ directory"), "{e}");
        commit_keyed(&storage, 2, vec![f1]);
        let meta_path = root.path().join("chk-2").join(METADATA_FILE);
        let mut meta = CheckpointMetadata::decode(&fs::read(&meta_path).unwrap(), "m").unwrap();
        meta.kind = "savepoint".into();
        fs::write(&meta_path, meta.encode().unwrap()).unwrap();
        let e = format!("{:#}", storage.load("chk-2").unwrap_err());
        assert!(e.contains("a savepoint must be self-contained"), "{e}");
    }
}
