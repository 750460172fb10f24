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
    assert!(text.starts_with("# Pod/web ("), "{text}");
    assert_eq!(
        text.lines().nth(1),
        Some("pod default/web: the pod runs on Fargate with profile 'everything-in-default'"),
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
    // The scheduler's verdict, in its own words: the webhook's warning and the event agree.
    assert!(
        text.contains("warning: Pod not supported on Fargate: port contains HostIP or HostPort"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l == "fargate-scheduler: refuses it (FailedScheduling): Pod not supported on Fargate: port contains HostIP or HostPort"),
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
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &all[0];
    assert_eq!(all.as_array().unwrap().len(), 1);
    assert_eq!(v["source"], "-");
    assert_eq!(v["chosen"], "everything-in-default");
    assert_eq!(v["onFargate"], false);
    assert_eq!(v["scheduler"]["verdict"], "refuse");
    assert_eq!(v["scheduler"]["reason"], "unsupported");
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
    assert!(err.contains("bad.yaml: not YAML or JSON"), "{err}");
    // A file with nothing that makes pods says so.
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {}\n",
    )
    .unwrap();
    let out = explain(&["-f", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no Pod or workload that makes pods"), "{err}");
}

/// `explain -f DIR -o json`: the answers, by object.
fn answers(args: &[&str]) -> (std::process::ExitStatus, Vec<Value>) {
    let out = explain(args);
    let all: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status, all.as_array().unwrap().clone())
}

#[test]
fn a_directory_of_real_manifests_one_answer_per_pod_template() {
    let (status, all) = answers(&["-f", "{dir}/manifests", "-o", "json"]);
    assert!(status.success());
    let by_object: std::collections::BTreeMap<&str, &Value> = all
        .iter()
        .map(|a| (a["object"].as_str().unwrap(), a))
        .collect();
    assert_eq!(
        by_object.keys().copied().collect::<Vec<_>>(),
        [
            "CronJob/nightly-report",
            "DaemonSet/node-exporter",
            "Deployment/web",
            "Pod/debug",
            "StatefulSet/db"
        ]
    );
    // The Deployment: the label-selecting profile; the init container's 2 vCPU wins, memory
    // 1.25 GiB + 256 MB → 2 vCPU 4 GB.
    let web = by_object["Deployment/web"];
    assert_eq!(web["chosen"], "default-with-infrastructure-label");
    assert_eq!(web["scheduler"]["capacityProvisioned"], "2vCPU 4GB");
    assert_eq!(web["onFargate"], true);
    assert!(web["source"].as_str().unwrap().ends_with("deployment.yaml"));
    // The CronJob's pods: limits stand in for requests (1 vCPU, 2 GB + 256 MB → 1 vCPU 3 GB).
    let report = by_object["CronJob/nightly-report"];
    assert_eq!(report["chosen"], "batch");
    assert_eq!(report["scheduler"]["capacityProvisioned"], "1vCPU 3GB");
    // DaemonSets never run on Fargate.
    let exporter = by_object["DaemonSet/node-exporter"];
    assert_eq!(exporter["onFargate"], false);
    assert!(exporter["chosen"].is_null() && exporter["scheduler"].is_null());
    assert!(
        exporter["summary"]
            .as_str()
            .unwrap()
            .contains("DaemonSets never run on Fargate")
    );
    // A privileged pod is chosen by a profile, then refused by the scheduler.
    let debug = by_object["Pod/debug"];
    assert_eq!(debug["chosen"], "everything-in-default");
    assert_eq!(
        debug["scheduler"]["message"],
        "Pod not supported on Fargate: invalid SecurityContext fields: Privileged"
    );
    // No profile selects namespace `data`.
    assert_eq!(by_object["StatefulSet/db"]["onFargate"], false);

    // For CI: the same with --fail-unless-fargate fails; the Fargate-ready files alone pass.
    let (status, _) = answers(&[
        "-f",
        "{dir}/manifests",
        "-o",
        "json",
        "--fail-unless-fargate",
    ]);
    assert_eq!(status.code(), Some(1));
    let (status, ok) = answers(&[
        "-f",
        "{dir}/manifests/deployment.yaml,{dir}/manifests/cronjob.yaml",
        "-o",
        "json",
        "--fail-unless-fargate",
    ]);
    assert!(status.success());
    assert_eq!(ok.len(), 2);
}

#[test]
fn profiles_from_a_running_servers_api() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::copy(
        fixtures_dir().join("explain/profiles.json"),
        state.join("profiles.json"),
    )
    .unwrap();
    let server = support::process::ServerProcess::spawn(
        &state,
        &dir.path().join("certs/tls.crt"),
        &dir.path().join("certs/tls.key"),
        &[],
    );
    let out = Command::new(binary())
        .args(["explain", "-o", "json", "--endpoint-url"])
        .arg(format!("http://{}", server.api))
        .arg("-f")
        .arg(fixtures_dir().join("explain/manifests/deployment.yaml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(all[0]["chosen"], "default-with-infrastructure-label");
    assert_eq!(all[0]["profiles"].as_array().unwrap().len(), 4);
    // Two sources at once is an error.
    let out = explain(&[
        "--endpoint-url",
        "http://127.0.0.1:1",
        "-f",
        "{dir}/pod.yaml",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("give one source of profiles"));
}
