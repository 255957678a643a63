//! The `wasmflow` binary.

fn main() -> std::process::ExitCode {
    wasmflow_host::cli::main()
}
