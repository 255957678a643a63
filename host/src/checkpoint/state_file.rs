//! The file one subtask's snapshot is written to.
//!
//! `WFST` magic, a format version (u32 LE), the [`SubtaskSnapshot`] in the state codec
//! ([`wasmflow_types::codec`]), and a CRC-32 of everything before it (u32 LE). A cut or flipped
//! file is detected, never half-read.

use anyhow::{Result, bail};
use wasmflow_state::SubtaskSnapshot;

const MAGIC: &[u8; 4] = b"WFST";
const VERSION: u32 = 1;

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
    if version != VERSION {
        bail!("{what}: state file format version {version} is not supported (this wasmflow reads version {VERSION})");
    }
    wasmflow_types::codec::decode(&content[8..]).map_err(|e| anyhow::anyhow!("{what}: cannot decode state: {e}"))
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
