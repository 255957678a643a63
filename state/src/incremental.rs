//! What changed in keyed state since a checkpoint: the bookkeeping behind incremental
//! checkpoints.
//!
//! With change tracking on ([`KeyedStateBackend::track_changes`](crate::KeyedStateBackend::track_changes)),
//! the backend notes every (state, key) entry and every timer that is written, cleared, expired
//! or fired. A checkpoint that builds on an earlier, complete one (its *base*) then writes only
//! those: the current value of each changed entry, or a deletion. The changes a snapshot
//! included are kept until a newer complete checkpoint covers them: when a checkpoint is aborted,
//! the next delta is taken against the same base again and must hold the aborted one's changes
//! too. Keeping one set per snapshot (rather than one running set) is what makes that possible.

use std::collections::HashSet;

use crate::keyed::{KeyedStateId, TimeDomain};

type Set<T> = HashSet<T, foldhash::fast::RandomState>;

/// Entries and timers touched in some period.
#[derive(Default, Debug)]
pub(crate) struct Changes {
    /// Per state id, the keys whose entry changed.
    pub entries: Vec<Set<Vec<u8>>>,
    /// Timers registered, deleted or fired.
    pub timers: Set<(TimeDomain, i64, Vec<u8>)>,
    /// Keys noted in `entries`.
    noted: usize,
    /// More keys changed than an increment is worth (see [`ChangeLog::limit`]): they were no
    /// longer noted, and every snapshot that would have to repeat this period is full.
    pub overflowed: bool,
}

impl Changes {
    /// Notes a changed key, unless more than `limit` were noted already.
    pub fn entry(&mut self, id: KeyedStateId, key: &[u8], limit: usize) {
        if self.overflowed {
            return;
        }
        if self.noted >= limit {
            // Past this, the snapshot is full anyway: stop paying for the set (a key copy and
            // an insertion per changed key), and free it.
            self.overflowed = true;
            self.entries = Vec::new();
            return;
        }
        if self.entries.len() <= id {
            self.entries.resize_with(id + 1, Set::default);
        }
        let keys = &mut self.entries[id];
        // Most writes repeat a key already noted: look up before copying it.
        if !keys.contains(key) {
            keys.insert(key.to_vec());
            self.noted += 1;
        }
    }

    pub fn timer(&mut self, domain: TimeDomain, timestamp: i64, key: &[u8]) {
        self.timers.insert((domain, timestamp, key.to_vec()));
    }
}

/// The changes since the last snapshot, and those of each snapshot a later delta may still have
/// to repeat.
#[derive(Debug)]
pub(crate) struct ChangeLog {
    /// Since the last snapshot.
    pub current: Changes,
    /// Snapshots newer than the newest base seen, ascending by checkpoint id, each with the
    /// changes it was the first to include.
    snapshots: Vec<(u64, Changes)>,
    /// The newest base seen: a complete checkpoint this backend took a snapshot for.
    base: Option<u64>,
    /// Changed keys noted per period before it overflows: a tenth of the entries at the last
    /// snapshot (an increment of more is slower than a full snapshot), at least
    /// [`MIN_LIMIT`].
    pub limit: usize,
}

/// The least [`ChangeLog::limit`]: small states are cheap to track either way.
const MIN_LIMIT: usize = 1024;

impl Default for ChangeLog {
    fn default() -> Self {
        ChangeLog { current: Changes::default(), snapshots: Vec::new(), base: None, limit: MIN_LIMIT }
    }
}

impl ChangeLog {
    /// Sets the limit of the next period from the number of entries now.
    pub fn set_limit(&mut self, entries: usize) {
        self.limit = (entries / 10).max(MIN_LIMIT);
    }

    /// Closes the current period at the snapshot for `checkpoint`. `since` is the newest
    /// complete checkpoint: returns the change sets a delta since this backend's snapshot for it
    /// must cover, oldest first (the last is the period just closed; a key may be in several),
    /// or `None` when it took none (a full snapshot is then needed).
    pub fn snapshot(&mut self, checkpoint: u64, since: Option<u64>) -> Option<&[(u64, Changes)]> {
        let current = std::mem::take(&mut self.current);
        let known = since.filter(|b| self.base == Some(*b) || self.snapshots.iter().any(|(id, _)| id == b));
        if let Some(b) = since {
            // No checkpoint older than the newest complete one can be a base again. Freeing a
            // million noted keys takes a while: not while records wait at the barrier.
            let (keep, old): (Vec<_>, Vec<_>) = std::mem::take(&mut self.snapshots).into_iter().partition(|(id, _)| *id > b);
            self.snapshots = keep;
            drop_in_background(old);
        }
        if known.is_some() {
            self.base = known;
        }
        self.snapshots.push((checkpoint, current));
        // A period that overflowed no longer knows its changes: only a full snapshot covers it.
        known.filter(|_| !self.snapshots.iter().any(|(_, c)| c.overflowed)).map(|_| self.snapshots.as_slice())
    }
}

/// Drops `value` on another thread (large sets of small allocations take milliseconds to free).
fn drop_in_background<T: Send + 'static>(value: Vec<T>) {
    if value.is_empty() {
        return;
    }
    if std::thread::Builder::new().name("wasmflow-free".into()).spawn(move || drop(value)).is_err() {
        // No thread to spare: the caller frees it, later than wished but correctly.
    }
}
