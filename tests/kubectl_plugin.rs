//! The kubectl plugin (`plugins/kubectl-fargate`) as kubectl runs it: kubectl passes the words after
//! `kubectl fargate` and none of its own flags, so the plugin must read `--context`, `--kubeconfig`,
//! `-n/--namespace` and `-h/--help` itself (README, "Which profile would this pod get"). Here the binary is
//! a stand-in that records its argv: what the plugin hands over, exactly. The real binary against a real
//! apiserver with a two-context kubeconfig is `tests/cluster/test_explain.py`.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::process::binary;

fn plugin_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("plugins/kubectl-fargate")
}

/// The plugin run with `args` and a stand-in binary; its output, and the stand-in's argv when it ran.
fn run(args: &[&str]) -> (Output, Option<Vec<String>>) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("argv");
    let stand_in = dir.path().join("fargate-webhook");
    std::fs::write(
        &stand_in,
        format!(
            "#!/bin/sh\nfor a do printf '%s\\n' \"$a\"; done > '{}'\n",
            record.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stand_in, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("sh")
        .arg(plugin_path())
        .args(args)
        .env("FARGATE_WEBHOOK", &stand_in)
        .output()
        .unwrap();
    let argv = std::fs::read_to_string(&record)
        .ok()
        .map(|s| s.lines().map(str::to_owned).collect());
    (out, argv)
}

fn passed(args: &[&str]) -> Vec<String> {
    let (out, argv) = run(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    argv.unwrap_or_else(|| panic!("{args:?}: the binary was not run"))
}

#[test]
fn kubectl_flags_anywhere_reach_the_binary_in_order() {
    assert_eq!(
        passed(&[
            "--context",
            "prod",
            "explain",
            "-f",
            "my app.yaml",
            "-n",
            "shop",
            "--kubeconfig=/etc/kube/two-contexts",
        ]),
        [
            "explain",
            "--from-cluster",
            "--context",
            "prod",
            "-f",
            "my app.yaml",
            "-n",
            "shop",
            "--kubeconfig=/etc/kube/two-contexts",
        ]
    );
    assert_eq!(
        passed(&[
            "explain",
            "--namespace=shop",
            "--context=prod",
            "--kubeconfig",
            "k",
            "-f",
            "-"
        ]),
        [
            "explain",
            "--from-cluster",
            "--namespace=shop",
            "--context=prod",
            "--kubeconfig",
            "k",
            "-f",
            "-",
        ]
    );
}

#[test]
fn the_cluster_is_the_source_unless_another_is_named() {
    for source in [
        &["--profiles", "p.json"][..],
        &["--profiles=p.json"],
        &["--endpoint-url", "http://127.0.0.1:8080"],
        &["--endpoint-url=http://127.0.0.1:8080"],
        &["--from-cluster"],
    ] {
        let mut args = vec!["explain", "-f", "a.yaml"];
        args.extend(source);
        let argv = passed(&args);
        assert_eq!(
            argv.iter().filter(|a| *a == "--from-cluster").count(),
            usize::from(source == ["--from-cluster"]),
            "{args:?} -> {argv:?}"
        );
        assert!(argv.ends_with(&source.iter().map(|s| s.to_string()).collect::<Vec<_>>()));
    }
}

#[test]
fn what_if_finds_its_file_among_the_flags() {
    for args in [
        &["what-if", "new.json", "--context", "prod", "-n", "shop"][..],
        &["--context", "prod", "what-if", "-n", "shop", "new.json"],
        &["what-if", "--context", "prod", "-n", "shop", "new.json"],
    ] {
        assert_eq!(
            passed(args),
            [
                "explain",
                "--what-if",
                "new.json",
                "--context",
                "prod",
                "-n",
                "shop"
            ],
            "{args:?}"
        );
    }
}

#[test]
fn help_anywhere_prints_the_usage_and_runs_nothing() {
    for args in [
        &["-h"][..],
        &["--help"],
        &["help"],
        &["explain", "-h"],
        &["explain", "-f", "a.yaml", "--context", "prod", "--help"],
        &["what-if", "--help"],
    ] {
        let (out, argv) = run(args);
        assert!(out.status.success(), "{args:?}");
        assert_eq!(argv, None, "{args:?}: the binary must not run");
        let usage = String::from_utf8(out.stdout).unwrap();
        for flag in [
            "kubectl fargate explain -f",
            "kubectl fargate what-if PROFILES_FILE",
            "--kubeconfig FILE",
            "--context NAME",
            "-n, --namespace NS",
            "-h, --help",
        ] {
            assert!(usage.contains(flag), "{args:?}: {flag} missing in\n{usage}");
        }
    }
    // The value of a flag is never taken for -h: a namespace may not be called that, a file may.
    assert_eq!(
        passed(&["explain", "-f", "-h"]),
        ["explain", "--from-cluster", "-f", "-h"]
    );
}

#[test]
fn misuse_says_why_on_stderr_and_exits_2() {
    for (args, says) in [
        (&[][..], "name a command"),
        (&["--context", "prod"], "name a command"),
        (&["apply", "-f", "a.yaml"], "unknown command 'apply'"),
        (
            &["what-if", "-n", "shop"],
            "what-if needs the profiles file",
        ),
    ] {
        let (out, argv) = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(argv, None, "{args:?}: the binary must not run");
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(stderr.contains("Usage:"), "{args:?}: {stderr}");
    }
}

/// The real binary takes the flags the plugin passes: a context the kubeconfig lacks and a kubeconfig
/// that is not there are named in the error, before any connection.
#[test]
fn the_binary_reads_the_kubeconfig_and_context_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\ncurrent-context: a\n\
         clusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\n\
         users:\n- name: u\n  user: {token: t}\n\
         contexts:\n- name: a\n  context: {cluster: c, user: u}\n\
         - name: b\n  context: {cluster: c, user: u, namespace: shop}\n",
    )
    .unwrap();
    let manifest = dir.path().join("pod.yaml");
    std::fs::write(
        &manifest,
        "kind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: a}]}\n",
    )
    .unwrap();
    let explain = |extra: &[&str]| {
        let out = Command::new(binary())
            .args(["explain", "--from-cluster", "-f"])
            .arg(&manifest)
            .args(extra)
            .env("KUBECONFIG", dir.path().join("absent"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{extra:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    let k = kubeconfig.to_str().unwrap();
    let missing = explain(&["--kubeconfig", k, "--context", "nope"]);
    assert!(missing.contains("nope"), "{missing}");
    let absent = explain(&["--kubeconfig", "/nonexistent/kubeconfig"]);
    assert!(absent.contains("/nonexistent/kubeconfig"), "{absent}");
    // A context that exists: the failure is the connection to its server, not the kubeconfig.
    let unreachable = explain(&["--kubeconfig", k, "--context", "b"]);
    assert!(
        unreachable.contains("FargateProfile") || unreachable.contains("127.0.0.1:1"),
        "{unreachable}"
    );
}
