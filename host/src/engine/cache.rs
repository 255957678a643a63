//! Compiled modules cached on disk, keyed by the module's content hash and the engine's
//! compatibility hash (wasmtime version, compiler settings).
//!
//! Deserializing compiled code is `unsafe` in wasmtime: the bytes are trusted to be machine
//! code wasmtime produced. So only files this host wrote are ever deserialized: the cache
//! directory is created private to the user (0700, and refused if anyone else can write to it),
//! and every artifact is stored with the SHA-256 of its bytes, checked before use. A damaged or
//! foreign entry is ignored and recompiled.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

/// The cache directory: `$WASMFLOW_CACHE_DIR`, else `$XDG_CACHE_HOME/wasmflow`, else
/// `~/.cache/wasmflow`; `None` disables caching.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("WASMFLOW_CACHE_DIR") {
        return (!d.is_empty()).then(|| PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
    Some(base.join("wasmflow"))
}

/// Where the cache entry for `bytes` lives.
fn key(engine: &wasmtime::Engine, bytes: &[u8]) -> String {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    format!("{}-{:016x}", hex::encode(Sha256::digest(bytes)), compat.finish())
}

#[cfg(unix)]
fn private_dir(dir: &Path) -> bool {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    if !dir.exists() && std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).is_err() {
        return false;
    }
    match std::fs::metadata(dir) {
        // Owned by us and writable by nobody else.
        Ok(m) => m.is_dir() && m.uid() == effective_uid() && m.permissions().mode() & 0o022 == 0,
        Err(_) => false,
    }
}

#[cfg(unix)]
fn effective_uid() -> u32 {
    rustix::process::geteuid().as_raw()
}

#[cfg(not(unix))]
fn private_dir(_dir: &Path) -> bool {
    false
}

/// Whether a component came from the cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Compiled,
    Cached,
}

/// Compiles `bytes`, or loads the compiled form from `dir` if this host wrote it earlier.
pub fn load_or_compile(engine: &wasmtime::Engine, bytes: &[u8], dir: Option<&Path>) -> Result<(Component, Origin)> {
    let Some(dir) = dir.filter(|d| private_dir(d)) else {
        return Ok((Component::from_binary(engine, bytes)?, Origin::Compiled));
    };
    let k = key(engine, bytes);
    let (artifact, digest) = (dir.join(format!("{k}.cwasm")), dir.join(format!("{k}.sha256")));
    if let (Ok(code), Ok(expected)) = (std::fs::read(&artifact), std::fs::read_to_string(&digest)) {
        if hex::encode(Sha256::digest(&code)) == expected.trim() {
            // SAFETY: `code` is an artifact this host serialized (checked against the digest it
            // wrote next to it, in a directory only this user can write) for this engine
            // configuration (the compatibility hash is part of the key; wasmtime checks it too).
            if let Ok(c) = unsafe { Component::deserialize(engine, &code) } {
                return Ok((c, Origin::Cached));
            }
        }
        tracing::warn!("ignoring damaged compiled-module cache entry {}", artifact.display());
    }
    let component = Component::from_binary(engine, bytes)?;
    if let Ok(code) = component.serialize() {
        let tmp = dir.join(format!("{k}.{}.tmp", std::process::id()));
        let written = std::fs::write(&tmp, &code)
            .and_then(|_| std::fs::write(&digest, hex::encode(Sha256::digest(&code))))
            .and_then(|_| std::fs::rename(&tmp, &artifact));
        if let Err(e) = written {
            tracing::debug!("could not cache compiled module: {e}");
        }
    }
    Ok((component, Origin::Compiled))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_bytes() -> Vec<u8> {
        wat::parse_str("(component (core module (func (export \"f\"))))").unwrap()
    }

    #[test]
    fn second_load_comes_from_the_cache_and_a_tampered_entry_is_recompiled() {
        let engine = wasmtime::Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let bytes = component_bytes();
        assert_eq!(load_or_compile(&engine, &bytes, Some(&cache)).unwrap().1, Origin::Compiled);
        assert_eq!(load_or_compile(&engine, &bytes, Some(&cache)).unwrap().1, Origin::Cached);
        let artifact = std::fs::read_dir(&cache).unwrap().flatten().find(|e| e.path().extension().is_some_and(|x| x == "cwasm")).unwrap().path();
        let mut code = std::fs::read(&artifact).unwrap();
        let last = code.len() - 1;
        code[last] ^= 0xff;
        std::fs::write(&artifact, code).unwrap();
        assert_eq!(load_or_compile(&engine, &bytes, Some(&cache)).unwrap().1, Origin::Compiled, "never deserialize a file that does not match");
        assert_eq!(load_or_compile(&engine, &bytes, Some(&cache)).unwrap().1, Origin::Cached, "rewritten");
    }

    #[cfg(unix)]
    #[test]
    fn a_cache_others_can_write_to_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let engine = wasmtime::Engine::default();
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("shared");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let bytes = component_bytes();
        load_or_compile(&engine, &bytes, Some(&cache)).unwrap();
        assert_eq!(load_or_compile(&engine, &bytes, Some(&cache)).unwrap().1, Origin::Compiled);
        assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 0, "nothing written to a shared directory");
    }
}
