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
/// incremental checkpoints. `disk_dir`: keep the keyed state in a disk store in that
/// directory (the disk backend) instead of on the heap.
pub fn state_for(
    assignment: Option<&mut Assignment>,
    operator: &str,
    index: usize,
    limits: StateLimits,
    keyed: Option<(u32, u32)>,
    incremental: bool,
    disk_dir: Option<&std::path::Path>,
) -> Result<SubtaskState> {
    let mut restored = assignment.and_then(|a| a.get_mut(operator));
    let store = match restored.as_mut().and_then(|r| r.subtasks.get_mut(index)) {
        Some(r) => OperatorStateStore::restore(std::mem::take(r), limits.clone()),
        None => OperatorStateStore::new(limits.clone()),
    };
    let Some((max_parallelism, parallelism)) = keyed else { return Ok(store.into()) };
    let range = KeyGroupRange::for_subtask(max_parallelism, parallelism, index as u32);
    let snapshots = restored.map(|r| r.keyed.as_slice()).unwrap_or_default();
    let empty = match disk_dir {
        Some(dir) => KeyedStateBackend::on_disk(max_parallelism, range, limits, dir),
        None => Ok(KeyedStateBackend::new(max_parallelism, range, limits)),
    };
    let mut backend = empty.and_then(|b| b.restored_from(snapshots)).map_err(|e| anyhow::anyhow!("operator '{operator}': {e}"))?;
    if incremental {
        backend.track_changes();
    }
    Ok(SubtaskState::keyed(store, backend))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use wasmflow_state::{KeyGroupRange, KeyedSnapshot, KeyedStateBackend, StateLimits, SubtaskSnapshot, TypeInfo};

    use super::*;
    use crate::checkpoint::{CheckpointMetadata, FORMAT_VERSION};

    fn job(partitioning: &str) -> JobSpec {
        let text = format!(
            "[job]\nname = \"t\"\n\n[[operators]]\nid = \"src\"\nmodule = \"gen.wasm\"\n\n[[operators]]\nid = \"count\"\nmodule = \"count.wasm\"\n\n\
             [[edges]]\nfrom = \"src\"\nto = \"count\"\npartitioning = \"{partitioning}\"\n"
        );
        JobSpec::parse(&text, Path::new("job.toml")).unwrap()
    }

    fn checkpoint(keyed: KeyedSnapshot) -> LoadedCheckpoint {
        let metadata = CheckpointMetadata {
            format_version: FORMAT_VERSION,
            checkpoint_id: 1,
            timestamp: 0,
            kind: "checkpoint".into(),
            job_name: "t".into(),
            attempt: 1,
            generation: 0,
            operators: BTreeMap::new(),
        };
        let states = BTreeMap::from([("count".to_string(), vec![SubtaskSnapshot { states: vec![], keyed: Some(keyed) }])]);
        LoadedCheckpoint { location: "chk-1".into(), metadata, states }
    }

    fn keyed(with_entry: bool) -> KeyedSnapshot {
        let mut b = KeyedStateBackend::new(128, KeyGroupRange::for_subtask(128, 1, 0), StateLimits::default());
        let v = b.register_value("count", TypeInfo::default(), None).unwrap();
        if with_entry {
            b.value_update(v, b"k", vec![1], 0).unwrap();
        }
        b.snapshot(0).unwrap()
    }

    /// Only keyed data binds an operator to being keyed: a keyed operator that registered keyed
    /// state but never wrote any restores into a job where its input is no longer `key-hash`,
    /// while one with entries is refused, naming the operator and the fix.
    #[test]
    fn only_keyed_data_requires_a_keyed_operator_on_restore() {
        assert!(assign(&job("rebalance"), &checkpoint(keyed(false)), false).is_ok());
        let e = format!("{:#}", assign(&job("rebalance"), &checkpoint(keyed(true)), false).err().unwrap());
        assert_eq!(
            e,
            "chk-1: operator 'count' has keyed state, but in this job it is not keyed: make every edge into 'count' partitioning = \"key-hash\" again"
        );
        assert!(assign(&job("key-hash"), &checkpoint(keyed(true)), false).is_ok());
    }
}
