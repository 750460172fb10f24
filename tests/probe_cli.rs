//! `fargate-webhook probe` (what the chart's `helm test` hook runs) against a real server on a real
//! TLS socket: a mutated and a plain answer, a CA that does not match, and a port that is no webhook.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use std::process::{Command, Output};
use support::process::{ServerProcess, binary};

fn probe(args: &[&str]) -> Output {
    Command::new(binary())
        .arg("probe")
        .args(args)
        .args(["--timeout", "5s"])
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn probe_reports_what_the_webhook_answered() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("profiles.json"),
        r#"{"fargateProfiles": [{"fargateProfileName": "fp-web",
            "podExecutionRoleArn": "arn:aws:iam::012345678910:role/R",
            "subnets": ["subnet-0420a37ee456daf3f"],
            "selectors": [{"namespace": "team-a", "labels": {"app": "web"}}]}]}"#,
    )
    .unwrap();
    let certs = dir.path().join("certs");
    let server = ServerProcess::spawn(&state, &certs.join("tls.crt"), &certs.join("tls.key"), &[]);
    let url = format!("https://localhost:{}/mutate", server.webhook.port());
    let ca = certs.join("ca.crt");
    let ca = ca.to_str().unwrap();

    let out = probe(&[
        "--url",
        &url,
        "--ca-file",
        ca,
        "--namespace",
        "team-a",
        "--label",
        "app=web",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("allowed, mutated for Fargate profile fp-web"),
        "{}",
        text(&out)
    );

    let out = probe(&["--url", &url, "--ca-file", ca, "--namespace", "team-b"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("allowed, not mutated"),
        "{}",
        text(&out)
    );

    // Another CA: the handshake fails, and the probe says so instead of passing.
    let other = dir.path().join("other");
    let generated = Command::new(binary())
        .args(["certs", "generate", "--dns", "localhost", "--out"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(generated.status.success(), "{}", text(&generated));
    let out = probe(&[
        "--url",
        &url,
        "--ca-file",
        other.join("ca.crt").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("POST https://localhost"),
        "{}",
        text(&out)
    );

    // The ops port speaks plain HTTP and serves no reviews: never a pass.
    let out = probe(&[
        "--url",
        &format!("https://localhost:{}/mutate", server.ops.port()),
        "--ca-file",
        ca,
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    // A path that is not the webhook's answers 404, which the probe reports.
    let out = probe(&[
        "--url",
        &format!("https://localhost:{}/nothing", server.webhook.port()),
        "--ca-file",
        ca,
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("HTTP 404"), "{}", text(&out));
    // Flags are checked before anything is sent.
    let out = probe(&["--url", &url, "--label", "novalue"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = probe(&["--url", &url, "--ca-file", "/nonexistent/ca.crt"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("/nonexistent/ca.crt"), "{}", text(&out));
}
