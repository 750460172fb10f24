//! The fargate-scheduler's pod in the chart: the settings a platform team sets on any system component
//! (placement, priority, security contexts, extra args and env) and its own PodDisruptionBudget.

use super::{FULLNAME, arr, chart_dir, helm, render, render_err, run_helm, strings};

fn scheduler_name() -> String {
    format!("{FULLNAME}-scheduler")
}

#[test]
fn the_scheduler_pod_settings_render_as_asked() {
    let Some(helm) = helm() else { return };
    let name = scheduler_name();
    let default = render(helm, &["scheduler.enabled=true"]);
    let default_deployment = default.one("Deployment", &name);
    let default_pod = &default_deployment["spec"]["template"]["spec"];
    let default_container = &arr(&default_pod["containers"])[0];
    let default_args = strings(&default_container["args"]);
    let default_env = arr(&default_container["env"]).clone();

    let r = render(
        helm,
        &[
            "scheduler.enabled=true",
            "scheduler.nodeSelector.role=system",
            "scheduler.tolerations[0].key=dedicated",
            "scheduler.tolerations[0].operator=Equal",
            "scheduler.tolerations[0].value=system",
            "scheduler.tolerations[0].effect=NoSchedule",
            "scheduler.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=role",
            "scheduler.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=In",
            "scheduler.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values[0]=system",
            "scheduler.priorityClassName=system-cluster-critical",
            "scheduler.podAnnotations.example\\.com/team=platform",
            "scheduler.extraArgs[0]=--example=1",
            "scheduler.extraArgs[1]=--other",
            "scheduler.extraEnv[0].name=EXTRA",
            "scheduler.extraEnv[0].value=yes",
            "scheduler.podSecurityContext.runAsNonRoot=true",
            "scheduler.podSecurityContext.runAsUser=1000",
            "scheduler.securityContext.readOnlyRootFilesystem=true",
            "scheduler.securityContext.runAsUser=1001",
        ],
    );
    let deployment = r.one("Deployment", &name);
    let template = &deployment["spec"]["template"];
    let pod = &template["spec"];
    assert_eq!(pod["nodeSelector"], serde_json::json!({ "role": "system" }));
    assert_eq!(
        pod["tolerations"],
        serde_json::json!([{
            "key": "dedicated",
            "operator": "Equal",
            "value": "system",
            "effect": "NoSchedule"
        }])
    );
    assert_eq!(
        pod["affinity"],
        serde_json::json!({
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{
                        "matchExpressions": [{ "key": "role", "operator": "In", "values": ["system"] }]
                    }]
                }
            }
        })
    );
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    // The values' annotations, beside the scrape annotations (the ServiceMonitor is off).
    assert_eq!(
        template["metadata"]["annotations"],
        serde_json::json!({
            "example.com/team": "platform",
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9091",
            "prometheus.io/path": "/metrics",
        })
    );
    // Security contexts: from the values (--set merges into the defaults: the set keys change).
    assert_eq!(pod["securityContext"]["runAsUser"], 1000);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let container = &arr(&pod["containers"])[0];
    assert_eq!(container["securityContext"]["runAsUser"], 1001);
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    // Extra args after the chart's own, in order; extra env after the chart's.
    let args = strings(&container["args"]);
    let mut expected_args = default_args.clone();
    expected_args.extend(["--example=1".to_string(), "--other".to_string()]);
    assert_eq!(args, expected_args);
    let env = arr(&container["env"]);
    let mut expected_env = default_env.clone();
    expected_env.push(serde_json::json!({ "name": "EXTRA", "value": "yes" }));
    assert_eq!(env, &expected_env);
    // The webhook's Deployment does not take the scheduler's settings.
    let webhook_pod = &r.deployment()["spec"]["template"]["spec"];
    assert!(webhook_pod.get("nodeSelector").is_none());
    assert!(webhook_pod.get("priorityClassName").is_none());

    // Defaults: nothing of the above, and the security contexts as they always were.
    for absent in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
    ] {
        assert!(default_pod.get(absent).is_none(), "{absent} by default");
    }
    // By default only the scrape annotations, as on the webhook's pods.
    let annotations = &default_deployment["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        annotations
            .as_object()
            .map(|a| a.keys().cloned().collect::<Vec<_>>()),
        Some(vec![
            "prometheus.io/path".to_string(),
            "prometheus.io/port".to_string(),
            "prometheus.io/scrape".to_string()
        ])
    );
    assert_eq!(
        default_pod["securityContext"],
        serde_json::json!({
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": { "type": "RuntimeDefault" }
        })
    );
    assert_eq!(
        default_container["securityContext"],
        serde_json::json!({
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": { "drop": ["ALL"] }
        })
    );
}

#[test]
fn the_scheduler_has_its_own_disruption_budget_when_it_has_replicas_to_spare() {
    let Some(helm) = helm() else { return };
    let name = scheduler_name();
    let r = render(
        helm,
        &["scheduler.enabled=true", "scheduler.replicaCount=2"],
    );
    let pdb = r.one("PodDisruptionBudget", &name);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    let deployment = r.one("Deployment", &name);
    let selector = &pdb["spec"]["selector"]["matchLabels"];
    assert_eq!(selector, &deployment["spec"]["selector"]["matchLabels"]);
    assert_eq!(selector["app.kubernetes.io/component"], "scheduler");
    assert_eq!(
        pdb["metadata"]["labels"]["app.kubernetes.io/component"],
        "scheduler"
    );
    // The webhook pods are not in it: their component differs.
    let webhook_labels = &r.deployment()["spec"]["template"]["metadata"]["labels"];
    assert_ne!(
        webhook_labels["app.kubernetes.io/component"],
        selector["app.kubernetes.io/component"]
    );
    // The webhook's budget is still its own.
    assert_eq!(
        r.one("PodDisruptionBudget", FULLNAME)["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "webhook"
    );

    let custom = render(
        helm,
        &[
            "scheduler.enabled=true",
            "scheduler.replicaCount=3",
            "scheduler.podDisruptionBudget.maxUnavailable=2",
        ],
    );
    assert_eq!(
        custom.one("PodDisruptionBudget", &name)["spec"]["maxUnavailable"],
        2
    );

    for sets in [
        &["scheduler.enabled=true", "scheduler.replicaCount=1"][..],
        &[
            "scheduler.enabled=true",
            "scheduler.podDisruptionBudget.enabled=false",
        ][..],
        &[][..],
    ] {
        let r = render(helm, sets);
        assert!(
            r.get("PodDisruptionBudget", &name).is_none(),
            "no scheduler budget with {sets:?}"
        );
    }
    // Turning the scheduler's budget off leaves the webhook's.
    let r = render(
        helm,
        &[
            "scheduler.enabled=true",
            "scheduler.podDisruptionBudget.enabled=false",
        ],
    );
    assert!(r.get("PodDisruptionBudget", FULLNAME).is_some());
}

#[test]
fn the_schema_types_the_scheduler_pod_settings() {
    let Some(helm) = helm() else { return };
    let bad: &[(&str, &str)] = &[
        ("scheduler.tolerations=nope", "tolerations"),
        ("scheduler.nodeSelector=nope", "nodeSelector"),
        ("scheduler.affinity=nope", "affinity"),
        ("scheduler.priorityClassName[0]=x", "priorityClassName"),
        ("scheduler.podAnnotations.team=1", "podAnnotations"),
        ("scheduler.extraArgs=--flag", "extraArgs"),
        ("scheduler.extraEnv[0].value=x", "name"),
        ("scheduler.podSecurityContext=nope", "podSecurityContext"),
        ("scheduler.securityContext=nope", "securityContext"),
        ("scheduler.podDisruptionBudget.enabled=maybe", "enabled"),
        (
            "scheduler.podDisruptionBudget.maxUnavailable=0",
            "maxUnavailable",
        ),
        (
            "scheduler.podDisruptionBudget.minAvailable=1",
            "minAvailable",
        ),
    ];
    for (set, mention) in bad {
        let e = render_err(helm, &["scheduler.enabled=true", set]);
        assert!(
            e.contains(mention),
            "the error for {set} should mention {mention}: {e}"
        );
    }
}

/// The NOTES `helm install` prints with these values.
fn notes(helm: &std::path::Path, sets: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec![
        "install",
        "x",
        chart.to_str().unwrap(),
        "-n",
        "fargate-system",
        "--dry-run=client",
    ];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = run_helm(helm, &args).unwrap();
    out.split_once("NOTES:")
        .expect("helm printed NOTES")
        .1
        .to_owned()
}

#[test]
fn the_notes_say_where_matched_pods_go() {
    let Some(helm) = helm() else { return };
    let off = notes(helm, &[]);
    assert!(
        off.contains("no fargate-scheduler runs, so those pods stay Pending"),
        "{off}"
    );
    let pool = notes(helm, &["scheduler.enabled=true"]);
    assert!(
        pool.contains("kubectl label node <node-name> fargate-webhook.io/pool=true"),
        "{pool}"
    );
    assert!(!pool.contains("stay Pending (EKS"), "{pool}");
    // A selector that is not one label=value gets no label line to copy.
    let set_based = notes(
        helm,
        &[
            "scheduler.enabled=true",
            "scheduler.poolSelector=pool in (a)",
        ],
    );
    assert!(set_based.contains("selected by pool in (a)"), "{set_based}");
    assert!(!set_based.contains("kubectl label node"), "{set_based}");
    let virtual_nodes = notes(
        helm,
        &["scheduler.enabled=true", "scheduler.placement=virtual"],
    );
    assert!(
        virtual_nodes.contains("something must act as their kubelet"),
        "{virtual_nodes}"
    );
}
