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

/// The real binary serving on ephemeral loopback ports, its stderr in a file; killed on drop.
pub struct ServerProcess {
    pub child: std::process::Child,
    pub webhook: std::net::SocketAddr,
    pub ops: std::net::SocketAddr,
    pub api: std::net::SocketAddr,
    log: PathBuf,
}

impl ServerProcess {
    /// `serve` over these files on `127.0.0.1:0` ports, plus `extra` flags; returns once the
    /// addresses are printed. stdout is read only for them: the server must survive a stdout
    /// nobody reads any more.
    pub fn spawn(state_dir: &Path, tls_cert: &Path, tls_key: &Path, extra: &[&str]) -> Self {
        use std::io::BufRead;
        let log = state_dir
            .parent()
            .unwrap_or(state_dir)
            .join(format!("server-{}.log", free_port()));
        let mut child = serve_command(&binary(), state_dir, tls_cert, tls_key)
            .args(["--webhook-addr", "127.0.0.1:0"])
            .args(["--metrics-addr", "127.0.0.1:0"])
            .args(["--api-addr", "127.0.0.1:0"])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("create the server log"))
            .spawn()
            .expect("spawn fargate-webhook");
        let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut webhook, mut ops, mut api) = (None, None, None);
        let addr = |rest: &str| {
            rest.split(|c: char| c == '/' || c.is_whitespace())
                .next()
                .unwrap()
                .parse::<std::net::SocketAddr>()
                .expect("a printed address")
        };
        for line in lines {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("fargate-webhook: webhook https://") {
                webhook = Some(addr(rest));
            }
            if let Some(rest) = line.strip_prefix("fargate-webhook: ops http://") {
                ops = Some(addr(rest));
            }
            if let Some(rest) = line
                .strip_prefix("fargate-webhook: EKS API http://")
                .or_else(|| line.strip_prefix("fargate-webhook: EKS API https://"))
            {
                api = Some(addr(rest));
                break;
            }
        }
        let mut server = ServerProcess {
            webhook: webhook.unwrap_or_else(|| panic!("no webhook address printed")),
            ops: ops.unwrap_or_else(|| panic!("no ops address printed")),
            api: api.unwrap_or_else(|| panic!("no API address printed")),
            child,
            log,
        };
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("the server exited with {status}: {}", server.log());
        }
        server
    }

    /// What the server wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident set size now, in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server process is alive");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Open file descriptors now.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Send a signal by name (`TERM`, `INT`).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args(["-s", name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -s {name}");
    }

    /// Wait for the exit, at most `within`.
    pub fn wait_exit(&mut self, within: std::time::Duration) -> std::process::ExitStatus {
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                started.elapsed() < within,
                "the server did not exit within {within:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// promtool (Debian's `prometheus` package; `.ci/run` installs it): `None` where it is missing,
/// except in CI, where a missing promtool is a failure, not a skip.
pub fn promtool() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("promtool"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var_os("CI").is_some() {
        panic!("promtool is not installed: .ci/run installs Debian's prometheus package");
    }
    found
}
