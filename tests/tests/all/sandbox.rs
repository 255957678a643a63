//! Hostile modules: each attack fails only its own subtask, with a clear error, while a healthy
//! job in the same process (same engine) runs to the end with exact output and state.

use std::path::Path;

use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::{RunOptions, run_job};
use wasmflow_tests::job::PipelineJob;
use wasmflow_tests::{assert_exactly_once, committed_lines, data_and_counts, operator};

fn hostile_job(dir: &Path, behavior: &str) -> JobSpec {
    // The memory bomb gets a small memory; the others room for their large buffers.
    let memory_mb = if behavior == "memory-bomb" { 64 } else { 512 };
    // The endless loops meet a short deadline; the rest get the default, so that building a
    // 100 MB batch on a loaded 2-core machine is refused for its size, not cut off by the clock.
    let call_timeout_ms = if behavior.starts_with("loop-") { 1000 } else { 10_000 };
    let t = format!(
        r#"[job]
name = "hostile"

[checkpoints]
interval-ms = 100
dir = "checkpoints"

[limits]
memory-mb = {memory_mb}
call-timeout-ms = {call_timeout_ms}

[[operators]]
id = "numbers"
module = "{gen}"
config = {{ count = 2000, records-per-second = 4000 }}

[[operators]]
id = "bad"
module = "{bad}"
config = {{ behavior = "{behavior}" }}
grants = {{ kafka = {{ bootstrap-servers = "127.0.0.1:9" }} }}

[[operators]]
id = "out"
module = "{sink}"
grants = {{ files = "out" }}

[[edges]]
from = "numbers"
to = "bad"

[[edges]]
from = "bad"
to = "out"
"#,
        gen = operator("generator").display(),
        bad = operator("hostile").display(),
        sink = operator("sink").display(),
        memory_mb = memory_mb,
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, t).unwrap();
    JobSpec::load(&path).unwrap()
}

/// Runs the hostile job next to a healthy one; returns the hostile job's error (or "ok").
async fn attack(behavior: &str) -> String {
    let engine = Engine::new().unwrap();
    let (bad_dir, good_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let bad = hostile_job(bad_dir.path(), behavior);
    let good = JobSpec::load(&PipelineJob { count: 3000, records_per_second: Some(3000), ..Default::default() }.write(good_dir.path())).unwrap();
    let (bad_result, good_result) = tokio::join!(run_job(&engine, &bad, RunOptions::default()), run_job(&engine, &good, RunOptions::default()));
    good_result.unwrap_or_else(|e| panic!("the healthy job failed next to '{behavior}': {e:#}"));
    let (data, counts) = data_and_counts(&committed_lines(&good_dir.path().join("out")));
    assert_exactly_once(&data, 3000, &format!("healthy job next to '{behavior}'"));
    assert_eq!(counts.iter().sum::<u64>(), 3000, "healthy job's state intact next to '{behavior}'");
    match bad_result {
        Ok(_) => "ok".into(),
        Err(e) => format!("{e:#}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_in_process_hits_the_call_deadline() {
    let e = attack("loop-in-process").await;
    assert!(e.contains("subtask bad[0] failed: bad[0]: process trapped:"), "{e}");
    assert!(e.contains("the call ran past its deadline: limits.call-timeout-ms"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_in_snapshot_fails_the_subtask_and_aborts_the_checkpoint() {
    let e = attack("loop-in-snapshot").await;
    assert!(e.contains("bad[0]: snapshot-state trapped:") && e.contains("limits.call-timeout-ms"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_stopped_at_the_memory_limit() {
    let e = attack("memory-bomb").await;
    assert!(e.contains("bad[0]: process trapped:"), "{e}");
    // The limit and the key that raises it are named.
    assert!(e.contains("over its limit of 67108864 bytes (limits.memory-mb = 64)"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_recursion_overflows_the_guest_stack_only() {
    let e = attack("deep-recursion").await;
    assert!(e.contains("bad[0]: process trapped:") && e.contains("stack overflow of the shadow stack: deep recursion"), "{e}");
    assert!(e.lines().count() < 20, "the backtrace is cut: {} lines", e.lines().count());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_state_entry_is_refused() {
    let e = attack("huge-state-entry").await;
    assert!(e.contains("bad[0]: process failed: state entry of 33554437 bytes exceeds the limit of 16777216 bytes (limits.state-entry-bytes)"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_states_are_refused() {
    let e = attack("many-states").await;
    assert!(e.contains("bad[0]: initialize-state failed: too many states: at most 1024 named states per subtask (limits.states)"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_snapshot_reports_the_guest_message() {
    let e = attack("panic-in-snapshot").await;
    assert!(e.contains("bad[0]: snapshot-state trapped:") && e.contains("a panic in the guest"), "{e}");
}

/// A `process` call lends its input as a borrowed handle, valid for that call only: a guest that
/// keeps the handle (the hostile one checks it had it) and reads it later traps instead of
/// reaching a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_batch_cannot_be_read_outside_process() {
    let e = attack("stale-input").await;
    assert!(e.contains("bad[0]: snapshot-state trapped:") && e.contains("unknown handle index 2"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_batch_is_refused() {
    let e = attack("huge-batch").await;
    assert!(e.contains("bad[0]: process failed: returned a batch of 104857600 bytes, over the limit of 67108864 bytes (limits.batch-bytes)"), "{e}");
}

/// A forwarded input is not returned by the guest, but counts toward the limit all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_batch_with_a_forwarded_input_is_refused() {
    let e = attack("huge-batch-forwarded").await;
    let bytes: u64 = e
        .split("process failed: returned a batch of ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{e}"));
    assert!(bytes > 64 << 20, "{e}");
    assert!(e.contains("bytes, over the limit of 67108864 bytes (limits.batch-bytes)"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registering_state_outside_initialize_state_is_a_guest_error() {
    let e = attack("register-outside-init").await;
    assert!(e.contains("bad[0]: process failed: state 'late' registered during Running: register state in initialize_state"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_flood_is_rate_limited_and_the_job_completes() {
    assert_eq!(attack("log-flood").await, "ok");
}

/// Guest code that runs at start-up (a static constructor, a start function, `kind`) used to
/// run without a deadline: a loop there hung the job, and SIGTERM and `stop` with it. It now
/// fails at the call deadline like any other call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_at_start_up_hits_the_call_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let t = format!(
        "[limits]\ncall-timeout-ms = 500\n\n[[operators]]\nid = \"numbers\"\nmodule = \"{}\"\nconfig = {{ count = 10 }}\n\n\
         [[operators]]\nid = \"stuck\"\nmodule = \"{}\"\n\n[[operators]]\nid = \"out\"\nmodule = \"{}\"\n\n\
         [[edges]]\nfrom = \"numbers\"\nto = \"stuck\"\n\n[[edges]]\nfrom = \"stuck\"\nto = \"out\"\n",
        operator("generator").display(),
        operator("hostile-start").display(),
        operator("null-sink").display()
    );
    let path = dir.path().join("job.toml");
    std::fs::write(&path, t).unwrap();
    let spec = JobSpec::load(&path).unwrap();
    let engine = Engine::new().unwrap();
    let run = run_job(&engine, &spec, RunOptions::default());
    let e = tokio::time::timeout(std::time::Duration::from_secs(30), run).await.expect("start-up is bounded by the call deadline").unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("stuck[0]:") && e.contains("trapped") && e.contains("the call ran past its deadline: limits.call-timeout-ms"), "{e}");
}

/// A guest's error text is cut like its log lines and its control characters escaped: a 50 MiB
/// `Err` used to be logged whole, and a newline in it could forge a host log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_error_is_cut_and_cannot_forge_log_lines() {
    let e = attack("huge-error").await;
    assert!(e.contains("bad[0]: process failed: first line\\n2099-01-01T00:00:00Z  INFO wasmflow: forged host line\\reee"), "{}", &e[..e.len().min(300)]);
    assert!(e.contains(" … (52428865 bytes, cut to limits.log-line-bytes = 4096)"), "{}", &e[e.len().saturating_sub(300)..]);
    assert!(e.len() < 10_000, "the error is {} bytes", e.len());
    assert!(!e.contains('\n') && !e.contains('\r'), "one line");
}

/// A Kafka-granted guest used to create clients without limit (880 consumers, 4 500 host threads
/// in 1.4 s). The fifth client of a subtask now traps, naming the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_clients_are_capped_per_subtask() {
    let e = attack("kafka-clients").await;
    assert!(e.contains("bad[0]: process trapped") && e.contains("too many Kafka clients: at most 4 per subtask (limits.kafka-clients)"), "{e}");
}

/// Guests may set only the Kafka properties a job author needs: `debug` (librdkafka logging
/// around the guest's log budget) is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_properties_outside_the_allowlist_are_refused() {
    let e = attack("kafka-debug").await;
    assert!(e.contains("Kafka property 'debug' is not allowed for operators: librdkafka's debug output would bypass the operator's log budget"), "{e}");
}
