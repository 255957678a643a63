//! `_metadata`: the list of state files that make up a checkpoint, with a checksum.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Name of the metadata file inside a checkpoint directory.
pub const METADATA_FILE: &str = "_metadata";
/// Version of the checkpoint format this build writes. Version 1 (state files referenced by a
/// CRC-32 that, being taken over the file's own CRC trailer, was the same for every file) is
/// still read: its state files are then checked by size and their own trailer only.
///
/// Version 3 adds [`StateFileRef::shared`] (incremental keyed state): a version-2 reader would
/// ignore that field and restore without the keyed state, so it must refuse these files.
pub const FORMAT_VERSION: u32 = 3;
/// The oldest format version this build reads.
pub const OLDEST_READABLE_VERSION: u32 = 1;

/// Reference to one subtask's state file: a relative path, never bytes (acks carry these).
///
/// The SHA-256 binds the metadata to the exact bytes of each state file, so a state file swapped
/// for another one (an older file of the same size, another subtask's file) is detected on
/// restore and by `inspect`, not restored silently.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFileRef {
    /// Path relative to the checkpoint directory, e.g. `counter/2.state`.
    pub path: String,
    pub size: u64,
    /// Hex SHA-256 of the whole file. Empty in format version 1, which had no usable digest.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// The subtask's keyed state when it lives in shared files (incremental checkpoints): a
    /// full snapshot followed by the increments on it, in order, each a path relative to the
    /// storage root (`shared/<operator>/<checkpoint>-<subtask>.keyed`). Files are shared by the
    /// checkpoints that reference them; retention deletes one only when no retained checkpoint
    /// does (docs/state.md, incremental checkpoints).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared: Vec<StateFileRef>,
}

impl StateFileRef {
    /// The reference to a state file with these bytes.
    pub fn new(path: String, bytes: &[u8]) -> StateFileRef {
        StateFileRef { path, size: bytes.len() as u64, sha256: sha256_hex(bytes), shared: Vec::new() }
    }

    /// Bytes written for this reference's checkpoint: the state file and the newest shared
    /// file (the only one of its chain written at this checkpoint).
    pub fn written_bytes(&self) -> u64 {
        self.size + self.shared.last().map_or(0, |f| f.size)
    }

    /// Bytes of the state file and every shared file it references.
    pub fn total_bytes(&self) -> u64 {
        self.size + self.shared.iter().map(|f| f.size).sum::<u64>()
    }

    /// Whether `bytes` are the file this reference names (size and digest; size only for a
    /// version-1 reference, which has no digest).
    pub fn matches(&self, bytes: &[u8]) -> bool {
        bytes.len() as u64 == self.size && (self.sha256.is_empty() || sha256_hex(bytes) == self.sha256)
    }
}

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// One operator in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorMetadata {
    pub parallelism: u32,
    /// One entry per subtask, by index.
    pub subtasks: Vec<StateFileRef>,
    /// Subtasks that had finished before this checkpoint (Flink's FLIP-147): a restore at the
    /// same parallelism does not run them again; an operator whose subtasks all finished is not
    /// run again at any parallelism.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<u32>,
}

impl OperatorMetadata {
    /// Whether every subtask had finished.
    pub fn fully_finished(&self) -> bool {
        self.finished.len() == self.parallelism as usize
    }

    /// Whether new subtask `index` of `parallelism` restores as finished.
    pub fn finished_on_restore(&self, index: u32, parallelism: u32) -> bool {
        self.fully_finished() || (parallelism == self.parallelism && self.finished.contains(&index))
    }
}

/// The content of `_metadata`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointMetadata {
    pub format_version: u32,
    pub checkpoint_id: u64,
    /// Trigger time, ms since the Unix epoch.
    pub timestamp: i64,
    /// `checkpoint` or `savepoint`.
    pub kind: String,
    pub job_name: String,
    /// The execution attempt that wrote it: attempt numbers must never go back, even if
    /// `_job.json` is lost, because sinks name their output files by attempt.
    #[serde(default)]
    pub attempt: u64,
    /// The job manager generation that committed it (object storage only, where a stale job
    /// manager may still be running: see `checkpoint::object`); 0 on local storage.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u64,
    pub operators: BTreeMap<String, OperatorMetadata>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    /// CRC-32 of `body` (the exact JSON text), hex.
    checksum: String,
    body: String,
}

impl CheckpointMetadata {
    /// Encodes with a checksum over the body.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let body = serde_json::to_string_pretty(self)?;
        let envelope = Envelope { checksum: format!("{:08x}", crc32fast::hash(body.as_bytes())), body };
        Ok(serde_json::to_vec_pretty(&envelope)?)
    }

    /// Decodes and verifies; `what` names the file in errors.
    pub fn decode(bytes: &[u8], what: &str) -> Result<CheckpointMetadata> {
        let envelope: Envelope = serde_json::from_slice(bytes).with_context(|| format!("{what}: not a wasmflow checkpoint metadata file"))?;
        let actual = format!("{:08x}", crc32fast::hash(envelope.body.as_bytes()));
        if actual != envelope.checksum {
            bail!("{what}: checksum mismatch (expected {}, found {actual}): the metadata is corrupt", envelope.checksum);
        }
        let meta: CheckpointMetadata = serde_json::from_str(&envelope.body).with_context(|| format!("{what}: malformed metadata"))?;
        if !(OLDEST_READABLE_VERSION..=FORMAT_VERSION).contains(&meta.format_version) {
            bail!(
                "{what}: checkpoint format version {} is not supported (this wasmflow reads versions {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}); use the wasmflow version that wrote it",
                meta.format_version
            );
        }
        let unhashed = meta.operators.values().flat_map(|o| &o.subtasks).flat_map(|r| std::iter::once(r).chain(&r.shared)).any(|r| r.sha256.is_empty());
        if meta.format_version >= 2 && unhashed {
            bail!("{what}: a state file reference has no sha256: the metadata is corrupt");
        }
        Ok(meta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(version: u32) -> CheckpointMetadata {
        CheckpointMetadata {
            format_version: version,
            checkpoint_id: 3,
            timestamp: 1,
            kind: "savepoint".into(),
            job_name: "j".into(),
            attempt: 1,
            generation: 0,
            operators: BTreeMap::new(),
        }
    }

    #[test]
    fn round_trips_with_checksum() {
        let bytes = meta(FORMAT_VERSION).encode().unwrap();
        assert_eq!(CheckpointMetadata::decode(&bytes, "m").unwrap(), meta(FORMAT_VERSION));
    }

    #[test]
    fn an_unknown_format_version_is_refused() {
        let e = CheckpointMetadata::decode(&meta(99).encode().unwrap(), "sp/_metadata").unwrap_err().to_string();
        assert_eq!(
            e,
            "sp/_metadata: checkpoint format version 99 is not supported (this wasmflow reads versions 1 to 3); use the wasmflow version that wrote it"
        );
    }

    #[test]
    fn a_reference_matches_only_its_own_bytes() {
        let r = StateFileRef::new("op/0.state".into(), b"WFST one");
        assert!(r.matches(b"WFST one"));
        // Same size, other content: the case a CRC over the file and its own trailer missed.
        assert!(!r.matches(b"WFST two"));
        assert!(!r.matches(b"WFST one!"));
        let v1 = StateFileRef { path: "op/0.state".into(), size: 8, sha256: String::new(), shared: vec![] };
        assert!(v1.matches(b"WFST two"), "version 1 references check the size only");
    }

    #[test]
    fn a_tampered_body_fails_the_checksum() {
        let text = String::from_utf8(meta(FORMAT_VERSION).encode().unwrap()).unwrap().replace("\\\"checkpoint_id\\\": 3", "\\\"checkpoint_id\\\": 4");
        let e = CheckpointMetadata::decode(text.as_bytes(), "m").unwrap_err().to_string();
        assert!(e.starts_with("m: checksum mismatch"), "{e}");
    }
}
