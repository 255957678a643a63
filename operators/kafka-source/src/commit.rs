//! Offsets waiting for their checkpoint to complete (docs/kafka-source.md §10, §11).

use std::collections::BTreeMap;

use crate::sentinel::is_sentinel;

/// Most pending checkpoints remembered (`MAX_NUM_PENDING_CHECKPOINTS`).
pub const MAX_PENDING: usize = 100;

/// Partition → offset, as snapshotted.
pub type Offsets = BTreeMap<(String, i32), i64>;

/// Checkpoint id → offsets recorded at `snapshotState`, in insertion order, at most
/// [`MAX_PENDING`] (the oldest are dropped). Kept in memory only: after a failure nothing pending
/// is committed.
#[derive(Debug, Default)]
pub struct PendingCommits {
    entries: Vec<(u64, Option<Offsets>)>,
}

impl PendingCommits {
    /// Records the offsets of checkpoint `id` (`None`: a snapshot after a fresh start, before the
    /// fetcher existed).
    pub fn put(&mut self, id: u64, offsets: Option<Offsets>) {
        self.entries.push((id, offsets));
        while self.entries.len() > MAX_PENDING {
            self.entries.remove(0);
        }
    }

    /// Checkpoint `id` completed: removes it and every older entry (subsumption) and returns its
    /// offsets; `None` for an unknown id (Flink logs a warning and commits nothing).
    pub fn complete(&mut self, id: u64) -> Option<Option<Offsets>> {
        let pos = self.entries.iter().position(|(i, _)| *i == id)?;
        let (_, offsets) = self.entries.remove(pos);
        self.entries.drain(..pos);
        Some(offsets)
    }

    /// Ids still pending, oldest first.
    pub fn ids(&self) -> Vec<u64> {
        self.entries.iter().map(|(i, _)| *i).collect()
    }
}

/// What to commit for `offsets`: every non-negative offset of a partition this subtask owns now,
/// plus one (Kafka's committed offset is the next record to read).
pub fn to_commit(offsets: &Offsets, owned: impl Fn(&(String, i32)) -> bool) -> Vec<(String, i32, i64)> {
    offsets.iter().filter(|(tp, o)| !is_sentinel(**o) && owned(tp)).map(|((t, p), o)| (t.clone(), *p, o + 1)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(v: &[(&str, i32, i64)]) -> Option<Offsets> {
        Some(v.iter().map(|(t, p, o)| ((t.to_string(), *p), *o)).collect())
    }

    /// docs/kafka-source.md §11: snapshots 138, 140, 141 and notifications 138 then 141 → 140 is never committed.
    #[test]
    fn a_completed_id_subsumes_older_ones() {
        let mut p = PendingCommits::default();
        p.put(138, offsets(&[("t", 0, 1)]));
        p.put(140, offsets(&[("t", 0, 2)]));
        p.put(141, offsets(&[("t", 0, 3)]));
        assert_eq!(p.complete(138), Some(offsets(&[("t", 0, 1)])));
        assert_eq!(p.complete(141), Some(offsets(&[("t", 0, 3)])));
        assert_eq!(p.complete(140), None, "subsumed");
        assert!(p.ids().is_empty());
    }

    #[test]
    fn at_most_100_pending_keeping_the_newest() {
        // docs/kafka-source.md §10: while size > 100 remove the oldest.
        let mut p = PendingCommits::default();
        for id in 1..=150 {
            p.put(id, None);
        }
        assert_eq!(p.ids(), (51..=150).collect::<Vec<_>>());
        assert_eq!(p.complete(10), None, "unknown id commits nothing");
    }

    #[test]
    fn commits_offset_plus_one_without_sentinels_or_minus_one() {
        // docs/kafka-source.md §11: sentinels and -1 are dropped; committed = last processed + 1.
        let o = offsets(&[("t", 0, 49), ("t", 1, -1), ("t", 2, crate::sentinel::EARLIEST_OFFSET), ("u", 0, 7)]).unwrap();
        assert_eq!(to_commit(&o, |tp| tp.0 == "t"), vec![("t".to_string(), 0, 50)]);
    }
}
