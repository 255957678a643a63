//! A running job's account of itself: its graph and state, its checkpoint history and the
//! failures that restarted it — what Flink's REST API and web UI show, kept by the runtime as
//! things happen and read by the HTTP API ([`crate::api`]) without asking the job's tasks.
//!
//! The runtime records through [`JobStatus`]'s methods (a short lock each, never on the record
//! path: at most a few calls per checkpoint and subtask); readers get copies of the views in
//! [`view`]. Histories are bounded: the newest [`HISTORY`] checkpoints and [`EXCEPTIONS`]
//! failures, as Flink's `web.checkpoints.history` bounds its own.
//!
//! ```
//! use wasmflow_host::status::{JobStatus, view::JobState};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("job.toml");
//! # std::fs::write(&path, "[[operators]]\nid = \"numbers\"\nmodule = \"native:generator\"\n").unwrap();
//! let job = wasmflow_host::job::JobSpec::load(&path).unwrap();
//! let status = JobStatus::new(&job);
//! assert_eq!(status.job().state, JobState::Created);
//! assert_eq!(status.job().operators[0].id, "numbers");
//! ```

pub mod view;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use view::{AckView, CheckpointHistory, CheckpointKind, CheckpointStatus, CheckpointView, ExceptionHistory, ExceptionView, JobState, JobView};

use crate::job::JobSpec;

/// Checkpoints kept in the history.
pub const HISTORY: usize = 50;
/// Failures kept in the history.
pub const EXCEPTIONS: usize = 20;

/// The job's status, shared by the runtime (writer) and the HTTP API (reader).
pub struct JobStatus {
    inner: Mutex<Inner>,
}

struct Inner {
    job: JobView,
    checkpoints: VecDeque<CheckpointView>,
    completed: u64,
    failed: u64,
    exceptions: VecDeque<ExceptionView>,
    total_exceptions: u64,
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

impl JobStatus {
    /// A job about to start.
    pub fn new(job: &JobSpec) -> Arc<JobStatus> {
        let inner =
            Inner { job: JobView::of(job, now_ms()), checkpoints: VecDeque::new(), completed: 0, failed: 0, exceptions: VecDeque::new(), total_exceptions: 0 };
        Arc::new(JobStatus { inner: Mutex::new(inner) })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: still worth showing.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The job: graph, state, attempt.
    pub fn job(&self) -> JobView {
        self.lock().job.clone()
    }

    /// Counts and the newest checkpoints, newest first.
    pub fn checkpoints(&self) -> CheckpointHistory {
        let i = self.lock();
        CheckpointHistory {
            completed: i.completed,
            failed: i.failed,
            in_progress: i.checkpoints.iter().filter(|c| c.status == CheckpointStatus::InProgress).count() as u64,
            history: i.checkpoints.iter().rev().cloned().collect(),
        }
    }

    /// The failures, newest first.
    pub fn exceptions(&self) -> ExceptionHistory {
        let i = self.lock();
        ExceptionHistory { total: i.total_exceptions, exceptions: i.exceptions.iter().rev().cloned().collect() }
    }

    /// An attempt was deployed and runs.
    pub fn attempt_started(&self, attempt: u64) {
        let mut i = self.lock();
        i.job.attempt = attempt;
        i.job.state = JobState::Running;
    }

    /// The job ended, or waits to restart.
    pub fn set_state(&self, state: JobState) {
        self.lock().job.state = state;
    }

    /// A checkpoint or savepoint was triggered at the sources.
    pub fn checkpoint_triggered(&self, id: u64, kind: CheckpointKind, attempt: u64, triggered_at_ms: u64) {
        let mut i = self.lock();
        i.checkpoints.push_back(CheckpointView {
            id,
            kind,
            status: CheckpointStatus::InProgress,
            attempt,
            triggered_at_ms,
            duration_ms: None,
            max_sync_ms: 0.0,
            state_bytes: 0,
            total_bytes: 0,
            location: None,
            failure: None,
            acks: Vec::new(),
        });
        while i.checkpoints.len() > HISTORY {
            i.checkpoints.pop_front();
        }
    }

    /// Applies `f` to checkpoint `id` if it is still in the history; returns the lock, for the
    /// caller to update the counts under it too.
    fn with_checkpoint(&self, id: u64, f: impl FnOnce(&mut CheckpointView)) -> MutexGuard<'_, Inner> {
        let mut i = self.lock();
        if let Some(c) = i.checkpoints.iter_mut().rev().find(|c| c.id == id) {
            f(c);
        }
        i
    }

    /// A subtask acknowledged checkpoint `id`.
    pub fn checkpoint_acked(&self, id: u64, operator: &str, subtask: u32, after: Duration, sync: Duration, state_bytes: u64) {
        drop(self.with_checkpoint(id, |c| {
            c.max_sync_ms = c.max_sync_ms.max(ms(sync));
            c.state_bytes += state_bytes;
            c.acks.push(AckView { operator: operator.into(), subtask, after_ms: ms(after), sync_ms: ms(sync), state_bytes });
        }));
    }

    /// Checkpoint `id` is complete at `location`.
    pub fn checkpoint_completed(&self, id: u64, duration: Duration, state_bytes: u64, total_bytes: u64, location: &crate::checkpoint::Location) {
        let mut kind = None;
        let mut i = self.with_checkpoint(id, |c| {
            c.status = CheckpointStatus::Completed;
            c.duration_ms = Some(ms(duration));
            c.state_bytes = state_bytes;
            c.total_bytes = total_bytes;
            c.location = Some(location.to_string());
            kind = Some(c.kind);
        });
        i.completed += 1;
        if kind == Some(CheckpointKind::Checkpoint) {
            i.job.last_checkpoint = Some(id);
        }
    }

    /// Checkpoint `id` failed (declined, timed out, could not be written, or the job stopped).
    pub fn checkpoint_failed(&self, id: u64, duration: Duration, why: &str) {
        self.with_checkpoint(id, |c| {
            c.status = CheckpointStatus::Failed;
            c.duration_ms = Some(ms(duration));
            c.failure = Some(why.into());
        })
        .failed += 1;
    }

    /// A checkpoint could not start (its id could not be reserved in the storage): it counts as
    /// failed, without an entry of its own.
    pub fn checkpoint_not_started(&self) {
        self.lock().failed += 1;
    }

    /// Attempt `attempt` failed with `error`; `restarted`: the restart strategy restarts it.
    pub fn attempt_failed(&self, attempt: u64, error: &anyhow::Error, restarted: bool) {
        let failed = error.chain().find_map(|e| e.downcast_ref::<crate::runtime::subtask::SubtaskFailure>());
        let (message, backtrace) = split_backtrace(&format!("{error:#}"));
        let mut i = self.lock();
        i.total_exceptions += 1;
        i.exceptions.push_back(ExceptionView {
            timestamp_ms: now_ms(),
            attempt,
            operator: failed.map(|f| f.tag.operator.clone()),
            subtask: failed.map(|f| f.tag.subtask),
            message,
            backtrace,
            restarted,
        });
        while i.exceptions.len() > EXCEPTIONS {
            i.exceptions.pop_front();
        }
        i.job.restarts += u32::from(restarted);
        i.job.state = if restarted { JobState::Restarting } else { JobState::Failed };
    }
}

/// Splits an error report into its message and the wasm frames wasmtime lists in it
/// (`    3: 0x1f2e - op.wasm!counter::process`), so a page can show them apart.
fn split_backtrace(report: &str) -> (String, Vec<String>) {
    let is_frame = |l: &str| {
        let t = l.trim_start();
        l.starts_with(' ') && (t.starts_with('…') || t.split_once(':').is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())))
    };
    let (frames, rest): (Vec<&str>, Vec<&str>) = report.lines().partition(|l| is_frame(l));
    (rest.join("\n"), frames.into_iter().map(|l| l.trim().to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trap_report_splits_into_message_and_frames() {
        let report = "subtask boom/0 failed: boom/0: process trapped: error while executing at wasm backtrace:\n    0: 0x1234 - failing.wasm!panic\n    1: 0x5678 - failing.wasm!process\n    … 40 more lines\nwasm trap: wasm `unreachable` instruction executed (a panic in the guest)";
        let (message, frames) = split_backtrace(report);
        assert_eq!(
            message,
            "subtask boom/0 failed: boom/0: process trapped: error while executing at wasm backtrace:\nwasm trap: wasm `unreachable` instruction executed (a panic in the guest)"
        );
        assert_eq!(frames, ["0: 0x1234 - failing.wasm!panic", "1: 0x5678 - failing.wasm!process", "… 40 more lines"]);
        assert_eq!(split_backtrace("checkpoint 3 failed: 1 consecutive failure"), ("checkpoint 3 failed: 1 consecutive failure".into(), vec![]));
    }

    #[test]
    fn histories_are_bounded_and_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.toml");
        std::fs::write(&path, "[[operators]]\nid = \"a\"\nmodule = \"native:generator\"\n").unwrap();
        let status = JobStatus::new(&JobSpec::load(&path).unwrap());
        for id in 1..=(HISTORY as u64 + 5) {
            status.checkpoint_triggered(id, CheckpointKind::Checkpoint, 1, id);
            status.checkpoint_acked(id, "a", 0, Duration::from_millis(2), Duration::from_millis(1), 10);
            if id % 2 == 0 {
                status.checkpoint_completed(id, Duration::from_millis(3), 10, 30, &crate::checkpoint::Location::Local("/c".into()));
            } else {
                status.checkpoint_failed(id, Duration::from_millis(3), "declined");
            }
        }
        let h = status.checkpoints();
        assert_eq!((h.completed, h.failed, h.in_progress, h.history.len()), (27, 28, 0, HISTORY));
        assert_eq!(h.history[0].id, HISTORY as u64 + 5);
        assert_eq!(h.history[0].failure.as_deref(), Some("declined"));
        assert_eq!(h.history[1].total_bytes, 30);
        assert_eq!(status.job().last_checkpoint, Some(HISTORY as u64 + 4));
        for n in 0..(EXCEPTIONS as u64 + 3) {
            status.attempt_failed(n, &anyhow::anyhow!("failure {n}"), true);
        }
        let e = status.exceptions();
        assert_eq!((e.total, e.exceptions.len()), (EXCEPTIONS as u64 + 3, EXCEPTIONS));
        assert_eq!(e.exceptions[0].message, format!("failure {}", EXCEPTIONS + 2));
        assert_eq!(status.job().restarts, EXCEPTIONS as u32 + 3);
        assert_eq!(status.job().state, JobState::Restarting);
    }
}
