//! `<checkpoint dir>/_control`: where a running job's HTTP API is, and its token.
//!
//! The job writes it at start, after taking the directory's lock; `wasmflow savepoint` and
//! `wasmflow stop --job JOB.toml` read it to reach the job. It lives with the checkpoints
//! because they name the job: one checkpoint directory, one running job.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The file's name inside the checkpoint directory.
pub const CONTROL_FILE: &str = "_control";

/// What `_control` holds.
#[derive(Debug, Serialize, Deserialize)]
pub struct ControlFile {
    /// `host:port` of the job's HTTP API.
    pub address: String,
    /// The job's token: requests without it are refused.
    pub token: String,
}

impl ControlFile {
    /// Writes the file readable by the job's user only (created with mode 0600, never widened).
    pub fn write(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(path);
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).with_context(|| format!("cannot write {}", path.display()))?;
        f.write_all(serde_json::to_string(self)?.as_bytes())?;
        Ok(())
    }

    /// Reads the file.
    pub fn read(path: &Path) -> Result<ControlFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("{}: not found: is the job running? (it writes this file at start)", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a control file of this wasmflow version", path.display()))
    }
}
