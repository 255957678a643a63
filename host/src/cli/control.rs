//! `wasmflow savepoint`, `wasmflow stop` and `wasmflow status`: calls to a running job's HTTP API
//! ([`crate::api`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;

use super::{Exit, JobOverrides};
use crate::api::client::{Client, Unreachable};
use crate::api::routes::{JobReply, StopRequest};
use crate::checkpoint::Location;
use crate::job::JobSpec;
use crate::status::view::CheckpointStatus;

/// Which job to talk to.
#[derive(Debug, Args)]
pub struct Target {
    /// The job file of the running job (its API address and token are read from `<checkpoint dir>/_control`).
    #[arg(long, conflicts_with = "address")]
    pub job: Option<PathBuf>,
    /// The API address printed when the job started (`host:port` or `http://host:port`).
    #[arg(long)]
    pub address: Option<String>,
    /// The job's token (from `<checkpoint dir>/_control`), with --address; needed by savepoint and stop.
    #[arg(long, requires = "address")]
    pub token: Option<String>,
    /// The same overrides the job was run with, if they moved its checkpoint or savepoint directory.
    #[command(flatten)]
    pub overrides: JobOverrides,
}

#[derive(Debug, Args)]
pub struct SavepointArgs {
    #[command(flatten)]
    pub target: Target,
    /// Directory or object-store prefix (`s3://bucket/prefix`) to write `savepoint-<id>` into
    /// (default: the job file's `[savepoints] dir`, or the job's own with --address).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Print the reply as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub target: Target,
    /// Take a final savepoint (into DIR, a directory or `s3://bucket/prefix`, if given) before stopping.
    // A `String`, not a `PathBuf`: clap's path parser refuses the empty value `--savepoint`
    // alone stands for, so the bare flag used to be a usage error.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "")]
    pub savepoint: Option<String>,
    /// Print the reply as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: Target,
    /// Print `{"job": …, "checkpoints": …, "exceptions": …}` as the API returns them.
    #[arg(long)]
    pub json: bool,
}

/// The client for the job, and its job file if named.
fn connect(t: &Target, needs_token: bool) -> Result<(Client, Option<JobSpec>)> {
    if let Some(address) = &t.address {
        if needs_token && t.token.is_none() {
            bail!("this changes the job: give its token with --token (it is in <checkpoint dir>/_control), or name the job with --job JOB.toml");
        }
        return Ok((Client::new(address, t.token.clone()), None));
    }
    let Some(job_path) = &t.job else { bail!("name the job: --job JOB.toml, or --address HOST:PORT [--token TOKEN]") };
    let job = t.overrides.load(job_path)?;
    let storage = crate::runtime::job::job_storage(&job)?;
    let control = storage.read_control()?;
    Ok((Client::new(&control.address, Some(control.token)), Some(job)))
}

/// The savepoint target to send: the one given (a local directory is created here, as the
/// user who asks), the job file's, or none (the job's own default).
fn savepoint_dir(job: Option<&JobSpec>, given: Option<PathBuf>) -> Result<Option<String>> {
    let location = match (given.filter(|p| !p.as_os_str().is_empty()), job) {
        (Some(d), _) => Location::resolve(&d, Path::new("."))?,
        (None, Some(j)) => j.savepoint_location()?,
        (None, None) => return Ok(None),
    };
    Ok(Some(match location {
        Location::Local(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
            dir.canonicalize()?.display().to_string()
        }
        object => object.to_string(),
    }))
}

/// A job that cannot be reached has its own exit code (docs/cli.md).
fn reach<T>(result: Result<T>) -> Result<T> {
    result.map_err(|e| if e.downcast_ref::<Unreachable>().is_some() { Exit::Unreachable.wrap(e) } else { e })
}

pub fn savepoint(args: SavepointArgs) -> Result<()> {
    let (client, job) = connect(&args.target, true)?;
    let reply = reach(client.savepoint(savepoint_dir(job.as_ref(), args.dir)?))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        println!("{}", reply.path);
    }
    Ok(())
}

pub fn stop(args: StopArgs) -> Result<()> {
    let (client, job) = connect(&args.target, true)?;
    let request = match args.savepoint {
        Some(dir) => StopRequest { savepoint: true, target: savepoint_dir(job.as_ref(), Some(PathBuf::from(dir)))? },
        None => StopRequest::default(),
    };
    let reply = reach(client.stop(&request))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reply)?);
    } else {
        match reply.savepoint {
            Some(p) => println!("stopped; savepoint {p}"),
            None => println!("stopped"),
        }
    }
    Ok(())
}

pub fn status(args: StatusArgs) -> Result<()> {
    let (client, _) = connect(&args.target, false)?;
    let (reply, checkpoints, exceptions) = (reach(client.job())?, reach(client.checkpoints())?, reach(client.exceptions())?);
    if args.json {
        let all = serde_json::json!({ "job": reply, "checkpoints": checkpoints, "exceptions": exceptions });
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    print!("{}", render(&reply));
    let last = checkpoints.history.iter().find(|c| c.status == CheckpointStatus::Completed);
    println!(
        "checkpoints: {} completed, {} failed, {} in progress{}",
        checkpoints.completed,
        checkpoints.failed,
        checkpoints.in_progress,
        last.map(|c| format!("; last {} ({:?}) in {:.0} ms, {} bytes", c.id, c.kind, c.duration_ms.unwrap_or(0.0), c.total_bytes)).unwrap_or_default()
    );
    if let Some(e) = exceptions.exceptions.first() {
        println!("last failure (attempt {}, {} in all): {}", e.attempt, exceptions.total, e.message.lines().next().unwrap_or_default());
    }
    Ok(())
}

/// The job as a table: one row per operator, its numbers summed (records) or the highest
/// (times) over its subtasks.
fn render(reply: &JobReply) -> String {
    let job = &reply.job;
    let mut out = format!(
        "job '{}': {:?}, attempt {}, {} restart(s), last checkpoint {}\n",
        job.name,
        job.state,
        job.attempt,
        job.restarts,
        job.last_checkpoint.map(|c| c.to_string()).unwrap_or_else(|| "none".into())
    );
    let width = job.operators.iter().map(|o| o.id.len()).max().unwrap_or(8).max(8);
    out.push_str(&format!(
        "{:<width$}  {:>11}  {:<5}  {:>12}  {:>12}  {:>8}  {:>13}  TASK\n",
        "OPERATOR", "PARALLELISM", "KEYED", "RECORDS IN", "RECORDS OUT", "BUSY", "BACKPRESSURED"
    ));
    for o in &job.operators {
        let chain = job.chains.get(o.chain).map(|c| c.join(" -> ")).unwrap_or_default();
        let m = reply.metrics.iter().find(|m| m.operator == o.id);
        let (rin, rout) = m.map(|m| m.records()).unwrap_or_default();
        let most = |f: fn(&crate::metrics::SubtaskMetricsView) -> f64| m.map(|m| m.subtasks.iter().map(f).fold(0.0, f64::max)).unwrap_or(0.0);
        let (busy, pressured) = (most(|s| s.busy_ms_per_second), most(|s| s.back_pressured_ms_per_second));
        out.push_str(&format!(
            "{:<width$}  {:>11}  {:<5}  {rin:>12}  {rout:>12}  {:>5.0}ms/s  {:>8.0}ms/s  {chain}\n",
            o.id,
            o.parallelism,
            if o.keyed { "yes" } else { "no" },
            busy,
            pressured
        ));
    }
    out
}
