//! The `wasmflow` binary.

fn main() -> std::process::ExitCode {
    // Colour only for a person at a terminal: a log file or pipe gets plain text, and NO_COLOR
    // (https://no-color.org) turns it off everywhere.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WASMFLOW_LOG").unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into()))
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    match wasmflow_host::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
