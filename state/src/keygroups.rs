//! Key groups, as in Flink: the unit in which keyed state is owned, snapshotted and moved.
//!
//! A job has a fixed `max-parallelism` (the number of key groups). A key belongs to key group
//! `xxh3_64(key bytes) mod max_parallelism`; key group `kg` belongs to subtask
//! `kg * parallelism / max_parallelism` (Flink's `computeOperatorIndexForKeyGroup`), so each
//! subtask owns one contiguous range of key groups ([`KeyGroupRange::for_subtask`]). Rescaling
//! hands whole ranges to the new subtasks and never hashes a key again; changing
//! `max-parallelism` would move every key and is refused on restore.
//!
//! Why xxh3 of the key bytes rather than Flink's murmur of `hashCode()`: wasmflow keys are
//! bytes, not Java objects, and xxh3 is stable across machines, versions and languages (it is
//! specified), fast on short keys, and well distributed in its low bits.
//!
//! ```
//! use wasmflow_state::{KeyGroupRange, key_group, subtask_for_key_group};
//! let kg = key_group(b"user-42", 128);
//! let owner = subtask_for_key_group(128, 3, kg);
//! assert!(KeyGroupRange::for_subtask(128, 3, owner).contains(kg));
//! assert_eq!(KeyGroupRange::for_subtask(128, 3, 0), KeyGroupRange { start: 0, end: 42 });
//! ```

use serde::{Deserialize, Serialize};

/// The default number of key groups (`[job] max-parallelism`).
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;
/// The largest `max-parallelism` allowed (Flink's `UPPER_BOUND_MAX_PARALLELISM`).
pub const MAX_MAX_PARALLELISM: u32 = 1 << 15;

/// The key group of a key.
pub fn key_group(key: &[u8], max_parallelism: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(key) % u64::from(max_parallelism.max(1))) as u32
}

/// The subtask (of `parallelism`) that owns key group `kg`.
pub fn subtask_for_key_group(max_parallelism: u32, parallelism: u32, kg: u32) -> u32 {
    (u64::from(kg) * u64::from(parallelism) / u64::from(max_parallelism.max(1))) as u32
}

/// The subtask that owns `key`: where a `key-hash` edge sends a record with this key.
pub fn subtask_for_key(key: &[u8], max_parallelism: u32, parallelism: u32) -> u32 {
    subtask_for_key_group(max_parallelism, parallelism, key_group(key, max_parallelism))
}

/// A contiguous, inclusive range of key groups (empty when `start > end`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyGroupRange {
    /// First key group.
    pub start: u32,
    /// Last key group (inclusive).
    pub end: u32,
}

impl KeyGroupRange {
    /// The key groups subtask `index` of `parallelism` owns (Flink's
    /// `computeKeyGroupRangeForOperatorIndex`).
    pub fn for_subtask(max_parallelism: u32, parallelism: u32, index: u32) -> KeyGroupRange {
        let (m, p, i) = (u64::from(max_parallelism), u64::from(parallelism.max(1)), u64::from(index));
        let start = (i * m).div_ceil(p);
        let end = ((i + 1) * m).saturating_sub(1) / p;
        KeyGroupRange { start: start as u32, end: end as u32 }
    }

    /// Whether `kg` is in the range.
    pub fn contains(&self, kg: u32) -> bool {
        self.start <= kg && kg <= self.end
    }

    /// Number of key groups.
    pub fn len(&self) -> u32 {
        if self.start > self.end { 0 } else { self.end - self.start + 1 }
    }

    /// Whether the range holds no key group.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for KeyGroupRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() { f.write_str("none") } else { write!(f, "{}..={}", self.start, self.end) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ranges of all subtasks tile `0..max` exactly, and the owner formula agrees with them,
    /// for every parallelism up to max (Flink's invariant).
    #[test]
    fn ranges_tile_the_key_groups_and_agree_with_the_owner_formula() {
        for max in [1u32, 7, 128, 1000] {
            for p in 1..=max.min(40) {
                let mut next = 0;
                for i in 0..p {
                    let r = KeyGroupRange::for_subtask(max, p, i);
                    assert_eq!(r.start, next, "max {max} p {p} i {i}");
                    for kg in r.start..=r.end {
                        assert_eq!(subtask_for_key_group(max, p, kg), i);
                    }
                    next = r.end + 1;
                }
                assert_eq!(next, max);
            }
        }
    }

    /// The hash is pinned: changing it would move every key's state on the next restore.
    /// xxh3-64 of the empty input is the published test vector; the groups below are what
    /// every earlier checkpoint was written with.
    #[test]
    fn key_groups_are_stable() {
        assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        let groups: Vec<u32> = ["a", "b", "user-42", ""].iter().map(|k| key_group(k.as_bytes(), 128)).collect();
        assert_eq!(groups, [31, 63, 77, 66]);
    }
}
