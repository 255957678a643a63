//! Object storage on an in-memory store (the same conditional puts as S3): commit, retention,
//! verification, savepoints and fencing. End to end on a real S3 server: tests/all/object_storage.rs.

use std::sync::Arc;

use object_store::memory::InMemory;
use wasmflow_state::StateValue;

use super::*;
use crate::checkpoint::{count_snapshot as snapshot, one_operator_metadata};

fn url(prefix: &str) -> ObjectUrl {
    ObjectUrl { scheme: "s3".into(), bucket: "flows".into(), prefix: prefix.into() }
}

fn metadata(storage: &ObjectStorage, id: u64, file: StateFileRef) -> CheckpointMetadata {
    one_operator_metadata(id, "counter", file, storage.generation())
}

/// Reserves an id, writes one state file and commits it; returns the id.
fn checkpoint(storage: &ObjectStorage, count: u64) -> Result<u64> {
    let id = storage.reserve_checkpoint_id()?;
    let file = storage.write_state(id, "counter", 0, &snapshot(count), vec![])?;
    storage.commit(id, &metadata(storage, id, file))?;
    Ok(id)
}

fn count_of(loaded: &LoadedCheckpoint) -> u64 {
    match &loaded.states["counter"][0].states[0].value {
        StateValue::List(items) => u64::from_le_bytes(items[0].as_slice().try_into().unwrap()),
        other => panic!("{other:?}"),
    }
}

fn keys(store: &InMemory) -> Vec<String> {
    let listed: Vec<_> = block({
        let store = store.clone();
        async move {
            use futures::TryStreamExt;
            store.list(None).map_ok(|m| m.location.to_string()).try_collect::<Vec<_>>().await
        }
    })
    .unwrap();
    let mut listed = listed;
    listed.sort();
    listed
}

#[test]
fn checkpoints_commit_load_and_retire_below_the_prefix() {
    let store = Arc::new(InMemory::new());
    let storage = ObjectStorage::with_store(&url("jobs/a"), store.clone());
    storage.take_over().unwrap();
    let first = checkpoint(&storage, 10).unwrap();
    let second = checkpoint(&storage, 20).unwrap();
    assert_eq!((first, second), (1, 2));
    let complete = storage.complete_checkpoints().unwrap();
    assert_eq!(complete.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["chk-2", "chk-1"]);
    assert_eq!(count_of(&storage.load("chk-2").unwrap()), 20);
    assert_eq!(storage.location(2).to_string(), "s3://flows/jobs/a/chk-2");

    // An in-flight checkpoint (no _metadata) survives retention; the older complete one does not.
    let third = storage.reserve_checkpoint_id().unwrap();
    storage.write_state(third, "counter", 0, &snapshot(30), vec![]).unwrap();
    storage.prune(1).unwrap();
    assert_eq!(keys(&store), ["jobs/a/_job.json", "jobs/a/chk-2/_metadata", "jobs/a/chk-2/counter/0.state", "jobs/a/chk-3/counter/0.state"]);
    // At the next start an incomplete checkpoint is removed.
    storage.remove_incomplete().unwrap();
    assert!(!keys(&store).iter().any(|k| k.starts_with("jobs/a/chk-3")));
}

#[test]
fn metadata_is_never_written_over() {
    let store = Arc::new(InMemory::new());
    let storage = ObjectStorage::with_store(&url("p"), store);
    storage.take_over().unwrap();
    let id = checkpoint(&storage, 1).unwrap();
    let file = storage.write_state(id, "counter", 0, &snapshot(2), vec![]).unwrap();
    let e = format!("{:#}", storage.commit(id, &metadata(&storage, id, file)).unwrap_err());
    assert_eq!(e, "s3://flows/p/chk-1/_metadata: already exists: never written over");
}

#[test]
fn a_changed_or_missing_state_object_is_named_on_load() {
    let store = Arc::new(InMemory::new());
    let storage = ObjectStorage::with_store(&url("p"), store.clone());
    storage.take_over().unwrap();
    checkpoint(&storage, 1).unwrap();
    let path = ObjPath::from("p/chk-1/counter/0.state");
    let good = block({
        let store = store.clone();
        let path = path.clone();
        async move { store.get(&path).await.unwrap().bytes().await.unwrap() }
    });
    let mut bad = good.to_vec();
    bad[9] ^= 1;
    block({
        let (store, path) = (store.clone(), path.clone());
        async move { store.put(&path, bad.into()).await.unwrap() }
    });
    let e = format!("{:#}", storage.load("chk-1").unwrap_err());
    assert!(e.starts_with("s3://flows/p/chk-1/counter/0.state: state file does not match the metadata"), "{e}");
    block({
        let store = store.clone();
        async move { store.delete(&path).await.unwrap() }
    });
    let e = format!("{:#}", storage.load("chk-1").unwrap_err());
    assert_eq!(e, "s3://flows/p/chk-1/counter/0.state: state file missing: the checkpoint is incomplete or was partly deleted");
}

/// Ids and attempts never repeat, even when `_job.json` is lost: they are derived from the
/// checkpoints stored.
#[test]
fn a_lost_job_file_does_not_make_ids_repeat() {
    let store = Arc::new(InMemory::new());
    let storage = ObjectStorage::with_store(&url("p"), store.clone());
    storage.take_over().unwrap();
    checkpoint(&storage, 1).unwrap();
    checkpoint(&storage, 2).unwrap();
    block({
        let store = store.clone();
        async move { store.delete(&ObjPath::from("p/_job.json")).await.unwrap() }
    });
    let restarted = ObjectStorage::with_store(&url("p"), store);
    restarted.take_over().unwrap();
    assert_eq!(restarted.reserve_checkpoint_id().unwrap(), 3);
    assert_eq!(restarted.generation(), 2, "above the generation the stored metadata names");
}

/// A savepoint goes to its own prefix (here in the same bucket), is self-contained and loads
/// from there; an existing savepoint is never written over.
#[test]
fn a_savepoint_goes_to_its_target_and_loads_from_there() {
    let store = Arc::new(InMemory::new());
    let storage = ObjectStorage::with_store(&url("p"), store.clone());
    storage.take_over().unwrap();
    let id = storage.reserve_checkpoint_id().unwrap();
    let target: Location = "s3://flows/savepoints".parse().unwrap();
    let at = storage.begin_savepoint(id, &target).unwrap();
    assert_eq!(at.to_string(), "s3://flows/savepoints/savepoint-1");
    let file = storage.write_state(id, "counter", 0, &snapshot(5), vec![]).unwrap();
    storage.commit(id, &CheckpointMetadata { kind: "savepoint".into(), ..metadata(&storage, id, file) }).unwrap();
    assert!(storage.complete_checkpoints().unwrap().is_empty(), "a savepoint is not a checkpoint");
    let Location::Object(sp) = at else { unreachable!() };
    assert_eq!(count_of(&load_prefix_in(store.clone(), &sp).unwrap()), 5);
    let e = format!("{:#}", load_prefix_in(store.clone(), &url("savepoints")).unwrap_err());
    assert!(e.starts_with("s3://flows/savepoints: no _metadata object"), "{e}");
    let again = ObjectStorage::with_store(&url("p"), store);
    again.take_over().unwrap();
    let e = format!("{:#}", again.begin_savepoint(1, &target).unwrap_err());
    assert_eq!(e, "cannot create savepoint s3://flows/savepoints/savepoint-1: objects exist below it (a savepoint is never written over another)");
}

fn is_fenced(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Fenced>().is_some()
}

/// A second job manager on the same prefix fences the first: the first can no longer reserve
/// ids, start attempts or commit, and a checkpoint it still managed to write after the takeover
/// (its metadata put raced the takeover) is never listed, restored, or kept.
#[test]
fn a_newer_job_manager_fences_the_older_one() {
    let store = Arc::new(InMemory::new());
    let old = ObjectStorage::with_store(&url("p"), store.clone());
    old.take_over().unwrap();
    assert_eq!(old.generation(), 1);
    checkpoint(&old, 1).unwrap();
    let in_flight = old.reserve_checkpoint_id().unwrap();
    let file = old.write_state(in_flight, "counter", 0, &snapshot(2), vec![]).unwrap();

    let new = ObjectStorage::with_store(&url("p"), store.clone());
    new.take_over().unwrap();
    assert_eq!(new.generation(), 2);

    let e = old.commit(in_flight, &metadata(&old, in_flight, file.clone())).unwrap_err();
    assert!(is_fenced(&e), "{e:#}");
    assert_eq!(
        e.to_string(),
        "s3://flows/p: fenced: a newer job manager (generation 2, this one is 1) took this checkpoint storage over; this job manager stops without committing"
    );
    assert!(is_fenced(&old.reserve_checkpoint_id().unwrap_err()));
    assert!(is_fenced(&old.next_attempt(0).unwrap_err()));
    // The old one's exit does not take the new one's `_control` with it.
    new.publish_control(&ControlFile { address: "10.0.0.2:8081".into(), token: "new".into() }).unwrap();
    old.remove_control();
    assert_eq!(new.read_control().unwrap().token, "new");

    // The old job manager's metadata put lands after the takeover all the same.
    let late = metadata(&old, in_flight, file);
    block({
        let store = store.clone();
        let bytes = late.encode().unwrap();
        async move { store.put(&ObjPath::from(format!("p/chk-{in_flight}/_metadata").as_str()), bytes.into()).await.unwrap() }
    });
    let listed: Vec<u64> = new.complete_checkpoints().unwrap().iter().map(|(_, m)| m.checkpoint_id).collect();
    assert_eq!(listed, [1], "checkpoint {in_flight} is fenced out");
    let third = checkpoint(&new, 3).unwrap();
    assert_eq!(third, in_flight + 1);
    new.prune(5).unwrap();
    assert!(!keys(&store).iter().any(|k| k.starts_with(&format!("p/chk-{in_flight}/"))), "the fenced-out checkpoint is pruned");
    // A third job manager still does not trust it (the takeover records are kept).
    let third_jm = ObjectStorage::with_store(&url("p"), store);
    third_jm.take_over().unwrap();
    assert_eq!(third_jm.complete_checkpoints().unwrap().iter().map(|(_, m)| m.checkpoint_id).collect::<Vec<_>>(), [third, 1]);
}

/// A checkpoint the old job manager committed before the takeover counts: its sinks may have
/// committed its side effects, so the new job manager must restore from it.
#[test]
fn a_checkpoint_committed_before_the_takeover_is_restored() {
    let store = Arc::new(InMemory::new());
    let old = ObjectStorage::with_store(&url("p"), store.clone());
    old.take_over().unwrap();
    checkpoint(&old, 1).unwrap();
    let last = checkpoint(&old, 2).unwrap();
    let new = ObjectStorage::with_store(&url("p"), store);
    new.take_over().unwrap();
    assert_eq!(new.complete_checkpoints().unwrap()[0].1.checkpoint_id, last);
    assert_eq!(count_of(&new.load(&format!("chk-{last}")).unwrap()), 2);
}
