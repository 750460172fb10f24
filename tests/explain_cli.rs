//! `fargate-webhook explain` as a user runs it: the real binary, a YAML pod, text and JSON output.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use serde_json::Value;
use std::process::Command;
use support::fixtures_dir;
use support::process::binary;

fn explain(args: &[&str]) -> std::process::Output {
    let dir = fixtures_dir().join("explain");
    let dir = dir.to_str().unwrap();
    Command::new(binary())
        .arg("explain")
        .args(["--profiles", &format!("{dir}/profiles.json")])
        .args(args.iter().map(|a| a.replace("{dir}", dir)))
        .output()
        .unwrap()
}

#[test]
fn text_names_the_choice_and_why_not_the_others() {
    let out = explain(&["--pod", "{dir}/pod.yaml"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.starts_with(
            "pod default/web: the pod runs on Fargate with profile 'everything-in-default'"
        ),
        "{text}"
    );
    for line in [
        "  apps-new [CREATING]: status is CREATING, only ACTIVE profiles apply",
        "  batch [ACTIVE]: selector 1: namespace 'default' does not match 'batch-*'",
        "  default-with-infrastructure-label [ACTIVE]: selector 1: label 'infrastructure' is 'ec2', selector wants 'fargate'",
        "* everything-in-default [ACTIVE]: chosen: first matching ACTIVE profile by name",
        "patch: add /spec/schedulerName \"fargate-scheduler\"",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        text.contains("Pod not supported on Fargate: port contains HostIP or HostPort"),
        "{text}"
    );
}

#[test]
fn json_output_and_stdin() {
    let pod = std::fs::read(fixtures_dir().join("explain/pod.yaml")).unwrap();
    let mut child = Command::new(binary())
        .args([
            "explain",
            "--pod",
            "-",
            "-o",
            "json",
            "--priority-override",
            "false",
        ])
        .arg("--profiles")
        .arg(fixtures_dir().join("explain/profiles.json"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(&pod).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["chosen"], "everything-in-default");
    assert_eq!(v["profiles"].as_array().unwrap().len(), 4);
    let paths: Vec<&str> = v["patch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["path"].as_str().unwrap())
        .collect();
    assert!(
        !paths.contains(&"/spec/priority"),
        "override off: {paths:?}"
    );
}

#[test]
fn a_broken_manifest_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "metadata: [unclosed").unwrap();
    let out = explain(&["--pod", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is not a pod manifest"), "{err}");
}
