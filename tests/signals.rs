//! The real binary and real signals: SIGTERM drains and exits 0; a second signal exits at once.
#![cfg(unix)]

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use support::process::ServerProcess;

fn start(dir: &std::path::Path, shutdown_timeout: &str) -> ServerProcess {
    ServerProcess::spawn(
        &dir.join("data"),
        &dir.join("certs/tls.crt"),
        &dir.join("certs/tls.key"),
        &["--shutdown-timeout", shutdown_timeout],
    )
}

fn get(addr: SocketAddr, path: &str) -> Option<String> {
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

#[test]
fn sigterm_drains_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), "25s");
    let ready = get(server.ops, "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{status}");
    let log = server.log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(
        get(server.ops, "/healthz").is_none(),
        "the ops port is closed after exit"
    );
}

#[test]
fn a_second_signal_exits_without_waiting_for_the_drain() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), "60s");
    // A request whose body never finishes holds the drain open (up to the 60 s deadline; the
    // body deadline is longer than this test)...
    let mut slow = TcpStream::connect(server.api).unwrap();
    let head = "POST /clusters/fargate/fargate-profiles HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n";
    write!(slow, "{head}{{\"fargateProfileName\"").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    server.signal("TERM");
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "still draining the request in flight"
    );
    // ...until a second signal.
    server.signal("INT");
    let status = server.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}");
}
