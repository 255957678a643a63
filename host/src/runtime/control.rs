//! The control endpoint of a running job: JSON lines over TCP on loopback.
//!
//! One request per connection, one JSON object per line each way:
//! `{"command":"savepoint","target":"/dir"}` → `{"ok":true,"path":"/dir/savepoint-7"}`,
//! `{"command":"stop","savepoint":"/dir"}` (savepoint optional), `{"command":"status"}`.
//! A tiny protocol of our own rather than an HTTP stack: it needs three commands, and tokio and
//! serde_json are already here.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

use super::job::ControlRequest;

/// A request line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Request {
    Savepoint { target: PathBuf },
    Stop { savepoint: Option<PathBuf> },
    Status,
}

/// A running control endpoint.
pub struct ControlServer {
    /// The bound address.
    pub address: SocketAddr,
    active: Arc<AtomicUsize>,
}

impl ControlServer {
    /// Waits (at most `max`) until requests in progress have sent their replies, so a `stop`
    /// gets its answer before the process exits.
    pub async fn drain(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        while self.active.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Binds the endpoint (loopback only) and forwards requests to the job.
pub async fn serve(address: &str, jobs: mpsc::Sender<ControlRequest>) -> Result<ControlServer> {
    let listener = TcpListener::bind(address).await.with_context(|| format!("cannot listen on control address {address}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        bail!("control address {address} is not a loopback address; the control endpoint has no authentication");
    }
    let active = Arc::new(AtomicUsize::new(0));
    let counter = active.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (jobs, counter) = (jobs.clone(), counter.clone());
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Err(e) = handle(stream, jobs).await {
                    tracing::warn!("control request failed: {e:#}");
                }
                counter.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    Ok(ControlServer { address: local, active })
}

async fn handle(stream: TcpStream, jobs: mpsc::Sender<ControlRequest>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    let reply = match serde_json::from_str::<Request>(&line) {
        Err(e) => serde_json::json!({"ok": false, "error": format!("bad request: {e}")}),
        Ok(Request::Savepoint { target }) => {
            let (tx, rx) = oneshot::channel();
            jobs.send(ControlRequest::Savepoint { target, reply: tx }).await.ok();
            path_reply(rx.await.map(|r| r.map(Some)))
        }
        Ok(Request::Stop { savepoint }) => {
            let (tx, rx) = oneshot::channel();
            jobs.send(ControlRequest::Stop { savepoint, reply: tx }).await.ok();
            path_reply(rx.await)
        }
        Ok(Request::Status) => {
            let (tx, rx) = oneshot::channel();
            jobs.send(ControlRequest::Status { reply: tx }).await.ok();
            match rx.await {
                Ok(v) => serde_json::json!({"ok": true, "status": v}),
                Err(_) => serde_json::json!({"ok": false, "error": "the job ended"}),
            }
        }
    };
    write.write_all(format!("{reply}\n").as_bytes()).await?;
    Ok(())
}

/// The reply line for a request answered with an optional path.
fn path_reply(answer: Result<Result<Option<PathBuf>, String>, oneshot::error::RecvError>) -> serde_json::Value {
    match answer {
        Ok(Ok(path)) => serde_json::json!({"ok": true, "path": path}),
        Ok(Err(e)) => serde_json::json!({"ok": false, "error": e}),
        Err(_) => serde_json::json!({"ok": false, "error": "the job ended"}),
    }
}

/// Sends one request to a running job's endpoint and returns its reply.
pub async fn request(address: &str, req: &Request) -> Result<serde_json::Value> {
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("cannot reach the job's control endpoint at {address}: is the job running? (its address is printed at start and kept in <checkpoint dir>/_control)"))?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{}\n", serde_json::to_string(req)?).as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line).context("malformed reply from the control endpoint")
}
