//! From a checkpoint or savepoint to the initial state of every new subtask.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use wasmflow_state::{OperatorStateStore, RestoredSubtask, StateLimits, redistribute};

use crate::checkpoint::LoadedCheckpoint;
use crate::job::JobSpec;

/// Initial state per operator id, one restored subtask per new subtask index.
pub type Assignment = BTreeMap<String, Vec<RestoredSubtask>>;

/// Redistributes `checkpoint` over the job's (possibly new) parallelisms, exactly as
/// docs/state.md says. Operators are matched by id; state of an operator the
/// job no longer has is an error unless `allow_non_restored_state`.
pub fn assign(job: &JobSpec, checkpoint: &LoadedCheckpoint, allow_non_restored_state: bool) -> Result<Assignment> {
    let mut out = Assignment::new();
    for (op, subtasks) in &checkpoint.states {
        let Some(spec) = job.operator(op) else {
            if allow_non_restored_state {
                tracing::warn!("{}: state of operator '{op}' is not restored: the job has no such operator", checkpoint.location);
                continue;
            }
            bail!("{}: has state for operator '{op}', which the job file does not have; pass --allow-non-restored-state to drop it", checkpoint.location);
        };
        let old = subtasks.iter().cloned().map(Some).collect();
        out.insert(op.clone(), redistribute(old, spec.parallelism as usize));
    }
    Ok(out)
}

/// The state store subtask `index` of `operator` starts with.
pub fn store_for(assignment: Option<&mut Assignment>, operator: &str, index: usize, limits: StateLimits) -> OperatorStateStore {
    match assignment.and_then(|a| a.get_mut(operator)).and_then(|v| v.get_mut(index)) {
        Some(restored) => OperatorStateStore::restore(std::mem::take(restored), limits),
        None => OperatorStateStore::new(limits),
    }
}
