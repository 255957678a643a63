//! `_metadata`: the list of state files that make up a checkpoint, with a checksum.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// Name of the metadata file inside a checkpoint directory.
pub const METADATA_FILE: &str = "_metadata";
/// Version of the checkpoint format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Reference to one subtask's state file: a relative path, never bytes (acks carry these).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFileRef {
    /// Path relative to the checkpoint directory, e.g. `counter/2.state`.
    pub path: String,
    pub size: u64,
    pub crc32: u32,
}

/// One operator in a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorMetadata {
    pub parallelism: u32,
    /// One entry per subtask, by index.
    pub subtasks: Vec<StateFileRef>,
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
    pub operators: BTreeMap<String, OperatorMetadata>,
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
        let envelope: Envelope =
            serde_json::from_slice(bytes).with_context(|| format!("{what}: not a wasmflow checkpoint metadata file"))?;
        let actual = format!("{:08x}", crc32fast::hash(envelope.body.as_bytes()));
        if actual != envelope.checksum {
            bail!("{what}: checksum mismatch (expected {}, found {actual}): the metadata is corrupt", envelope.checksum);
        }
        let meta: CheckpointMetadata =
            serde_json::from_str(&envelope.body).with_context(|| format!("{what}: malformed metadata"))?;
        if meta.format_version != FORMAT_VERSION {
            bail!(
                "{what}: checkpoint format version {} is not supported (this wasmflow reads version {FORMAT_VERSION}); use the wasmflow version that wrote it",
                meta.format_version
            );
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
        assert_eq!(e, "sp/_metadata: checkpoint format version 99 is not supported (this wasmflow reads version 1); use the wasmflow version that wrote it");
    }

    #[test]
    fn a_tampered_body_fails_the_checksum() {
        let text = String::from_utf8(meta(FORMAT_VERSION).encode().unwrap()).unwrap().replace("\\\"checkpoint_id\\\": 3", "\\\"checkpoint_id\\\": 4");
        let e = CheckpointMetadata::decode(text.as_bytes(), "m").unwrap_err().to_string();
        assert!(e.starts_with("m: checksum mismatch"), "{e}");
    }
}
