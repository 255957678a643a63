//! Reading files whose paths come from outside the host's control — a job file's `module`, the
//! state files and `_metadata` of a savepoint someone handed over: regular files only, and never
//! more bytes than the caller expects.
//!
//! `module = "/dev/zero"` would otherwise read forever, a FIFO would block the open, and a
//! savepoint's state file that is a symlink could make the host read any file it can.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Result, anyhow, bail};
use rustix::fs::OFlags;

/// Whether a symlink at the path itself may be followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Symlinks {
    /// The path was written by the user who runs the job (a job file's `module`).
    Follow,
    /// The path is inside data that may come from elsewhere (a savepoint): a symlink is refused.
    Refuse,
}

/// Reads `path` if it is a regular file of at most `max` bytes; `what` names it in errors.
pub fn read_regular_file(path: &Path, max: u64, symlinks: Symlinks, what: &str) -> Result<Vec<u8>> {
    let file = open_regular(path, symlinks, what)?;
    let len = file.metadata().map_err(|e| anyhow!("{}: cannot read {what}: {e}", path.display()))?.len();
    if len > max {
        bail!("{}: {what} is {len} bytes, more than the {max} bytes expected", path.display());
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take` as well: a file that grows while it is read is still cut at the bound.
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| anyhow!("{}: cannot read {what}: {e}", path.display()))?;
    if bytes.len() as u64 > max {
        bail!("{}: {what} grew past {max} bytes while being read", path.display());
    }
    Ok(bytes)
}

fn open_regular(path: &Path, symlinks: Symlinks, what: &str) -> Result<File> {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; the type check below refuses it.
    let mut flags = OFlags::NONBLOCK;
    if symlinks == Symlinks::Refuse {
        flags |= OFlags::NOFOLLOW;
    }
    let file = OpenOptions::new().read(true).custom_flags(flags.bits() as i32).open(path).map_err(|e| {
        if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) {
            anyhow!("{}: {what} is a symbolic link, which is not allowed here", path.display())
        } else {
            anyhow!("{}: cannot read {what}: {e}", path.display())
        }
    })?;
    let meta = file.metadata().map_err(|e| anyhow!("{}: cannot read {what}: {e}", path.display()))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() { "a directory" } else { "not a regular file (a device, FIFO or socket)" };
        bail!("{}: {what} is {kind}; it must be a regular file", path.display());
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_directories_and_symlinks_are_refused_fast() {
        let dir = tempfile::tempdir().unwrap();
        let e = format!("{:#}", read_regular_file(Path::new("/dev/zero"), 1 << 20, Symlinks::Follow, "module").unwrap_err());
        assert_eq!(e, "/dev/zero: module is not a regular file (a device, FIFO or socket); it must be a regular file");
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();
        let e = format!("{:#}", read_regular_file(&fifo, 1 << 20, Symlinks::Follow, "module").unwrap_err());
        assert!(e.ends_with("module is not a regular file (a device, FIFO or socket); it must be a regular file"), "{e}");
        let e = format!("{:#}", read_regular_file(dir.path(), 1 << 20, Symlinks::Follow, "module").unwrap_err());
        assert!(e.ends_with("module is a directory; it must be a regular file"), "{e}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = format!("{:#}", read_regular_file(&link, 1 << 20, Symlinks::Refuse, "state file").unwrap_err());
        assert!(e.ends_with("state file is a symbolic link, which is not allowed here"), "{e}");
    }

    #[test]
    fn a_file_over_the_bound_is_refused_and_one_within_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read_regular_file(&f, 10, Symlinks::Refuse, "x").unwrap(), b"0123456789");
        let e = format!("{:#}", read_regular_file(&f, 9, Symlinks::Refuse, "state file").unwrap_err());
        assert!(e.ends_with("state file is 10 bytes, more than the 9 bytes expected"), "{e}");
    }
}
