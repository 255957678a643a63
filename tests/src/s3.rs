//! A real S3-compatible server for tests: `moto_server` (PyPI's moto[server], installed into the
//! tools folder by `make tools`) on a free loopback port, with one bucket, killed when dropped.
//! In front of it, optionally, a TCP [`Outage`] proxy a test can cut and restore: the server's
//! objects survive (moto keeps them in memory), while the job sees connections refused.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running S3 server with one bucket.
pub struct S3Server {
    child: Child,
    pub port: u16,
    pub bucket: String,
}

/// The moto_server binary: `$MOTO_SERVER`, else the project's tools folder.
pub fn moto_bin() -> PathBuf {
    crate::tool_bin("moto_server", "MOTO_SERVER")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl S3Server {
    /// Starts a server, waits until it answers, and creates `bucket`.
    pub fn start(bucket: &str) -> S3Server {
        let port = free_port();
        let child = Command::new(moto_bin())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = S3Server { child, port, bucket: bucket.into() };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not start listening on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // moto takes unsigned requests: a plain PUT creates the bucket.
        let status = request(port, &format!("PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
        assert!(status.starts_with("HTTP/1.1 200"), "creating bucket {bucket}: {status}");
        server
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// The object-store client's options for a server at `port` (this one, or a proxy).
    pub fn options(port: u16) -> std::collections::BTreeMap<String, String> {
        let endpoint = format!("http://127.0.0.1:{port}");
        [("endpoint", endpoint.as_str()), ("allow-http", "true"), ("region", "us-east-1"), ("access-key-id", "test"), ("secret-access-key", "test")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The same as the job file's `[object-store]` table.
    pub fn options_toml(port: u16) -> String {
        S3Server::options(port).iter().fold(String::from("[object-store]\n"), |t, (k, v)| format!("{t}{k} = \"{v}\"\n"))
    }

    /// The keys below `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let body = request(
            self.port,
            &format!("GET /{}?list-type=2&prefix={prefix} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", self.bucket, self.port),
        );
        let mut keys: Vec<String> = body.split("<Key>").skip(1).filter_map(|k| k.split("</Key>").next()).map(str::to_string).collect();
        keys.sort();
        keys
    }

    /// The ETag of object `key` (a multipart upload's ends in `-<parts>`), from a listing.
    pub fn etag(&self, key: &str) -> Option<String> {
        let body = request(
            self.port,
            &format!("GET /{}?list-type=2&prefix={key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n", self.bucket, self.port),
        );
        let entry = body.split("<Contents>").skip(1).find(|c| c.contains(&format!("<Key>{key}</Key>")))?;
        let tag = entry.split("<ETag>").nth(1)?.split("</ETag>").next()?;
        Some(tag.replace("&#34;", "").replace("&quot;", "").replace('"', ""))
    }

    /// Writes an object (unsigned PUT).
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head =
            format!("PUT /{}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", self.bucket, self.port, bytes.len());
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(bytes).unwrap();
        let reply = read_reply(&mut stream);
        assert!(reply.starts_with("HTTP/1.1 200"), "PUT {key}: {reply}");
    }

    /// The completed checkpoints (`chk-<id>` with `_metadata`) below `prefix`, ascending.
    pub fn complete_checkpoints(&self, prefix: &str) -> Vec<u64> {
        let mut ids: Vec<u64> =
            self.keys(prefix).iter().filter_map(|k| k.strip_suffix("/_metadata")?.rsplit('/').next()?.strip_prefix("chk-")?.parse().ok()).collect();
        ids.sort();
        ids
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one HTTP/1.1 request and returns the whole reply. moto (werkzeug) sometimes resets
/// the connection after a complete `Connection: close` reply: what arrived counts.
fn request(port: u16, text: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(text.as_bytes()).unwrap();
    read_reply(&mut stream)
}

fn read_reply(stream: &mut TcpStream) -> String {
    let mut reply = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !reply.is_empty() => break,
            Err(e) => panic!("reading the S3 server's reply: {e}"),
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

/// A TCP proxy to `127.0.0.1:upstream` on its own port. [`cut`](Outage::cut) closes every
/// connection and stops listening (clients get "connection refused", as from a dead server);
/// [`restore`](Outage::restore) listens again on the same port.
pub struct Outage {
    pub port: u16,
    upstream: u16,
    live: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<std::thread::JoinHandle<()>>,
}

impl Outage {
    pub fn start(upstream: u16) -> Outage {
        let mut proxy = Outage { port: free_port(), upstream, live: Default::default(), stop: Default::default(), acceptor: None };
        proxy.restore();
        proxy
    }

    /// Listens (again) and forwards.
    pub fn restore(&mut self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).expect("rebind the proxy port");
        self.stop.store(false, Ordering::SeqCst);
        let (stop, live, upstream) = (self.stop.clone(), self.live.clone(), self.upstream);
        self.acceptor = Some(std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                live.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        }));
    }

    /// Closes every connection and stops listening.
    pub fn cut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port)); // wakes the acceptor, which then drops the listener
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().unwrap();
        }
        for stream in self.live.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(Shutdown::Write);
    });
}

impl Drop for Outage {
    fn drop(&mut self) {
        self.cut();
    }
}
