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
