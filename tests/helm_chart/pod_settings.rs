//! The webhook's pod adapts to the cluster (labels, image digest, security contexts, extra args and
//! volumes, network policy, match conditions, host network and ports), and its grace period covers
//! the shutdown delay.

use serde_json::Value;

use super::{FULLNAME, arr, container_port, helm, render, render_err, str_of, strings};

#[test]
fn the_chart_adapts_to_the_cluster() {
    let Some(helm) = helm() else { return };
    // One replica: no budget, so node drains are never blocked.
    assert!(
        render(helm, &["replicaCount=1"])
            .get("PodDisruptionBudget", FULLNAME)
            .is_none()
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    let r = render(
        helm,
        &[
            "commonLabels.team=platform",
            &format!("image.digest={digest}"),
            "podSecurityContext=null",
            "securityContext.runAsUser=null",
            "securityContext.runAsGroup=null",
            "extraArgs={--idle-timeout=60s,--max-connections=2048}",
            "extraVolumes[0].name=ca",
            "extraVolumes[0].configMap.name=corp-ca",
            "extraVolumeMounts[0].name=ca",
            "extraVolumeMounts[0].mountPath=/etc/corp-ca",
            "networkPolicy.enabled=true",
            "networkPolicy.apiFrom[0].namespaceSelector.matchLabels.team=platform",
            "webhook.skipOptOutsBeforeTheCall=true",
            "webhook.objectSelector.matchExpressions[0].key=fargate",
            "webhook.objectSelector.matchExpressions[0].operator=NotIn",
            "webhook.objectSelector.matchExpressions[0].values[0]=no",
        ],
    );
    for doc in &r.docs {
        assert_eq!(
            doc["metadata"]["labels"]["team"], "platform",
            "{}",
            doc["kind"]
        );
    }
    let deploy = r.deployment();
    let pod = &deploy["spec"]["template"];
    // The recommended label set on the pods.
    for key in [
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/component",
        "helm.sh/chart",
    ] {
        assert!(pod["metadata"]["labels"][key].is_string(), "{key}");
    }
    let container = r.container();
    assert_eq!(
        str_of(&container["image"]),
        format!("fargate-webhook@{digest}")
    );
    // OpenShift's restricted SCC: no fixed uid anywhere.
    assert!(
        pod["spec"]["securityContext"].is_null()
            || pod["spec"]["securityContext"].get("runAsUser").is_none()
    );
    assert!(container["securityContext"].get("runAsUser").is_none());
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let args = strings(&container["args"]);
    assert!(
        args.ends_with(&[
            "--idle-timeout=60s".to_string(),
            "--max-connections=2048".to_string()
        ]),
        "{args:?}"
    );
    assert!(
        arr(&pod["spec"]["volumes"])
            .iter()
            .any(|v| v["configMap"]["name"] == "corp-ca")
    );
    assert!(
        arr(&container["volumeMounts"])
            .iter()
            .any(|m| m["mountPath"] == "/etc/corp-ca")
    );
    let policy = r.one("NetworkPolicy", FULLNAME);
    let rules = arr(&policy["spec"]["ingress"]);
    assert_eq!(rules.len(), 3);
    assert!(
        rules[0].get("from").is_none(),
        "the webhook port is open to the apiserver"
    );
    assert_eq!(rules[2]["ports"][0]["port"], 8080);
    assert_eq!(
        rules[2]["from"][0]["namespaceSelector"]["matchLabels"]["team"],
        "platform"
    );
    let webhook = r.webhook();
    let conditions: Vec<&str> = arr(&webhook["matchConditions"])
        .iter()
        .map(|c| str_of(&c["name"]))
        .collect();
    assert_eq!(conditions, ["not-opted-out", "not-a-daemonset-pod"]);
    assert_eq!(
        webhook["objectSelector"]["matchExpressions"][0]["key"],
        "fargate"
    );
    // Ports and the node's network, for clusters whose apiserver cannot reach pod addresses.
    let host = render(
        helm,
        &[
            "hostNetwork=true",
            "containerPorts.webhook=10260",
            "containerPorts.metrics=10261",
            "containerPorts.api=10262",
        ],
    );
    let spec = &host.deployment()["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
    let flags = host.flags();
    assert_eq!(flags["--webhook-addr"], "0.0.0.0:10260");
    assert_eq!(flags["--metrics-addr"], "0.0.0.0:10261");
    assert_eq!(flags["--api-addr"], "127.0.0.1:10262");
    for (name, port) in [("webhook", 10260), ("metrics", 10261), ("api", 10262)] {
        assert_eq!(
            container_port(&host, &Value::String(name.into())),
            port,
            "{name}"
        );
    }
    // Defaults keep today's behaviour: no conditions, no selector, no policy.
    let plain = render(helm, &[]);
    assert!(
        plain.webhook().get("matchConditions").is_none()
            && plain.webhook().get("objectSelector").is_none()
    );
    assert!(plain.get("NetworkPolicy", FULLNAME).is_none());
    assert_eq!(plain.container()["securityContext"]["runAsUser"], 65532);
}

#[test]
fn the_grace_period_must_cover_the_shutdown_delay_and_drain() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "shutdown.delaySeconds=10",
            "terminationGracePeriodSeconds=45",
        ],
    );
    assert_eq!(r.flags()["--shutdown-delay"], "10s");
    assert_eq!(
        r.deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        45
    );
    let error = render_err(helm, &["shutdown.delaySeconds=15"]);
    assert!(
        error.contains("terminationGracePeriodSeconds (30) must be at least")
            && error.contains("(35)"),
        "{error}"
    );
}

/// The fenced `yaml` block of the chart README's "OpenShift" section: the values users are told to give.
fn openshift_values() -> String {
    let readme = std::fs::read_to_string(super::chart_dir().join("README.md")).unwrap();
    let section = readme
        .split_once("\n## OpenShift\n")
        .expect("an OpenShift section in the chart README")
        .1;
    let block = section
        .split_once("```yaml\n")
        .expect("a yaml block in the OpenShift section")
        .1;
    block
        .split_once("```")
        .expect("the block's end")
        .0
        .to_string()
}

/// The pod specs of the release's workloads: the webhook, the scheduler and the `helm test` pod.
fn pod_specs(r: &super::Rendered) -> Vec<(String, &Value)> {
    let scheduler = format!("{FULLNAME}-scheduler");
    let mut specs = vec![
        (
            "webhook".to_string(),
            &r.one("Deployment", FULLNAME)["spec"]["template"]["spec"],
        ),
        (
            "scheduler".to_string(),
            &r.one("Deployment", &scheduler)["spec"]["template"]["spec"],
        ),
    ];
    for pod in r.all("Pod") {
        specs.push((str_of(&pod["metadata"]["name"]).to_string(), &pod["spec"]));
    }
    assert_eq!(specs.len(), 3, "the helm test pod is rendered");
    specs
}

const FIXED_IDS: [&str; 3] = ["runAsUser", "runAsGroup", "fsGroup"];

#[test]
fn the_documented_openshift_values_leave_every_pod_without_a_fixed_uid() {
    let Some(helm) = helm() else { return };
    let values = openshift_values();
    let r = super::template_with(
        helm,
        super::RELEASE,
        Some(&values),
        &["scheduler.enabled=true"],
    )
    .unwrap_or_else(|e| panic!("the README's OpenShift values do not render: {e}\n{values}"));
    for (name, spec) in pod_specs(&r) {
        let contexts = std::iter::once(&spec["securityContext"]).chain(
            arr(&spec["containers"])
                .iter()
                .map(|c| &c["securityContext"]),
        );
        for context in contexts {
            for key in FIXED_IDS {
                assert!(context.get(key).is_none(), "{name}: {key} in {context}");
            }
        }
        // The rest of the restricted profile stays.
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        for c in arr(&spec["containers"]) {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"], "{name}");
        }
    }
    // What the chart said before: `{}` in a values file is merged with the defaults and removes nothing
    // (and `--set podSecurityContext={}` is a list, which the schema refuses).
    let empty = "podSecurityContext: {}\nscheduler:\n  podSecurityContext: {}\n";
    let r = super::template_with(
        helm,
        super::RELEASE,
        Some(empty),
        &["scheduler.enabled=true"],
    )
    .unwrap();
    for (name, spec) in pod_specs(&r) {
        assert_eq!(spec["securityContext"]["runAsUser"], 65532, "{name}");
    }
    let error = render_err(helm, &["podSecurityContext={}"]);
    assert!(error.contains("podSecurityContext"), "{error}");
    // null removes a whole context, and the key is then left out, not rendered as null.
    let r = render(helm, &["podSecurityContext=null", "securityContext=null"]);
    let spec = &r.deployment()["spec"]["template"]["spec"];
    assert!(spec.get("securityContext").is_none(), "{spec}");
    assert!(r.container().get("securityContext").is_none());
}
