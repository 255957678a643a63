//! The `files` capability: exactly-once files confined to one directory per operator.
//!
//! Pending files live in `<dir>/.pending/`, committed files in `<dir>/`. Names are plain file
//! names (no separators, no leading dot), so a guest cannot reach outside its directory.
//! Commit is a `rename` within one file system followed by an fsync of the directory, so a
//! file is either fully visible or not at all.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::StoreData;
use crate::engine::bindings::wasmflow::operator::files::Host;

/// The directory an operator was granted.
#[derive(Debug)]
pub struct FilesDir {
    root: PathBuf,
    /// Largest single write, bytes (a guest cannot make the host buffer more).
    max_write: usize,
    /// Pending files being appended to, kept open between writes (a sink writes every batch);
    /// closed when flushed, committed or discarded. At most [`MAX_OPEN`] at once.
    open: std::collections::HashMap<String, File>,
}

/// Most pending files a subtask keeps open at once.
const MAX_OPEN: usize = 16;

impl FilesDir {
    /// Creates `root` and its pending area if needed.
    pub fn open(root: PathBuf) -> Result<FilesDir> {
        fs::create_dir_all(root.join(".pending")).map_err(|e| anyhow::anyhow!("cannot create files directory {}: {e}", root.display()))?;
        Ok(FilesDir { root, max_write: 64 << 20, open: Default::default() })
    }

    fn pending(&self, name: &str) -> Result<PathBuf, String> {
        check_name(name)?;
        Ok(self.root.join(".pending").join(name))
    }

    fn committed(&self, name: &str) -> Result<PathBuf, String> {
        check_name(name)?;
        Ok(self.root.join(name))
    }
}

/// Hidden file in a granted directory: the newest execution attempt that wrote there. Guests
/// cannot name it (names starting with '.' are refused).
const ATTEMPT_FILE: &str = ".wasmflow-attempt";

/// The newest attempt recorded in granted directory `root` (0 if none). Sinks name output files
/// by attempt, so a new attempt must be above this even if the checkpoint directory's counters
/// were lost: otherwise its files would get the names of committed ones.
pub fn recorded_attempt(root: &Path) -> Result<u64> {
    match fs::read_to_string(root.join(ATTEMPT_FILE)) {
        Ok(text) => text.trim().parse().map_err(|_| anyhow::anyhow!("{}: not an attempt number", root.join(ATTEMPT_FILE).display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(anyhow::anyhow!("cannot read {}: {e}", root.join(ATTEMPT_FILE).display())),
    }
}

/// Records `attempt` as the newest attempt writing in `root`, durably, before it writes.
pub fn record_attempt(root: &Path, attempt: u64) -> Result<()> {
    fs::create_dir_all(root).map_err(|e| anyhow::anyhow!("cannot create files directory {}: {e}", root.display()))?;
    let tmp = root.join(".wasmflow-attempt.tmp");
    let mut f = File::create(&tmp).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(attempt.to_string().as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, root.join(ATTEMPT_FILE))?;
    sync_dir(root)?;
    Ok(())
}

/// Renames `from` to `to` unless `to` exists: a committed file is never replaced. A hard link
/// fails atomically if the target exists (a plain rename would overwrite it); the pending name
/// is removed after. A crash between the two leaves both names on one file, which a retried
/// commit recognises and finishes.
fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => fs::remove_file(from),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            use std::os::unix::fs::MetadataExt;
            let (a, b) = (fs::metadata(from)?, fs::metadata(to)?);
            if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
                return fs::remove_file(from);
            }
            Err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a committed file with this name already exists; committed output is never replaced"))
        }
        Err(e) => Err(e),
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty() && name.len() <= 255 && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(format!("invalid file name '{name}': use letters, digits, '-', '_' and '.', not starting with '.'")) }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn io<T>(what: &str, name: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what} '{name}': {e}"))
}

impl StoreData {
    fn files_dir(&mut self) -> Result<&mut FilesDir> {
        // The linker only links `files` for operators granted it, so this is a host bug if hit.
        self.files.as_mut().ok_or_else(|| anyhow::anyhow!("files capability used but not granted"))
    }
}

impl Host for StoreData {
    fn write_pending(&mut self, name: String, data: Vec<u8>) -> Result<Result<(), String>> {
        let dir = self.files_dir()?;
        if data.len() > dir.max_write {
            return Ok(Err(format!("write of {} bytes exceeds the limit of {} bytes", data.len(), dir.max_write)));
        }
        let path = match dir.pending(&name) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        if !dir.open.contains_key(&name) {
            if dir.open.len() >= MAX_OPEN {
                dir.open.clear(); // closes them; appends reopen
            }
            match io("opening", &name, OpenOptions::new().create(true).append(true).open(path)) {
                Ok(f) => dir.open.insert(name.clone(), f),
                Err(e) => return Ok(Err(e)),
            };
        }
        let f = dir.open.get_mut(&name).expect("inserted above");
        Ok(io("writing", &name, f.write_all(&data)))
    }

    fn flush_pending(&mut self, name: String) -> Result<Result<(), String>> {
        let dir = self.files_dir()?;
        dir.open.remove(&name);
        Ok(dir.pending(&name).and_then(|p| {
            io("syncing", &name, File::open(&p).and_then(|f| f.sync_all()))?;
            io("syncing directory for", &name, sync_dir(p.parent().expect("pending dir")))
        }))
    }

    fn commit_pending(&mut self, name: String) -> Result<Result<(), String>> {
        let dir = self.files_dir()?;
        dir.open.remove(&name);
        Ok((|| {
            let (from, to) = (dir.pending(&name)?, dir.committed(&name)?);
            if !from.exists() && to.exists() {
                return Ok(()); // already committed: commits are retried after a restore
            }
            io("committing", &name, rename_no_replace(&from, &to))?;
            io("syncing directory for", &name, sync_dir(&dir.root))?;
            io("syncing directory for", &name, sync_dir(&dir.root.join(".pending")))
        })())
    }

    fn discard_pending(&mut self, name: String) -> Result<Result<(), String>> {
        let dir = self.files_dir()?;
        dir.open.remove(&name);
        Ok(dir.pending(&name).and_then(|p| match fs::remove_file(p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("discarding '{name}': {e}")),
            _ => Ok(()),
        }))
    }

    fn list_pending(&mut self) -> Result<Vec<String>> {
        let dir = self.files_dir()?;
        let mut names: Vec<String> = fs::read_dir(dir.root.join(".pending"))?.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect();
        names.sort();
        Ok(names)
    }

    fn is_committed(&mut self, name: String) -> Result<bool> {
        let dir = self.files_dir()?;
        Ok(dir.committed(&name).map(|p| p.exists()).unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_never_replaces_a_committed_file() {
        let dir = tempfile::tempdir().unwrap();
        let (from, to) = (dir.path().join("pending"), dir.path().join("part-1"));
        fs::write(&to, "committed").unwrap();
        fs::write(&from, "new").unwrap();
        let e = rename_no_replace(&from, &to).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&to).unwrap(), "committed");
        // A commit interrupted between link and unlink is finished by the retry.
        fs::remove_file(&to).unwrap();
        fs::hard_link(&from, &to).unwrap();
        rename_no_replace(&from, &to).unwrap();
        assert!(!from.exists());
        assert_eq!(fs::read_to_string(&to).unwrap(), "new");
    }

    #[test]
    fn the_recorded_attempt_survives_and_starts_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(recorded_attempt(dir.path()).unwrap(), 0);
        record_attempt(dir.path(), 7).unwrap();
        assert_eq!(recorded_attempt(dir.path()).unwrap(), 7);
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        for bad in ["../x", "a/b", ".pending", "", "a\\b", "x\0"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name("part-000001-0-000003").is_ok());
    }
}
