//! Where one keyed state's entries live: on the heap, or on local disk in an LSM tree.
//!
//! The heap table is a hash map from key to [`Slot`]: the fastest, bounded by memory. The disk
//! table (feature `disk`) keeps the same slots, encoded, in an [fjall](https://docs.rs/fjall)
//! keyspace on local disk, with fjall's block cache in memory: state larger than memory, at the
//! price of an encode or decode per access. fjall was chosen over RocksDB (the `rocksdb` crate)
//! after measuring both on the 2-core build machine: the same read-modify-write rate for a
//! keyed count (~86 k op/s each, 1 M keys), but a 41 s release build against 40 minutes, and
//! no C++ toolchain or libclang (docs/state.md, state backends). Either way the disk holds
//! working state only: checkpoints are the durable copy, so nothing is fsynced here.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// A value with the processing time it was last written at (for TTL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Stamped {
    pub bytes: Vec<u8>,
    pub written: i64,
}

/// A map state's content for one key: map key → value with its write time.
pub(crate) type UserMap = BTreeMap<Vec<u8>, Stamped>;

/// One key's entry of one state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Slot {
    Value(Stamped),
    List(Vec<Vec<u8>>),
    Map(UserMap),
}

impl Slot {
    /// What the entry counts against `state-bytes`, without its key.
    pub fn bytes(&self) -> usize {
        match self {
            Slot::Value(v) => v.bytes.len(),
            Slot::List(items) => items.iter().map(Vec::len).sum(),
            Slot::Map(m) => m.iter().map(|(k, v)| k.len() + v.bytes.len()).sum(),
        }
    }
}

/// One state's values by key. foldhash: several times faster than std's SipHash on short keys,
/// still seeded per process (a stream cannot aim collisions at it).
type Slots = HashMap<Vec<u8>, Slot, foldhash::fast::RandomState>;

/// One keyed state's entries.
pub(crate) enum Table {
    Heap(Slots),
    #[cfg(feature = "disk")]
    Disk(disk::DiskTable),
}

impl Default for Table {
    fn default() -> Self {
        Table::Heap(Slots::default())
    }
}

/// Why the disk store failed: its own message.
pub(crate) type StoreResult<T> = Result<T, String>;

impl Table {
    /// The entry of `key`.
    pub fn get(&self, key: &[u8]) -> StoreResult<Option<Cow<'_, Slot>>> {
        match self {
            Table::Heap(slots) => Ok(slots.get(key).map(Cow::Borrowed)),
            #[cfg(feature = "disk")]
            Table::Disk(d) => Ok(d.get(key)?.map(Cow::Owned)),
        }
    }

    /// Replaces the entry of `key` (`None` removes it); returns the old one.
    pub fn replace(&mut self, key: &[u8], slot: Option<Slot>) -> StoreResult<Option<Slot>> {
        match self {
            Table::Heap(slots) => Ok(match (slot, slots.get_mut(key)) {
                (Some(s), Some(existing)) => Some(std::mem::replace(existing, s)),
                // The key is copied only when it is new.
                (Some(s), None) => slots.insert(key.to_vec(), s),
                (None, _) => slots.remove(key),
            }),
            #[cfg(feature = "disk")]
            Table::Disk(d) => d.replace(key, slot),
        }
    }

    /// Changes the entry of `key` in place, starting from `empty()` when there is none, and
    /// keeps it unless `change` returns false (then it is removed).
    pub fn update<R>(&mut self, key: &[u8], empty: impl FnOnce() -> Slot, change: impl FnOnce(&mut Slot) -> (R, bool)) -> StoreResult<R> {
        match self {
            Table::Heap(slots) => {
                if !slots.contains_key(key) {
                    slots.insert(key.to_vec(), empty());
                }
                let slot = slots.get_mut(key).expect("inserted above");
                let (r, keep) = change(slot);
                if !keep {
                    slots.remove(key);
                }
                Ok(r)
            }
            #[cfg(feature = "disk")]
            Table::Disk(d) => {
                let mut slot = d.get(key)?.unwrap_or_else(empty);
                let (r, keep) = change(&mut slot);
                d.replace(key, keep.then_some(slot))?;
                Ok(r)
            }
        }
    }

    /// Number of keys with an entry.
    pub fn len(&self) -> usize {
        match self {
            Table::Heap(slots) => slots.len(),
            #[cfg(feature = "disk")]
            Table::Disk(d) => d.len(),
        }
    }

    /// Visits every entry (in no particular order).
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &Slot)) -> StoreResult<()> {
        match self {
            Table::Heap(slots) => {
                slots.iter().for_each(|(k, s)| f(k, s));
                Ok(())
            }
            #[cfg(feature = "disk")]
            Table::Disk(d) => d.for_each(f),
        }
    }

    /// Keeps the entries for which `keep` returns true; it may change the ones it keeps.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &mut Slot) -> bool) -> StoreResult<()> {
        match self {
            Table::Heap(slots) => {
                slots.retain(|k, s| keep(k, s));
                Ok(())
            }
            #[cfg(feature = "disk")]
            Table::Disk(d) => d.retain(keep),
        }
    }
}

#[cfg(feature = "disk")]
pub(crate) mod disk {
    use std::path::{Path, PathBuf};

    use super::{Slot, StoreResult};

    /// Block cache of one subtask's store: fjall's default.
    const CACHE_BYTES: u64 = 32 << 20;

    /// One subtask's on-disk store, in a directory of its own that is deleted with it.
    pub struct DiskStore {
        db: fjall::Database,
        dir: PathBuf,
        next: usize,
    }

    impl DiskStore {
        /// Opens a new, empty store in `dir` (replacing what a previous run left there).
        pub fn create(dir: &Path) -> StoreResult<Self> {
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
            }
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            // Checkpoints are the durable copy: the journal is never fsynced.
            let db = fjall::Database::builder(dir)
                .manual_journal_persist(true)
                .cache_size(CACHE_BYTES)
                .open()
                .map_err(|e| format!("cannot open a state store in {}: {e}", dir.display()))?;
            Ok(DiskStore { db, dir: dir.to_path_buf(), next: 0 })
        }

        /// A new, empty table for one state.
        pub fn table(&mut self) -> StoreResult<DiskTable> {
            let name = format!("state{}", self.next);
            self.next += 1;
            let keyspace = self.db.keyspace(&name, fjall::KeyspaceCreateOptions::default).map_err(|e| format!("cannot create keyspace {name}: {e}"))?;
            Ok(DiskTable { keyspace, len: 0 })
        }
    }

    impl Drop for DiskStore {
        fn drop(&mut self) {
            // Working state only: the checkpoints hold what must survive.
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// One state's entries in an fjall keyspace: key → the slot in the state codec.
    pub struct DiskTable {
        keyspace: fjall::Keyspace,
        len: usize,
    }

    fn decode(bytes: &[u8]) -> StoreResult<Slot> {
        wasmflow_types::codec::decode(bytes).map_err(|e| format!("a stored entry cannot be decoded: {e}"))
    }

    fn encode(slot: &Slot) -> StoreResult<Vec<u8>> {
        wasmflow_types::codec::encode(slot).map_err(|e| format!("an entry cannot be encoded: {e}"))
    }

    impl DiskTable {
        pub fn get(&self, key: &[u8]) -> StoreResult<Option<Slot>> {
            match self.keyspace.get(key).map_err(|e| format!("cannot read: {e}"))? {
                Some(v) => Ok(Some(decode(&v)?)),
                None => Ok(None),
            }
        }

        pub fn replace(&mut self, key: &[u8], slot: Option<Slot>) -> StoreResult<Option<Slot>> {
            let old = self.get(key)?;
            match slot {
                Some(s) => {
                    self.keyspace.insert(key, encode(&s)?).map_err(|e| format!("cannot write: {e}"))?;
                    if old.is_none() {
                        self.len += 1;
                    }
                }
                None if old.is_some() => {
                    self.keyspace.remove(key).map_err(|e| format!("cannot delete: {e}"))?;
                    self.len -= 1;
                }
                None => {}
            }
            Ok(old)
        }

        pub fn len(&self) -> usize {
            self.len
        }

        pub fn for_each(&self, mut f: impl FnMut(&[u8], &Slot)) -> StoreResult<()> {
            for item in self.keyspace.iter() {
                let (k, v) = item.into_inner().map_err(|e| format!("cannot scan: {e}"))?;
                f(&k, &decode(&v)?);
            }
            Ok(())
        }

        pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &mut Slot) -> bool) -> StoreResult<()> {
            let mut changes: Vec<(Vec<u8>, Option<Slot>)> = Vec::new();
            for item in self.keyspace.iter() {
                let (k, v) = item.into_inner().map_err(|e| format!("cannot scan: {e}"))?;
                let mut slot = decode(&v)?;
                if !keep(&k, &mut slot) {
                    changes.push((k.to_vec(), None));
                } else if encode(&slot)? != *v {
                    changes.push((k.to_vec(), Some(slot)));
                }
            }
            for (k, slot) in changes {
                self.replace(&k, slot)?;
            }
            Ok(())
        }
    }
}
