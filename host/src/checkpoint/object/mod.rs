//! Checkpoints below an object-store prefix (`[checkpoints] dir = "s3://bucket/prefix"`), in the
//! same layout as a local directory (`chk-<id>/…/_metadata`, `shared/`, `_job.json`,
//! `_control`).
//!
//! - Subtasks upload their own state files; acks carry object keys (with size and SHA-256),
//!   never bytes.
//! - A checkpoint is complete when its `_metadata` object exists. It is written last, with a
//!   conditional create (`If-None-Match: *`), so two job managers can never both commit one id.
//! - Retention deletes objects only after the newer `_metadata` is durable; listing never trusts
//!   a checkpoint without `_metadata`, and a restore verifies every file against it.
//!
//! # Fencing
//!
//! An object store has no lock a crashed process gives back, so two job managers may run on
//! one prefix for a while (a restarted pod beside a stale one). `_job.json` is updated only by
//! compare-and-swap (`If-Match` on its ETag). Each job manager takes the storage over by raising
//! the *generation* in it, then lists the newest complete checkpoint `M` and records the
//! takeover `(generation, M)`. From then on the older job manager's updates fail (fenced): it
//! cannot reserve ids or start attempts, and it checks the generation before and after each
//! commit, telling its sinks to commit only if no newer generation appeared. A checkpoint that
//! older generation still managed to write above `M` is *fenced out*: never listed as complete,
//! never restored, pruned. So a checkpoint whose side effects were committed is always at most
//! `M` and restorable, and nothing after the takeover continues the old job's branch.

mod client;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use wasmflow_state::{KeyedSnapshot, SubtaskSnapshot};

pub use client::StoreOptions;
use client::{block, child, child_dirs, delete_below, prefix};

use super::control_file::{CONTROL_FILE, ControlFile};
use super::load::{Fetch, MAX_METADATA_BYTES, load};
use super::location::{Location, ObjectUrl};
use super::metadata::{CheckpointMetadata, METADATA_FILE, StateFileRef};
use super::state_file::encode_state_file;
use super::storage::{
    CheckpointStorage, Fenced, JOB_FILE, JobCounters, LoadedCheckpoint, SHARED_DIR, SnapshotWriter, StorageLease, Takeover, checkpoint_number,
    counters_at_least, decode_counters, encode_counters, shared_file_checkpoint, shared_references,
};

/// Takeovers remembered in `_job.json`: enough for any checkpoint a stale job manager can
/// still commit (each takeover is a job manager start).
const TAKEOVERS_KEPT: usize = 64;
/// Largest `_job.json` and `_control` read.
const MAX_SMALL_OBJECT: u64 = 1 << 20;

/// Checkpoints below an object-store prefix.
pub struct ObjectStorage {
    url: ObjectUrl,
    store: Arc<dyn ObjectStore>,
    root: ObjPath,
    options: StoreOptions,
    held: Mutex<Held>,
    in_flight: Mutex<InFlight>,
}

/// `_job.json` as this job manager last read or wrote it.
#[derive(Default)]
struct Held {
    counters: Option<JobCounters>,
    /// The version the next compare-and-swap expects (`None`: the object does not exist yet).
    version: Option<UpdateVersion>,
    /// The generation this process took over with (0 before [`CheckpointStorage::take_over`]).
    generation: u64,
}

#[derive(Default)]
struct InFlight {
    /// Savepoints in progress: where each one's files go.
    savepoints: BTreeMap<u64, Target>,
    aborted: BTreeSet<u64>,
}

/// Where one checkpoint's or savepoint's files go.
#[derive(Clone)]
enum Target {
    Object { store: Arc<dyn ObjectStore>, base: ObjPath, url: ObjectUrl },
    Local(std::path::PathBuf),
}

impl ObjectStorage {
    /// The storage below `url`, reached with `options`. Nothing is read yet.
    pub fn open(url: &ObjectUrl, options: &StoreOptions) -> Result<ObjectStorage> {
        Ok(ObjectStorage {
            url: url.clone(),
            store: client::build(url, options)?,
            root: prefix(url),
            options: options.clone(),
            held: Default::default(),
            in_flight: Default::default(),
        })
    }

    /// The storage below `url` in `store` (tests: an in-memory store).
    pub fn with_store(url: &ObjectUrl, store: Arc<dyn ObjectStore>) -> ObjectStorage {
        ObjectStorage { url: url.clone(), store, root: prefix(url), options: Default::default(), held: Default::default(), in_flight: Default::default() }
    }

    fn path(&self, rel: &str) -> ObjPath {
        child(&self.root, rel)
    }

    fn target(&self, id: u64) -> Target {
        match self.in_flight.lock().expect("in-flight lock").savepoints.get(&id) {
            Some(t) => t.clone(),
            None => {
                let name = format!("chk-{id}");
                Target::Object { store: self.store.clone(), base: self.path(&name), url: self.url.join(&name) }
            }
        }
    }

    fn refuse_aborted(&self, id: u64) -> Result<()> {
        if self.in_flight.lock().expect("in-flight lock").aborted.contains(&id) {
            bail!("checkpoint {id} was aborted");
        }
        Ok(())
    }

    /// `_job.json` and its version, as the store has it now.
    fn read_job_file(&self) -> Result<(Option<JobCounters>, Option<UpdateVersion>)> {
        let Some((bytes, e_tag)) = client::read(&self.store, &self.url.join(JOB_FILE), MAX_SMALL_OBJECT, "job counters")? else { return Ok((None, None)) };
        let version = Some(UpdateVersion { e_tag, version: None });
        match decode_counters(&bytes) {
            Ok(c) => Ok((Some(c), version)),
            Err(e) => {
                tracing::warn!("{}: {e}; deriving checkpoint ids and attempt numbers from the checkpoints stored", self.url.join(JOB_FILE));
                Ok((None, version))
            }
        }
    }

    /// The counters as stored, never below what the stored checkpoints prove was used.
    fn fresh_counters(&self) -> Result<(JobCounters, Option<UpdateVersion>)> {
        let (saved, version) = self.read_job_file()?;
        let names = self.checkpoint_names()?;
        let complete = self.read_complete(&names)?;
        Ok((counters_at_least(saved.unwrap_or_default(), &names, &complete), version))
    }

    /// The counters this process holds (read once, then kept current by its own updates).
    fn counters(&self) -> Result<JobCounters> {
        if let Some(c) = self.held.lock().expect("held lock").counters.clone() {
            return Ok(c);
        }
        let (c, version) = self.fresh_counters()?;
        let mut held = self.held.lock().expect("held lock");
        held.counters = Some(c.clone());
        held.version = version;
        Ok(c)
    }

    fn fenced(&self, newer: u64) -> anyhow::Error {
        let ours = self.held.lock().expect("held lock").generation;
        Fenced { storage: self.url.to_string(), ours, newer }.into()
    }

    /// Changes `_job.json` by compare-and-swap, re-reading it when another writer got there
    /// first. Fails with [`Fenced`] when the stored generation is above the one this process
    /// took over with.
    fn update(&self, change: impl Fn(&mut JobCounters)) -> Result<JobCounters> {
        for _ in 0..5 {
            self.counters()?;
            let (mut c, version, ours) = {
                let held = self.held.lock().expect("held lock");
                (held.counters.clone().expect("counters read"), held.version.clone(), held.generation)
            };
            if ours != 0 && c.generation > ours {
                return Err(self.fenced(c.generation));
            }
            change(&mut c);
            let mode = match version {
                Some(v) => PutMode::Update(v),
                None => PutMode::Create,
            };
            let (store, path, bytes) = (self.store.clone(), self.path(JOB_FILE), encode_counters(&c)?);
            let put = block(async move { store.put_opts(&path, PutPayload::from(bytes), PutOptions::from(mode)).await });
            match put {
                Ok(done) => {
                    let mut held = self.held.lock().expect("held lock");
                    held.counters = Some(c.clone());
                    held.version = Some(UpdateVersion { e_tag: done.e_tag, version: done.version });
                    return Ok(c);
                }
                Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
                    // Someone else wrote it: read it again (and find out whether we are fenced).
                    let mut held = self.held.lock().expect("held lock");
                    held.counters = None;
                    held.version = None;
                }
                Err(e) => return Err(anyhow!("{}: cannot update the job counters: {e}", self.url.join(JOB_FILE))),
            }
        }
        bail!("{}: the job counters kept changing under this job manager; is another job running on this storage?", self.url.join(JOB_FILE))
    }

    /// Fails with [`Fenced`] if `_job.json`, as stored now, names a newer generation.
    fn check_not_fenced(&self) -> Result<()> {
        let ours = self.held.lock().expect("held lock").generation;
        if let (Some(c), _) = self.read_job_file()?
            && c.generation > ours
        {
            return Err(self.fenced(c.generation));
        }
        Ok(())
    }

    /// Names of the `chk-<id>` prefixes, newest first.
    fn checkpoint_names(&self) -> Result<Vec<String>> {
        let (store, root) = (self.store.clone(), self.root.clone());
        let mut names: Vec<String> = block(async move { child_dirs(store.as_ref(), &root).await })
            .with_context(|| format!("cannot list {}", self.url))?
            .into_iter()
            .filter(|n| checkpoint_number(n).is_some())
            .collect();
        names.sort_by_key(|n| std::cmp::Reverse(checkpoint_number(n)));
        Ok(names)
    }

    /// Every checkpoint among `names` with a valid `_metadata`, fenced out or not.
    fn read_complete(&self, names: &[String]) -> Result<Vec<(String, CheckpointMetadata)>> {
        let mut out = Vec::new();
        for name in names {
            let url = self.url.join(&format!("{name}/{METADATA_FILE}"));
            match client::read(&self.store, &url, MAX_METADATA_BYTES, "checkpoint metadata") {
                Ok(Some((bytes, _))) => match CheckpointMetadata::decode(&bytes, &url.to_string()) {
                    Ok(meta) => out.push((name.clone(), meta)),
                    Err(e) => tracing::warn!("skipping checkpoint {name}: {e:#}"),
                },
                Ok(None) => tracing::debug!("skipping incomplete checkpoint {name} (no {METADATA_FILE})"),
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The checkpoints among `names` with a valid `_metadata`, except those fenced out.
    fn complete_among(&self, names: &[String]) -> Result<Vec<(String, CheckpointMetadata)>> {
        let counters = self.counters()?;
        Ok(self
            .read_complete(names)?
            .into_iter()
            .filter(|(name, meta)| {
                let out = counters.fenced_out(meta);
                if out {
                    tracing::warn!(
                        "ignoring checkpoint {}: committed by job manager generation {} after a newer one took over",
                        self.describe(name),
                        meta.generation
                    );
                }
                !out
            })
            .collect())
    }

    fn delete_prefix(&self, rel: &str) -> Result<()> {
        let (store, base) = (self.store.clone(), self.path(rel));
        block(delete_below(store, base)).with_context(|| format!("cannot delete {}", self.url.join(rel)))
    }

    /// Deletes the shared files of checkpoints up to `newest` that `references` does not hold.
    fn prune_shared(&self, references: &BTreeMap<String, usize>, newest: u64) -> Result<()> {
        let (store, base) = (self.store.clone(), self.path(SHARED_DIR));
        let listed: Vec<ObjPath> = block(async move {
            use futures::TryStreamExt;
            store.list(Some(&base)).map_ok(|m| m.location).try_collect().await
        })
        .with_context(|| format!("cannot list {}", self.url.join(SHARED_DIR)))?;
        for path in listed {
            let Some(rel) = path.prefix_match(&self.root).map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>().join("/")) else { continue };
            let Some(id) = path.filename().and_then(shared_file_checkpoint) else { continue };
            if id <= newest && !references.contains_key(&rel) {
                let store = self.store.clone();
                block(async move { store.delete(&path).await }).with_context(|| format!("cannot delete unreferenced shared file {}", self.url.join(&rel)))?;
            }
        }
        Ok(())
    }

    fn put(&self, target: &Target, rel: &str, bytes: Vec<u8>, mode: PutMode) -> Result<()> {
        match target {
            Target::Object { store, base, url } => {
                let (store, path) = (store.clone(), child(base, rel));
                let in_parts = bytes.len() > client::MULTIPART_FROM && matches!(mode, PutMode::Overwrite);
                block(async move {
                    if in_parts {
                        client::put_in_parts(store.as_ref(), &path, bytes).await
                    } else {
                        store.put_opts(&path, PutPayload::from(bytes), PutOptions::from(mode)).await.map(|_| ())
                    }
                })
                .map_err(|e| match e {
                    object_store::Error::AlreadyExists { .. } => anyhow!("{}: already exists: never written over", url.join(rel)),
                    e => anyhow!("cannot write {}: {e}", url.join(rel)),
                })
            }
            Target::Local(dir) => super::local::write_atomic(&dir.join(rel), &bytes),
        }
    }
}

impl SnapshotWriter for ObjectStorage {
    fn write_state(&self, id: u64, operator: &str, subtask: u32, snapshot: &SubtaskSnapshot, shared: Vec<StateFileRef>) -> Result<StateFileRef> {
        self.refuse_aborted(id)?;
        let rel = format!("{operator}/{subtask}.state");
        let bytes = encode_state_file(snapshot)?;
        let reference = StateFileRef { shared, ..StateFileRef::new(rel.clone(), &bytes) };
        self.put(&self.target(id), &rel, bytes, PutMode::Overwrite)?;
        Ok(reference)
    }

    fn write_shared(&self, id: u64, operator: &str, subtask: u32, keyed: &KeyedSnapshot) -> Result<StateFileRef> {
        self.refuse_aborted(id)?;
        let rel = format!("{SHARED_DIR}/{operator}/{id}-{subtask}.keyed");
        let bytes = encode_state_file(&SubtaskSnapshot { states: Vec::new(), keyed: Some(keyed.clone()) })?;
        let reference = StateFileRef::new(rel.clone(), &bytes);
        let root = Target::Object { store: self.store.clone(), base: self.root.clone(), url: self.url.clone() };
        self.put(&root, &rel, bytes, PutMode::Overwrite)?;
        Ok(reference)
    }
}

impl CheckpointStorage for ObjectStorage {
    fn root(&self) -> Location {
        Location::Object(self.url.clone())
    }

    fn take_over(&self) -> Result<StorageLease> {
        let raised = self.update(|c| c.generation += 1)?;
        self.held.lock().expect("held lock").generation = raised.generation;
        // Listed after the generation is raised: whatever is complete now was committed before
        // any older job manager could see it was fenced, so its side effects may be out.
        let newest_complete = self.complete_checkpoints()?.first().map_or(0, |(_, m)| m.checkpoint_id);
        self.update(|c| {
            c.takeovers.push(Takeover { generation: raised.generation, newest_complete });
            let excess = c.takeovers.len().saturating_sub(TAKEOVERS_KEPT);
            c.takeovers.drain(..excess);
        })?;
        tracing::info!("took over checkpoint storage {} as job manager generation {}", self.url, raised.generation);
        Ok(StorageLease { _lock: None })
    }

    fn generation(&self) -> u64 {
        self.held.lock().expect("held lock").generation
    }

    fn remove_incomplete(&self) -> Result<()> {
        let names = self.checkpoint_names()?;
        let complete: BTreeSet<String> = self.read_complete(&names)?.into_iter().map(|(n, _)| n).collect();
        for name in names.iter().filter(|n| !complete.contains(*n)) {
            tracing::info!("removing incomplete checkpoint {}", self.describe(name));
            self.delete_prefix(name)?;
        }
        Ok(())
    }

    fn begin_savepoint(&self, id: u64, target: &Location) -> Result<Location> {
        let name = format!("savepoint-{id}");
        let (location, t) = match target {
            Location::Local(dir) => {
                let dir = super::local::create_savepoint_dir(dir, id)?;
                (Location::Local(dir.clone()), Target::Local(dir))
            }
            Location::Object(url) => {
                let url = url.join(&name);
                let store = if url.store_url() == self.url.store_url() { self.store.clone() } else { client::build(&url, &self.options)? };
                let (probe, base) = (store.clone(), prefix(&url));
                let existing = block(async move {
                    use futures::StreamExt;
                    probe.list(Some(&base)).next().await.transpose()
                })
                .with_context(|| format!("cannot list {url}"))?;
                if existing.is_some() {
                    bail!("cannot create savepoint {url}: objects exist below it (a savepoint is never written over another)");
                }
                (Location::Object(url.clone()), Target::Object { store, base: prefix(&url), url })
            }
        };
        self.in_flight.lock().expect("in-flight lock").savepoints.insert(id, t);
        Ok(location)
    }

    fn location(&self, id: u64) -> Location {
        match self.target(id) {
            Target::Object { url, .. } => Location::Object(url),
            Target::Local(dir) => Location::Local(dir),
        }
    }

    fn join_savepoint(&self, id: u64, location: &Location) -> Result<()> {
        let target = match location {
            Location::Local(dir) => Target::Local(dir.clone()),
            Location::Object(url) => {
                let store = if url.store_url() == self.url.store_url() { self.store.clone() } else { client::build(url, &self.options)? };
                Target::Object { store, base: prefix(url), url: url.clone() }
            }
        };
        self.in_flight.lock().expect("in-flight lock").savepoints.insert(id, target);
        Ok(())
    }

    fn commit(&self, id: u64, metadata: &CheckpointMetadata) -> Result<()> {
        self.check_not_fenced()?;
        let target = self.target(id);
        self.put(&target, METADATA_FILE, metadata.encode()?, PutMode::Create)?;
        self.in_flight.lock().expect("in-flight lock").savepoints.remove(&id);
        // A newer job manager that appeared while this one committed decides whether this
        // checkpoint counts (it does if its takeover listing saw it); this one must not tell
        // its sinks to commit either way.
        self.check_not_fenced()
    }

    fn abort(&self, id: u64) {
        let target = {
            let mut in_flight = self.in_flight.lock().expect("in-flight lock");
            in_flight.aborted.insert(id);
            in_flight.savepoints.remove(&id)
        }
        .unwrap_or_else(|| self.target(id));
        match target {
            Target::Object { store, base, url } => client::spawn(async move {
                if let Err(e) = delete_below(store, base).await {
                    tracing::warn!("cannot delete aborted checkpoint {url}: {e}");
                }
            }),
            Target::Local(dir) => super::local::remove_aborted(&dir),
        }
    }

    fn load(&self, name: &str) -> Result<LoadedCheckpoint> {
        let fetch = PrefixFetch { store: self.store.clone(), url: self.url.join(name), root: Some(self.url.clone()) };
        load(&fetch, fetch.url.to_string())
    }

    fn complete_checkpoints(&self) -> Result<Vec<(String, CheckpointMetadata)>> {
        self.complete_among(&self.checkpoint_names()?)
    }

    fn prune(&self, retain: usize) -> Result<()> {
        // One listing serves both: which checkpoints are complete, and which prefixes exist.
        let names = self.checkpoint_names()?;
        let complete = self.complete_among(&names)?;
        let keep: Vec<&String> = complete.iter().take(retain).map(|(n, _)| n).collect();
        let newest = complete.first().map_or(0, |(_, m)| m.checkpoint_id);
        for name in names {
            let n = checkpoint_number(&name).unwrap_or(0);
            let is_complete = complete.iter().any(|(c, _)| *c == name);
            let drop = if is_complete { !keep.contains(&&name) } else { n < newest };
            if drop {
                self.delete_prefix(&name)?;
            }
        }
        let retained: Vec<&CheckpointMetadata> = complete.iter().take(retain).map(|(_, m)| m).collect();
        self.prune_shared(&shared_references(&retained), newest)
    }

    fn reserve_checkpoint_id(&self) -> Result<u64> {
        Ok(self.update(|c| c.next_checkpoint_id += 1)?.next_checkpoint_id - 1)
    }

    fn next_attempt(&self, floor: u64) -> Result<u64> {
        Ok(self.update(|c| c.attempt = c.attempt.max(floor) + 1)?.attempt)
    }

    fn record_stop_savepoint(&self, id: u64, location: &Location) -> Result<()> {
        self.update(|c| c.stopped_with = Some((id, location.clone()))).map(|_| ())
    }

    fn stop_savepoint_newer_than(&self, than: u64) -> Result<Option<Location>> {
        Ok(self.counters()?.stopped_with.filter(|(id, _)| *id > than).map(|(_, location)| location))
    }

    fn describe(&self, name: &str) -> String {
        self.url.join(name).to_string()
    }

    fn publish_control(&self, control: &ControlFile) -> Result<()> {
        let root = Target::Object { store: self.store.clone(), base: self.root.clone(), url: self.url.clone() };
        self.put(&root, CONTROL_FILE, serde_json::to_vec(control)?, PutMode::Overwrite)
    }

    fn read_control(&self) -> Result<ControlFile> {
        let name = self.describe(CONTROL_FILE);
        let bytes = client::read(&self.store, &self.url.join(CONTROL_FILE), MAX_SMALL_OBJECT, "control file")?
            .ok_or_else(|| anyhow!("{name}: not found: is the job running? (it writes this object at start)"))?
            .0;
        serde_json::from_slice(&bytes).with_context(|| format!("{name}: not a control file of this wasmflow version"))
    }

    fn remove_control(&self) {
        // A fenced job manager leaves `_control` alone: it belongs to the newer one now.
        if self.check_not_fenced().is_err() {
            return;
        }
        let (store, path) = (self.store.clone(), self.path(CONTROL_FILE));
        let _ = block(async move { store.delete(&path).await });
    }
}

/// Reads and verifies a checkpoint or savepoint below `url`.
pub fn load_prefix(url: &ObjectUrl, options: &StoreOptions) -> Result<LoadedCheckpoint> {
    load_prefix_in(client::build(url, options)?, url)
}

/// [`load_prefix`] with a store at hand.
fn load_prefix_in(store: Arc<dyn ObjectStore>, url: &ObjectUrl) -> Result<LoadedCheckpoint> {
    let (probe, path, name) = (store.clone(), child(&prefix(url), METADATA_FILE), url.join(METADATA_FILE).to_string());
    let exists = block(async move { probe.head(&path).await });
    match exists {
        Ok(_) => {}
        Err(object_store::Error::NotFound { .. }) => {
            bail!("{url}: no {METADATA_FILE} object: not a complete savepoint or checkpoint; pass the prefix of a `savepoint-<id>` or `chk-<id>`")
        }
        Err(e) => bail!("{name}: cannot read checkpoint metadata: {e}"),
    }
    let parent = url.prefix.rsplit_once('/').map(|(p, _)| ObjectUrl { prefix: p.to_string(), ..url.clone() });
    let fetch = PrefixFetch { store, url: url.clone(), root: parent };
    load(&fetch, url.to_string())
}

/// Reads one checkpoint's objects: `url` is the checkpoint, `root` the storage holding its
/// shared files (the parent prefix).
struct PrefixFetch {
    store: Arc<dyn ObjectStore>,
    url: ObjectUrl,
    root: Option<ObjectUrl>,
}

impl PrefixFetch {
    fn get(&self, url: ObjectUrl, max: u64, what: &str) -> Result<Option<Vec<u8>>> {
        Ok(client::read(&self.store, &url, max, what)?.map(|(b, _)| b.to_vec()))
    }
}

impl Fetch for PrefixFetch {
    fn checkpoint_file(&self, rel: &str, max: u64, what: &str) -> Result<Vec<u8>> {
        let url = self.url.join(rel);
        self.get(url.clone(), max, what)?.ok_or_else(|| anyhow!("{url}: {what} missing: the checkpoint is incomplete or was partly deleted"))
    }

    fn shared_file(&self, rel: &str, max: u64) -> Result<Option<Vec<u8>>> {
        match &self.root {
            Some(root) => self.get(root.join(rel), max, "shared state file"),
            None => Ok(None),
        }
    }

    fn name(&self, rel: &str) -> String {
        self.url.join(rel).to_string()
    }

    fn shared_name(&self, rel: &str) -> String {
        self.root.as_ref().map_or_else(|| rel.to_string(), |r| r.join(rel).to_string())
    }
}

#[cfg(test)]
mod tests;
