//! The binary's papers: `--version` with the revision, shell completions, log format and level
//! checks (`RUST_LOG` included), secrets kept out of `--help`, refused certificate lifetimes.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use std::process::Command;
use support::process::{binary, serve_command};

/// The binary with these arguments and environment (and no `RUST_LOG` but the one given).
fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

/// `serve` on ephemeral ports with these flags and environment (no `RUST_LOG` but the one given),
/// stopped by SIGTERM once it has announced its addresses: what it logged.
fn serve_log(extra: &[&str], env: &[(&str, &str)]) -> String {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = serve_command(
        &binary(),
        &dir.path().join("state"),
        &dir.path().join("certs/tls.crt"),
        &dir.path().join("certs/tls.key"),
    )
    .args(["--webhook-addr", "127.0.0.1:0"])
    .args(["--metrics-addr", "127.0.0.1:0"])
    .args(["--api-addr", "127.0.0.1:0"])
    .args(extra)
    .env_remove("RUST_LOG")
    .envs(env.iter().copied())
    .stdout(std::process::Stdio::piped())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let announced = std::io::BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("fargate-webhook: EKS API"));
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(announced, "serve did not start: {}", stderr());
    let term = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {}", stderr());
    stderr()
}

/// Each line of a JSON log as an object.
fn json_lines(log: &str) -> Vec<serde_json::Value> {
    log.lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn version_names_the_revision() {
    let out = run(&["--version"], &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success());
    let (name, rest) = text.trim().split_once(' ').unwrap();
    assert_eq!(name, "fargate-webhook");
    assert!(rest.starts_with(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(
        rest.ends_with(')') && rest.contains(" ("),
        "a revision in brackets: {text}"
    );
}

#[test]
fn completions_for_every_shell() {
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef fargate-webhook"),
        ("fish", "complete -c fargate-webhook"),
        ("powershell", "Register-ArgumentCompleter"),
        ("elvish", "edit:completion"),
    ] {
        let out = run(&["completions", shell], &[]);
        assert!(out.status.success(), "{shell}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains(marker), "{shell}: {marker} missing");
        assert!(
            text.contains("scheduler") && text.contains("explain"),
            "{shell}: subcommands"
        );
    }
    assert!(!run(&["completions", "tcsh"], &[]).status.success());
}

#[test]
fn a_bad_log_level_is_an_error_not_info() {
    for bad in [
        "verbose",
        "fargate_webhook=loud",
        "=debug",
        "",
        " info",
        "fargate_webhook[bind]=debug",
        "kube-runtime=info",
    ] {
        let out = run(&["--log-level", bad, "completions", "bash"], &[]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a log level"), "{bad:?}: {err}");
    }
    for good in [
        "debug",
        "WARN",
        "fargate_webhook=debug,kube=info",
        "off",
        "warn,fargate_webhook::server=trace",
    ] {
        assert!(
            run(&["--log-level", good, "completions", "bash"], &[])
                .status
                .success(),
            "{good}"
        );
    }
    let out = run(&["completions", "bash"], &[("FARGATE_LOG_LEVEL", "chatty")]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_logs_are_one_object_a_line_with_the_message_on_top_and_a_bare_level_is_ours_alone() {
    let lines = json_lines(&serve_log(
        &["--log-format", "json", "--log-level", "debug"],
        &[],
    ));
    assert!(!lines.is_empty());
    for v in &lines {
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{v}");
        // The event's fields are flattened: nothing is nested under `fields`.
        assert!(v.get("fields").is_none(), "{v}");
        // `debug` is this program's: no hyper, h2 or rustls lines at debug.
        let target = v["target"].as_str().unwrap_or("");
        if v["level"] == "DEBUG" {
            assert!(target.starts_with("fargate_webhook"), "{v}");
        }
    }
    let stop = lines
        .iter()
        .find(|v| {
            v["message"]
                .as_str()
                .is_some_and(|m| m.contains("shutting down"))
        })
        .unwrap_or_else(|| panic!("no top-level message 'shutting down' in {lines:?}"));
    assert_eq!(stop["level"], "INFO");
}

#[test]
fn rust_log_where_set_wins_over_the_log_level() {
    let info = |log: &str| {
        json_lines(log)
            .iter()
            .any(|v| v["level"] == "INFO" && v["message"].is_string())
    };
    let json = ["--log-format", "json", "--log-level"];
    // --log-level alone: error lets no info line through.
    let quiet = serve_log(&[&json[..], &["error"]].concat(), &[]);
    assert!(!info(&quiet), "{quiet}");
    // RUST_LOG turns this program up over that --log-level error.
    let loud = serve_log(
        &[&json[..], &["error"]].concat(),
        &[("RUST_LOG", "fargate_webhook=info")],
    );
    assert!(info(&loud) && loud.contains("shutting down"), "{loud}");
    // And down: RUST_LOG=error silences the --log-level debug.
    let down = serve_log(&[&json[..], &["debug"]].concat(), &[("RUST_LOG", "error")]);
    assert!(
        json_lines(&down).iter().all(|v| v["level"] == "ERROR"),
        "only errors with RUST_LOG=error: {down}"
    );
    // An empty RUST_LOG is not set: --log-level applies (an empty filter would let no info through).
    let empty = serve_log(&[&json[..], &["info"]].concat(), &[("RUST_LOG", "")]);
    assert!(info(&empty), "{empty}");
    // A RUST_LOG tracing cannot read is an error that names it, not a silent default.
    let out = run(
        &["completions", "bash"],
        &[("RUST_LOG", "fargate_webhook[")],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RUST_LOG"), "{err}");
}

#[test]
fn secrets_from_the_environment_stay_out_of_help() {
    let out = run(
        &["serve", "--help"],
        &[("FARGATE_SIGV4_KEY", "AKIDEXAMPLE:supersecretvalue")],
    );
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("--sigv4-key"));
    assert!(!help.contains("supersecretvalue"), "{help}");
}

#[test]
fn certificate_lifetimes_that_make_no_sense_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_str().unwrap();
    for days in ["0", "-5", "100000"] {
        let out = run(
            &[
                "certs", "generate", "--dns", "a", "--out", out_dir, "--days", days,
            ],
            &[],
        );
        assert!(!out.status.success(), "--days {days}");
    }
    let out = run(
        &[
            "certs", "generate", "--dns", "a", "--out", out_dir, "--days", "1",
        ],
        &[],
    );
    assert!(out.status.success());
}
