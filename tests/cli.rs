//! The binary's papers: `--version` with the revision, shell completions, log format and level
//! checks, secrets kept out of `--help`, refused certificate lifetimes.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use std::process::Command;
use support::process::{ServerProcess, binary};

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap()
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
    for bad in ["verbose", "fargate_webhook=loud", "=debug", ""] {
        let out = run(&["--log-level", bad, "completions", "bash"], &[]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("is not a log level"), "{bad:?}: {err}");
    }
    for good in ["debug", "WARN", "fargate_webhook=debug,kube=info", "off"] {
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
fn json_logs_are_one_object_a_line_and_a_bare_level_is_ours_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::spawn(
        &dir.path().join("state"),
        &dir.path().join("certs/tls.crt"),
        &dir.path().join("certs/tls.key"),
        &["--log-format", "json", "--log-level", "debug"],
    );
    server.signal("TERM");
    server.wait_exit(std::time::Duration::from_secs(20));
    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        // `debug` is this program's: no hyper, h2 or rustls lines at debug.
        let target = v["target"].as_str().unwrap_or("");
        if v["level"] == "DEBUG" {
            assert!(target.starts_with("fargate_webhook"), "{line}");
        }
    }
    assert!(lines.iter().any(|l| l.contains("shutting down")));
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
