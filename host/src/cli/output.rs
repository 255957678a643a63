//! What the command line writes: the log on stderr (text or JSON lines), status lines, errors,
//! and JSON results on stdout.

use std::sync::OnceLock;

use super::Exit;

/// `--log-format`
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines (coloured at a terminal unless NO_COLOR is set).
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `message` and the event's fields.
    Json,
}

static FORMAT: OnceLock<LogFormat> = OnceLock::new();

/// The log format this process was started with.
pub fn log_format() -> LogFormat {
    FORMAT.get().copied().unwrap_or_default()
}

/// The default filter when neither `WASMFLOW_LOG` nor `RUST_LOG` is set.
const DEFAULT_FILTER: &str = "info,cranelift=warn,wasmtime=warn";

/// Installs the log subscriber: stderr, filtered by `WASMFLOW_LOG`, else `RUST_LOG`, else
/// [`DEFAULT_FILTER`]. Text lines start with `prefix` if given: a worker's lines say which worker
/// wrote them (its job manager's stderr carries them all).
pub(super) fn init_logging(format: LogFormat, prefix: Option<String>) {
    let _ = FORMAT.set(format);
    let filter =
        ["WASMFLOW_LOG", "RUST_LOG"].into_iter().find_map(|var| tracing_subscriber::EnvFilter::try_from_env(var).ok()).unwrap_or_else(|| DEFAULT_FILTER.into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(move || Prefixed { prefix: prefix.clone() });
    match format {
        LogFormat::Text => {
            // Colour only for a person at a terminal: a log file or pipe gets plain text, and
            // NO_COLOR (https://no-color.org) turns it off everywhere.
            let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init();
        }
        // JSON lines stay JSON: no prefix.
        LogFormat::Json => builder.with_writer(std::io::stderr).json().flatten_event(true).with_current_span(false).with_span_list(false).init(),
    }
}

/// Stderr, with a prefix before each event (the formatter writes an event in one call).
struct Prefixed {
    prefix: Option<String>,
}

impl std::io::Write for Prefixed {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_all(buf)?;
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(buf.len() + 32);
        if let Some(p) = &self.prefix {
            line.extend_from_slice(p.as_bytes());
        }
        line.extend_from_slice(buf);
        std::io::stderr().write_all(&line)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// A status line of the command itself (`wasmflow: job 'x' ...`): plain on stderr, or a log
/// event of target `wasmflow` with `--log-format json`, so that stderr stays one format.
pub fn write_status(message: std::fmt::Arguments<'_>) {
    match log_format() {
        LogFormat::Text => eprintln!("wasmflow: {message}"),
        LogFormat::Json => tracing::info!(target: "wasmflow", "{message}"),
    }
}

/// `status!("job {} stopped", name)`: see [`write_status`].
macro_rules! status {
    ($($arg:tt)*) => { $crate::cli::output::write_status(format_args!($($arg)*)) };
}
pub(crate) use status;

/// The error a command ended with, on stderr: `error: ...`, or a JSON log event with the exit code.
pub(super) fn report_error(e: &anyhow::Error, exit: Exit) {
    match log_format() {
        LogFormat::Text => eprintln!("error: {e:#}"),
        LogFormat::Json => tracing::error!(target: "wasmflow", exit_code = exit.code(), "{e:#}"),
    }
}

/// A command's JSON result on stdout, one line.
pub fn print_json(value: &serde_json::Value) {
    println!("{value}");
}

/// The end of `wasmflow run`: the status line (`job finished (3 checkpoints completed, ...)`), with
/// `--json` also the report on stdout; a failed job ends with [`Exit::JobFailed`].
pub(super) fn finish_run(job: &crate::job::JobSpec, result: anyhow::Result<crate::runtime::job::JobReport>, json: bool) -> anyhow::Result<()> {
    let name = job.job.name.as_deref().unwrap_or("unnamed");
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            if json {
                print_json(&serde_json::json!({ "job": name, "status": "failed", "error": format!("{e:#}") }));
            }
            return Err(Exit::JobFailed.wrap(e));
        }
    };
    status!(
        "job {} ({} checkpoints completed, {} restarts{})",
        if report.stopped { "stopped" } else { "finished" },
        report.completed_checkpoints.len(),
        report.restarts,
        report.savepoint.as_ref().map(|p| format!(", savepoint {p}")).unwrap_or_default()
    );
    if json {
        print_json(&serde_json::json!({
            "job": name,
            "status": if report.stopped { "stopped" } else { "finished" },
            "completed_checkpoints": report.completed_checkpoints,
            "savepoints": report.savepoints,
            "restarts": report.restarts,
            "savepoint": report.savepoint,
        }));
    }
    Ok(())
}
