//! The `wasmflow` command line (docs/cli.md).

mod control;
pub mod exit;
mod output;
mod run;
mod validate;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use serde_json::json;

use crate::job::{JobSpec, Override, Overrides};
pub use exit::{Exit, WithExit};
pub use output::{LogFormat, log_format};

/// wasmflow: stream operators as sandboxed WebAssembly, with Flink's checkpoint semantics.
#[derive(Debug, Parser)]
#[command(name = "wasmflow", version, about, long_about = None)]
pub struct Cli {
    /// Format of the log on stderr: `text`, or `json` (one object a line). The filter is
    /// `WASMFLOW_LOG`, else `RUST_LOG` (e.g. `RUST_LOG=wasmflow_host=debug`), else `info`.
    #[arg(long, global = true, value_enum, env = "WASMFLOW_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job file.
    Run(run::RunArgs),
    /// Run subtasks for a job manager (`wasmflow run --workers N --external-workers`); both
    /// authenticate with the secret in WASMFLOW_CLUSTER_SECRET.
    Worker(run::WorkerArgs),
    /// Check a job file (`.toml`: schema, then the job's checks) or an operator module (any
    /// other file: the component against the contract, printing its imports and exports).
    Validate {
        /// A job file (`*.toml`) or a component `.wasm`.
        file: PathBuf,
        /// Capabilities to allow while checking a module (kafka, files).
        #[arg(long, value_delimiter = ',')]
        grant: Vec<String>,
        #[command(flatten)]
        overrides: JobOverrides,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema of job files (committed as docs/job.schema.json).
    Schema,
    /// Show a checkpoint or savepoint: every operator's and subtask's state.
    Inspect {
        /// The checkpoint or savepoint: a directory, or an object-store prefix (the client is
        /// configured by the AWS_* environment, e.g. AWS_ENDPOINT).
        #[arg(value_name = "DIR|URL")]
        dir: crate::checkpoint::Location,
        /// Print JSON (schema in the README).
        #[arg(long)]
        json: bool,
        /// Show what each subtask would restore at this parallelism: `OP=N[,OP=N]`.
        #[arg(long, value_delimiter = ',', value_name = "OP=N")]
        parallelism: Vec<String>,
    },
    /// Trigger a savepoint in a running job.
    Savepoint(control::SavepointArgs),
    /// Stop a running job, optionally with a final savepoint.
    Stop(control::StopArgs),
    /// Show a running job: state, operators, checkpoints, last failure.
    Status(control::StatusArgs),
    /// Scaffold a new operator crate that builds and passes its tests right away.
    New {
        /// Crate name (also the directory created).
        name: String,
        /// What it is.
        #[arg(long, value_enum, default_value = "map")]
        kind: crate::scaffold::Kind,
        /// Where to create it (default: the current directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The guest-sdk directory to depend on (default: $WASMFLOW_SDK, else the checkout this
        /// wasmflow was built in).
        #[arg(long)]
        sdk: Option<PathBuf>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Build an operator crate to a validated component `.wasm`.
    Build {
        /// The operator crate (default: the current directory).
        dir: Option<PathBuf>,
        /// Print the result as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script: `wasmflow completions bash > /etc/bash_completion.d/wasmflow`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), or with --dir write one page per command there.
    Man {
        /// Write `wasmflow.1`, `wasmflow-run.1`, ... into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Overrides of job-file values, for every command that loads a job file (flatten it:
/// `#[command(flatten)] overrides: JobOverrides`). `WASMFLOW__*` variables apply too, under
/// `--set`: file < environment < `--set`.
#[derive(Clone, Debug, Default, Args)]
pub struct JobOverrides {
    /// Override a job-file value, e.g. `checkpoints.interval-ms=500`, `job.name=x`,
    /// `operators.<id>.parallelism=2` (repeatable; the value is TOML, else a string).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub set: Vec<Override>,
}

fn parse_set(arg: &str) -> std::result::Result<Override, String> {
    Override::parse_set(arg).map_err(|e| format!("{e:#}"))
}

impl JobOverrides {
    /// The environment's `WASMFLOW__*` overrides, then `--set`'s.
    pub fn overrides(&self) -> Result<Overrides> {
        Overrides::from_env_and(&self.set).exit_code(Exit::Usage)
    }

    /// Loads the job file at `path` with these overrides ([`JobSpec::load_with`]); an invalid
    /// job ends the process with [`Exit::InvalidInput`].
    pub fn load(&self, path: &Path) -> Result<JobSpec> {
        let overrides = self.overrides()?;
        JobSpec::load_with(path, &overrides).exit_code(Exit::InvalidInput)
    }
}

/// Parses the command line, sets up logging, runs the command; returns the exit status.
pub fn main() -> std::process::ExitCode {
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    // A worker's log goes to its job manager's stderr, among the others': name the worker.
    let prefix = matches!(cli.command, Command::Worker(_)).then(|| format!("worker {}: ", std::process::id()));
    output::init_logging(cli.log_format, prefix);
    match dispatch(cli.command) {
        Ok(()) => Exit::Success.into(),
        // `wasmflow man | head`: the reader left, nothing to report.
        Err(e) if e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) => Exit::Error.into(),
        Err(e) => {
            let exit = Exit::of(&e);
            output::report_error(&e, exit);
            exit.into()
        }
    }
}

fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => run::run(args),
        Command::Worker(args) => run::worker(args),
        Command::Validate { file, grant, overrides, json } => validate::validate(&file, &grant, &overrides, json),
        Command::Schema => {
            print!("{}", crate::job::schema::job_schema_text());
            Ok(())
        }
        Command::Build { dir, json } => build(dir, json),
        Command::New { name, kind, dir, sdk, json } => {
            let parent = dir.unwrap_or_else(|| PathBuf::from("."));
            let path = crate::scaffold::new_operator(&name, kind, &parent, &crate::scaffold::find_sdk(sdk.as_deref())?)?;
            let kind = kind.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
            if json {
                output::print_json(&json!({ "name": name, "kind": kind, "path": path }));
            } else {
                println!("created {} ({kind}); next: cd {} && cargo test && wasmflow build", path.display(), path.display());
            }
            Ok(())
        }
        Command::Inspect { dir, json, parallelism } => inspect(&dir, json, &parallelism),
        Command::Savepoint(args) => control::savepoint(args),
        Command::Stop(args) => control::stop(args),
        Command::Status(args) => control::status(args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "wasmflow", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => man(dir.as_deref()),
    }
}

fn man(dir: Option<&Path>) -> Result<()> {
    use anyhow::Context;
    let command = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(command, dir).with_context(|| format!("cannot write man pages to {}", dir.display()))?;
            println!("{}", dir.join("wasmflow.1").display());
        }
        None => clap_mangen::Man::new(command).render(&mut std::io::stdout())?,
    }
    Ok(())
}

fn build(dir: Option<PathBuf>, json: bool) -> Result<()> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    let built = crate::build::build_operator(&dir)?;
    // A component that does not load is not a build result: validate it like `wasmflow validate`.
    let engine = crate::engine::Engine::new()?;
    let all = [crate::engine::Capability::Kafka, crate::engine::Capability::Files].into_iter().collect();
    crate::engine::OperatorModule::load(&engine, &built.path, &all)?;
    if json {
        output::print_json(&json!({ "package": built.package, "path": built.path, "size": built.size }));
    } else {
        println!("{}: {} ({} KiB)", built.package, built.path.display(), built.size.div_ceil(1024));
    }
    Ok(())
}

fn inspect(location: &crate::checkpoint::Location, json: bool, parallelism: &[String]) -> Result<()> {
    let checkpoint = crate::checkpoint::load_location(location, &Default::default())?;
    let view = if parallelism.is_empty() {
        crate::inspect::describe(&checkpoint)
    } else {
        crate::inspect::preview(&checkpoint, &run::parse_parallelism(parallelism)?)?
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
    } else {
        print!("{}", crate::inspect::render_text(&view));
    }
    Ok(())
}
