//! A worker's subtasks write their snapshots only for checkpoints the job manager announced.
//!
//! A barrier reaches a worker on the data plane, its announcement on the control stream; the
//! job manager sends every announcement before it triggers any source, but the two paths are
//! not ordered with each other. A savepoint's files must go to the savepoint's location, which
//! only the announcement carries, so a snapshot that outruns its announcement waits for it.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use wasmflow_state::{KeyedSnapshot, SubtaskSnapshot};

use crate::checkpoint::{CheckpointStorage, Location, SnapshotWriter, StateFileRef};

/// How long a snapshot waits for its checkpoint's announcement.
const ANNOUNCEMENT_WAIT: Duration = Duration::from_secs(60);
/// Announcements kept (checkpoints run one at a time; a few are enough).
const KEPT: usize = 64;

/// The job's storage as a worker's subtasks see it.
pub struct AnnouncedWriter {
    storage: Arc<dyn CheckpointStorage>,
    announced: Mutex<BTreeMap<u64, bool>>,
    changed: Condvar,
}

impl AnnouncedWriter {
    pub fn new(storage: Arc<dyn CheckpointStorage>) -> AnnouncedWriter {
        AnnouncedWriter { storage, announced: Mutex::new(BTreeMap::new()), changed: Condvar::new() }
    }

    /// Checkpoint `id` was triggered; a savepoint's files go to `savepoint`.
    pub fn announce(&self, id: u64, savepoint: Option<&Location>) -> Result<()> {
        if let Some(location) = savepoint {
            self.storage.join_savepoint(id, location)?;
        }
        let mut announced = self.announced.lock().expect("announcements lock");
        announced.insert(id, false);
        while announced.len() > KEPT {
            announced.pop_first();
        }
        self.changed.notify_all();
        Ok(())
    }

    /// Checkpoint `id` was aborted: what is written of it is deleted and late files refused.
    pub fn abort(&self, id: u64) {
        let first = self.announced.lock().expect("announcements lock").insert(id, true) != Some(true);
        if first {
            self.storage.abort(id);
        }
    }

    fn wait_for(&self, id: u64) -> Result<()> {
        let announced = self.announced.lock().expect("announcements lock");
        let (announced, timeout) = self.changed.wait_timeout_while(announced, ANNOUNCEMENT_WAIT, |a| !a.contains_key(&id)).expect("announcements lock");
        if timeout.timed_out() {
            bail!("checkpoint {id} was never announced by the job manager within {} s", ANNOUNCEMENT_WAIT.as_secs());
        }
        if announced[&id] {
            bail!("checkpoint {id} was aborted");
        }
        Ok(())
    }
}

impl SnapshotWriter for AnnouncedWriter {
    fn write_state(&self, id: u64, operator: &str, subtask: u32, snapshot: &SubtaskSnapshot, shared: Vec<StateFileRef>) -> Result<StateFileRef> {
        self.wait_for(id)?;
        self.storage.write_state(id, operator, subtask, snapshot, shared)
    }

    fn write_shared(&self, id: u64, operator: &str, subtask: u32, keyed: &KeyedSnapshot) -> Result<StateFileRef> {
        self.wait_for(id)?;
        self.storage.write_shared(id, operator, subtask, keyed)
    }
}
