//! `helm lint` in each TLS mode, the default render (managed TLS, RBAC, probes, the coordination
//! lock) and the names the chart gives its objects.

use std::collections::BTreeSet;

use super::{
    FULLNAME, NS, arr, chart_dir, check_anti_affinity_and_pdb, check_deployment, check_flags_known,
    check_webhook_rules, check_webhook_wiring, expected_rbac, helm, mwc_name, rbac_rules, render,
    run_helm, selfsigned_ca_bundle, str_of, strings, template,
};

#[test]
fn helm_lint_passes() {
    let Some(helm) = helm() else { return };
    let chart = chart_dir().display().to_string();
    let ca = selfsigned_ca_bundle(helm);
    let ca_set = format!("tls.existingSecret.caBundle={ca}");
    let runs: Vec<Vec<&str>> = vec![
        vec!["lint", &chart],
        vec!["lint", "--strict", &chart],
        vec!["lint", "--strict", &chart, "--set", "tls.mode=certManager"],
        vec!["lint", "--strict", &chart, "--set", "tls.mode=selfSigned"],
        vec![
            "lint",
            "--strict",
            &chart,
            "--set",
            "tls.mode=existingSecret,tls.existingSecret.name=my-tls",
            "--set-string",
            &ca_set,
        ],
        vec![
            "lint",
            "--strict",
            &chart,
            "--set",
            "store=file,replicaCount=1,api.service.enabled=true,metrics.serviceMonitor.enabled=true",
        ],
    ];
    for args in runs {
        if let Err(e) = run_helm(helm, &args) {
            panic!("helm {args:?} failed:\n{e}");
        }
    }
}

#[test]
fn default_render_is_managed_tls_and_complete() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let tls_secret = format!("{FULLNAME}-tls");

    check_webhook_wiring(&r);
    check_webhook_rules(&r, "Ignore", &[NS]);
    check_deployment(&r, &tls_secret);
    check_anti_affinity_and_pdb(&r);
    check_flags_known(&r);

    let deploy = r.deployment();
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(r.webhook()["timeoutSeconds"], 5);
    assert_eq!(
        r.container()["image"],
        "fargate-webhook:0.1.0",
        "the image tag defaults to appVersion"
    );

    // managed TLS: no certificate, no Secret, no caBundle rendered (the webhook makes and sets them).
    assert!(
        r.webhook()["clientConfig"].get("caBundle").is_none(),
        "the webhook sets the caBundle at run time"
    );
    assert!(r.all("Secret").is_empty(), "the webhook writes its Secret");
    assert_eq!(r.flags()["--tls-secret"], tls_secret);

    // No cert-manager objects, no optional objects.
    assert!(r.all("Certificate").is_empty());
    assert!(r.all("Issuer").is_empty());
    assert!(r.all("ServiceMonitor").is_empty());
    assert!(r.get("Service", &format!("{FULLNAME}-api")).is_none());

    // Without a ServiceMonitor the pods carry prometheus.io annotations.
    let ann = &deploy["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "9090");
    assert_eq!(ann["prometheus.io/path"], "/metrics");

    // store=kubernetes: the minimum RBAC, bound to the pod's ServiceAccount.
    assert_eq!(r.flags()["--store"], "kubernetes");
    assert!(!r.flags().contains_key("--state-dir"));
    assert_eq!(rbac_rules(&r), expected_rbac());
    let sa_name = str_of(&deploy["spec"]["template"]["spec"]["serviceAccountName"]);
    r.one("ServiceAccount", sa_name);
    let binding = r.one("ClusterRoleBinding", FULLNAME);
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], FULLNAME);
    let subjects = arr(&binding["subjects"]);
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], sa_name);
    assert_eq!(subjects[0]["namespace"], NS);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
    // The coordination ConfigMap: create, then get/update of that one name, in the release namespace.
    let lock = format!("{FULLNAME}-lock");
    assert_eq!(r.flags()["--lock-name"], lock);
    let role = r.one("Role", FULLNAME);
    assert_eq!(role["metadata"]["namespace"], NS);
    let mut grants = BTreeSet::new();
    for rule in arr(&role["rules"]) {
        let names = rule.get("resourceNames").map(strings).unwrap_or_default();
        for resource in strings(&rule["resources"]) {
            for verb in strings(&rule["verbs"]) {
                grants.insert((resource.clone(), verb, names.clone()));
            }
        }
    }
    // The Lease of the background writers: create, then get/update of that one name.
    assert_eq!(r.flags()["--lease-name"], FULLNAME);
    let lease = FULLNAME.to_string();
    let expected: BTreeSet<(String, String, Vec<String>)> = [
        ("configmaps", "create", vec![]),
        ("configmaps", "get", vec![lock.clone()]),
        ("configmaps", "update", vec![lock.clone()]),
        ("leases", "create", vec![]),
        ("leases", "get", vec![lease.clone()]),
        ("leases", "update", vec![lease.clone()]),
    ]
    .into_iter()
    .map(|(r, v, n)| (r.to_string(), v.to_string(), n))
    .collect();
    assert_eq!(grants, expected);
    let role_binding = r.one("RoleBinding", FULLNAME);
    assert_eq!(role_binding["roleRef"]["kind"], "Role");
    assert_eq!(role_binding["subjects"][0]["name"], sa_name);
    let env = arr(&deploy["spec"]["template"]["spec"]["containers"][0]["env"]);
    assert!(
        env.iter().any(|e| e["name"] == "POD_NAMESPACE"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "POD_NAMESPACE from the downward API: {env:?}"
    );
}

#[test]
fn names_follow_the_release() {
    let Some(helm) = helm() else { return };
    // A release named like the chart is not doubled.
    let r = template(helm, "fargate-webhook", &[]).expect("helm template");
    assert!(r.get("Deployment", "fargate-webhook").is_some());
    assert_eq!(
        r.one("MutatingWebhookConfiguration", &mwc_name("fargate-webhook"))["webhooks"][0]["clientConfig"]
            ["service"]["name"],
        "fargate-webhook"
    );
    // Every namespaced object lands in the release namespace.
    for doc in &r.docs {
        let kind = str_of(&doc["kind"]);
        let cluster_scoped = matches!(
            kind,
            "ClusterRole" | "ClusterRoleBinding" | "MutatingWebhookConfiguration"
        );
        if !cluster_scoped {
            assert_eq!(doc["metadata"]["namespace"], NS, "{kind} namespace");
        }
    }
}

#[test]
fn the_webhook_configuration_sorts_where_eks_puts_its_own() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let name = mwc_name(FULLNAME);
    let config = r.one("MutatingWebhookConfiguration", &name);
    // kube-apiserver orders mutating webhooks by configuration name: before the letters of sidecar
    // injectors and policy engines, and level with EKS's own.
    for later in [
        "istio-sidecar-injector",
        "kyverno-resource-mutating-webhook-cfg",
        "vault-agent-injector-cfg",
        "1000-late",
    ] {
        assert!(name.as_str() < later, "{name} sorts before {later}");
    }
    assert_eq!(
        &name[..5],
        &"0500-amazon-eks-fargate-mutation.amazonaws.com"[..5]
    );
    assert_eq!(
        config["webhooks"][0]["name"],
        "fargate-mutation.fargate-webhook.io"
    );
    let custom = render(
        helm,
        &["webhook.configurationName=0500-amazon-eks-fargate-mutation.amazonaws.com"],
    );
    assert!(
        custom
            .get(
                "MutatingWebhookConfiguration",
                "0500-amazon-eks-fargate-mutation.amazonaws.com"
            )
            .is_some()
    );
}
