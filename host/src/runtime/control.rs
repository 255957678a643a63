//! The control endpoint of a running job: JSON lines over TCP on loopback.
//!
//! One request per connection, one JSON object per line each way:
//! `{"command":"savepoint","target":"/dir","token":"…"}` → `{"ok":true,"path":"/dir/savepoint-7"}`,
//! `{"command":"stop","savepoint":"/dir","token":"…"}` (savepoint optional),
//! `{"command":"status","token":"…"}`.
//!
//! A tiny protocol of our own rather than an HTTP stack: it needs three commands, and tokio and
//! serde_json are already here. Loopback is reachable by every local user, so:
//! * every request carries the job's **secret token**, kept with the address in
//!   `<checkpoint dir>/_control`, a file only the job's user can read (mode 0600); the CLI reads it
//!   from there. Tokens are compared in constant time.
//! * a request line is at most [`MAX_REQUEST_BYTES`] and must arrive within
//!   [`REQUEST_TIMEOUT`]; at most [`MAX_CONNECTIONS`] connections are served at once, further
//!   ones are closed at once — idle or endless clients cannot exhaust memory or descriptors.
//! * savepoints are written only below the job's savepoint root (see [`SavepointPolicy`]).

use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::job::ControlRequest;

/// Longest request line.
pub const MAX_REQUEST_BYTES: u64 = 64 << 10;
/// Longest wait for a request line.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 32;

/// A request line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case")]
pub enum Command {
    Savepoint { target: PathBuf },
    Stop { savepoint: Option<PathBuf> },
    Status,
}

/// A command with the job's token.
#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    #[serde(flatten)]
    pub command: Command,
    pub token: String,
}

/// Where savepoints may be written: below `root` (`[savepoints] dir`), or anywhere the job's
/// user can write when the job file says `allow-any-target = true`.
#[derive(Clone, Debug)]
pub struct SavepointPolicy {
    pub root: PathBuf,
    pub allow_any_target: bool,
}

impl SavepointPolicy {
    /// The target, resolved, if the policy allows it. The target must exist (the CLI creates
    /// it, as the user who asks): symlinks and `..` are resolved before the check.
    pub fn check(&self, target: &Path) -> Result<PathBuf> {
        let resolved = target.canonicalize().map_err(|e| anyhow!("savepoint target {}: {e}", target.display()))?;
        if self.allow_any_target {
            return Ok(resolved);
        }
        let root = self.root.canonicalize().unwrap_or_else(|_| self.root.clone());
        if !resolved.starts_with(&root) {
            bail!(
                "savepoint target {} is outside the job's savepoint directory {}; use a directory inside it, or set [savepoints] allow-any-target = true in the job file",
                resolved.display(),
                root.display()
            );
        }
        Ok(resolved)
    }
}

/// A new random token (128 bits from the OS).
pub fn new_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).context("cannot read /dev/urandom for the control token")?;
    Ok(hex::encode(bytes))
}

/// Equal in time independent of where the strings differ.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

/// Binds the endpoint (loopback only) and forwards authenticated requests to the job.
pub async fn serve(address: &str, token: String, policy: SavepointPolicy, jobs: mpsc::Sender<ControlRequest>) -> Result<ControlServer> {
    let listener = TcpListener::bind(address).await.with_context(|| format!("cannot listen on control address {address}"))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        bail!("control address {address} is not a loopback address; the control endpoint only listens on loopback");
    }
    let active = Arc::new(AtomicUsize::new(0));
    let counter = active.clone();
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let shared = Arc::new((token, policy));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // Over the limit: closed at once (dropping the stream), nothing kept for it.
            let Ok(slot) = slots.clone().try_acquire_owned() else { continue };
            let (jobs, counter, shared) = (jobs.clone(), counter.clone(), shared.clone());
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Err(e) = handle(stream, &shared.0, &shared.1, jobs).await {
                    tracing::warn!("control request failed: {e:#}");
                }
                counter.fetch_sub(1, Ordering::SeqCst);
                drop(slot);
            });
        }
    });
    Ok(ControlServer { address: local, active })
}

async fn handle(stream: TcpStream, token: &str, policy: &SavepointPolicy, jobs: mpsc::Sender<ControlRequest>) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST_BYTES));
    let read_line = reader.read_until(b'\n', &mut line);
    let reply = match tokio::time::timeout(REQUEST_TIMEOUT, read_line).await {
        Err(_) => serde_json::json!({"ok": false, "error": format!("no request within {} s", REQUEST_TIMEOUT.as_secs())}),
        Ok(Err(e)) => return Err(e.into()),
        Ok(Ok(_)) if line.last() != Some(&b'\n') => {
            serde_json::json!({"ok": false, "error": format!("bad request: not one line of at most {MAX_REQUEST_BYTES} bytes")})
        }
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Err(e) => serde_json::json!({"ok": false, "error": format!("bad request: {e}")}),
            Ok(r) if !same_token(&r.token, token) => {
                tracing::warn!("control request refused: wrong token");
                serde_json::json!({"ok": false, "error": "unauthorized: wrong or missing token (it is in <checkpoint dir>/_control, readable by the job's user)"})
            }
            Ok(r) => answer(r.command, policy, &jobs).await,
        },
    };
    write.write_all(format!("{reply}\n").as_bytes()).await?;
    Ok(())
}

async fn answer(command: Command, policy: &SavepointPolicy, jobs: &mpsc::Sender<ControlRequest>) -> serde_json::Value {
    match command {
        Command::Savepoint { target } => {
            let target = match policy.check(&target) {
                Ok(t) => t,
                Err(e) => return serde_json::json!({"ok": false, "error": format!("{e:#}")}),
            };
            let (tx, rx) = oneshot::channel();
            jobs.send(ControlRequest::Savepoint { target, reply: tx }).await.ok();
            path_reply(rx.await.map(|r| r.map(Some)))
        }
        Command::Stop { savepoint } => {
            let savepoint = match savepoint.map(|t| policy.check(&t)).transpose() {
                Ok(t) => t,
                Err(e) => return serde_json::json!({"ok": false, "error": format!("{e:#}")}),
            };
            let (tx, rx) = oneshot::channel();
            jobs.send(ControlRequest::Stop { savepoint, reply: tx }).await.ok();
            path_reply(rx.await)
        }
        Command::Status => {
            let (tx, rx) = oneshot::channel();
            jobs.send(ControlRequest::Status { reply: tx }).await.ok();
            match rx.await {
                Ok(v) => serde_json::json!({"ok": true, "status": v}),
                Err(_) => serde_json::json!({"ok": false, "error": "the job ended"}),
            }
        }
    }
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
    let stream = TcpStream::connect(address).await.with_context(|| {
        format!(
            "cannot reach the job's control endpoint at {address}: is the job running? (its address is printed at start and kept in <checkpoint dir>/_control)"
        )
    })?;
    let (read, mut write) = stream.into_split();
    write.write_all(format!("{}\n", serde_json::to_string(req)?).as_bytes()).await?;
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    serde_json::from_str(&line).context("malformed reply from the control endpoint")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "abcd"));
        assert_eq!(new_token().unwrap().len(), 32);
        assert_ne!(new_token().unwrap(), new_token().unwrap());
    }

    #[test]
    fn savepoint_targets_stay_below_the_root_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("savepoints");
        std::fs::create_dir_all(root.join("mine")).unwrap();
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        let policy = SavepointPolicy { root: root.clone(), allow_any_target: false };
        assert!(policy.check(&root.join("mine")).is_ok());
        let e = format!("{:#}", policy.check(&root.join("../elsewhere")).unwrap_err());
        assert!(e.contains("is outside the job's savepoint directory") && e.contains("allow-any-target = true"), "{e}");
        let link = root.join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        assert!(policy.check(&link).is_err(), "a symlink out of the root is resolved first");
        let open = SavepointPolicy { allow_any_target: true, ..policy };
        assert!(open.check(&dir.path().join("elsewhere")).is_ok());
    }
}
