//! `wasmflow run JOB.toml`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use tokio::sync::mpsc;

use super::output::status;
use super::{Exit, WithExit};
use crate::api;
use crate::checkpoint::{ControlFile, Location};
use crate::engine::Engine;
use crate::job::JobSpec;
use crate::runtime::{RestoreFrom, RunOptions, run_job};
use crate::status::JobStatus;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file.
    pub job: PathBuf,
    /// Resume from the newest complete checkpoint in the job's checkpoint directory.
    #[arg(long, conflicts_with_all = ["from_savepoint", "resume"])]
    pub from_latest_checkpoint: bool,
    /// Resume where the job left off if it ran before (the savepoint it was stopped with, or
    /// its newest checkpoint), else start fresh: for supervisors that restart the process.
    #[arg(long, conflicts_with = "from_savepoint")]
    pub resume: bool,
    /// Restore from a savepoint (or checkpoint): a directory or an object-store prefix
    /// (`s3://bucket/prefix/savepoint-<id>`).
    #[arg(long, value_name = "DIR|URL")]
    pub from_savepoint: Option<Location>,
    /// Override parallelism per operator: `OP=N[,OP=N]` (rescaling on restore).
    #[arg(long, value_delimiter = ',', value_name = "OP=N")]
    pub parallelism: Vec<String>,
    /// Restore even if the savepoint has state for operators the job no longer has.
    #[arg(long)]
    pub allow_non_restored_state: bool,
    /// The HTTP API's address (API, dashboard, metrics); default from the job file
    /// (`[job] control-address`), else 127.0.0.1:0 (a free port on loopback).
    #[arg(long)]
    pub control_address: Option<String>,
    #[command(flatten)]
    pub overrides: super::JobOverrides,
    /// Print the job's final report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Run the subtasks in N worker processes (subtask i of every operator on worker i mod N)
    /// instead of in this one, which stays the job manager.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub workers: Option<u32>,
    /// Where workers attach to this job manager (with --workers).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0", requires = "workers")]
    pub cluster_listen: std::net::SocketAddr,
    /// Wait for the N workers to be started elsewhere (`wasmflow worker --job-manager
    /// HOST:PORT`, e.g. by Kubernetes) instead of starting them; both sides read the shared
    /// secret from WASMFLOW_CLUSTER_SECRET.
    #[arg(long, requires = "workers")]
    pub external_workers: bool,
}

/// `wasmflow worker`: runs the subtasks a job manager gives it.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The job manager's cluster address (`wasmflow run --workers N --cluster-listen`).
    #[arg(long, value_name = "HOST:PORT")]
    pub job_manager: String,
    /// Where this worker's data plane listens.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    pub listen: std::net::SocketAddr,
    /// The address other workers reach this one at (required when listening on 0.0.0.0).
    #[arg(long, value_name = "HOST:PORT")]
    pub advertise: Option<String>,
    /// Exit when the job manager goes away, instead of waiting for the next one.
    #[arg(long)]
    pub once: bool,
}

/// Runs a worker until its job manager goes away. Its secret comes from
/// WASMFLOW_CLUSTER_SECRET (a job manager that starts its workers sets it).
pub fn worker(args: WorkerArgs) -> Result<()> {
    let secret = crate::cluster::Secret::from_env().exit_code(Exit::Usage)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(crate::cluster::worker::run(crate::cluster::worker::WorkerOptions {
        job_manager: args.job_manager,
        listen: args.listen,
        advertise: args.advertise,
        secret,
        once: args.once,
    }))
}

/// Parses `OP=N` overrides.
pub fn parse_parallelism(items: &[String]) -> Result<BTreeMap<String, u32>> {
    let mut out = BTreeMap::new();
    for item in items {
        let Some((op, n)) = item.split_once('=') else { bail!("--parallelism takes OP=N, got '{item}'") };
        let n: u32 = n.parse().with_context(|| format!("--parallelism {item}: '{n}' is not a number"))?;
        if n == 0 || n > crate::job::MAX_PARALLELISM {
            bail!("--parallelism {item}: parallelism must be between 1 and {}", crate::job::MAX_PARALLELISM);
        }
        out.insert(op.to_string(), n);
    }
    Ok(out)
}

pub fn run(args: RunArgs) -> Result<()> {
    let parallelism = parse_parallelism(&args.parallelism)?;
    let job = args.overrides.load(&args.job)?.with_parallelism(&parallelism).exit_code(Exit::InvalidInput)?;
    // Workers started elsewhere share a secret with this job manager; its own get a new one.
    let secret = match (args.workers, args.external_workers) {
        (Some(_), true) => Some(crate::cluster::Secret::from_env().exit_code(Exit::Usage)?),
        (Some(_), false) => Some(crate::cluster::Secret::generate()?),
        (None, _) => None,
    };
    let restore = match (args.from_latest_checkpoint, args.resume) {
        (true, _) => Some(RestoreFrom::LatestCheckpoint),
        (_, true) => Some(RestoreFrom::Resume),
        _ => args.from_savepoint.clone().map(RestoreFrom::Savepoint),
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let engine = Engine::new()?;
        let (tx, rx) = mpsc::channel(8);
        let address = args.control_address.clone().or(job.job.control_address.clone()).unwrap_or_else(|| "127.0.0.1:0".into());
        let storage = crate::runtime::job::job_storage(&job)?;
        // Before `_control` is written: a second job on the same storage must not overwrite it.
        let lease = storage.take_over()?;
        let token = api::new_token()?;
        let policy = api::SavepointPolicy { root: job.savepoint_location()?, allow_any_target: job.savepoints.allow_any_target };
        policy.create_root()?;
        let status = JobStatus::new(&job);
        let metrics = Arc::new(crate::metrics::JobMetrics::new(job.job.name.as_deref().unwrap_or_default()));
        let state =
            api::ApiState { token: token.as_str().into(), policy: Arc::new(policy), jobs: tx.clone(), status: status.clone(), metrics: metrics.clone() };
        let server = api::serve(&address, state).await?;
        let local = server.address;
        storage.publish_control(&ControlFile { address: local.to_string(), token })?;
        status!("job '{}': dashboard and API at http://{local}/", job.job.name.as_deref().unwrap_or("unnamed"));
        status!("{}", describe_tasks(&job));
        let workers = match (args.workers, secret) {
            (Some(n), Some(secret)) => {
                let text = JobSpec::effective_text(&args.job, &args.overrides.overrides()?, &parallelism)?;
                let spawn = if args.external_workers { None } else { Some(own_executable()?) };
                let format = if super::log_format() == super::LogFormat::Json { "json" } else { "text" };
                let worker_env = vec![("WASMFLOW_LOG_FORMAT".to_string(), format.to_string())];
                let options = crate::cluster::ClusterOptions { workers: n, listen: args.cluster_listen, spawn, secret, worker_env };
                let pool = crate::cluster::WorkerPool::start(options, args.job.display().to_string(), text).await?;
                status!("{n} worker(s) attach at {}{}", pool.address, if args.external_workers { " (waiting for them)" } else { "" });
                Some(pool)
            }
            _ => None,
        };
        let progress = tokio::spawn(show_progress(metrics.clone()));
        // Ctrl-C / SIGTERM stop the job cleanly (like `wasmflow stop`).
        let stopper = tx.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            status!("stopping");
            let (reply, _) = tokio::sync::oneshot::channel();
            let _ = stopper.send(crate::runtime::job::ControlRequest::Stop { savepoint: None, reply }).await;
        });
        let opts = RunOptions {
            restore,
            allow_non_restored_state: args.allow_non_restored_state,
            control: Some(rx),
            metrics: Some(metrics),
            storage: Some((storage.clone(), lease)),
            status: Some(status),
            workers,
            ..Default::default()
        };
        let result = run_job(&engine, &job, opts).await;
        progress.abort();
        server.drain(Duration::from_secs(2)).await;
        storage.remove_control();
        super::output::finish_run(&job, result, args.json)
    })
}

/// This very executable, to start workers with: `/proc/self/exe` stays this binary even if the
/// file was replaced since (an upgrade in place), so workers never run another version.
fn own_executable() -> Result<PathBuf> {
    let proc = PathBuf::from("/proc/self/exe");
    if proc.exists() {
        return Ok(proc);
    }
    std::env::current_exe().context("cannot find the wasmflow executable to start workers")
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Records in/out per operator and their rate, on a terminal only.
async fn show_progress(metrics: Arc<crate::metrics::JobMetrics>) {
    if !std::io::stderr().is_terminal() || super::log_format() == super::LogFormat::Json {
        return;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(indicatif::ProgressStyle::with_template("{spinner} {msg}").expect("template"));
    let mut last: BTreeMap<String, (u64, Instant)> = BTreeMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let snapshot: Vec<(String, u64, u64)> = metrics.records();
        let mut parts = Vec::new();
        for (id, rin, rout) in snapshot {
            let moved = rin.max(rout);
            let (prev, at) = last.get(&id).copied().unwrap_or((moved, Instant::now()));
            let rate = (moved - prev.min(moved)) as f64 / at.elapsed().as_secs_f64().max(0.001);
            last.insert(id.clone(), (moved, Instant::now()));
            parts.push(format!("{id}: in {rin} out {rout} ({rate:.0}/s)"));
        }
        bar.set_message(parts.join(" | "));
        bar.tick();
    }
}

/// The tasks the job runs, one per chain and subtask index: `tasks: numbers -> upper (x2), …`.
fn describe_tasks(job: &JobSpec) -> String {
    let chains: Vec<String> = job.chains().iter().map(|c| format!("{c} (x{})", job.operator(c.head()).map_or(0, |o| o.parallelism))).collect();
    let note = if job.job.chaining() { "" } else { " (chaining off)" };
    format!("tasks{note}: {}", chains.join(", "))
}
