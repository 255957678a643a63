//! `wasmflow savepoint` and `wasmflow stop`: talk to a running job's control endpoint.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::checkpoint::CheckpointStorage;
use crate::job::JobSpec;
use crate::runtime::control::{Command, Request, request};

/// Which job to talk to.
#[derive(Debug, Args)]
pub struct Target {
    /// The job file of the running job (its endpoint address is read from `<checkpoint dir>/_control`).
    #[arg(long, conflicts_with = "address")]
    pub job: Option<PathBuf>,
    /// The control endpoint address printed when the job started (with --token).
    #[arg(long, requires = "token")]
    pub address: Option<String>,
    /// The job's control token (from `<checkpoint dir>/_control`), with --address.
    #[arg(long)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct SavepointArgs {
    #[command(flatten)]
    pub target: Target,
    /// Directory to write `savepoint-<id>` into (default: `savepoints` next to the job file, or
    /// the current directory with --address).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    #[command(flatten)]
    pub target: Target,
    /// Take a final savepoint into this directory before stopping.
    #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "")]
    pub savepoint: Option<PathBuf>,
}

/// The endpoint and token of the job, and its job file if named.
fn address(t: &Target) -> Result<(String, String, Option<JobSpec>)> {
    if let (Some(a), Some(token)) = (&t.address, &t.token) {
        return Ok((a.clone(), token.clone(), None));
    }
    let Some(job_path) = &t.job else { bail!("name the job: --job JOB.toml, or --address HOST:PORT --token TOKEN") };
    let job = JobSpec::load(job_path)?;
    let storage = crate::runtime::job::job_storage(&job)?;
    let control = storage.read_control()?;
    Ok((control.address, control.token, Some(job)))
}

fn default_dir(job: Option<&JobSpec>, given: Option<PathBuf>) -> Result<PathBuf> {
    let dir = match (given.filter(|p| !p.as_os_str().is_empty()), job) {
        (Some(d), _) => d,
        (None, Some(j)) => j.resolve(&j.savepoints.dir),
        (None, None) => std::env::current_dir()?,
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir.canonicalize()?)
}

fn send(addr: &str, token: String, command: Command) -> Result<serde_json::Value> {
    let req = Request { command, token };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reply = rt.block_on(request(addr, &req))?;
    if reply["ok"] != serde_json::Value::Bool(true) {
        bail!("the job refused: {}", reply["error"].as_str().unwrap_or("unknown error"));
    }
    Ok(reply)
}

pub fn savepoint(args: SavepointArgs) -> Result<()> {
    let (addr, token, job) = address(&args.target)?;
    let target = default_dir(job.as_ref(), args.dir)?;
    let reply = send(&addr, token, Command::Savepoint { target })?;
    println!("{}", reply["path"].as_str().unwrap_or_default());
    Ok(())
}

pub fn stop(args: StopArgs) -> Result<()> {
    let (addr, token, job) = address(&args.target)?;
    let savepoint = match args.savepoint {
        Some(dir) => Some(default_dir(job.as_ref(), Some(dir))?),
        None => None,
    };
    let reply = send(&addr, token, Command::Stop { savepoint })?;
    match reply["path"].as_str() {
        Some(p) => println!("stopped; savepoint {p}"),
        None => println!("stopped"),
    }
    Ok(())
}
