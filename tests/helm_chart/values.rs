//! Non-default values render as asked, optional objects can be turned off, the values schema rejects
//! bad values, and the API's SigV4 secret turns verification on.

use super::{
    FULLNAME, NS, arr, check_anti_affinity_and_pdb, check_deployment, check_flags_known,
    check_webhook_rules, check_webhook_wiring, container_port, helm, render, render_err,
};

pub(super) fn non_default_values() -> [&'static str; 9] {
    [
        "store=file",
        "replicaCount=3",
        "api.service.enabled=true",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prometheus",
        "webhook.excludeNamespaces={kube-system,monitoring}",
        "webhook.failurePolicy=Fail",
        "webhook.timeoutSeconds=10",
        "lifecycle.createDelay=500ms",
    ]
}

#[test]
fn non_default_values_render_as_asked() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &non_default_values());
    let tls_secret = format!("{FULLNAME}-tls");
    check_webhook_wiring(&r);
    check_webhook_rules(&r, "Fail", &[NS, "kube-system", "monitoring"]);
    check_deployment(&r, &tls_secret);
    check_anti_affinity_and_pdb(&r);
    check_flags_known(&r);

    let deploy = r.deployment();
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert_eq!(r.webhook()["timeoutSeconds"], 10);

    // store=file: state on an emptyDir.
    let flags = r.flags();
    assert_eq!(flags["--store"], "file");
    assert_eq!(flags["--create-delay"], "500ms");
    let state_dir = &flags["--state-dir"];
    assert_eq!(state_dir, "/var/lib/fargate-webhook");
    let pod = &deploy["spec"]["template"]["spec"];
    let mount = arr(&r.container()["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == state_dir.as_str())
        .expect("the state directory is mounted");
    let volume = arr(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("state volume");
    assert!(volume.get("emptyDir").is_some());
    // The store needs no rights; the managed TLS mode (the default) has its own, the writer of the
    // webhook configuration (caBundle, matchConditions) its own, and so the API token.
    let tls_rights = format!("{FULLNAME}-tls");
    let writer_rights = format!("{FULLNAME}-webhook-configuration");
    for (kind, rights) in [
        ("ClusterRole", &writer_rights),
        ("ClusterRoleBinding", &writer_rights),
        ("Role", &tls_rights),
        ("RoleBinding", &tls_rights),
    ] {
        let names: Vec<&str> = r
            .all(kind)
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, [rights.as_str()], "store=file: only {rights}");
    }
    assert_eq!(pod["automountServiceAccountToken"], true);

    // The API Service: port 80 -> container port 8080.
    let api = r.one("Service", &format!("{FULLNAME}-api"));
    let ports = arr(&api["spec"]["ports"]);
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["port"], 80);
    assert_eq!(ports[0]["name"], "api");
    assert_eq!(container_port(&r, &ports[0]["targetPort"]), 8080);
    assert_eq!(flags["--api-addr"], "0.0.0.0:8080");

    // The ServiceMonitor scrapes the webhook Service's metrics port; no scrape annotations then.
    let sm = r.one("ServiceMonitor", FULLNAME);
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let endpoints = arr(&sm["spec"]["endpoints"]);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], "metrics");
    assert_eq!(endpoints[0]["path"], "/metrics");
    let svc = r.one("Service", FULLNAME);
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("ServiceMonitor selector")
    {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects {k}"
        );
    }
    assert_ne!(
        api["metadata"]["labels"]["app.kubernetes.io/component"],
        sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "the ServiceMonitor must not select the API Service"
    );
    let ann = &deploy["spec"]["template"]["metadata"]["annotations"];
    assert!(ann.get("prometheus.io/scrape").is_none());
}

#[test]
fn optional_objects_can_be_turned_off() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "podDisruptionBudget.enabled=false",
            "rbac.create=false",
            "metrics.podAnnotations=false",
        ],
    );
    assert!(r.all("PodDisruptionBudget").is_empty());
    assert!(r.all("ClusterRole").is_empty());
    let ann = &r.deployment()["spec"]["template"]["metadata"]["annotations"];
    assert!(ann.get("prometheus.io/scrape").is_none());
}

#[test]
fn schema_rejects_bad_values() {
    let Some(helm) = helm() else { return };
    let bad: &[(&str, &str)] = &[
        ("replicaCount=-1", "replicaCount"),
        ("tls.mode=bogus", "mode"),
        ("store=etcd", "store"),
        ("webhook.failurePolicy=Sometimes", "failurePolicy"),
        ("webhook.timeoutSeconds=31", "timeoutSeconds"),
        ("cluster.accountId=123", "accountId"),
        ("lifecycle.createDelay=soon", "createDelay"),
        ("scheduler.provisioningDelay=1m30s", "provisioningDelay"),
        ("noSuchKey=1", "noSuchKey"),
        // The labels the chart's selectors use are the chart's alone.
        (
            "commonLabels.app\\.kubernetes\\.io/component=x",
            "app.kubernetes.io/component",
        ),
        (
            "podLabels.app\\.kubernetes\\.io/instance=x",
            "app.kubernetes.io/instance",
        ),
    ];
    for (set, mention) in bad {
        let e = render_err(helm, &[set]);
        assert!(
            e.contains(mention),
            "the error for {set} should mention {mention}: {e}"
        );
    }
}

#[test]
fn sigv4_secret_turns_verification_on() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "api.service.enabled=true",
            "api.sigv4.existingSecret=api-keys",
        ],
    );
    let flags = r.flags();
    assert_eq!(flags["--api-addr"], "0.0.0.0:8080");
    assert_eq!(
        flags["--sigv4-credentials"],
        "/etc/fargate-webhook/sigv4/credentials"
    );
    let deploy = r.one("Deployment", FULLNAME);
    let pod = &deploy["spec"]["template"]["spec"];
    let volume = arr(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == "sigv4")
        .expect("the sigv4 volume");
    assert_eq!(volume["secret"]["secretName"], "api-keys");
    assert_eq!(volume["secret"]["items"][0]["key"], "credentials");
    let mount = arr(&pod["containers"][0]["volumeMounts"])
        .iter()
        .find(|m| m["name"] == "sigv4")
        .expect("the sigv4 mount");
    assert_eq!(mount["mountPath"], "/etc/fargate-webhook/sigv4");
    assert_eq!(mount["readOnly"], true);
    // Without the secret: no flag, no volume.
    let plain = render(helm, &["api.service.enabled=true"]);
    assert!(!plain.flags().contains_key("--sigv4-credentials"));
}
