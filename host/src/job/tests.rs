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

mod overrides {
    use super::*;

    fn set(args: &[&str]) -> Vec<Override> {
        args.iter().map(|a| Override::parse_set(a).unwrap()).collect()
    }

    fn load(env: &[(&str, &str)], sets: &[&str]) -> Result<JobSpec> {
        let vars = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        JobSpec::parse_with(GOOD, Path::new("jobs/x.toml"), &Overrides::new(vars, &set(sets))?)
    }

    fn err(env: &[(&str, &str)], sets: &[&str]) -> String {
        format!("{:#}", load(env, sets).unwrap_err())
    }

    #[test]
    fn set_changes_values_of_every_type() {
        let job = load(
            &[],
            &["checkpoints.interval-ms=750", "job.name=renamed", "job.chaining=false", "operators.sink.parallelism=2", "operators.src.config={ count = 3 }"],
        )
        .unwrap();
        assert_eq!(job.checkpoints.as_ref().unwrap().interval_ms, 750);
        assert_eq!(job.job.name.as_deref(), Some("renamed"));
        assert_eq!(job.job.chaining, Some(false));
        assert_eq!(job.operator("src").unwrap().config.as_ref().unwrap()["count"].as_integer(), Some(3));
        // Missing tables are created; arrays are addressed by index too.
        let job = load(&[], &["restart.attempts=4", "edges.0.partitioning=rebalance", "operators.1.parallelism=3"]).unwrap();
        assert_eq!(job.restart.attempts, 4);
        assert_eq!(job.edges[0].partitioning, Partitioning::Rebalance);
        assert_eq!(job.operator("sink").unwrap().parallelism, 3);
        // Quoted segments reach keys with dots; a string that looks like a number is quoted.
        let job = load(&[], &[r#"operators.src.config."group.id"=g"#, r#"job.name="42""#]).unwrap();
        assert_eq!(job.operator("src").unwrap().config.as_ref().unwrap()["group.id"].as_str(), Some("g"));
        assert_eq!(job.job.name.as_deref(), Some("42"));
    }

    #[test]
    fn file_then_environment_then_set() {
        assert_eq!(load(&[], &[]).unwrap().checkpoints.unwrap().interval_ms, 500);
        let env = [("WASMFLOW__CHECKPOINTS__INTERVAL_MS", "600")];
        assert_eq!(load(&env, &[]).unwrap().checkpoints.unwrap().interval_ms, 600);
        assert_eq!(load(&env, &["checkpoints.interval-ms=700"]).unwrap().checkpoints.unwrap().interval_ms, 700);
        // Several --set of one key: the last wins.
        assert_eq!(load(&env, &["checkpoints.interval-ms=700", "checkpoints.interval-ms=800"]).unwrap().checkpoints.unwrap().interval_ms, 800);
        // Other WASMFLOW_ variables (one underscore) are not overrides.
        let other = [("WASMFLOW_TOOLS", "/x"), ("WASMFLOW_SDK", "/y"), ("WASMFLOW_LOG_FORMAT", "json")];
        assert_eq!(Overrides::new(other.iter().map(|(k, v)| (k.to_string(), v.to_string())), &[]).unwrap(), Overrides::none());
    }

    #[test]
    fn environment_names_map_to_kebab_case_keys_and_ids() {
        let env = [("WASMFLOW__JOB__BATCH_SIZE", "64"), ("WASMFLOW__OPERATORS__SINK__GRANTS__FILES", "elsewhere"), ("WASMFLOW__LIMITS__MEMORY_MB", "32")];
        let job = load(&env, &[]).unwrap();
        assert_eq!(job.job.batch_size, Some(64));
        assert_eq!(job.limits.memory_mb, Some(32));
        assert_eq!(job.operator("sink").unwrap().grants.files.as_deref(), Some(Path::new("elsewhere")));
        let o = Override::from_env_var("WASMFLOW__CHECKPOINTS__TOLERABLE_FAILURES", "2").unwrap().unwrap();
        assert_eq!(o.path, ["checkpoints", "tolerable-failures"]);
        assert_eq!(o.value, toml::Value::Integer(2));
    }

    #[test]
    fn a_type_mismatch_names_the_override() {
        let e = err(&[], &["checkpoints.interval-ms=abc"]);
        assert!(e.starts_with("--set checkpoints.interval-ms=abc: jobs/x.toml: invalid type: string \"abc\", expected u64"), "{e}");
        let e = err(&[("WASMFLOW__JOB__CHAINING", "maybe")], &[]);
        assert!(e.starts_with("environment variable WASMFLOW__JOB__CHAINING: jobs/x.toml: invalid type: string \"maybe\", expected a boolean"), "{e}");
        // The job's semantic checks apply to overridden values too.
        let e = err(&[], &["job.name=ok", "operators.sink.parallelism=3"]);
        assert!(e.starts_with("--set operators.sink.parallelism=3: jobs/x.toml: edges[0] 'src' -> 'sink' is forward but parallelisms differ (2 vs 3)"), "{e}");
    }

    #[test]
    fn a_bad_path_names_the_override() {
        let e = err(&[], &["checkpoints.intervall-ms=5"]);
        assert!(e.starts_with("--set checkpoints.intervall-ms=5: jobs/x.toml: unknown field `intervall-ms`, expected one of"), "{e}");
        let e = err(&[], &["operators.nope.parallelism=2"]);
        assert_eq!(e, "--set operators.nope.parallelism=2: operators has no element 'nope' (ids: src, sink)");
        let e = err(&[], &["job.name.first=x"]);
        assert_eq!(e, "--set job.name.first=x: job.name is a string, not a table");
        let e = err(&[], &["operators.src=1"]);
        assert!(e.contains("operators.src is an array element; set one of its keys"), "{e}");
        assert!(Override::parse_set("checkpoints.interval-ms").unwrap_err().to_string().contains("--set takes KEY=VALUE"));
        assert!(Override::parse_set("a..b=1").is_err());
    }

    #[test]
    fn a_file_error_keeps_its_line_when_overrides_do_not_touch_it() {
        let text = GOOD.replace("parallelism = 2\nconfig", "paralelism = 2\nconfig");
        let sets = Overrides::new([], &set(&["job.name=x"])).unwrap();
        let e = format!("{:#}", JobSpec::parse_with(&text, Path::new("jobs/x.toml"), &sets).unwrap_err());
        assert!(e.starts_with("jobs/x.toml:11: unknown field `paralelism`"), "{e}");
    }
}

/// `wasmflow validate` lists every problem: the checks do not stop at the first.
#[test]
fn every_problem_is_reported_at_once() {
    let text = GOOD
        .replace("parallelism = 2\ngrants", "parallelism = 0\ngrants")
        .replace("interval-ms = 500", "interval-ms = 0")
        .replace("to = \"sink\"", "to = \"nope\"");
    let e = err(&text);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 3, "{e}");
    assert!(lines[0].contains("operator 'sink': parallelism must be between 1 and 1024, got 0"), "{e}");
    assert!(lines[1].contains("edges[0] names operator 'nope', which is not in [[operators]]"), "{e}");
    assert!(lines[2].contains("checkpoints.interval-ms must be > 0"), "{e}");
}

/// Storage locations: a bad URL names the key; savepoints on object storage need checkpoints
/// there too (a job writes savepoints through its checkpoint storage).
#[test]
fn storage_locations_are_checked() {
    let e = err(&GOOD.replace("interval-ms = 500", "interval-ms = 500\ndir = \"gs://b/x\""));
    assert!(e.contains("jobs/x.toml: checkpoints.dir: gs://b/x: unknown storage scheme 'gs://'"), "{e}");
    let e = err(&GOOD.replace("[checkpoints]", "[savepoints]\ndir = \"s3://b/sp\"\n\n[checkpoints]"));
    assert!(e.contains("savepoints.dir is on object storage (s3://b/sp) but checkpoints.dir is a local directory"), "{e}");
    let both = GOOD.replace("[checkpoints]", "[savepoints]\ndir = \"s3://b/sp\"\n\n[checkpoints]\ndir = \"s3://b/chk\"");
    let job = JobSpec::parse(&both, Path::new("jobs/x.toml")).unwrap();
    assert_eq!(job.checkpoint_location().unwrap().to_string(), "s3://b/chk");
}
