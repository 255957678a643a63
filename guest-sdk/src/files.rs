//! Exactly-once files for sinks (the `files` capability).
//!
//! A sink writes to *pending* files that stay invisible, makes them durable at a checkpoint,
//! and commits (atomically renames) them only when the checkpoint completes — Flink's two-phase
//! commit sink. The host confines the operator to the directory the job file grants it.
//! Natively (unit tests) the same functions work on a directory set with [`set_native_dir`].

use anyhow::{Result, anyhow};

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::cell::RefCell;
    use std::path::PathBuf;

    thread_local! {
        pub static DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
    }

    pub fn dir() -> anyhow::Result<PathBuf> {
        DIR.with(|d| d.borrow().clone()).ok_or_else(|| anyhow::anyhow!("no files directory: call wasmflow_guest_sdk::files::set_native_dir in the test"))
    }

    pub fn pending(name: &str) -> anyhow::Result<PathBuf> {
        Ok(dir()?.join(".pending").join(name))
    }
}

/// Natively only: the directory the `files` functions work in (the host grants one in wasm).
#[cfg(not(target_arch = "wasm32"))]
pub fn set_native_dir(dir: impl Into<std::path::PathBuf>) {
    native::DIR.with(|d| *d.borrow_mut() = Some(dir.into()));
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('\\') || name.starts_with('.') {
        return Err(anyhow!("invalid file name '{name}': use a plain name without '/' or a leading '.'"));
    }
    Ok(())
}

/// Appends `data` to the pending file `name`, creating it on first use.
pub fn write_pending(name: &str, data: &[u8]) -> Result<()> {
    check_name(name)?;
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::wasmflow::operator::files::write_pending(name, data).map_err(|e| anyhow!(e))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::io::Write;
        let path = native::pending(name)?;
        std::fs::create_dir_all(path.parent().unwrap())?;
        std::fs::OpenOptions::new().create(true).append(true).open(path)?.write_all(data)?;
        Ok(())
    }
}

/// Makes the pending file `name` durable (it stays invisible).
pub fn flush_pending(name: &str) -> Result<()> {
    check_name(name)?;
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::wasmflow::operator::files::flush_pending(name).map_err(|e| anyhow!(e))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::fs::File::open(native::pending(name)?)?.sync_all()?;
        Ok(())
    }
}

/// Atomically makes the pending file `name` visible. Committing a file that is already
/// committed succeeds, so a commit can be retried after a restore.
pub fn commit_pending(name: &str) -> Result<()> {
    check_name(name)?;
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::wasmflow::operator::files::commit_pending(name).map_err(|e| anyhow!(e))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let from = native::pending(name)?;
        let to = native::dir()?.join(name);
        if !from.exists() && to.exists() {
            return Ok(());
        }
        std::fs::rename(from, to)?;
        Ok(())
    }
}

/// Deletes the pending file `name` (a missing file is not an error).
pub fn discard_pending(name: &str) -> Result<()> {
    check_name(name)?;
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::wasmflow::operator::files::discard_pending(name).map_err(|e| anyhow!(e))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        match std::fs::remove_file(native::pending(name)?) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

/// Names of all pending files, sorted.
pub fn list_pending() -> Result<Vec<String>> {
    #[cfg(target_arch = "wasm32")]
    {
        Ok(crate::bindings::wasmflow::operator::files::list_pending())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        let dir = native::dir()?.join(".pending");
        let mut names = match std::fs::read_dir(&dir) {
            Ok(entries) => entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect(),
            Err(_) => Vec::new(),
        };
        names.sort();
        Ok(names)
    }
}

/// Whether a committed file `name` exists.
pub fn is_committed(name: &str) -> Result<bool> {
    check_name(name)?;
    #[cfg(target_arch = "wasm32")]
    {
        Ok(crate::bindings::wasmflow::operator::files::is_committed(name))
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        Ok(native::dir()?.join(name).exists())
    }
}
