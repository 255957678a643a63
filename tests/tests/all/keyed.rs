//! Keyed state, timers and event time end to end (docs/state.md, keyed state;
//! docs/architecture.md, event time): a keyed tumbling-window count and a deduplicator, built to
//! wasm, through `kill -9`, rescales 2 → 3 → 1 and savepoints, checked against what the input
//! says offline.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmflow_host::checkpoint::load_dir;
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::runtime::{RestoreFrom, RunOptions, run_job};
use wasmflow_op_generator::GeneratorConfig;
use wasmflow_tests::{committed_lines, operator, wasmflow_bin};

const WINDOW_MS: i64 = 100;

/// generator (keys, jittered event time, watermarks) → key-hash → window-count → forward →
/// exactly-once file sink.
struct WindowJob {
    count: u64,
    keys: u64,
    rate: u32,
    window_parallelism: u32,
    max_parallelism: Option<u32>,
    /// `key-hash` (keyed) or something else (to see the error).
    partitioning: &'static str,
    /// Run the window operator natively (`native:window-count`) instead of as wasm.
    native: bool,
}

impl WindowJob {
    fn generator_config(&self) -> serde_json::Value {
        serde_json::json!({ "count": self.count, "keys": self.keys, "jitter-ms": 20, "watermark-delay-ms": 20, "records-per-second": self.rate })
    }

    fn write(&self, dir: &Path) -> PathBuf {
        let mut t = String::from("[job]\nname = \"windows\"\nbatch-size = 64\n");
        if let Some(m) = self.max_parallelism {
            writeln!(t, "max-parallelism = {m}").unwrap();
        }
        writeln!(t, "\n[checkpoints]\ninterval-ms = 100\ndir = \"checkpoints\"\nretain = 3\n").unwrap();
        let g = self.generator_config();
        writeln!(
            t,
            "[[operators]]\nid = \"events\"\nmodule = \"{}\"\nparallelism = 2\nconfig = {{ count = {}, keys = {}, jitter-ms = 20, watermark-delay-ms = 20, records-per-second = {} }}\n",
            operator("generator").display(),
            g["count"],
            g["keys"],
            g["records-per-second"]
        )
        .unwrap();
        writeln!(
            t,
            "[[operators]]\nid = \"windows\"\nmodule = \"{}\"\nparallelism = {}\nconfig = {{ size-ms = {WINDOW_MS} }}\n",
            if self.native { "native:window-count".to_string() } else { operator("window-count").display().to_string() },
            self.window_parallelism
        )
        .unwrap();
        writeln!(
            t,
            "[[operators]]\nid = \"out\"\nmodule = \"{}\"\nparallelism = {}\ngrants = {{ files = \"out\" }}\n",
            operator("sink").display(),
            self.window_parallelism
        )
        .unwrap();
        writeln!(t, "[[edges]]\nfrom = \"events\"\nto = \"windows\"\npartitioning = \"{}\"\n", self.partitioning).unwrap();
        writeln!(t, "[[edges]]\nfrom = \"windows\"\nto = \"out\"\n").unwrap();
        let path = dir.join("job.toml");
        std::fs::write(&path, t).unwrap();
        path
    }

    /// The window counts the input holds, computed offline: (key, window start) → records.
    fn expected(&self) -> BTreeMap<(String, i64), u64> {
        let config: GeneratorConfig = serde_json::from_value(self.generator_config()).unwrap();
        let mut counts = BTreeMap::new();
        for n in 0..self.count {
            let ts = config.timestamp(n);
            let start = ts - ts.rem_euclid(WINDOW_MS);
            *counts.entry((format!("key-{}", n % self.keys), start)).or_default() += 1;
        }
        counts
    }
}

/// The committed window results: (key, window start) → count; a window emitted twice fails.
fn committed_windows(dir: &Path) -> BTreeMap<(String, i64), u64> {
    let mut out = BTreeMap::new();
    for line in committed_lines(&dir.join("out")) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a window result: {line}: {e}"));
        let key = (v["key"].as_str().unwrap().to_string(), v["start"].as_i64().unwrap());
        assert_eq!(v["end"].as_i64().unwrap() - key.1, WINDOW_MS);
        let previous = out.insert(key.clone(), v["count"].as_u64().unwrap());
        assert!(previous.is_none(), "window {key:?} committed twice");
    }
    out
}

fn complete_checkpoint_ids(dir: &Path) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(dir.join("checkpoints"))
        .map(|d| {
            d.flatten().filter(|e| e.path().join("_metadata").exists()).filter_map(|e| e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()).collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Starts `wasmflow run` with `args`, waits for two checkpoints newer than `after`, and kills it
/// with SIGKILL in mid-run.
fn run_and_kill(job: &Path, dir: &Path, args: &[&str]) {
    let before = complete_checkpoint_ids(dir).last().copied().unwrap_or(0);
    let mut child = Command::new(wasmflow_bin()).arg("run").args(args).arg(job).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while complete_checkpoint_ids(dir).iter().filter(|&&id| id > before).count() < 2 {
        assert!(Instant::now() < deadline, "no two checkpoints in 60 s");
        assert!(child.try_wait().unwrap().is_none(), "the job ended before it was killed: make it run longer");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(120));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// The window counts in the committed output equal the counts computed offline from the input,
/// every window exactly once, although the job was killed with SIGKILL twice and rescaled from
/// 2 to 3 to 1 subtasks on the way: keyed state, pending timers and the sink's files all come
/// back from the checkpoints, by key group.
#[test]
fn window_counts_are_exact_across_kill_9_and_rescale_2_3_1() {
    window_counts_survive_kill_9_and_rescale("");
}

/// The same with the disk backend (`[state] backend = "disk"`): keyed state in an LSM tree on
/// local disk, restored from the same checkpoints.
#[test]
fn with_the_disk_backend_window_counts_are_exact_across_kill_9_and_rescale() {
    let dir = window_counts_survive_kill_9_and_rescale("\n[state]\nbackend = \"disk\"\ndir = \"state\"\n");
    // The killed runs left their stores behind (nothing cleans up after `kill -9`): proof the
    // disk backend was used. The last run, which ended normally, removed its own.
    let stores: Vec<String> = std::fs::read_dir(dir.path().join("state")).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(stores.iter().any(|s| s.starts_with("attempt-") && s.contains("-windows-")), "{stores:?}");
    assert!(stores.len() == 2 + 3, "the stores of the two killed runs (2 + 3 subtasks), none of the last: {stores:?}");
}

/// Runs the window job (plus `extra` job-file text), killing it twice, rescaling 2 → 3 → 1,
/// and checks the committed windows against the input.
fn window_counts_survive_kill_9_and_rescale(extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let spec = WindowJob { count: 24_000, keys: 25, rate: 2500, window_parallelism: 2, max_parallelism: None, partitioning: "key-hash", native: false };
    let job = spec.write(dir.path());
    let text = std::fs::read_to_string(&job).unwrap() + extra;
    std::fs::write(&job, text).unwrap();
    run_and_kill(&job, dir.path(), &[]);
    let partial = committed_windows(dir.path());
    assert!(!partial.is_empty() && partial.len() < spec.expected().len(), "killed in mid-run ({} windows)", partial.len());

    run_and_kill(&job, dir.path(), &["--from-latest-checkpoint", "--parallelism", "windows=3,out=3"]);
    let status = Command::new(wasmflow_bin())
        .args(["run", "--from-latest-checkpoint", "--parallelism", "windows=1,out=1"])
        .arg(&job)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let got = committed_windows(dir.path());
    let expected = spec.expected();
    let wrong: Vec<_> = expected.iter().filter(|(k, n)| got.get(*k) != Some(n)).take(5).collect();
    assert!(wrong.is_empty() && got.len() == expected.len(), "{} windows committed, {} expected; e.g. {wrong:?}", got.len(), expected.len());
    dir
}

/// The same windows whether the operator runs as wasm or natively (the host's two
/// `OperatorInstance`s share keyed state, timers and watermarks), and exactly what the input
/// says: the bounded generator ends with the highest watermark, so every window fires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_and_native_window_counts_match_the_input() {
    for native in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let spec = WindowJob { count: 5_000, keys: 9, rate: 1_000_000, window_parallelism: 3, max_parallelism: None, partitioning: "key-hash", native };
        let job = spec.write(dir.path());
        let opts = RunOptions { native: wasmflow_tests::native_operators(), ..Default::default() };
        run_job(&Engine::new().unwrap(), &JobSpec::load(&job).unwrap(), opts).await.unwrap();
        assert_eq!(committed_windows(dir.path()), spec.expected(), "native = {native}");
    }
}

/// A savepoint of the window job shows its keyed state by key group in `inspect` (decoded map
/// entries and timers), and the rescale preview gives each new subtask a contiguous key-group
/// range taken whole from the old subtasks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_keyed_state_by_key_group_and_the_rescale_preview_moves_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let job = WindowJob { count: 100_000, keys: 7, rate: 2000, window_parallelism: 2, max_parallelism: Some(16), partitioning: "key-hash", native: false }
        .write(dir.path());
    let spec = JobSpec::load(&job).unwrap();
    let savepoint = wasmflow_tests::run_then_stop(&spec, Duration::from_millis(800), Some(&dir.path().join("sp"))).await.unwrap();
    let checkpoint = load_dir(&savepoint).unwrap();
    let view = wasmflow_host::inspect::describe(&checkpoint);
    let subtasks = view["operators"]["windows"]["subtasks"].as_array().unwrap();
    let ranges: Vec<(u64, u64)> =
        subtasks.iter().map(|s| (s["keyed"]["key_groups"]["start"].as_u64().unwrap(), s["keyed"]["key_groups"]["end"].as_u64().unwrap())).collect();
    assert_eq!(ranges, [(0, 7), (8, 15)]);
    let mut keys = std::collections::BTreeSet::new();
    for s in subtasks {
        assert_eq!(s["keyed"]["max_parallelism"], 16);
        assert_eq!(s["keyed"]["states"][0]["name"], "windows");
        for g in s["keyed"]["groups"].as_array().unwrap() {
            let kg = g["key_group"].as_u64().unwrap();
            assert!(kg >= s["keyed"]["key_groups"]["start"].as_u64().unwrap() && kg <= s["keyed"]["key_groups"]["end"].as_u64().unwrap());
            for e in g["entries"].as_array().unwrap() {
                let key = e["key"].as_str().unwrap();
                assert_eq!(wasmflow_state::key_group(key.as_bytes(), 16) as u64, kg, "{key} is in its own key group");
                // Open windows: window end → count, decoded from the SDK's recorded types.
                let window = &e["value"][0];
                assert!(window["key"].as_i64().unwrap() % WINDOW_MS == 0 && window["value"].as_u64().unwrap() > 0, "{e}");
                keys.insert(key.to_string());
            }
            // Every open window has its timer at end - 1.
            let timers = g["timers"].as_array().unwrap();
            assert!(timers.iter().all(|t| t["domain"] == "event-time" && (t["timestamp"].as_i64().unwrap() + 1) % WINDOW_MS == 0), "{g}");
        }
    }
    assert!(!keys.is_empty() && keys.len() <= 7);

    let preview = wasmflow_host::inspect::preview(&checkpoint, &BTreeMap::from([("windows".to_string(), 3)])).unwrap();
    let new: Vec<(u64, u64, Vec<u64>)> = preview["operators"]["windows"]["subtasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let from = s["keyed_from"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
            (s["key_groups"]["start"].as_u64().unwrap(), s["key_groups"]["end"].as_u64().unwrap(), from)
        })
        .collect();
    assert_eq!(new, [(0, 5, vec![0]), (6, 10, vec![0, 1]), (11, 15, vec![1])]);
    let text = wasmflow_host::inspect::render_text(&preview);
    assert!(text.contains("key groups 6..=10 from old subtasks [0,1]"), "{text}");
}

/// Keyed state is bound to its key groups: a savepoint restored with another
/// `max-parallelism` is refused, naming the operator and the setting; an operator whose input
/// is no longer key-hash cannot take keyed state; and one that registers keyed state without a
/// key-hash input fails with a message saying how to key it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_state_refuses_another_max_parallelism_and_a_non_keyed_input() {
    let dir = tempfile::tempdir().unwrap();
    let window = WindowJob { count: 100_000, keys: 7, rate: 2000, window_parallelism: 2, max_parallelism: None, partitioning: "key-hash", native: false };
    let job = window.write(dir.path());
    let savepoint = wasmflow_tests::run_then_stop(&JobSpec::load(&job).unwrap(), Duration::from_millis(500), Some(&dir.path().join("sp"))).await.unwrap();

    let other = tempfile::tempdir().unwrap();
    let job = WindowJob { max_parallelism: Some(256), ..window }.write(other.path());
    let restore = RunOptions { restore: Some(RestoreFrom::Savepoint(savepoint.clone().into())), ..Default::default() };
    let err = run_job(&Engine::new().unwrap(), &JobSpec::load(&job).unwrap(), restore).await.unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("operator 'windows': the keyed state was written with max-parallelism 128, but the job has max-parallelism 256")
            && err.contains("set `[job] max-parallelism = 128`"),
        "{err}"
    );

    let rebalanced = tempfile::tempdir().unwrap();
    let job = WindowJob { partitioning: "rebalance", ..window }.write(rebalanced.path());
    let restore = RunOptions { restore: Some(RestoreFrom::Savepoint(savepoint.into())), ..Default::default() };
    let err = format!("{:#}", run_job(&Engine::new().unwrap(), &JobSpec::load(&job).unwrap(), restore).await.unwrap_err());
    assert!(err.contains("operator 'windows' has keyed state, but in this job it is not keyed"), "{err}");

    let fresh = run_job(&Engine::new().unwrap(), &JobSpec::load(&job).unwrap(), RunOptions::default()).await;
    let err = format!("{:#}", fresh.unwrap_err());
    assert!(err.contains("keyed state 'windows' needs a keyed operator: make every edge into this operator `partitioning = \"key-hash\"`"), "{err}");
}

/// A keyed operator's parallelism above `max-parallelism` is refused when the job file loads.
#[test]
fn a_keyed_operator_above_max_parallelism_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let job =
        WindowJob { count: 10, keys: 1, rate: 10, window_parallelism: 4, max_parallelism: Some(2), partitioning: "key-hash", native: false }.write(dir.path());
    let err = format!("{:#}", JobSpec::load(&job).unwrap_err());
    assert!(err.contains("operator 'windows' is keyed (its input is key-hash) and has parallelism 4, over job.max-parallelism = 2"), "{err}");
}

/// The deduplicator passes the first record of every key exactly once, across a `kill -9`:
/// its "seen" flags are keyed state restored with the sink's files.
#[test]
fn dedup_emits_each_key_once_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let keys = 300;
    let job = format!(
        "[job]\nname = \"dedup\"\nbatch-size = 16\n\n[checkpoints]\ninterval-ms = 100\ndir = \"checkpoints\"\n\n\
         [[operators]]\nid = \"events\"\nmodule = \"{}\"\nparallelism = 2\nconfig = {{ count = 9000, keys = {keys}, records-per-second = 1500 }}\n\n\
         [[operators]]\nid = \"dedup\"\nmodule = \"{}\"\nparallelism = 2\n\n\
         [[operators]]\nid = \"out\"\nmodule = \"{}\"\nparallelism = 2\ngrants = {{ files = \"out\" }}\n\n\
         [[edges]]\nfrom = \"events\"\nto = \"dedup\"\npartitioning = \"key-hash\"\n\n[[edges]]\nfrom = \"dedup\"\nto = \"out\"\n",
        operator("generator").display(),
        operator("dedup").display(),
        operator("sink").display()
    );
    let job_path = dir.path().join("job.toml");
    std::fs::write(&job_path, job).unwrap();
    run_and_kill(&job_path, dir.path(), &[]);
    let status = Command::new(wasmflow_bin()).args(["run", "--from-latest-checkpoint"]).arg(&job_path).stderr(Stdio::null()).status().unwrap();
    assert!(status.success());
    // Key k's records are the numbers n ≡ k (mod keys), all from one generator subtask (keys is
    // even), in order: the first is `record-k`.
    let mut expected: Vec<String> = (0..keys).map(|k| format!("record-{k}")).collect();
    expected.sort();
    assert_eq!(committed_lines(&dir.path().join("out")), expected);
}

/// `jobs/windowed-kafka.toml` itself against a real broker: clicks in 4 partitions, out of order
/// within the source's 500 ms bound, counted per user and one-second window. The bounded source
/// ends with the highest watermark, so every window fires; the committed counts are exactly the
/// counts of the input, and none is late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_windowed_kafka_example_counts_clicks_per_user_and_window() {
    let broker = wasmflow_tests::broker::TestBroker::start();
    broker.create_topic("clicks", 4);
    let mut expected: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let base = 1_700_000_000_000i64;
    for partition in 0..4 {
        let records: Vec<(String, String, i64)> = (0..600i64)
            .map(|i| {
                // Ten clicks per second per partition, each up to 400 ms early.
                let ts = base + i * 100 - (i * 37 + partition as i64 * 11) % 400;
                let user = format!("user-{}", (i + partition as i64) % 6);
                *expected.entry((user.clone(), ts - ts.rem_euclid(1000))).or_default() += 1;
                (user, format!("click-{partition}-{i}"), ts)
            })
            .collect();
        broker.produce_records("clicks", partition, &records);
    }
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(wasmflow_tests::workspace_root().join("jobs/windowed-kafka.toml")).unwrap();
    let operators = operator("window-count").parent().unwrap().display().to_string();
    let text = text
        .replace("BOOTSTRAP", &broker.bootstrap())
        .replace("../target/operators", &operators)
        .replace("../target/windowed", &dir.path().display().to_string());
    let job = dir.path().join("windowed-kafka.toml");
    std::fs::write(&job, text).unwrap();
    let report = run_job(&Engine::new().unwrap(), &JobSpec::load(&job).unwrap(), RunOptions::default()).await.unwrap();
    assert!(!report.stopped);
    let mut got = BTreeMap::new();
    for line in committed_lines(&dir.path().join("out")) {
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert!(v.get("late").is_none(), "no click is late: {line}");
        got.insert((v["key"].as_str().unwrap().to_string(), v["start"].as_i64().unwrap()), v["count"].as_u64().unwrap());
    }
    assert_eq!(got, expected);
}

/// A keyed operator compiled in, with processing-time timers: the first record of each key sets
/// a timer 30 ms ahead, which emits the key once.
mod processing_timer {
    use wasmflow_guest_sdk::prelude::*;

    #[derive(Default)]
    pub struct OncePerKey {
        armed: ValueState<bool>,
    }

    impl KeyedProcessFunction for OncePerKey {
        fn create(_ctx: &RuntimeContext) -> Result<Self> {
            Ok(OncePerKey::default())
        }

        fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
            self.armed = ctx.get_state("armed")?;
            Ok(())
        }

        fn process_element(&mut self, _record: Record<'_>, ctx: &KeyedContext<'_>, _out: &mut Collector) -> Result<()> {
            if self.armed.value()?.is_none() {
                self.armed.update(&true)?;
                let timers = ctx.timer_service();
                timers.register_processing_time_timer(timers.current_processing_time() + 30)?;
            }
            Ok(())
        }

        fn on_timer(&mut self, timestamp: i64, ctx: &KeyedContext<'_>, out: &mut Collector) -> Result<()> {
            ensure!(ctx.time_domain() == Some(TimeDomain::ProcessingTime), "a processing-time timer");
            out.emit(Some(ctx.key()), ctx.key(), timestamp);
            Ok(())
        }
    }

    wasmflow_guest_sdk::export_keyed!(OncePerKey);
}

/// Processing-time timers fire from the subtask loop when the wall clock reaches them, between
/// batches, with their key current: each key is emitted exactly once while the input still runs
/// (the generator's first poll emits a second's worth, 500 records per subtask; the other 300
/// take 0.3 s, well after the 30 ms timers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_time_timers_fire_on_the_wall_clock() {
    let dir = tempfile::tempdir().unwrap();
    let job = format!(
        "[job]\nname = \"timers\"\n\n\
         [[operators]]\nid = \"events\"\nmodule = \"{}\"\nparallelism = 2\nconfig = {{ count = 1300, keys = 4, records-per-second = 500 }}\n\n\
         [[operators]]\nid = \"once\"\nmodule = \"native:once-per-key\"\nparallelism = 2\n\n\
         [[operators]]\nid = \"out\"\nmodule = \"{}\"\nparallelism = 2\ngrants = {{ files = \"out\" }}\n\n\
         [[edges]]\nfrom = \"events\"\nto = \"once\"\npartitioning = \"key-hash\"\n\n[[edges]]\nfrom = \"once\"\nto = \"out\"\n",
        operator("generator").display(),
        operator("sink").display()
    );
    let path = dir.path().join("job.toml");
    std::fs::write(&path, job).unwrap();
    let mut native = wasmflow_tests::native_operators();
    native.register::<processing_timer::WasmflowOperator>("once-per-key");
    run_job(&Engine::new().unwrap(), &JobSpec::load(&path).unwrap(), RunOptions { native, ..Default::default() }).await.unwrap();
    assert_eq!(committed_lines(&dir.path().join("out")), ["key-0", "key-1", "key-2", "key-3"]);
}

/// generator (`keys` distinct keys, rate-limited so the run spans many checkpoints) → key-hash →
/// keyed-counter at parallelism 2, checkpoints every 100 ms, `incremental` as given.
fn counter_job(dir: &Path, count: u64, keys: u64, incremental: bool) -> PathBuf {
    let text = format!(
        "[job]\nname = \"counts\"\nbatch-size = 64\n\n[checkpoints]\ninterval-ms = 100\ndir = \"checkpoints\"\nretain = 3\nincremental = {incremental}\n\n\
         [[operators]]\nid = \"events\"\nmodule = \"{}\"\nconfig = {{ count = {count}, keys = {keys}, records-per-second = 5000 }}\n\n\
         [[operators]]\nid = \"count\"\nmodule = \"{}\"\nparallelism = 2\n\n\
         [[edges]]\nfrom = \"events\"\nto = \"count\"\npartitioning = \"key-hash\"\n",
        operator("generator").display(),
        operator("keyed-counter").display()
    );
    let path = dir.join("job.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Every key's count in a checkpoint's keyed state (shared files merged).
fn checkpointed_counts(checkpoint: &wasmflow_host::checkpoint::LoadedCheckpoint) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for subtask in &checkpoint.states["count"] {
        for group in &subtask.keyed.as_ref().expect("keyed state").groups {
            for e in group.decode_entries().unwrap() {
                let wasmflow_state::KeyedValue::Value(bytes, _) = e.value else { panic!("a count is a value") };
                let n: u64 = wasmflow_types::codec::decode(&bytes).unwrap();
                assert!(counts.insert(String::from_utf8(e.key).unwrap(), n).is_none(), "a key in two subtasks");
            }
        }
    }
    counts
}

/// Incremental checkpoints (docs/state.md, incremental checkpoints): after the first full
/// snapshot, a subtask's checkpoint writes only the keys counted since the last complete
/// checkpoint into a new shared file and references the earlier ones. The final checkpoint's
/// chains merge into exactly the counts of the input, as with full checkpoints; retention kept
/// every shared file a retained checkpoint references and deleted every other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_checkpoints_write_changes_and_keep_the_files_they_need() {
    // 500 records per 100 ms checkpoint interval: once every key is in the state (after 4 s),
    // each checkpoint changes about 2.5 % of the entries (under a tenth even if a slow machine
    // stretches the interval threefold), and writes an increment.
    let (count, keys) = (30_000u64, 20_000u64);
    // Record n has key n % keys.
    let expected: BTreeMap<String, u64> = (0..keys).map(|k| (format!("key-{k}"), count / keys + u64::from(k < count % keys))).collect();
    let mut written = BTreeMap::new();
    for incremental in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let job = counter_job(dir.path(), count, keys, incremental);
        let report = run_job(&Engine::new().unwrap(), &JobSpec::load(&job).unwrap(), RunOptions::default()).await.unwrap();
        assert!(report.completed_checkpoints.len() >= 5, "the run spans several checkpoints: {:?}", report.completed_checkpoints);
        let root = dir.path().join("checkpoints");
        let newest = format!("chk-{}", report.completed_checkpoints.last().unwrap());
        let checkpoint = load_dir(&root.join(&newest)).unwrap();
        let got = checkpointed_counts(&checkpoint);
        let wrong: Vec<_> = expected.iter().filter(|(k, n)| got.get(*k) != Some(n)).take(5).collect();
        assert!(wrong.is_empty() && got.len() == expected.len(), "incremental = {incremental}: {} keys, e.g. wrong: {wrong:?}", got.len());
        let refs: Vec<_> = checkpoint.metadata.operators["count"].subtasks.clone();
        let stats = &report.checkpoint_stats;
        written.insert(incremental, stats.iter().map(|c| c.state_bytes).sum::<u64>() / stats.len() as u64);
        if !incremental {
            assert!(refs.iter().all(|r| r.shared.is_empty()) && !root.join("shared").exists(), "full checkpoints keep keyed state in the state files");
            continue;
        }
        // Shared files: a full snapshot and its increments, every one referenced by a retained
        // checkpoint, none missing.
        assert!(refs.iter().all(|r| (1..=11).contains(&r.shared.len())), "{refs:?}");
        let retained: Vec<_> =
            report.completed_checkpoints.iter().rev().take(3).map(|id| load_dir(&root.join(format!("chk-{id}"))).unwrap().metadata).collect();
        let referenced: std::collections::BTreeSet<String> =
            retained.iter().flat_map(|m| m.operators.values()).flat_map(|o| &o.subtasks).flat_map(|r| &r.shared).map(|f| f.path.clone()).collect();
        let mut on_disk = std::collections::BTreeSet::new();
        for op in std::fs::read_dir(root.join("shared")).unwrap().flatten() {
            for f in std::fs::read_dir(op.path()).unwrap().flatten() {
                on_disk.insert(format!("shared/{}/{}", op.file_name().to_string_lossy(), f.file_name().to_string_lossy()));
            }
        }
        assert_eq!(on_disk, referenced, "shared files on disk are exactly those the retained checkpoints reference");
        let increments = retained.iter().flat_map(|m| &m.operators["count"].subtasks).filter(|r| r.shared.len() > 1).count();
        assert!(increments > 0, "the retained checkpoints build on earlier ones");
    }
    // Writing only the changes writes less per checkpoint.
    assert!(written[&true] < written[&false], "incremental checkpoints wrote {} bytes on average, full ones {}", written[&true], written[&false]);
}
