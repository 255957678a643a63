//! Checkpoints on object storage: what a checkpoint of 1 MB and of 100 MB of operator state costs
//! written to a local S3 server (moto_server on loopback) against a local directory, through the
//! same `CheckpointStorage` the runtime uses. A row is one checkpoint of one subtask: take over
//! the storage (once), reserve an id, upload the state object, commit `_metadata` (conditional
//! create and the fencing checks around it), then read it back and verify it (a restore).
//!
//! moto is a Python server: its own cost dominates the large uploads, so the S3 column is an
//! upper bound of what the client adds, not a figure for AWS S3.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use wasmflow_host::checkpoint::{CheckpointMetadata, CheckpointStorage, FORMAT_VERSION, LocalStorage, ObjectStorage, ObjectUrl, OperatorMetadata};
use wasmflow_state::{Mode, NamedStateSnapshot, StateValue, SubtaskSnapshot, TypeInfo};
use wasmflow_tests::s3::S3Server;

const SIZES: [usize; 2] = [1 << 20, 100 << 20];
const RUNS: usize = 5;

pub struct Row {
    pub storage: &'static str,
    pub bytes: usize,
    pub write: Duration,
    pub commit: Duration,
    pub restore: Duration,
}

fn snapshot(bytes: usize) -> SubtaskSnapshot {
    // 1 KiB entries of pseudo-random bytes (no compression anywhere, but keep it honest).
    let mut x = 0x9e3779b97f4a7c15u64;
    let items = (0..bytes / 1024)
        .map(|_| {
            (0..128)
                .flat_map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()
                })
                .collect()
        })
        .collect();
    let state = NamedStateSnapshot {
        name: "ballast".into(),
        mode: Mode::SplitDistribute,
        element_type: TypeInfo::default(),
        value_type: None,
        value: StateValue::List(items),
    };
    SubtaskSnapshot { states: vec![state], keyed: None }
}

fn one(storage: &dyn CheckpointStorage, snap: &SubtaskSnapshot, label: &'static str, bytes: usize) -> Result<Row> {
    let id = storage.reserve_checkpoint_id()?;
    let started = Instant::now();
    let file = storage.write_state(id, "ballast", 0, snap, vec![])?;
    let write = started.elapsed();
    let meta = CheckpointMetadata {
        format_version: FORMAT_VERSION,
        checkpoint_id: id,
        timestamp: 0,
        kind: "checkpoint".into(),
        job_name: "bench".into(),
        attempt: 1,
        generation: storage.generation(),
        operators: [("ballast".to_string(), OperatorMetadata { parallelism: 1, subtasks: vec![file], finished: vec![] })].into(),
    };
    let started = Instant::now();
    storage.commit(id, &meta)?;
    let commit = started.elapsed();
    let started = Instant::now();
    storage.load(&format!("chk-{id}"))?;
    let restore = started.elapsed();
    storage.prune(1)?;
    Ok(Row { storage: label, bytes, write, commit, restore })
}

fn median(mut rows: Vec<Row>) -> Row {
    let pick = |rows: &mut Vec<Row>, f: fn(&Row) -> Duration| {
        let mut v: Vec<Duration> = rows.iter().map(f).collect();
        v.sort();
        v[v.len() / 2]
    };
    let (write, commit, restore) = (pick(&mut rows, |r| r.write), pick(&mut rows, |r| r.commit), pick(&mut rows, |r| r.restore));
    let first = rows.remove(0);
    Row { write, commit, restore, ..first }
}

pub fn measure() -> Result<Vec<Row>> {
    let installed = std::process::Command::new(wasmflow_tests::workspace_root().join("scripts/install-moto.sh")).status().context("installing moto_server")?;
    anyhow::ensure!(installed.success(), "scripts/install-moto.sh failed");
    let server = S3Server::start("bench");
    let options = S3Server::options(server.port);
    let url = ObjectUrl { scheme: "s3".into(), bucket: "bench".into(), prefix: "checkpoints".into() };
    let s3 = ObjectStorage::open(&url, &options)?;
    s3.take_over()?;
    let dir = tempfile::tempdir()?;
    let local = LocalStorage::new(dir.path())?;
    let mut rows = Vec::new();
    for bytes in SIZES {
        let snap = snapshot(bytes);
        for (storage, label) in [(&local as &dyn CheckpointStorage, "local disk"), (&s3, "S3 (moto, loopback)")] {
            let runs = (0..RUNS).map(|_| one(storage, &snap, label, bytes)).collect::<Result<Vec<_>>>()?;
            let row = median(runs);
            eprintln!("object-storage: {label} {} MiB: write {:?} commit {:?} restore {:?}", bytes >> 20, row.write, row.commit, row.restore);
            rows.push(row);
        }
    }
    Ok(rows)
}

pub fn report(rows: &[Row]) -> Result<String> {
    let mut out = String::new();
    writeln!(out, "## Checkpoints on object storage\n")?;
    writeln!(
        out,
        "One subtask's checkpoint through the runtime's `CheckpointStorage`: upload its state file, commit `_metadata` (on S3: a conditional create with a generation check before and after), then read it back and verify it. Medians of {RUNS}. The S3 server is moto (Python) on loopback: its own cost dominates, so these are upper bounds for the client, not AWS figures.\n"
    )?;
    writeln!(out, "| storage | state | write state | commit | restore (read + verify) |")?;
    writeln!(out, "|---|---|---|---|---|")?;
    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
    for r in rows {
        writeln!(out, "| {} | {} MiB | {} | {} | {} |", r.storage, r.bytes >> 20, ms(r.write), ms(r.commit), ms(r.restore))?;
    }
    writeln!(out)?;
    Ok(out)
}
