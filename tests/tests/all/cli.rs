//! The command line's conventions (docs/cli.md), on the built binary: overrides of job-file
//! values, `validate JOB.toml`, `--json`, `--log-format json`, exit codes, completions, man page.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use wasmflow_tests::job::PipelineJob;
use wasmflow_tests::{committed_lines, data_and_counts, expected_records, wasmflow_bin};

/// `wasmflow ARGS` with no log settings inherited from the test's environment.
fn wasmflow(args: &[&str]) -> Command {
    let mut c = Command::new(wasmflow_bin());
    c.args(args);
    for var in ["WASMFLOW_LOG", "RUST_LOG", "WASMFLOW_LOG_FORMAT", "NO_COLOR"] {
        c.env_remove(var);
    }
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

fn show(o: &Output) -> String {
    format!("exit {:?}\nstdout:\n{}\nstderr:\n{}", o.status.code(), text(&o.stdout), text(&o.stderr))
}

/// A small bounded pipeline (generator → upper → counter → files) in `dir`.
fn small_job(dir: &Path) -> std::path::PathBuf {
    PipelineJob { count: 200, ..Default::default() }.write(dir)
}

#[test]
fn set_and_environment_override_the_job_file_and_run_json_reports() {
    let dir = tempfile::tempdir().unwrap();
    let job = small_job(dir.path());
    let out = wasmflow(&["run"])
        .arg(&job)
        .args(["--json", "--set", "operators.numbers.config={ count = 37 }", "--set", "job.name=from-set"])
        .env("WASMFLOW__JOB__NAME", "from-env")
        .env("WASMFLOW__CHECKPOINTS__INTERVAL_MS", "50")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    // The generator made 37 records, not the file's 200.
    let (data, _) = data_and_counts(&committed_lines(&dir.path().join("out")));
    assert_eq!(data, expected_records(37));
    // stdout is exactly one JSON object: the report; --set beat the environment for job.name.
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["job"], "from-set", "{report}");
    assert_eq!(report["status"], "finished", "{report}");
    assert_eq!(report["restarts"], 0, "{report}");
    assert!(!report["completed_checkpoints"].as_array().unwrap().is_empty(), "{report}");

    // Without --set, the environment's name.
    let out = wasmflow(&["run"]).arg(&job).arg("--json").env("WASMFLOW__JOB__NAME", "from-env").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert_eq!(serde_json::from_str::<Value>(&text(&out.stdout)).unwrap()["job"], "from-env");
}

#[test]
fn bad_overrides_name_themselves_and_set_the_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let job = small_job(dir.path());
    // A type mismatch: the job file is invalid as overridden (5).
    let out = wasmflow(&["run"]).arg(&job).args(["--set", "checkpoints.interval-ms=abc"]).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert!(text(&out.stderr).contains("error: --set checkpoints.interval-ms=abc: "), "{}", show(&out));
    // A path to no operator.
    let out = wasmflow(&["run"]).arg(&job).env("WASMFLOW__OPERATORS__NOPE__PARALLELISM", "2").output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert!(text(&out.stderr).contains("environment variable WASMFLOW__OPERATORS__NOPE__PARALLELISM: operators has no element 'nope'"), "{}", show(&out));
    // Not KEY=VALUE: a usage error (2), from clap.
    let out = wasmflow(&["run"]).arg(&job).args(["--set", "checkpoints"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("--set takes KEY=VALUE"), "{}", show(&out));
}

#[test]
fn validate_checks_job_files_against_the_schema_and_the_job_checks() {
    let dir = tempfile::tempdir().unwrap();
    let job = small_job(dir.path());
    let out = wasmflow(&["validate"]).arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text(&out.stdout).contains("valid job 'pipeline': numbers (x2), upper (x2), counter (x3), out (x2)"), "{}", show(&out));

    // Schema problems: every one listed, each with its key path.
    let good = std::fs::read_to_string(&job).unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, good.replace("interval-ms = 100", "interval-ms = \"abc\"").replace("batch-size = 64", "batch-size = 64\nbatchsize = 1")).unwrap();
    let out = wasmflow(&["validate"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("2 problems"), "{stderr}");
    assert!(stderr.contains(r#"/checkpoints/interval-ms: "abc" is not of type "integer""#), "{stderr}");
    assert!(stderr.contains("/job: Additional properties are not allowed ('batchsize' was unexpected)"), "{stderr}");
    // ... as JSON on stdout.
    let out = wasmflow(&["validate", "--json"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    let result: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(result["valid"], false);
    let paths: Vec<&str> = result["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["/checkpoints/interval-ms", "/job"]);
    // An override can mend it, as for `run`.
    let out = wasmflow(&["validate", "--set", "checkpoints.interval-ms=100", "--set", "job.batchsize=1"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "job.batchsize is still unknown: {}", show(&out));

    // Past the schema: the job's own checks.
    let unknown_edge = dir.path().join("edge.toml");
    std::fs::write(&unknown_edge, good.replace("to = \"out\"", "to = \"nowhere\"")).unwrap();
    let out = wasmflow(&["validate", "--json"]).arg(&unknown_edge).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    let result: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(result["errors"][0]["kind"], "check", "{result}");
    assert!(result["errors"][0]["message"].as_str().unwrap().contains("names operator 'nowhere', which is not in [[operators]]"), "{result}");
    // A module that is not there.
    let out = wasmflow(&["validate", "--set", "operators.out.module=missing.wasm"]).arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    assert!(text(&out.stderr).contains("operator 'out': module"), "{}", show(&out));

    // A module is still validated as before, with --json too.
    let module = wasmflow_tests::operator("counter");
    let out = wasmflow(&["validate", "--json"]).arg(&module).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let result: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!((result["kind"].as_str(), result["valid"].as_bool()), (Some("module"), Some(true)), "{result}");
    assert!(!result["exports"].as_array().unwrap().is_empty(), "{result}");
    let not_wasm = dir.path().join("x.wasm");
    std::fs::write(&not_wasm, b"not wasm").unwrap();
    assert_eq!(wasmflow(&["validate"]).arg(&not_wasm).output().unwrap().status.code(), Some(5));
    // Only the contract's capabilities can be granted; anything else is a usage error.
    let out = wasmflow(&["validate", "--grant", "kafka,network"]).arg(&module).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(text(&out.stderr).contains("unknown capability 'network' in --grant (known: kafka, files)"), "{}", show(&out));
}

#[test]
fn log_format_json_makes_every_stderr_line_a_json_object() {
    let dir = tempfile::tempdir().unwrap();
    let job = small_job(dir.path());
    let out = wasmflow(&["--log-format", "json", "run"]).arg(&job).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let lines: Vec<Value> = text(&out.stderr).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let messages: Vec<&str> = lines.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(messages.iter().any(|m| m.contains("dashboard and API at http://")), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("job finished")), "{messages:?}");
    assert!(lines.iter().all(|l| l["level"].is_string() && l["timestamp"].is_string()), "{lines:?}");

    // The environment variable, and the final error as an event with its exit code.
    let out = wasmflow(&["run"]).arg(&job).args(["--set", "job.batch-size=0"]).env("WASMFLOW_LOG_FORMAT", "json").output().unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", show(&out));
    let error: Value = serde_json::from_str(text(&out.stderr).lines().last().unwrap()).unwrap();
    assert_eq!(error["level"], "ERROR", "{error}");
    assert_eq!(error["exit_code"], 5, "{error}");
    assert!(error["message"].as_str().unwrap().contains("job.batch-size must be at least 1"), "{error}");
}

#[test]
fn schema_completions_and_man_page() {
    let out = wasmflow(&["schema"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let schema: Value = serde_json::from_str(&text(&out.stdout)).unwrap();
    assert_eq!(schema["title"], "wasmflow job file");
    assert!(schema["properties"]["operators"].is_object(), "{schema}");

    let out = wasmflow(&["completions", "bash"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let script = text(&out.stdout);
    assert!(script.contains("complete -F _wasmflow"), "{script}");
    assert!(script.contains("--set") && script.contains("validate"), "{script}");
    // It is a bash script bash accepts.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("wasmflow.bash"), &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(dir.path().join("wasmflow.bash")).output().unwrap();
    assert!(check.status.success(), "{}", show(&check));

    let out = wasmflow(&["man"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(text(&out.stdout).contains(".TH wasmflow 1") && text(&out.stdout).contains("completions"), "{}", text(&out.stdout));
    let out = wasmflow(&["man", "--dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    assert!(dir.path().join("wasmflow-run.1").is_file());

    // A usage error is 2.
    assert_eq!(wasmflow(&["completions", "tcsh"]).output().unwrap().status.code(), Some(2));
}
