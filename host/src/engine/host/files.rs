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

use super::SubtaskData;
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
        fs::create_dir_all(root.join(".pending"))
            .map_err(|e| anyhow::anyhow!("cannot create files directory {}: {e}", root.display()))?;
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

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err(format!("invalid file name '{name}': use letters, digits, '-', '_' and '.', not starting with '.'")) }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn io<T>(what: &str, name: &str, r: std::io::Result<T>) -> Result<T, String> {
    r.map_err(|e| format!("{what} '{name}': {e}"))
}

impl SubtaskData {
    fn files_dir(&mut self) -> Result<&mut FilesDir> {
        // The linker only links `files` for operators granted it, so this is a host bug if hit.
        self.files.as_mut().ok_or_else(|| anyhow::anyhow!("files capability used but not granted"))
    }
}

impl Host for SubtaskData {
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
            io("committing", &name, fs::rename(&from, &to))?;
            io("syncing directory for", &name, sync_dir(&dir.root))
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
        let mut names: Vec<String> = fs::read_dir(dir.root.join(".pending"))?
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
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
    use super::check_name;

    #[test]
    fn names_cannot_escape_the_directory() {
        for bad in ["../x", "a/b", ".pending", "", "a\\b", "x\0"] {
            assert!(check_name(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_name("part-000001-0-000003").is_ok());
    }
}
