//! The engine's boundary: code generated from the WIT contract is converted to the shared
//! vocabulary ([`wasmflow_types`]) here, and the rest of the host never sees generated types.
//! Moving a batch's columns copies nothing.

use wasmflow_state::TimeDomain;
use wasmflow_types::{Batch, BatchError, Columns, Level, OperatorKind, PollStatus, TaskInfo};

use super::bindings::wasmflow::operator::{log, types as wire};

/// A batch from a guest, checked before anything reads it.
pub fn batch_from_guest(b: wire::Batch) -> Result<Batch, BatchError> {
    Batch::from_columns(columns(b))
}

/// A batch the host built and lent to a guest (its input, forwarded): already checked.
pub fn batch_from_host(b: wire::Batch) -> Batch {
    Batch::from_checked_columns(columns(b))
}

fn columns(b: wire::Batch) -> Columns {
    Columns { data: b.data, key_lens: b.key_lens, value_lens: b.value_lens, timestamps: b.timestamps }
}

/// A batch for a guest.
pub fn batch_to_guest(b: Batch) -> wire::Batch {
    let c = b.into_columns();
    wire::Batch { data: c.data, key_lens: c.key_lens, value_lens: c.value_lens, timestamps: c.timestamps }
}

pub fn task_info(info: TaskInfo) -> wire::TaskInfo {
    wire::TaskInfo {
        operator_id: info.operator_id,
        subtask_index: info.subtask_index,
        parallelism: info.parallelism,
        checkpointing_enabled: info.checkpointing_enabled,
        attempt: info.attempt,
    }
}

pub fn kind(kind: wire::OperatorKind) -> OperatorKind {
    match kind {
        wire::OperatorKind::Source => OperatorKind::Source,
        wire::OperatorKind::Transform => OperatorKind::Transform,
        wire::OperatorKind::Sink => OperatorKind::Sink,
    }
}

pub fn poll_status(status: wire::PollStatus) -> PollStatus {
    match status {
        wire::PollStatus::Ready => PollStatus::Ready,
        wire::PollStatus::Idle(ms) => PollStatus::Idle(ms),
        wire::PollStatus::Finished => PollStatus::Finished,
    }
}

pub fn time_domain(domain: TimeDomain) -> wire::TimeDomain {
    match domain {
        TimeDomain::EventTime => wire::TimeDomain::EventTime,
        TimeDomain::ProcessingTime => wire::TimeDomain::ProcessingTime,
    }
}

pub fn level(level: log::Level) -> Level {
    match level {
        log::Level::Trace => Level::Trace,
        log::Level::Debug => Level::Debug,
        log::Level::Info => Level::Info,
        log::Level::Warn => Level::Warn,
        log::Level::Error => Level::Error,
    }
}
