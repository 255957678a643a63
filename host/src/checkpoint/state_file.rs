//! The file one subtask's snapshot is written to.
//!
//! `WFST` magic, a format version (u32 LE), the [`SubtaskSnapshot`] in the state codec
//! ([`wasmflow_types::codec`]), and a CRC-32 of everything before it (u32 LE). A cut or flipped
//! file is detected, never half-read.
//!
//! Versions: 2 adds keyed state (by key group) after the operator states; 3 adds what
//! incremental keyed snapshots need (the base checkpoint, removed timers). Versions 1 (operator
//! state only) and 2 are still read.

use anyhow::{Result, bail};
use wasmflow_state::{KeyGroupRange, KeyGroupSnapshot, KeyedSnapshot, KeyedStateDescriptor, NamedStateSnapshot, SubtaskSnapshot, TimerEntry};

const MAGIC: &[u8; 4] = b"WFST";
const VERSION: u32 = 3;
/// The oldest version this build reads.
const OLDEST_READABLE: u32 = 1;

/// A version 1 snapshot: operator states only.
#[derive(serde::Deserialize)]
struct SnapshotV1 {
    states: Vec<NamedStateSnapshot>,
}

/// A version 2 snapshot: keyed state always full.
#[derive(serde::Deserialize)]
struct SnapshotV2 {
    states: Vec<NamedStateSnapshot>,
    keyed: Option<KeyedV2>,
}

#[derive(serde::Deserialize)]
struct KeyedV2 {
    max_parallelism: u32,
    range: KeyGroupRange,
    states: Vec<KeyedStateDescriptor>,
    groups: Vec<GroupV2>,
}

#[derive(serde::Deserialize)]
struct GroupV2 {
    key_group: u32,
    entries: Vec<u8>,
    timers: Vec<TimerEntry>,
}

impl From<SnapshotV2> for SubtaskSnapshot {
    fn from(v2: SnapshotV2) -> Self {
        let keyed = v2.keyed.map(|k| KeyedSnapshot {
            max_parallelism: k.max_parallelism,
            range: k.range,
            states: k.states,
            groups: k
                .groups
                .into_iter()
                .map(|g| KeyGroupSnapshot { key_group: g.key_group, entries: g.entries, timers: g.timers, removed_timers: Vec::new() })
                .collect(),
            base: None,
        });
        SubtaskSnapshot { states: v2.states, keyed }
    }
}

/// Encodes a snapshot into state-file bytes.
pub fn encode_state_file(snapshot: &SubtaskSnapshot) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let body = wasmflow_types::codec::encode(snapshot)?;
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// Decodes state-file bytes; `what` names the file in errors.
pub fn decode_state_file(bytes: &[u8], what: &str) -> Result<SubtaskSnapshot> {
    if bytes.len() < 12 || &bytes[..4] != MAGIC {
        bail!("{what}: not a wasmflow state file (truncated or wrong magic)");
    }
    let (content, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(content) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        bail!("{what}: checksum mismatch: the file is corrupt or was cut short");
    }
    let version = u32::from_le_bytes(content[4..8].try_into().expect("4 bytes"));
    let body = &content[8..];
    let decoded = match version {
        1 => wasmflow_types::codec::decode::<SnapshotV1>(body).map(|v1| SubtaskSnapshot { states: v1.states, keyed: None }),
        2 => wasmflow_types::codec::decode::<SnapshotV2>(body).map(SubtaskSnapshot::from),
        VERSION => wasmflow_types::codec::decode(body),
        _ => bail!("{what}: state file format version {version} is not supported (this wasmflow reads versions {OLDEST_READABLE} to {VERSION})"),
    };
    decoded.map_err(|e| anyhow::anyhow!("{what}: cannot decode state: {e}"))
}

#[cfg(test)]
mod tests {
    use wasmflow_state::{Mode, NamedStateSnapshot, StateValue, TypeInfo};

    use super::*;

    fn sample() -> SubtaskSnapshot {
        SubtaskSnapshot {
            states: vec![NamedStateSnapshot {
                name: "count".into(),
                mode: Mode::SplitDistribute,
                element_type: TypeInfo::default(),
                value_type: None,
                value: StateValue::List(vec![vec![1, 2, 3]]),
            }],
            keyed: None,
        }
    }

    #[test]
    fn round_trips() {
        let bytes = encode_state_file(&sample()).unwrap();
        assert_eq!(decode_state_file(&bytes, "x").unwrap(), sample());
    }

    /// A file written by the previous version (no keyed state) still restores.
    #[test]
    fn reads_version_1_files() {
        let mut v1 = Vec::from(&MAGIC[..]);
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&wasmflow_types::codec::encode(&(sample().states,)).unwrap());
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_state_file(&v1, "old").unwrap(), sample());
        let mut v9 = v1.clone();
        v9[4] = 9;
        let n = v9.len() - 4;
        let crc = crc32fast::hash(&v9[..n]);
        v9[n..].copy_from_slice(&crc.to_le_bytes());
        assert!(decode_state_file(&v9, "new").unwrap_err().to_string().contains("version 9 is not supported (this wasmflow reads versions 1 to 3)"));
    }

    fn file(version: u32, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::from(&MAGIC[..]);
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(body);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// A version 2 file with keyed state (written before incremental checkpoints) still
    /// restores, as a full snapshot.
    #[test]
    fn reads_version_2_files_with_keyed_state() {
        let range = wasmflow_state::KeyGroupRange::for_subtask(128, 1, 0);
        let timers = vec![TimerEntry { domain: wasmflow_state::TimeDomain::EventTime, timestamp: 5, key: b"k".to_vec() }];
        let v2_keyed = (128u32, range, Vec::<KeyedStateDescriptor>::new(), vec![(7u32, vec![1u8, 2], timers.clone())]);
        let body = wasmflow_types::codec::encode(&(sample().states, Some(v2_keyed))).unwrap();
        let decoded = decode_state_file(&file(2, &body), "v2").unwrap();
        assert_eq!(decoded.states, sample().states);
        let group = KeyGroupSnapshot { key_group: 7, entries: vec![1, 2], timers, removed_timers: vec![] };
        assert_eq!(decoded.keyed, Some(KeyedSnapshot { max_parallelism: 128, range, states: vec![], groups: vec![group], base: None }));
    }

    #[test]
    fn detects_truncation_and_corruption() {
        let bytes = encode_state_file(&sample()).unwrap();
        let cut = decode_state_file(&bytes[..bytes.len() - 3], "f").unwrap_err().to_string();
        assert_eq!(cut, "f: checksum mismatch: the file is corrupt or was cut short");
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert!(decode_state_file(&flipped, "f").unwrap_err().to_string().contains("checksum mismatch"));
        assert!(decode_state_file(b"WFS", "f").unwrap_err().to_string().contains("not a wasmflow state file"));
    }
}
