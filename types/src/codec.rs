//! The one binary encoding wasmflow writes: bincode 2, standard configuration (varint integers,
//! length-prefixed sequences, no field names).
//!
//! Every encoded byte goes through this module — typed state values in the SDK, state files in
//! the host, the schema-driven decoder of `wasmflow inspect` — so the format is chosen in one
//! place and pinned by the golden-bytes tests below: a dependency upgrade that changes a byte
//! fails them instead of silently making old checkpoints unreadable.
//!
//! Why bincode 2 although its upstream is unmaintained (RUSTSEC-2025-0141): the format is
//! compact, stable and fully specified, and the crate is pure safe Rust with no I/O. Accepting the
//! advisory is recorded in `deny.toml`; moving to another encoding means changing this module
//! and a format version.
//!
//! ```
//! let bytes = wasmflow_types::codec::encode(&(7u64, "hi")).unwrap();
//! assert_eq!(bytes, [7, 2, b'h', b'i']);
//! let back: (u64, String) = wasmflow_types::codec::decode(&bytes).unwrap();
//! assert_eq!(back, (7, "hi".to_string()));
//! ```

use serde::Serialize;
use serde::de::{DeserializeOwned, DeserializeSeed};

/// Why a value could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The value cannot be encoded (a serializer error, e.g. a map with unsupported keys).
    #[error("cannot encode: {0}")]
    Encode(#[from] bincode::error::EncodeError),
    /// The bytes are not an encoding of the requested type.
    #[error("cannot decode: {0}")]
    Decode(#[from] bincode::error::DecodeError),
    /// The bytes hold a value followed by more bytes.
    #[error("cannot decode: {0} trailing bytes after the value")]
    Trailing(usize),
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Encodes `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Appends the encoding of `value` to `out` (many values into one buffer, no allocation each).
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, out, config())?;
    Ok(())
}

/// Decodes one `T` from the front of `bytes`; returns it and the bytes it took.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, usize), CodecError> {
    Ok(bincode::serde::decode_from_slice(bytes, config())?)
}

/// Decodes a whole `T` from `bytes`; bytes left over are an error.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, used) = bincode::serde::decode_from_slice(bytes, config())?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

/// Decodes a whole value from `bytes` with a serde seed (a decoder driven by a schema instead
/// of a Rust type); bytes left over are an error.
pub fn decode_seed<'de, S: DeserializeSeed<'de>>(seed: S, bytes: &'de [u8]) -> Result<S::Value, CodecError> {
    let (value, used) = bincode::serde::seed_decode_from_slice(seed, bytes, config())?;
    if used != bytes.len() {
        return Err(CodecError::Trailing(bytes.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum Position {
        Offset(i64),
        Earliest,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Partition {
        topic: String,
        partition: i32,
        position: Position,
        tags: Option<Vec<u8>>,
    }

    /// The bytes of checkpoints written today. Changing any of them makes existing checkpoints
    /// unreadable: that needs a new state-file format version, not a test update.
    #[test]
    fn golden_bytes() {
        assert_eq!(encode(&0u64).unwrap(), [0]);
        assert_eq!(encode(&250u64).unwrap(), [250]);
        assert_eq!(encode(&251u64).unwrap(), [251, 251, 0]);
        assert_eq!(encode(&u64::MAX).unwrap(), [253, 255, 255, 255, 255, 255, 255, 255, 255]);
        assert_eq!(encode(&-1i64).unwrap(), [1], "zig-zag");
        assert_eq!(encode(&"ab").unwrap(), [2, b'a', b'b']);
        assert_eq!(encode(&vec![vec![1u8], vec![]]).unwrap(), [2, 1, 1, 0]);
        let p = Partition { topic: "t".into(), partition: 3, position: Position::Offset(-2), tags: None };
        assert_eq!(encode(&p).unwrap(), [1, b't', 6, 0, 3, 0]);
        let map: BTreeMap<String, u32> = [("k".to_string(), 300)].into();
        assert_eq!(encode(&map).unwrap(), [1, 1, b'k', 251, 44, 1]);
    }

    #[test]
    fn values_appended_into_one_buffer_decode_one_by_one() {
        let mut out = Vec::new();
        encode_into(&(1u8, "a"), &mut out).unwrap();
        encode_into(&(2u8, "bc"), &mut out).unwrap();
        assert_eq!(out, [1, 1, b'a', 2, 2, b'b', b'c']);
        let (first, used): ((u8, String), usize) = decode_prefix(&out).unwrap();
        assert_eq!((first, used), ((1, "a".to_string()), 3));
        assert_eq!(decode::<(u8, String)>(&out[used..]).unwrap(), (2, "bc".to_string()));
    }

    #[test]
    fn values_round_trip() {
        let p = Partition { topic: "orders".into(), partition: 7, position: Position::Earliest, tags: Some(vec![9]) };
        assert_eq!(decode::<Partition>(&encode(&p).unwrap()).unwrap(), p);
    }

    #[test]
    fn trailing_and_short_bytes_are_errors() {
        assert_eq!(decode::<u8>(&[1, 2]).unwrap_err().to_string(), "cannot decode: 1 trailing bytes after the value");
        assert!(decode::<String>(&[5, b'a']).unwrap_err().to_string().starts_with("cannot decode"));
    }
}
