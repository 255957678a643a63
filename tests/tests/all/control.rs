//! The control endpoint is driven only by whoever can read the job's token, and no client can
//! make the job hold unbounded memory or connections or write a savepoint outside its root
//! (docs/threat-model.md).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmflow_host::checkpoint::ControlFile;
use wasmflow_host::runtime::control::{Command as ControlCommand, Request, request};
use wasmflow_tests::job::PipelineJob;
use wasmflow_tests::wasmflow_bin;

fn ask(address: &str, token: &str, command: ControlCommand) -> serde_json::Value {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(request(address, &Request { command, token: token.into() })).unwrap()
}

#[test]
fn the_control_endpoint_needs_the_token_and_bounds_what_clients_can_make_it_hold() {
    let dir = tempfile::tempdir().unwrap();
    let job = PipelineJob { count: 1_000_000, records_per_second: Some(1000), ..Default::default() }.write(dir.path());
    let mut child = Command::new(wasmflow_bin()).arg("run").arg(&job).stderr(Stdio::null()).spawn().unwrap();
    let file = dir.path().join("checkpoints/_control");
    let deadline = Instant::now() + Duration::from_secs(30);
    let control = loop {
        if let Ok(c) = ControlFile::read(&file) {
            break c;
        }
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600, "only the job's user reads the token");

    // Without the token nothing happens.
    let refused = ask(&control.address, "not-the-token", ControlCommand::Stop { savepoint: None });
    assert_eq!(refused["ok"], false);
    assert!(refused["error"].as_str().unwrap().starts_with("unauthorized"), "{refused}");

    // A request line that never ends is cut off at 64 KiB, not buffered without bound.
    let mut endless = TcpStream::connect(&control.address).unwrap();
    let _ = endless.write_all(&vec![b'x'; 1 << 20]);
    let mut reply = String::new();
    let _ = endless.read_to_string(&mut reply);
    assert!(reply.contains("bad request: not one line of at most 65536 bytes"), "{reply}");

    // Idle connections beyond the limit are closed at once; the job does not run out of
    // anything and still answers.
    let idle: Vec<TcpStream> = (0..1000).map(|_| TcpStream::connect(&control.address).unwrap()).collect();
    let mut last = idle.last().unwrap().try_clone().unwrap();
    last.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(last.read(&mut [0u8; 16]).unwrap(), 0, "connection 1000 was closed by the server");
    drop(idle);

    // A savepoint outside the job's savepoint root is refused.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let outside = ask(&control.address, &control.token, ControlCommand::Savepoint { target: elsewhere });
    assert!(outside["error"].as_str().unwrap().contains("is outside the job's savepoint directory"), "{outside}");

    // The job kept running through all of it, and the CLI (which reads the token) stops it.
    assert!(child.try_wait().unwrap().is_none(), "the job is still running");
    let stop = Command::new(wasmflow_bin()).args(["stop", "--job"]).arg(&job).output().unwrap();
    assert!(stop.status.success(), "{}", String::from_utf8_lossy(&stop.stderr));
    assert!(child.wait().unwrap().success());
}
