//! Keyed state: a keyed count over many distinct keys — every record reads and writes its key's
//! `ValueState` — whole process against Apache Flink on the same job, and the checkpoints of that
//! state.
//!
//! wasmflow: `generator` (keys `key-0 … key-(K-1)`) → key-hash → `keyed-counter` (wasm, heap
//! backend). Flink 2.3: `bench/flink/KeyedCountJob.java` (`fromSequence` → `"key-" + n % K` →
//! `keyBy` → `RichMapFunction` with `ValueState<Long>` → `DiscardingSink`, hashmap backend, max
//! parallelism 128 like ours). Both checkpoint every second. Checkpoint size and time come from an
//! in-process run of the same wasmflow job (the runtime's `CheckpointStats`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Result, ensure};
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::{CheckpointStats, RunOptions, run_job};

use crate::flink::{Run, median, prepare_flink, run};

/// Records and distinct keys: 100 M records over 1 M keys, as issue #13 asks (a few minutes per
/// run on 2 cores).
const RECORDS: u64 = 100_000_000;
const KEYS: u64 = 1_000_000;
const PARALLELISMS: [u32; 2] = [1, 2];
/// Paired runs per parallelism (each is a long job).
const RUNS: usize = 1;
/// Records of the disk-backend run (p = 1): 5 M, not 100 M, as each access decodes and encodes an
/// entry (~70 k records/s: 100 M would take 25 minutes); every key is in the state after the
/// first million, so the rate is the steady state either way.
const DISK_RECORDS: u64 = 5_000_000;

/// One parallelism: both systems, and wasmflow's largest checkpoint.
pub struct Point {
    pub parallelism: u32,
    pub wasmflow: Run,
    pub flink: Run,
    pub checkpoint: Option<CheckpointStats>,
}

fn job_file(dir: &Path, records: u64, parallelism: u32) -> Result<PathBuf> {
    job_file_with(dir, records, parallelism, "")
}

/// The job, with `extra` job-file text (e.g. a `[state]` section).
fn job_file_with(dir: &Path, records: u64, parallelism: u32, extra: &str) -> Result<PathBuf> {
    let text = format!(
        "[job]\nname = \"keyed-count\"\n{extra}\n[checkpoints]\ninterval-ms = 1000\ndir = \"checkpoints\"\n\n\
         [[operators]]\nid = \"numbers\"\nmodule = \"{}\"\nparallelism = {parallelism}\nconfig = {{ count = {records}, keys = {KEYS} }}\n\n\
         [[operators]]\nid = \"count\"\nmodule = \"{}\"\nparallelism = {parallelism}\n\n\
         [[edges]]\nfrom = \"numbers\"\nto = \"count\"\npartitioning = \"key-hash\"\n",
        wasmflow_tests::operator("generator").display(),
        wasmflow_tests::operator("keyed-counter").display()
    );
    let path = dir.join(format!("keyed-{records}-{parallelism}.toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// The largest checkpoint (by state bytes) of an in-process run of the job.
fn checkpoint_stats(rt: &tokio::runtime::Runtime, parallelism: u32) -> Result<Option<CheckpointStats>> {
    let dir = tempfile::tempdir()?;
    // Long enough for every key to be in the state at a few checkpoints.
    let job = job_file(dir.path(), 4 * KEYS, parallelism)?;
    let spec = JobSpec::load(&job)?;
    let report = rt.block_on(run_job(&Engine::new()?, &spec, RunOptions::default()))?;
    Ok(report.checkpoint_stats.into_iter().max_by_key(|c| c.state_bytes))
}

/// The same job at p = 1 with the disk backend, [`DISK_RECORDS`] records.
pub fn measure_disk() -> Result<Run> {
    let dir = tempfile::tempdir()?;
    let job = job_file_with(dir.path(), DISK_RECORDS, 1, "\n[state]\nbackend = \"disk\"\ndir = \"state\"\n")?;
    let run = run(Command::new(wasmflow_tests::wasmflow_bin()).arg("run").arg(&job).env("WASMFLOW_LOG", "warn"))?;
    eprintln!("keyed count, disk backend, p=1: {:.2} s", run.wall);
    Ok(run)
}

pub fn measure(rt: &tokio::runtime::Runtime) -> Result<Vec<Point>> {
    let work = tempfile::tempdir()?;
    let classpath = prepare_flink(work.path())?;
    let wasmflow = wasmflow_tests::wasmflow_bin();
    ensure!(wasmflow.exists(), "{} is missing: run `make operators` first", wasmflow.display());
    let mut points = Vec::new();
    for parallelism in PARALLELISMS {
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let dir = tempfile::tempdir_in(work.path())?;
            let job = job_file(dir.path(), RECORDS, parallelism)?;
            ours.push(run(Command::new(&wasmflow).arg("run").arg(&job).env("WASMFLOW_LOG", "warn"))?);
            let checkpoints = dir.path().join("flink-checkpoints");
            theirs.push(run(Command::new("java").arg("-cp").arg(&classpath).arg("KeyedCountJob").args([
                RECORDS.to_string(),
                KEYS.to_string(),
                parallelism.to_string(),
                checkpoints.display().to_string(),
            ]))?);
        }
        let point = Point { parallelism, wasmflow: median(ours), flink: median(theirs), checkpoint: checkpoint_stats(rt, parallelism)? };
        eprintln!("keyed count p={parallelism}: wasmflow {:.2} s, Flink {:.2} s", point.wasmflow.wall, point.flink.wall);
        points.push(point);
    }
    Ok(points)
}

fn rate(run: &Run) -> f64 {
    RECORDS as f64 / run.wall / 1e6
}

pub fn report(points: &[Point], disk: &Run) -> Result<String> {
    let mut s = String::new();
    writeln!(s, "## Keyed state: a count per key, side by side with Apache Flink\n")?;
    writeln!(
        s,
        "{} M records over {} M distinct keys; every record reads and writes its key's `ValueState` (heap backend in both). \
         wasmflow: `generator → key-hash → keyed-counter` (wasm); Flink 2.3: `bench/flink/KeyedCountJob.java` \
         (`keyBy` + `ValueState<Long>`, hashmap backend, file checkpoint storage, max parallelism 128). Whole process with start-up, checkpoint every second, \
         {RUNS} paired run(s) per row (the jobs are long). Checkpoints: the largest of an in-process run of the same job over {} M records \
         (every key in the state), trigger → complete and the synchronous part.\n",
        RECORDS / 1_000_000,
        KEYS / 1_000_000,
        4 * KEYS / 1_000_000
    )?;
    writeln!(
        s,
        "| p | wasmflow | Flink | wasmflow / Flink time | wasmflow M rec/s | Flink M rec/s | CPU s (wasmflow / Flink) | peak RSS (wasmflow / Flink) | checkpoint size | trigger → complete | sync |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|")?;
    for p in points {
        let (size, total, sync) = match &p.checkpoint {
            Some(c) => (format!("{:.1} MB", c.state_bytes as f64 / 1e6), format!("{:.0} ms", ms(c.duration)), format!("{:.0} ms", ms(c.max_sync))),
            None => ("–".into(), "–".into(), "–".into()),
        };
        writeln!(
            s,
            "| {} | {:.1} s | {:.1} s | {:.2}x | {:.2} | {:.2} | {:.0} / {:.0} | {:.0} / {:.0} MiB | {size} | {total} | {sync} |",
            p.parallelism,
            p.wasmflow.wall,
            p.flink.wall,
            p.wasmflow.wall / p.flink.wall,
            rate(&p.wasmflow),
            rate(&p.flink),
            p.wasmflow.cpu,
            p.flink.cpu,
            p.wasmflow.rss_mib,
            p.flink.rss_mib,
        )?;
    }
    let heap_p1 = points.iter().find(|p| p.parallelism == 1).map(|p| rate(&p.wasmflow)).unwrap_or(0.0);
    writeln!(
        s,
        "\n**Disk backend** (`[state] backend = \"disk\"`, fjall on local disk, docs/state.md): the same job at p = 1 over {} M records: \
         {:.1} s, {:.2} M records/s ({:.0} % of the heap backend's {:.2} M), {:.0} CPU s, peak RSS {:.0} MiB. Every access reads, \
         decodes, encodes and writes the key's entry in the LSM tree (fjall alone does ~86 k read-modify-writes per second on \
         this machine, docs/state.md). The peak RSS is not the state's size: 1 M small keys fit in the store's memtables, \
         journal buffers and block cache; this benchmark has no larger-than-memory run yet.\n",
        DISK_RECORDS / 1_000_000,
        disk.wall,
        DISK_RECORDS as f64 / disk.wall / 1e6,
        100.0 * DISK_RECORDS as f64 / disk.wall / 1e6 / heap_p1.max(f64::MIN_POSITIVE),
        heap_p1,
        disk.cpu,
        disk.rss_mib,
    )?;
    writeln!(
        s,
        "Checkpoints are incremental (the default): the largest one above is the full snapshot that starts a chain; the others \
         write the keys counted since the last complete checkpoint, or a full snapshot when more than a tenth of the keys changed \
         (as here, where a second of records touches most of the 1 M keys). The next section measures increments on their own.\n"
    )?;
    writeln!(
        s,
        "**Where wasmflow is slower, why.** wasmflow spends less CPU than Flink on this job but, at p = 1, one thread does \
         everything: the chain runs on one core while Flink's JIT and GC threads work beside its task. A `perf` profile of the \
         wasmflow job puts the largest single cost in the first hash-map lookup of each record's key (1 M keys do not fit in \
         the cache: a miss per record, as in Flink), then the two host calls per record (`value` and `update`: the key is \
         copied into the host twice and the value out once, each call lifted and lowered by the component model), then \
         allocation. Each checkpoint's synchronous snapshot of 1 M keys (~0.2–0.5 s, above) also stops the chain once a \
         second. The way forward is a state API that reads and writes a batch's keys in one call.\n"
    )?;
    Ok(s)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
