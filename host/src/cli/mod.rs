//! The `wasmflow` command line.

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
