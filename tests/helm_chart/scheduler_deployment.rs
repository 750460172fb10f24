//! The fargate-scheduler's Deployment in the chart: its own ServiceAccount and rights, and arguments
//! the real CLI parses.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{FULLNAME, arr, expected_rbac, helm, rbac_rules, render, render_err, str_of, strings};

#[test]
fn the_scheduler_deploys_with_its_own_account_rights_and_flags_the_cli_accepts() {
    let Some(helm) = helm() else { return };
    let name = format!("{FULLNAME}-scheduler");
    let r = render(helm, &["scheduler.enabled=true"]);
    let deployment = r.one("Deployment", &name);
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(str_of(&spec["serviceAccountName"]), name);
    let container = &arr(&spec["containers"])[0];
    let args = strings(&container["args"]);
    // The real CLI parses exactly what the chart passes.
    let argv: Vec<String> = std::iter::once("fargate-webhook".to_string())
        .chain(args.iter().cloned())
        .collect();
    match <fargate_webhook::cli::Cli as clap::Parser>::try_parse_from(&argv) {
        Ok(cli) => match cli.command {
            fargate_webhook::cli::Command::Scheduler(a) => {
                assert_eq!(a.placement, fargate_webhook::cli::PlacementKind::Pool);
                assert_eq!(
                    a.pool_selector.as_deref(),
                    Some("fargate-webhook.io/pool=true")
                );
                assert_eq!(a.lease_name, name);
                assert!(!a.evict);
                assert_eq!(a.provisioning_delay, std::time::Duration::ZERO);
            }
            other => panic!("not the scheduler: {other:?}"),
        },
        Err(e) => panic!("the chart's scheduler arguments {argv:?} do not parse: {e}"),
    }
    // Rights: binding, nodes, pod deletion and events; never secrets; the Lease by name.
    let role = r.one("ClusterRole", &name);
    let mut granted = BTreeSet::new();
    for rule in arr(&role["rules"]) {
        for resource in strings(&rule["resources"]) {
            for verb in strings(&rule["verbs"]) {
                granted.insert(format!("{resource}:{verb}"));
            }
        }
    }
    for needed in [
        "pods:watch",
        "pods:delete",
        "pods/binding:create",
        "pods/eviction:create",
        "pods/status:patch",
        "nodes:watch",
        "persistentvolumeclaims:get",
        "configmaps:watch",
        "events:create",
        "fargateprofiles:watch",
    ] {
        assert!(
            granted.contains(needed),
            "{needed} missing from {granted:?}"
        );
    }
    // Pods are annotated through pods/status, never patched; pool placement only reads nodes.
    assert!(!granted.contains("pods:patch"), "{granted:?}");
    assert!(
        !granted.contains("nodes:create") && !granted.contains("nodes:delete"),
        "{granted:?}"
    );
    // ConfigMaps: the logging one only, by name.
    let config_maps: Vec<&Value> = arr(&role["rules"])
        .iter()
        .filter(|rule| strings(&rule["resources"]).contains(&"configmaps".to_string()))
        .collect();
    assert_eq!(config_maps.len(), 1, "{config_maps:?}");
    assert_eq!(strings(&config_maps[0]["resourceNames"]), ["aws-logging"]);
    assert_eq!(strings(&config_maps[0]["verbs"]), ["get", "list", "watch"]);
    assert!(
        !granted.iter().any(|g| g.starts_with("secrets")),
        "{granted:?}"
    );
    let lease_role = r.one("Role", &name);
    assert!(arr(&lease_role["rules"]).iter().any(|rule| {
        strings(&rule["resources"]) == ["leases"]
            && rule.get("resourceNames").map(strings) == Some(vec![name.clone()])
    }));
    // The webhook's own account gains nothing.
    assert_eq!(rbac_rules(&r), expected_rbac());

    let virtual_evict = render(
        helm,
        &[
            "scheduler.enabled=true",
            "scheduler.placement=virtual",
            "scheduler.evict=true",
            "scheduler.provisioningDelay=45s",
        ],
    );
    let args = strings(
        &arr(&virtual_evict.one("Deployment", &name)["spec"]["template"]["spec"]["containers"])[0]
            ["args"],
    );
    assert!(
        args.contains(&"--placement=virtual".to_string())
            && args.contains(&"--evict".to_string())
            && args.contains(&"--provisioning-delay=45s".to_string()),
        "{args:?}"
    );
    // Virtual placement makes and removes its nodes.
    let node_verbs: Vec<String> = arr(&virtual_evict.one("ClusterRole", &name)["rules"])
        .iter()
        .filter(|rule| strings(&rule["resources"]) == ["nodes"])
        .flat_map(|rule| strings(&rule["verbs"]))
        .collect();
    assert_eq!(node_verbs, ["get", "list", "watch", "create", "delete"]);
    assert!(
        render(helm, &[]).get("Deployment", &name).is_none(),
        "off by default"
    );
    let error = render_err(helm, &["scheduler.enabled=true", "store=file"]);
    assert!(
        error.contains("scheduler.enabled needs store: kubernetes"),
        "{error}"
    );
    let error = render_err(helm, &["scheduler.enabled=true", "scheduler.poolSelector="]);
    assert!(error.contains("needs scheduler.poolSelector"), "{error}");
}
