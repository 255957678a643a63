use std::path::Path;

use super::*;

const GOOD: &str = r#"
[job]
name = "t"

[checkpoints]
interval-ms = 500

[[operators]]
id = "src"
module = "gen.wasm"
parallelism = 2
config = { count = 10 }

[[operators]]
id = "sink"
module = "sink.wasm"
parallelism = 2
grants = { files = "out" }

[[edges]]
from = "src"
to = "sink"
"#;

fn err(text: &str) -> String {
    format!("{:#}", JobSpec::parse(text, Path::new("jobs/x.toml")).unwrap_err())
}

#[test]
fn parses_a_valid_job() {
    let job = JobSpec::parse(GOOD, Path::new("jobs/x.toml")).unwrap();
    assert_eq!(job.operators.len(), 2);
    assert_eq!(job.edges[0].partitioning, Partitioning::Forward);
    assert_eq!(job.checkpoints.as_ref().unwrap().retain, 3);
    assert_eq!(job.resolve(Path::new("gen.wasm")), Path::new("jobs/gen.wasm"));
    assert_eq!(job.topological_order().unwrap(), vec!["src", "sink"]);
    assert_eq!(job.operators[1].grants.files.as_deref(), Some(Path::new("out")));
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let text = GOOD.replace("parallelism = 2\nconfig", "paralelism = 2\nconfig");
    let e = err(&text);
    assert!(e.starts_with("jobs/x.toml:11: unknown field `paralelism`"), "{e}");
}

#[test]
fn wrong_type_names_line() {
    let e = err(&GOOD.replace("parallelism = 2\nconfig", "parallelism = \"two\"\nconfig"));
    assert!(e.starts_with("jobs/x.toml:11: invalid type: string \"two\", expected u32"), "{e}");
}

#[test]
fn forward_edge_needs_equal_parallelism() {
    let e = err(&GOOD.replace("parallelism = 2\ngrants", "parallelism = 3\ngrants"));
    assert!(e.contains("is forward but parallelisms differ (2 vs 3)"), "{e}");
}

#[test]
fn edge_to_unknown_operator() {
    let e = err(&GOOD.replace("to = \"sink\"", "to = \"nope\""));
    assert_eq!(e, "jobs/x.toml: edges[0] names operator 'nope', which is not in [[operators]]");
}

#[test]
fn cycle_is_rejected() {
    let text = format!("{GOOD}\n[[edges]]\nfrom = \"sink\"\nto = \"src\"\n");
    assert!(err(&text).contains("the edges form a cycle"));
}

#[test]
fn duplicate_ids_and_zero_parallelism() {
    assert!(err(&GOOD.replace("id = \"sink\"", "id = \"src\"")).contains("operator id 'src' is used twice"));
    assert!(err(&GOOD.replace("parallelism = 2\nconfig", "parallelism = 0\nconfig")).contains("parallelism must be between 1 and 1024"));
}

#[test]
fn operator_ids_must_be_usable_as_checkpoint_file_names() {
    let long = "a".repeat(MAX_ID_LEN + 1);
    let e = err(&GOOD.replace("id = \"src\"", &format!("id = \"{long}\"")).replace("from = \"src\"", &format!("from = \"{long}\"")));
    assert_eq!(e, "jobs/x.toml: operators[0].id is 129 characters long; ids are at most 128 (they name directories in checkpoints)");
    let e = err(&GOOD.replace("\"src\"", "\"_metadata\""));
    assert_eq!(e, "jobs/x.toml: operators[0].id '_metadata' must not start with '_' (reserved for checkpoint files such as _metadata)");
}

#[test]
fn a_duplicate_edge_is_refused() {
    let e = err(&format!("{GOOD}\n[[edges]]\nfrom = \"src\"\nto = \"sink\"\n"));
    assert_eq!(e, "jobs/x.toml: edges[1] and edges[0] both connect 'src' to 'sink'; every record would arrive twice: remove one");
}

/// `--parallelism` overrides are checked like the file: a forward edge between unequal
/// parallelisms used to pass and hang the job.
#[test]
fn parallelism_overrides_are_checked_like_the_job_file() {
    let job = JobSpec::parse(GOOD, Path::new("jobs/x.toml")).unwrap();
    let e = format!("{:#}", job.clone().with_parallelism(&[("sink".to_string(), 3)].into_iter().collect()).unwrap_err());
    assert_eq!(
        e,
        "after --parallelism sink=3: jobs/x.toml: edges[0] 'src' -> 'sink' is forward but parallelisms differ (2 vs 3); use partitioning = \"rebalance\" or \"key-hash\""
    );
    let e = format!("{:#}", job.clone().with_parallelism(&[("nope".to_string(), 3)].into_iter().collect()).unwrap_err());
    assert_eq!(e, "--parallelism names operator 'nope', which is not in jobs/x.toml");
    let both = job.with_parallelism(&[("sink".to_string(), 3), ("src".to_string(), 3)].into_iter().collect()).unwrap();
    assert_eq!(both.operator("sink").unwrap().parallelism, 3);
}

/// Limits are bounded at load time with the key in the message: `memory-mb = 2^44` used to wrap
/// to 0 and `channel-capacity` near u64::MAX made tokio panic.
#[test]
fn limits_out_of_range_are_refused_with_their_key() {
    let e = err(&GOOD.replace("[checkpoints]", "[limits]\nmemory-mb = 17592186044416\n\n[checkpoints]"));
    assert_eq!(e, "jobs/x.toml: limits.memory-mb = 17592186044416 is over the maximum of 4096 MiB (the most a 32-bit wasm memory can address)");
    let e = err(&GOOD.replace("name = \"t\"", "name = \"t\"\nchannel-capacity = 18446744073709551615"));
    assert_eq!(e, "jobs/x.toml: job.channel-capacity = 18446744073709551615 is over the maximum of 65536 batches");
    let e = err(&GOOD.replace("name = \"t\"", "name = \"t\"\nbatch-size = 0"));
    assert_eq!(e, "jobs/x.toml: job.batch-size must be at least 1");
    let e = err(&GOOD.replace("grants = { files = \"out\" }", "grants = { files = \"out\" }\nlimits = { call-timeout-ms = 0 }"));
    assert_eq!(e, "jobs/x.toml: operators 'sink' limits.call-timeout-ms must be at least 1");
}
