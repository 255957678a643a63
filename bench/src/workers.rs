//! Distributed execution (issue #15): the count job of the Flink side-by-side
//! (`generator → counter → null-sink`) in one process against `wasmflow run --workers N`, whole
//! process against whole process.
//!
//! Two questions, each a side-by-side taken in the same rounds (every configuration once per
//! round, so drift on this shared machine hits all of them alike):
//!
//! - **Scaling**: the chained job at parallelism 4 on one process and on 1, 2 and 4 workers.
//!   Forward edges between equal parallelisms never leave a worker, so no record crosses
//!   processes: what changes is only the number of processes.
//! - **A network hop**: the numbers → count edge made `rebalance` at parallelism 2, in one process
//!   and on 2 workers. Rebalance deals each sender's batches round-robin over the two count
//!   subtasks, one on the sender's worker and one on the other, so half the batches cross.
//!
//! Every configuration also runs a job of one batch per generator subtask: its time is start-up
//! and tear-down (spawning and attaching workers, loading the modules, the last checkpoint),
//! which the 20 M-record figures contain too and the report takes out where it says so.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Result, ensure};

use crate::flink::{self, Run};
use crate::kafka_mock::load_average;

/// Records of the measured job: the Flink side-by-side's short job.
const RECORDS: u64 = 20_000_000;
/// Runs of each configuration; the report gives medians.
const RUNS: usize = 3;
/// Parallelism of the scaling runs: 4 slices of every operator, so 1, 2 and 4 workers run 4, 2
/// and 1 of them each.
const SCALING_PARALLELISM: u32 = 4;
/// Worker processes of the scaling runs (`None`: one process, no `--workers`).
const SCALING_WORKERS: [Option<u32>; 4] = [None, Some(1), Some(2), Some(4)];
/// Parallelism and workers of the hop runs: subtask i on worker i, one count subtask local to
/// each generator subtask and one remote.
const HOP_PARALLELISM: u32 = 2;
const HOP_WORKERS: u32 = 2;
/// Within this relative difference two medians are called "about the same": run-to-run spread
/// on this shared 2-core machine is of this order.
const NOISE: f64 = 0.05;

/// One way of running the job.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// `--workers N`, or one process.
    pub workers: Option<u32>,
    pub parallelism: u32,
    /// Of the numbers → count edge.
    pub partitioning: &'static str,
}

impl Config {
    fn processes(&self) -> String {
        match self.workers {
            None => "one process".into(),
            Some(n) => format!("`--workers {n}` ({n} worker{})", if n == 1 { "" } else { "s" }),
        }
    }
}

/// Medians of one configuration; wall and CPU are each the median of their own runs.
#[derive(Clone, Copy, Debug)]
pub struct Median {
    pub wall: f64,
    pub cpu: f64,
    /// The shortest and longest wall time of the runs: how far this machine's noise moved them.
    pub wall_range: (f64, f64),
}

/// A configuration's medians at [`RECORDS`] and on the one-batch-per-subtask job.
#[derive(Clone, Copy, Debug)]
pub struct Point {
    pub config: Config,
    pub full: Median,
    pub startup: Median,
}

impl Point {
    fn records_per_second(&self) -> f64 {
        RECORDS as f64 / self.full.wall
    }

    /// Records/s once running: the records over the wall time above the start-up job's, if any.
    fn running_records_per_second(&self) -> Option<f64> {
        let running = self.full.wall - self.startup.wall;
        (running > 0.0).then(|| RECORDS as f64 / running)
    }
}

pub struct Measured {
    pub scaling: Vec<Point>,
    /// One process, then [`HOP_WORKERS`] workers.
    pub hop: [Point; 2],
    /// The job's batch size (the `[job] batch-size` default, which the job file leaves unset).
    pub batch: u32,
    /// Records of the start-up job.
    pub startup_records: u64,
    /// 1-minute load average before and after the part.
    pub load: (f64, f64),
}

fn configs() -> Vec<Config> {
    let mut configs: Vec<Config> =
        SCALING_WORKERS.iter().map(|&workers| Config { workers, parallelism: SCALING_PARALLELISM, partitioning: "forward" }).collect();
    for workers in [None, Some(HOP_WORKERS)] {
        configs.push(Config { workers, parallelism: HOP_PARALLELISM, partitioning: "rebalance" });
    }
    configs
}

/// One whole `wasmflow run` of `config` over `records`, in a fresh directory (no checkpoint
/// of an earlier run to restore from).
fn run_once(work: &Path, config: &Config, records: u64) -> Result<Run> {
    let dir = tempfile::tempdir_in(work)?;
    let job = flink::job_file(dir.path(), records, config.parallelism, config.partitioning)?;
    let mut cmd = Command::new(wasmflow_tests::wasmflow_bin());
    cmd.arg("run").arg(&job).current_dir(dir.path()).env("WASMFLOW_LOG", "warn");
    if let Some(n) = config.workers {
        cmd.arg("--workers").arg(n.to_string());
    }
    flink::run(&mut cmd)
}

fn median_by(runs: &[Run], f: impl Fn(&Run) -> f64) -> f64 {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn median(runs: &[Run]) -> Median {
    let walls = runs.iter().map(|r| r.wall);
    let wall_range = (walls.clone().fold(f64::INFINITY, f64::min), walls.fold(0.0, f64::max));
    Median { wall: median_by(runs, |r| r.wall), cpu: median_by(runs, |r| r.cpu), wall_range }
}

pub fn measure() -> Result<Measured> {
    let batch = wasmflow_host::job::JobSection::default().batch_size();
    let startup_records = u64::from(batch) * u64::from(SCALING_PARALLELISM);
    let work = tempfile::tempdir()?;
    let configs = configs();
    let load_before = load_average();
    // Warm-up, not measured: fills the compiled-module cache that every later run loads from.
    run_once(work.path(), &Config { workers: Some(1), parallelism: 1, partitioning: "forward" }, startup_records)?;
    let mut runs: Vec<[Vec<Run>; 2]> = configs.iter().map(|_| [Vec::new(), Vec::new()]).collect();
    for round in 1..=RUNS {
        for (config, runs) in configs.iter().zip(&mut runs) {
            runs[0].push(run_once(work.path(), config, RECORDS)?);
            runs[1].push(run_once(work.path(), config, startup_records)?);
            let last = runs[0].last().expect("just pushed");
            eprintln!(
                "workers: round {round}: {} p={} {}: {:.2} s, {:.2} CPU s",
                config.processes(),
                config.parallelism,
                config.partitioning,
                last.wall,
                last.cpu
            );
        }
    }
    let mut points: Vec<Point> = configs.into_iter().zip(&runs).map(|(config, r)| Point { config, full: median(&r[0]), startup: median(&r[1]) }).collect();
    check_workers_counted(&points)?;
    let hop = [points[SCALING_WORKERS.len()], points[SCALING_WORKERS.len() + 1]];
    points.truncate(SCALING_WORKERS.len());
    Ok(Measured { scaling: points, hop, batch, startup_records, load: (load_before, load_average()) })
}

/// The report adds the workers' CPU to the job manager's on the word of `wait4` (the job
/// manager reaps its workers, so their time is in its children's). Were a worker not reaped,
/// the job manager's own CPU would be a small fraction of one process's: refuse to report that.
fn check_workers_counted(points: &[Point]) -> Result<()> {
    let alone = points[0].full.cpu;
    for p in points.iter().filter(|p| p.config.workers.is_some() && p.config.partitioning == "forward") {
        ensure!(
            p.full.cpu > alone / 2.0,
            "{} used {:.2} CPU s against {alone:.2} in one process: the workers' CPU is missing from wait4 (were they not reaped?)",
            p.config.processes(),
            p.full.cpu
        );
    }
    Ok(())
}

/// `a` against `b` in words that stay true for the values: "N % more/less than", or "about the
/// same as" within [`NOISE`].
fn compared(a: f64, b: f64, more: &str, less: &str) -> String {
    let r = a / b - 1.0;
    if r.abs() <= NOISE {
        format!("about the same as (within {:.0} % of)", NOISE * 100.0)
    } else if r > 0.0 {
        format!("{:.0} % {more} than", r * 100.0)
    } else {
        format!("{:.0} % {less} than", -r * 100.0)
    }
}

/// Where a median lies against another configuration's runs: the test of whether a difference
/// stands out of the noise.
fn against_runs(median: f64, (shortest, longest): (f64, f64)) -> String {
    if median < shortest {
        "shorter than every one-process run".into()
    } else if median > longest {
        "longer than every one-process run".into()
    } else {
        format!("inside the range of the one-process runs, {shortest:.2}–{longest:.2} s")
    }
}

fn signed(v: f64) -> String {
    format!("{}{:.2}", if v >= 0.0 { "+" } else { "−" }, v.abs())
}

pub fn report(m: &Measured) -> Result<String> {
    let mut s = String::new();
    writeln!(s, "## Distributed execution: one process against worker processes\n")?;
    writeln!(
        s,
        "The count job of the Flink side-by-side (`generator → counter → null-sink`, N = {} M records, a checkpoint every \
         second, batch size {} records: the `[job] batch-size` default), run whole: `wasmflow run` in one process, and \
         `wasmflow run --workers N`, a job manager that starts N `wasmflow worker` processes and runs subtask i of every \
         operator on worker i mod N. Wall time is the `wasmflow run` process's, start to exit. CPU is user + system seconds \
         from `wait4` on that process: with `--workers` it includes the workers, because the job manager waits for (reaps) \
         its worker processes before it exits and Linux adds reaped children's time to their parent's. Every figure is the \
         median of {RUNS} runs (wall and CPU each the median of its own runs); the configurations took turns, one run each \
         per round. The start-up column is the same configuration running a job of one batch per generator subtask \
         ({} records): spawning and attaching the workers, each loading the modules, the last checkpoint, tear-down.\n",
        RECORDS / 1_000_000,
        m.batch,
        m.startup_records,
    )?;
    scaling(&mut s, m)?;
    hop(&mut s, m)?;
    cores(&mut s, m)?;
    Ok(s)
}

fn scaling(s: &mut String, m: &Measured) -> Result<()> {
    writeln!(s, "### Scaling: parallelism {SCALING_PARALLELISM}, every edge forward (one chain per slice; no record leaves its process)\n")?;
    writeln!(
        s,
        "| processes | wall | wall, shortest–longest run | records/s | CPU s | start-up job: wall | records/s once running | wall against one process |"
    )?;
    writeln!(s, "|---|---|---|---|---|---|---|---|")?;
    let alone = m.scaling[0];
    for p in &m.scaling {
        let running = p.running_records_per_second().map(|r| format!("{:.1} M", r / 1e6)).unwrap_or_else(|| "—".into());
        writeln!(
            s,
            "| {} | {:.2} s | {:.2}–{:.2} s | {:.1} M | {:.2} | {:.2} s | {running} | {:.2}x |",
            p.config.processes(),
            p.full.wall,
            p.full.wall_range.0,
            p.full.wall_range.1,
            p.records_per_second() / 1e6,
            p.full.cpu,
            p.startup.wall,
            p.full.wall / alone.full.wall,
        )?;
    }
    writeln!(s, "\n\"Records/s once running\" is N over (wall − the start-up job's wall).\n")?;
    for p in &m.scaling[1..] {
        writeln!(
            s,
            "- {}: wall {} one process's ({}), CPU {} one process's; start-up job {:.2} s against {:.2} s.",
            p.config.processes(),
            compared(p.full.wall, alone.full.wall, "longer", "shorter"),
            against_runs(p.full.wall, alone.full.wall_range),
            compared(p.full.cpu, alone.full.cpu, "more", "less"),
            p.startup.wall,
            alone.startup.wall,
        )?;
    }
    writeln!(s)?;
    Ok(())
}

/// The hop's derived figures: what the batches that cross processes cost.
struct Hop {
    extra_wall: f64,
    extra_cpu: f64,
    /// Of the start-up job: the fixed part of the extra.
    fixed_cpu: f64,
    crossing: f64,
    fixed_crossing: f64,
}

impl Hop {
    fn new(m: &Measured) -> Hop {
        let [alone, split] = m.hop;
        // Each generator subtask emits its share in full batches; rebalance sends every other
        // one of them to the count subtask on the other worker.
        let crossing = |records: u64| records as f64 / f64::from(m.batch) / 2.0;
        Hop {
            extra_wall: split.full.wall - alone.full.wall,
            extra_cpu: split.full.cpu - alone.full.cpu,
            fixed_cpu: split.startup.cpu - alone.startup.cpu,
            crossing: crossing(RECORDS),
            fixed_crossing: crossing(m.startup_records),
        }
    }

    /// Extra CPU per crossing batch, µs, all of the extra.
    fn cpu_per_batch_us(&self) -> f64 {
        self.extra_cpu / self.crossing * 1e6
    }

    /// Extra CPU per crossing batch, µs, less the start-up job's extra.
    fn marginal_cpu_per_batch_us(&self) -> f64 {
        (self.extra_cpu - self.fixed_cpu) / (self.crossing - self.fixed_crossing) * 1e6
    }
}

fn hop(s: &mut String, m: &Measured) -> Result<()> {
    let [alone, split] = m.hop;
    writeln!(s, "### A network hop: parallelism {HOP_PARALLELISM}, numbers → count `rebalance`\n")?;
    writeln!(
        s,
        "The rebalance edge cuts the chain after the generator (count → discard stays chained). Rebalance deals each \
         generator subtask's batches round-robin over the {HOP_PARALLELISM} count subtasks; on {HOP_WORKERS} workers one \
         of them is on the sender's worker and one on the other, so half the batches cross a gRPC stream between processes: \
         N / {} / 2 = {:.0} batches. In one process the same edge is an in-memory channel.\n",
        m.batch,
        Hop::new(m).crossing
    )?;
    writeln!(s, "| processes | wall | wall, shortest–longest run | CPU s | start-up job: wall | start-up job: CPU s |")?;
    writeln!(s, "|---|---|---|---|---|---|")?;
    for p in [alone, split] {
        let (short, long) = p.full.wall_range;
        writeln!(
            s,
            "| {} | {:.2} s | {short:.2}–{long:.2} s | {:.2} | {:.2} s | {:.2} |",
            p.config.processes(),
            p.full.wall,
            p.full.cpu,
            p.startup.wall,
            p.startup.cpu
        )?;
    }
    let h = Hop::new(m);
    writeln!(
        s,
        "\n- {HOP_WORKERS} workers against one process: {} s wall, {} CPU s (CPU {} one process's).",
        signed(h.extra_wall),
        signed(h.extra_cpu),
        compared(split.full.cpu, alone.full.cpu, "more", "less")
    )?;
    writeln!(
        s,
        "- Extra CPU per crossing batch: {:.1} µs ({:.0} ns per crossing record, {:.0} ns per record of the job); \
         extra wall per crossing batch: {:.1} µs.",
        h.cpu_per_batch_us(),
        h.extra_cpu / (h.crossing * f64::from(m.batch)) * 1e9,
        h.extra_cpu / RECORDS as f64 * 1e9,
        h.extra_wall / h.crossing * 1e6,
    )?;
    writeln!(
        s,
        "- The start-up job's extra CPU on {HOP_WORKERS} workers is {} s (spawning and attaching workers, loading the \
         modules twice); less that fixed part, the extra CPU per crossing batch is {:.1} µs.\n",
        signed(h.fixed_cpu),
        h.marginal_cpu_per_batch_us(),
    )?;
    Ok(())
}

fn cores(s: &mut String, m: &Measured) -> Result<()> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let most = SCALING_WORKERS.iter().flatten().max().copied().unwrap_or(1) as usize;
    writeln!(
        s,
        "**How to read this.** This machine has {cores} cores. A `wasmflow` process runs its subtasks on a tokio runtime \
         with one thread per core, so one process already has {cores} threads for the {SCALING_PARALLELISM} slices, and \
         every worker brings its own {cores}: with {most} workers, {} runtime threads (and the job manager's) share {cores} \
         cores. More processes cannot add compute here: what `--workers` gains or loses against one process on this \
         machine is what distribution costs (more processes to start, each loading the modules, the control streams, more \
         threads for the OS to schedule) and how the scheduler shares the cores, not the speed-up workers on separate \
         machines would give, which these numbers do not measure.{} The hop figures are the price of a batch crossing processes on one \
         machine (encoding, HTTP/2 over loopback, decoding); its wall time \
         also depends on whether the two workers' extra work found an idle core. The 1-minute load average was {:.2} when \
         this part started and {:.2} when it ended: other work on the machine (builds, tests) shares the cores, so the \
         runs are noisy and the medians, not single runs, are reported.\n",
        most * cores,
        faster_note(m),
        m.load.0,
        m.load.1,
    )?;
    Ok(())
}

/// For the scaling configurations whose median wall time is shorter than one process's beyond
/// [`NOISE`]: a reminder that they had no more cores, so the gain is not added compute.
fn faster_note(m: &Measured) -> String {
    let alone = m.scaling[0].full.wall;
    let faster: Vec<String> = m.scaling[1..].iter().filter(|p| p.full.wall < alone * (1.0 - NOISE)).map(|p| p.config.processes()).collect();
    if faster.is_empty() {
        return String::new();
    }
    format!(
        " The shorter median of {} came with no more cores than one process had: it is not compute the workers \
         added, and the shortest–longest column shows how far noise alone moves the runs here.",
        faster.join(" and "),
    )
}
