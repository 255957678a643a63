//! An exactly-once file sink: writes each record's value as a line, Flink two-phase-commit style.
//!
//! * Records go to an invisible *pending* file (the `files` capability, confined by the host to
//!   the directory the job file grants).
//! * At a checkpoint (`snapshot_state`) the pending file is made durable and closed, and its name
//!   is kept in **union list state** with the checkpoint id.
//! * When that checkpoint completes (`notify_checkpoint_complete`) the file is committed: renamed
//!   atomically to its final, visible name. A completed id commits every older file too (docs/architecture.md, checkpoint path).
//! * After a crash, the restored state names the files of the checkpoint restored from; those
//!   are committed (idempotently). Pending files of earlier attempts that no checkpoint names
//!   hold records that will be replayed, so they are discarded.
//!
//! Files are named `part-<attempt>-<subtask>-<seq>`. Without checkpointing, the last file is
//! committed when the input ends.

use wasmflow_guest_sdk::files;
use wasmflow_guest_sdk::prelude::*;

/// Configuration (`[operators.config]` in the job file).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SinkConfig {
    /// Also log every line at info level (handy for demos; default false).
    #[serde(default)]
    pub echo: bool,
}

/// A closed pending file and the checkpoint that closed it.
type PendingFile = (u64, String);

/// See the crate documentation.
pub struct FileSink {
    config: SinkConfig,
    attempt: u64,
    subtask: u32,
    checkpointing: bool,
    seq: u64,
    current: Option<String>,
    awaiting_commit: Vec<PendingFile>,
    state: ListState<PendingFile>,
}

fn attempt_of(name: &str) -> Option<u64> {
    name.strip_prefix("part-")?.split('-').next()?.parse().ok()
}

impl FileSink {
    fn commit_up_to(&mut self, checkpoint_id: u64) -> Result<()> {
        let (ready, later): (Vec<_>, Vec<_>) = self.awaiting_commit.drain(..).partition(|(id, _)| *id <= checkpoint_id);
        self.awaiting_commit = later;
        for (_, name) in ready {
            files::commit_pending(&name)?;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn create(ctx: &RuntimeContext) -> Result<Self> {
        Ok(FileSink {
            config: ctx.config()?,
            attempt: ctx.attempt(),
            subtask: ctx.subtask_index(),
            checkpointing: ctx.checkpointing_enabled(),
            seq: 0,
            current: None,
            awaiting_commit: Vec::new(),
            state: ListState::default(),
        })
    }

    fn invoke(&mut self, input: &Input) -> Result<()> {
        if input.is_empty() {
            return Ok(());
        }
        let name = match &self.current {
            Some(name) => name.clone(),
            None => {
                let name = format!("part-{:06}-{}-{:06}", self.attempt, self.subtask, self.seq);
                self.seq += 1;
                self.current = Some(name.clone());
                name
            }
        };
        let mut lines = Vec::with_capacity(input.len() * 16);
        for record in input {
            lines.extend_from_slice(record.value);
            lines.push(b'\n');
            if self.config.echo {
                info!("{}", String::from_utf8_lossy(record.value));
            }
        }
        files::write_pending(&name, &lines)
    }

    fn close(&mut self) -> Result<()> {
        if !self.checkpointing
            && let Some(name) = self.current.take()
        {
            files::flush_pending(&name)?;
            files::commit_pending(&name)?;
        }
        Ok(())
    }

    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        let state = ctx.get_union_list_state::<PendingFile>("pending-files")?;
        let restored = state.get()?;
        // Pending files are not moved with a savepoint: they are in the output directory the
        // savepoint was taken with. Restoring with another one cannot commit them — say so.
        let pending = files::list_pending()?;
        for (_, name) in &restored {
            if !pending.contains(name) && !files::is_committed(name)? {
                bail!(
                    "the restored checkpoint names pending file '{name}', which is not in this operator's output directory: restore with the same output directory (grants.files) the savepoint was taken with"
                );
            }
        }
        // The checkpoint we restore from is complete, so its files are part of the output.
        for (_, name) in &restored {
            files::commit_pending(name).with_context(|| format!("recovering pending file {name}"))?;
        }
        if self.subtask == 0 {
            for name in files::list_pending()? {
                let named = restored.iter().any(|(_, n)| *n == name);
                if !named && attempt_of(&name) != Some(self.attempt) {
                    files::discard_pending(&name)?;
                }
            }
        }
        self.state = state;
        Ok(())
    }

    fn snapshot_state(&mut self, ctx: &FunctionSnapshotContext) -> Result<()> {
        if let Some(name) = self.current.take() {
            files::flush_pending(&name)?;
            self.awaiting_commit.push((ctx.checkpoint_id(), name));
        }
        self.state.update(&self.awaiting_commit)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<()> {
        self.commit_up_to(checkpoint_id)
    }
}

export_sink!(FileSink);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord};
    use wasmflow_guest_sdk::{RuntimeContext, files};
    use wasmflow_state::{OperatorStateStore, StateLimits};

    use super::WasmflowOperator;

    fn committed_lines(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
            .iter()
            .filter(|n| n.starts_with("part-"))
            .flat_map(|n| std::fs::read_to_string(dir.join(n)).unwrap().lines().map(String::from).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn files_become_visible_only_when_the_checkpoint_completes() {
        let dir = tempfile::tempdir().unwrap();
        files::set_native_dir(dir.path());
        let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("sink", 0, 1, serde_json::json!({})).unwrap();
        h.process(&[OwnedRecord::value("a"), OwnedRecord::value("b")]).unwrap();
        h.snapshot(1).unwrap();
        assert!(committed_lines(dir.path()).is_empty(), "nothing visible before the checkpoint completes");
        h.process(&[OwnedRecord::value("c")]).unwrap();
        h.notify_checkpoint_complete(1).unwrap();
        assert_eq!(committed_lines(dir.path()), vec!["a", "b"]);
    }

    /// After a crash, the files of the restored checkpoint are committed and the records written
    /// after it (which the sources will replay) are discarded: no loss, no duplicate.
    #[test]
    fn recovery_commits_restored_files_and_discards_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        files::set_native_dir(dir.path());
        let ctx = |attempt| RuntimeContext::new("sink", 0, 1, serde_json::json!({})).with_attempt(attempt);
        let mut h = OperatorHarness::<WasmflowOperator>::open_with(ctx(1), OperatorStateStore::new(StateLimits::default()), None).unwrap();
        h.process(&[OwnedRecord::value("a")]).unwrap();
        let snapshot = h.snapshot(5).unwrap(); // checkpoint 5 completes, but the notification is lost
        h.process(&[OwnedRecord::value("after-5")]).unwrap(); // pending, never checkpointed
        drop(h); // crash

        let restored = wasmflow_state::redistribute(vec![Some(snapshot)], 1).pop().unwrap();
        let store = OperatorStateStore::restore(restored, StateLimits::default());
        let _h = OperatorHarness::<WasmflowOperator>::open_with(ctx(2), store, Some(5)).unwrap();
        assert_eq!(committed_lines(dir.path()), vec!["a"]);
        assert!(files::list_pending().unwrap().is_empty(), "the uncheckpointed file of attempt 1 is discarded");
    }
}
