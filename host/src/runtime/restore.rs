//! From a checkpoint or savepoint to the initial state of every new subtask.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use wasmflow_state::{KeyGroupRange, KeyedSnapshot, KeyedStateBackend, OperatorStateStore, RestoredSubtask, StateLimits, SubtaskState, redistribute};

use crate::checkpoint::LoadedCheckpoint;
use crate::job::JobSpec;

/// What one operator restores: its operator state redistributed, one entry per new subtask, and
/// the keyed snapshots of all old subtasks (each new subtask takes the key groups it owns).
#[derive(Default)]
pub struct OperatorRestore {
    subtasks: Vec<RestoredSubtask>,
    keyed: Vec<KeyedSnapshot>,
}

/// Initial state per operator id.
pub type Assignment = BTreeMap<String, OperatorRestore>;

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
        let keyed: Vec<KeyedSnapshot> = subtasks.iter().filter_map(|s| s.keyed.clone()).collect();
        // Only keyed data (entries or timers) binds the operator to key groups: a keyed
        // operator that never used keyed state can be restored unkeyed or with other groups.
        if let Some(k) = keyed.iter().find(|k| !k.groups.is_empty()) {
            if !job.is_keyed(op) {
                bail!(
                    "{}: operator '{op}' has keyed state, but in this job it is not keyed: make every edge into '{op}' partitioning = \"key-hash\" again",
                    checkpoint.location
                );
            }
            let now = job.job.max_parallelism();
            if k.max_parallelism != now {
                bail!(
                    "{}: operator '{op}': the keyed state was written with max-parallelism {}, but the job has max-parallelism {now}: max-parallelism is fixed for the life of keyed state; set `[job] max-parallelism = {}`",
                    checkpoint.location,
                    k.max_parallelism,
                    k.max_parallelism
                );
            }
        }
        let old = subtasks.iter().map(|s| Some(wasmflow_state::SubtaskSnapshot { states: s.states.clone(), keyed: None })).collect();
        out.insert(op.clone(), OperatorRestore { subtasks: redistribute(old, spec.parallelism as usize), keyed });
    }
    Ok(out)
}

/// The state subtask `index` of `operator` starts with: its operator state, and for a keyed
/// operator the key groups it owns (`keyed = Some(max_parallelism, parallelism)`), taken whole
/// from whichever old subtask held them. `incremental`: the keyed state notes its changes for
/// incremental checkpoints.
pub fn state_for(
    assignment: Option<&mut Assignment>,
    operator: &str,
    index: usize,
    limits: StateLimits,
    keyed: Option<(u32, u32)>,
    incremental: bool,
) -> Result<SubtaskState> {
    let mut restored = assignment.and_then(|a| a.get_mut(operator));
    let store = match restored.as_mut().and_then(|r| r.subtasks.get_mut(index)) {
        Some(r) => OperatorStateStore::restore(std::mem::take(r), limits.clone()),
        None => OperatorStateStore::new(limits.clone()),
    };
    let Some((max_parallelism, parallelism)) = keyed else { return Ok(store.into()) };
    let range = KeyGroupRange::for_subtask(max_parallelism, parallelism, index as u32);
    let snapshots = restored.map(|r| r.keyed.as_slice()).unwrap_or_default();
    let mut backend = KeyedStateBackend::restore(max_parallelism, range, limits, snapshots).map_err(|e| anyhow::anyhow!("operator '{operator}': {e}"))?;
    if incremental {
        backend.track_changes();
    }
    Ok(SubtaskState::keyed(store, backend))
}
