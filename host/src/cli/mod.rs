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
}

/// Parses the command line and runs the command.
pub fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Validate { module, grant } => validate::validate(&module, &grant),
    }
}
