//! The `wasmflow` command line.

mod control;
mod run;
mod validate;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// wasmflow: stream operators as sandboxed WebAssembly, with Flink's checkpoint semantics.
#[derive(Debug, Parser)]
#[command(name = "wasmflow", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job file.
    Run(run::RunArgs),
    /// Check a module against the contract and print what it imports and exports.
    Validate {
        /// The component `.wasm` file.
        module: PathBuf,
        /// Capabilities to allow while checking (kafka, files).
        #[arg(long, value_delimiter = ',')]
        grant: Vec<String>,
    },
    /// Show a checkpoint or savepoint: every operator's and subtask's state.
    Inspect {
        /// The checkpoint or savepoint directory.
        dir: PathBuf,
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
    },
    /// Build an operator crate to a validated component `.wasm`.
    Build {
        /// The operator crate (default: the current directory).
        dir: Option<PathBuf>,
    },
}

/// Parses the command line and runs the command.
pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate { module, grant } => validate::validate(&module, &grant),
        Command::Build { dir } => build(dir),
        Command::New { name, kind, dir, sdk } => {
            let parent = dir.unwrap_or_else(|| PathBuf::from("."));
            let path = crate::scaffold::new_operator(&name, kind, &parent, &crate::scaffold::find_sdk(sdk.as_deref())?)?;
            println!("created {} ({kind:?}); next: cd {} && cargo test && wasmflow build", path.display(), path.display());
            Ok(())
        }
        Command::Inspect { dir, json, parallelism } => inspect(&dir, json, &parallelism),
        Command::Savepoint(args) => control::savepoint(args),
        Command::Stop(args) => control::stop(args),
        Command::Status(args) => control::status(args),
    }
}

fn build(dir: Option<PathBuf>) -> Result<()> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    let built = crate::build::build_operator(&dir)?;
    // A component that does not load is not a build result: validate it like `wasmflow validate`.
    let engine = crate::engine::Engine::new()?;
    let all = [crate::engine::Capability::Kafka, crate::engine::Capability::Files].into_iter().collect();
    crate::engine::OperatorModule::load(&engine, &built.path, &all)?;
    println!("{}: {} ({} KiB)", built.package, built.path.display(), built.size.div_ceil(1024));
    Ok(())
}

fn inspect(dir: &std::path::Path, json: bool, parallelism: &[String]) -> Result<()> {
    let checkpoint = crate::checkpoint::load_dir(dir)?;
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
