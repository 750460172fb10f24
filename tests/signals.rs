//! The real binary and real signals: SIGTERM drains and exits 0; a second signal exits at once.
#![cfg(unix)]

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::blocking_eventually;
use support::process::{binary, serve_command};

struct Server {
    child: Child,
    ops: String,
    api: String,
}

fn start(dir: &std::path::Path, shutdown_timeout: &str) -> Server {
    let mut child = serve_command(
        &binary(),
        &dir.join("data"),
        &dir.join("certs/tls.crt"),
        &dir.join("certs/tls.key"),
    )
    .args([
        "--webhook-addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--api-addr",
        "127.0.0.1:0",
    ])
    .args(["--shutdown-timeout", shutdown_timeout])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut ops, mut api) = (None, None);
    for line in lines.by_ref() {
        let line = line.unwrap();
        let addr = |rest: &str| rest.split_whitespace().next().unwrap().to_string();
        if let Some(rest) = line.strip_prefix("fargate-webhook: ops http://") {
            ops = Some(addr(rest));
        }
        if let Some(rest) = line.strip_prefix("fargate-webhook: EKS API http://") {
            api = Some(addr(rest));
            break;
        }
    }
    // Stop reading: the server must survive a stdout nobody reads any more.
    drop(lines);
    Server {
        child,
        ops: ops.expect("the ops address is printed"),
        api: api.expect("the API address is printed"),
    }
}

fn get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    Some(text)
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args(["-s", name, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    blocking_eventually(
        "the server exits",
        within,
        Duration::from_millis(20),
        || child.try_wait().unwrap(),
    )
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), "25s");
    let ready = get(&server.ops, "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    signal(&server.child, "TERM");
    let status = wait_exit(&mut server.child, Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let mut stderr = String::new();
    server
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.contains("shutting down"), "{stderr}");
    assert!(
        get(&server.ops, "/healthz").is_none(),
        "the ops port is closed after exit"
    );
}

#[test]
fn a_second_signal_exits_without_waiting_for_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), "60s");
    // A request whose body never finishes holds the drain open (up to the 60 s deadline)...
    let mut slow = TcpStream::connect(&server.api).unwrap();
    let head = "POST /clusters/fargate/fargate-profiles HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    write!(slow, "{head}{{\"fargateProfileName\"").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    signal(&server.child, "TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "still draining the request in flight"
    );
    // ...until a second signal.
    signal(&server.child, "INT");
    let status = wait_exit(&mut server.child, Duration::from_secs(5));
    assert!(status.success(), "{status}");
}
