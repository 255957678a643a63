//! The dashboard in a real browser: headless Chromium loads the page served by a running job,
//! runs its script against the live API, and the test reads the rendered DOM — graph, numbers,
//! checkpoints and the guest's failure — and compares it with what the API says.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmflow_host::api::client::Client;
use wasmflow_host::api::{ApiState, SavepointPolicy};
use wasmflow_host::engine::Engine;
use wasmflow_host::job::JobSpec;
use wasmflow_host::metrics::JobMetrics;
use wasmflow_host::runtime::job::ControlRequest;
use wasmflow_host::runtime::{RunOptions, run_job};
use wasmflow_host::status::JobStatus;
use wasmflow_host::status::view::JobState;
use wasmflow_tests::job::PipelineJob;

/// `WASMFLOW_CHROMIUM`, else `chromium` on the PATH (`make browser` (part of `make test`) installs Debian's).
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("WASMFLOW_CHROMIUM") {
        return p.into();
    }
    for name in ["chromium", "chromium-browser"] {
        if let Ok(out) = Command::new("sh").args(["-c", &format!("command -v {name}")]).output()
            && out.status.success()
        {
            return PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
        }
    }
    panic!("the dashboard test needs Chromium: run `make browser` (installs Debian's chromium) or set WASMFLOW_CHROMIUM");
}

/// Loads `url` in headless Chromium, lets its script run for `budget_ms` of virtual time
/// (network waits do not count), and returns the DOM; with `screenshot`, also saves a PNG.
fn render(url: &str, budget_ms: u32, screenshot: Option<&std::path::Path>) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(chromium());
    cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--virtual-time-budget={budget_ms}"));
    match screenshot {
        Some(p) => cmd.arg(format!("--screenshot={}", p.display())).arg("--window-size=1280,1400"),
        None => cmd.arg("--dump-dom"),
    };
    let out = cmd.arg(url).output().unwrap();
    assert!(out.status.success(), "chromium: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The text of each `<td>` in the row `<tr data-operator="id">`.
fn row(dom: &str, attr: &str) -> Vec<String> {
    let start = dom.find(&format!("<tr {attr}")).unwrap_or_else(|| panic!("no row {attr} in {dom}"));
    let end = start + dom[start..].find("</tr>").unwrap();
    dom[start..end].split("<td>").skip(1).map(|c| c.split("</td>").next().unwrap().to_string()).collect()
}

fn text_of(dom: &str, id: &str) -> String {
    let start = dom.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let open = start + dom[start..].find('>').unwrap() + 1;
    dom[open..open + dom[open..].find('<').unwrap()].to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_renders_the_running_job_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let job =
        // Long enough (100 s) that the page sees it running however slowly the browser starts;
        // the test stops it.
        PipelineJob { count: 400_000, records_per_second: Some(4000), restart_attempts: 1, fail_on_key: Some(500), ..Default::default() }.write(dir.path());
    let spec = JobSpec::load(&job).unwrap();
    let (status, metrics) = (JobStatus::new(&spec), Arc::new(JobMetrics::new("pipeline")));
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let stopper = tx.clone();
    let policy = SavepointPolicy { root: dir.path().to_path_buf().into(), allow_any_target: false };
    let state = ApiState { token: "t".into(), policy: Arc::new(policy), jobs: tx, status: status.clone(), metrics: metrics.clone() };
    let server = wasmflow_host::api::serve("127.0.0.1:0", state).await.unwrap();
    let url = format!("http://{}/", server.address);
    let opts = RunOptions { control: Some(rx), status: Some(status.clone()), metrics: Some(metrics), ..Default::default() };
    let run = tokio::spawn(async move { run_job(&Engine::new().unwrap(), &spec, opts).await });

    // While it runs: after the failing map's restart, with a checkpoint completed since.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(status.job().state == JobState::Running && status.job().restarts == 1 && status.checkpoints().completed >= 1) {
        assert!(Instant::now() < deadline, "the job did not restart and checkpoint: {:?}", status.job());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let page = url.clone();
    let dom = tokio::task::spawn_blocking(move || render(&page, 2500, None)).await.unwrap();
    assert!(dom.contains("data-loaded=\"true\""), "the script ran and drew the API's data: {dom}");
    assert_eq!(text_of(&dom, "job-state"), "running");
    assert_eq!(text_of(&dom, "job-restarts"), "1");
    // The graph: one node per operator, the forward chain numbers → upper → fail in one box,
    // an edge per job edge labelled with its partitioning.
    let nodes: Vec<&str> = dom.split("<g class=\"node\" data-operator=\"").skip(1).map(|s| s.split('"').next().unwrap()).collect();
    assert_eq!(nodes, ["numbers", "upper", "fail", "counter", "out"]);
    assert_eq!(dom.matches("class=\"chain\"").count(), 1, "one chain of more than one operator");
    assert!(dom.contains(">fail ×2</text>") && dom.contains(">counter ×3 (keyed)</text>"), "{dom}");
    let labels: Vec<&str> = dom.split("<text class=\"edge-label\"").skip(1).map(|s| s.split('>').nth(1).unwrap().split('<').next().unwrap()).collect();
    assert_eq!(labels, ["forward", "forward", "key-hash", "rebalance"]);
    // The failure, with the guest's frames as the API reports them.
    let exceptions = status.exceptions();
    let e = &exceptions.exceptions[0];
    assert!(dom.contains(&format!("attempt {} in fail/{}, restarted", e.attempt, e.subtask.unwrap())), "{dom}");
    assert!(!e.backtrace.is_empty() && dom.contains(&format!("guest backtrace ({} frames)", e.backtrace.len())), "{dom}");
    // Every checkpoint row is one the job took, with its status.
    let history = status.checkpoints();
    let rows: Vec<&str> = dom.split("<tr data-checkpoint=\"").skip(1).map(|s| s.split('"').next().unwrap()).collect();
    assert!(!rows.is_empty());
    for id in rows {
        assert!(history.history.iter().any(|c| c.id.to_string() == id), "checkpoint {id} on the page is in the job's history");
    }

    // Stopped: the numbers on the page are the job's final ones, exactly.
    let (reply, stopped) = tokio::sync::oneshot::channel();
    stopper.send(ControlRequest::Stop { savepoint: None, reply }).await.unwrap();
    stopped.await.unwrap().unwrap();
    let report = run.await.unwrap().unwrap();
    assert_eq!((report.restarts, report.stopped), (1, true));
    let address = server.address.to_string();
    let (dom, reply) = tokio::task::spawn_blocking(move || (render(&url, 2500, None), Client::new(&address, None).job().unwrap())).await.unwrap();
    assert_eq!(text_of(&dom, "job-state"), "stopped");
    for op in &reply.metrics {
        let (rin, rout) = op.records();
        let cells = row(&dom, &format!("data-operator=\"{}\"", op.operator));
        assert_eq!(cells[..4], [op.operator.clone(), op.subtasks.len().to_string(), rin.to_string(), rout.to_string()], "{}", op.operator);
    }
    assert_eq!(
        text_of(&dom, "checkpoint-counts"),
        format!("{} completed, {} failed, 0 in progress", status.checkpoints().completed, status.checkpoints().failed)
    );

    // A screenshot for the README (docs/dashboard.png is one of these).
    let shot = wasmflow_tests::target_dir().join("dashboard.png");
    let url = format!("http://{}/", server.address);
    let path = shot.clone();
    tokio::task::spawn_blocking(move || render(&url, 2500, Some(&path))).await.unwrap();
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000, "a screenshot was written");
}
