//! The `wasmflow` binary.

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("WASMFLOW_LOG").unwrap_or_else(|_| "info,cranelift=warn,wasmtime=warn".into()))
        .with_writer(std::io::stderr)
        .init();
    match wasmflow_host::cli::main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
