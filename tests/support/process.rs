//! The real `fargate-webhook` binary as a child process (for what only a process shows: signals,
//! `kill -9`, the CLI).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The binary Cargo built for this test run.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_fargate-webhook"))
}

/// A TCP port free right now on 127.0.0.1 (for a flag that needs the port before the server
/// prints it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `bin serve --state-dir <state_dir> --tls-cert <tls_cert> --tls-key <tls_key>`; the caller adds
/// the addresses, other flags and stdio, then spawns it.
pub fn serve_command(bin: &Path, state_dir: &Path, tls_cert: &Path, tls_key: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .arg("serve")
        .arg("--state-dir")
        .arg(state_dir)
        .arg("--tls-cert")
        .arg(tls_cert)
        .arg("--tls-key")
        .arg(tls_key);
    command
}
