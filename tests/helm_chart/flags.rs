//! The flags the chart passes to `fargate-webhook serve`: their documented defaults, that every one is
//! known in every configuration, and that the real CLI offers them all.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_json::Value;

use super::support::process::binary;
use super::values::non_default_values;
use super::{KNOWN_FLAGS, check_flags_known, container_port, helm, render, selfsigned_ca_bundle};

#[test]
fn default_flags_have_the_documented_values() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let flags = r.flags();
    let expected = [
        ("--webhook-addr", "0.0.0.0:8443"),
        ("--metrics-addr", "0.0.0.0:9090"),
        // Not exposed without its Service: the API writes profiles.
        ("--api-addr", "127.0.0.1:8080"),
        // tls.mode=managed: the Secret, the configuration whose caBundle is kept, the Service's names.
        ("--tls-secret", "fw-fargate-webhook-tls"),
        ("--webhook-configuration", "0500-fw-fargate-webhook"),
        ("--generate-match-conditions", "true"),
        ("--namespace-selector-exclude", "fargate-system"),
        (
            "--tls-dns",
            "fw-fargate-webhook,fw-fargate-webhook.fargate-system,fw-fargate-webhook.fargate-system.svc,fw-fargate-webhook.fargate-system.svc.cluster.local",
        ),
        ("--tls-ca-validity", "365d"),
        ("--tls-cert-validity", "90d"),
        ("--tls-sync-interval", "10s"),
        ("--store", "kubernetes"),
        ("--cluster-name", "fargate"),
        ("--region", "us-east-1"),
        ("--account-id", "012345678910"),
        (
            "--private-subnets",
            "subnet-0420a37ee456daf3f,subnet-09a8afb8db4f02d21",
        ),
        ("--priority-override", "true"),
        ("--create-delay", "2s"),
        ("--delete-delay", "2s"),
        ("--log-level", "info"),
        ("--log-format", "text"),
        ("--lock-name", "fw-fargate-webhook-lock"),
        ("--lease-name", "fw-fargate-webhook"),
        ("--shutdown-delay", "5s"),
        ("--shutdown-timeout", "20s"),
    ];
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(flags, expected);

    // Every address flag has a matching named container port.
    for (flag, port_name) in [
        ("--webhook-addr", "webhook"),
        ("--metrics-addr", "metrics"),
        ("--api-addr", "api"),
    ] {
        let port: u64 = flags[flag].rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(
            container_port(&r, &Value::String(port_name.into())),
            port,
            "{flag}"
        );
    }
}

#[test]
fn every_flag_is_known_in_every_configuration() {
    let Some(helm) = helm() else { return };
    let ca = selfsigned_ca_bundle(helm);
    let ca_set = format!("string:tls.existingSecret.caBundle={ca}");
    let configs: Vec<Vec<&str>> = vec![
        vec![],
        vec!["tls.mode=certManager"],
        vec![
            "tls.mode=existingSecret",
            "tls.existingSecret.name=my-tls",
            &ca_set,
        ],
        non_default_values().to_vec(),
        vec![
            "cluster.publicSubnets={subnet-aaaa,subnet-bbbb}",
            "priorityOverride=false",
            "logLevel=debug",
            "cluster.name=prod",
        ],
    ];
    for sets in configs {
        let r = render(helm, &sets);
        check_flags_known(&r);
    }
    let r = render(
        helm,
        &[
            "cluster.publicSubnets={subnet-aaaa,subnet-bbbb}",
            "priorityOverride=false",
            "cluster.name=prod",
        ],
    );
    let flags = r.flags();
    assert_eq!(flags["--public-subnets"], "subnet-aaaa,subnet-bbbb");
    assert_eq!(flags["--priority-override"], "false");
    assert_eq!(flags["--cluster-name"], "prod");
}

/// The chart's flags against the real CLI: every flag in KNOWN_FLAGS must appear in `serve --help`.
/// Ignored until the `serve` subcommand has all of them (the API, cluster and lifecycle flags).
#[test]
fn known_flags_exist_in_the_cli() {
    let out = Command::new(binary())
        .args(["serve", "--help"])
        .output()
        .expect("run fargate-webhook serve --help");
    assert!(out.status.success(), "serve --help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    let offered: BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
        .filter(|w| w.starts_with("--"))
        .collect();
    let missing: Vec<&&str> = KNOWN_FLAGS
        .iter()
        .filter(|f| !offered.contains(**f))
        .collect();
    assert!(
        missing.is_empty(),
        "serve --help lacks {missing:?}:\n{help}"
    );
}
