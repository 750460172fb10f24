//! The TLS modes: managed (the default: nothing random rendered, RBAC for the two named objects),
//! cert-manager (bootstrapped CA or a given issuer), an existing Secret with its CA bundle, and the
//! chart's self-signed render.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    FULLNAME, NS, RELEASE, Rendered, arr, assert_b64_pem, b64decode, chart_dir, check_deployment,
    check_webhook_rules, check_webhook_wiring, helm, mwc_name, render, render_err, run_helm,
    selfsigned_ca_bundle, str_of, strings,
};

/// `helm template` of the chart with `sets`, as text.
fn template_text(helm: &std::path::Path, sets: &[&str]) -> String {
    let chart = chart_dir().display().to_string();
    let mut args = vec!["template", RELEASE, &chart, "--namespace", NS];
    for set in sets {
        args.extend(["--set", set]);
    }
    run_helm(helm, &args).unwrap_or_else(|e| panic!("helm template {sets:?}: {e}"))
}

/// Two renders without cluster access are byte for byte the same: what Argo CD and Flux compare.
#[test]
fn two_renders_of_the_default_values_are_identical() {
    let Some(helm) = helm() else { return };
    let first = template_text(helm, &[]);
    assert_eq!(
        first,
        template_text(helm, &[]),
        "the default render changed"
    );
    assert!(
        first.contains("--tls-secret="),
        "the default is managed TLS"
    );
    // The check can fail: the chart's own self-signed render differs every time.
    assert_ne!(
        template_text(helm, &["tls.mode=selfSigned"]),
        template_text(helm, &["tls.mode=selfSigned"]),
        "selfSigned makes a new CA per render"
    );
}

/// Every (group, resource, verb, resourceNames) a Role or ClusterRole grants.
fn grants(role: &Value) -> BTreeSet<(String, String, String, Vec<String>)> {
    let mut out = BTreeSet::new();
    for rule in arr(&role["rules"]) {
        let names = rule.get("resourceNames").map(strings).unwrap_or_default();
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    out.insert((group.clone(), resource.clone(), verb, names.clone()));
                }
            }
        }
    }
    out
}

fn grant(
    group: &str,
    resource: &str,
    verb: &str,
    names: &[&str],
) -> (String, String, String, Vec<String>) {
    (
        group.into(),
        resource.into(),
        verb.into(),
        names.iter().map(|n| n.to_string()).collect(),
    )
}

/// A binding of the chart's ServiceAccount to the role of that name and kind.
fn check_bound(r: &Rendered, kind: &str, name: &str) {
    let binding_kind = format!("{kind}Binding");
    let binding = r.one(&binding_kind, name);
    assert_eq!(binding["roleRef"]["kind"], kind);
    assert_eq!(binding["roleRef"]["name"], name);
    let sa = str_of(&r.deployment()["spec"]["template"]["spec"]["serviceAccountName"]);
    let subjects = arr(&binding["subjects"]);
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["name"], sa);
    assert_eq!(subjects[0]["namespace"], NS);
}

#[test]
fn managed_mode_renders_no_certificate_and_rights_to_its_two_objects_only() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let secret = format!("{FULLNAME}-tls");
    let config = mwc_name(FULLNAME);
    check_webhook_wiring(&r);
    check_webhook_rules(&r, "Ignore", &[NS]);
    check_deployment(&r, &secret);
    assert!(r.webhook()["clientConfig"].get("caBundle").is_none());
    assert!(r.all("Secret").is_empty());
    assert!(r.all("Certificate").is_empty());
    let flags = r.flags();
    assert_eq!(flags["--tls-secret"], secret);
    assert_eq!(flags["--webhook-configuration"], config);
    r.one("MutatingWebhookConfiguration", &config);
    // The certificate's names are the ones the apiserver uses for the Service.
    let svc = str_of(&r.webhook()["clientConfig"]["service"]["name"]);
    assert!(
        flags["--tls-dns"]
            .split(',')
            .any(|n| n == format!("{svc}.{NS}.svc")),
        "{}",
        flags["--tls-dns"]
    );

    // The Secret: create (no name can be given), then get/update of that one name.
    let name = format!("{FULLNAME}-tls");
    let role = r.one("Role", &name);
    assert_eq!(role["metadata"]["namespace"], NS);
    let want: BTreeSet<_> = [
        grant("", "secrets", "create", &[]),
        grant("", "secrets", "get", &[&secret]),
        grant("", "secrets", "update", &[&secret]),
    ]
    .into_iter()
    .collect();
    assert_eq!(grants(role), want);
    check_bound(&r, "Role", &name);
    // The configuration: get/patch of that one name (rights shared with the generated matchConditions).
    let writer = format!("{FULLNAME}-webhook-configuration");
    let cluster_role = r.one("ClusterRole", &writer);
    let want: BTreeSet<_> = [
        grant(
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "get",
            &[&config],
        ),
        grant(
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            "patch",
            &[&config],
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(grants(cluster_role), want);
    check_bound(&r, "ClusterRole", &writer);

    // A configuration of another name: the flag and the right follow it.
    let custom = render(helm, &["webhook.configurationName=0500-custom"]);
    assert_eq!(custom.flags()["--webhook-configuration"], "0500-custom");
    let names = strings(&arr(&custom.one("ClusterRole", &writer)["rules"])[0]["resourceNames"]);
    assert_eq!(names, ["0500-custom"]);

    // The file store needs no API, the managed mode does; without rbac.create, no rights.
    let file = render(helm, &["store=file", "replicaCount=1"]);
    assert_eq!(
        file.deployment()["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
    assert!(file.get("Role", &name).is_some());
    let no_rbac = render(helm, &["rbac.create=false"]);
    assert!(no_rbac.get("Role", &name).is_none());
    assert!(no_rbac.get("ClusterRole", &writer).is_none());
    // Other modes have no rights to Secrets, and to the configuration only for the matchConditions.
    let cm = render(helm, &["tls.mode=certManager"]);
    assert!(cm.get("Role", &name).is_none());
    assert!(!cm.flags().contains_key("--tls-secret"));
    assert!(cm.get("ClusterRole", &writer).is_some());
    let cm_all_pods = render(
        helm,
        &[
            "tls.mode=certManager",
            "webhook.generateMatchConditions=false",
        ],
    );
    assert!(cm_all_pods.get("ClusterRole", &writer).is_none());
    assert!(!cm_all_pods.flags().contains_key("--webhook-configuration"));
    let file_cm = render(
        helm,
        &[
            "tls.mode=certManager",
            "store=file",
            "replicaCount=1",
            "webhook.generateMatchConditions=false",
        ],
    );
    assert_eq!(
        file_cm.deployment()["spec"]["template"]["spec"]["automountServiceAccountToken"],
        false
    );
}

#[test]
fn managed_mode_validities_reach_the_flags_and_the_schema_refuses_others() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "tls.managed.caValidity=30d",
            "tls.managed.certValidity=240h",
            "tls.managed.syncInterval=5s",
        ],
    );
    let flags = r.flags();
    assert_eq!(flags["--tls-ca-validity"], "30d");
    assert_eq!(flags["--tls-cert-validity"], "240h");
    assert_eq!(flags["--tls-sync-interval"], "5s");
    let err = render_err(helm, &["tls.managed.caValidity=a year"]);
    assert!(err.contains("caValidity"), "{err}");
    let err = render_err(helm, &["tls.mode=sometimes"]);
    assert!(err.contains("managed"), "{err}");
}

#[test]
fn self_signed_mode_renders_its_secret_and_the_matching_ca_bundle() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &["tls.mode=selfSigned"]);
    let tls_secret = format!("{FULLNAME}-tls");
    check_webhook_wiring(&r);
    check_deployment(&r, &tls_secret);
    let ca_bundle = str_of(&r.webhook()["clientConfig"]["caBundle"]);
    assert!(!ca_bundle.is_empty());
    assert_b64_pem("caBundle", ca_bundle, "CERTIFICATE");
    let secret = r.one("Secret", &tls_secret);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["namespace"], NS);
    assert_b64_pem("tls.crt", str_of(&secret["data"]["tls.crt"]), "CERTIFICATE");
    let key = String::from_utf8(b64decode(str_of(&secret["data"]["tls.key"])).unwrap()).unwrap();
    assert!(key.contains("PRIVATE KEY-----"), "tls.key is not a PEM key");
    assert_eq!(
        secret["data"]["ca.crt"],
        r.webhook()["clientConfig"]["caBundle"],
        "the caBundle must be the CA in the Secret"
    );
    assert_ne!(secret["data"]["tls.crt"], secret["data"]["ca.crt"]);
    assert!(r.get("Role", &format!("{FULLNAME}-tls")).is_none());
}

#[test]
fn cert_manager_mode_bootstraps_a_ca_and_injects_it() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &["tls.mode=certManager"]);
    let tls_secret = format!("{FULLNAME}-tls");
    check_webhook_wiring(&r);
    check_webhook_rules(&r, "Ignore", &[NS]);
    check_deployment(&r, &tls_secret);

    let config = r.one("MutatingWebhookConfiguration", &mwc_name(FULLNAME));
    let inject = str_of(&config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]);
    let (ns, cert_name) = inject
        .split_once('/')
        .expect("inject-ca-from is <ns>/<name>");
    assert_eq!(ns, NS);
    assert!(
        r.webhook()["clientConfig"].get("caBundle").is_none(),
        "cert-manager injects the caBundle"
    );

    // The serving Certificate: the Service's DNS names, written to the mounted Secret.
    let cert = r.one("Certificate", cert_name);
    assert_eq!(cert["metadata"]["namespace"], NS);
    assert_eq!(cert["spec"]["secretName"], tls_secret.as_str());
    let svc = str_of(&r.webhook()["clientConfig"]["service"]["name"]);
    let dns: BTreeSet<String> = strings(&cert["spec"]["dnsNames"]).into_iter().collect();
    let want = [
        svc.to_string(),
        format!("{svc}.{NS}"),
        format!("{svc}.{NS}.svc"),
        format!("{svc}.{NS}.svc.cluster.local"),
    ];
    for name in &want {
        assert!(
            dns.contains(name),
            "Certificate lacks DNS name {name}: {dns:?}"
        );
    }
    assert!(r.all("Secret").is_empty(), "cert-manager writes the Secret");

    // Issuer chain: serving cert <- CA Issuer <- CA Certificate <- self-signed Issuer.
    let issuer_ref = &cert["spec"]["issuerRef"];
    assert_eq!(issuer_ref["kind"], "Issuer");
    let ca_issuer = r.one("Issuer", str_of(&issuer_ref["name"]));
    let ca_secret = str_of(&ca_issuer["spec"]["ca"]["secretName"]);
    let ca_cert = r
        .all("Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .expect("a Certificate writes the CA Issuer's Secret");
    assert_eq!(ca_cert["spec"]["isCA"], true);
    let root = r.one("Issuer", str_of(&ca_cert["spec"]["issuerRef"]["name"]));
    assert!(root["spec"].get("selfSigned").is_some());
    assert_eq!(r.all("Issuer").len(), 2);
    assert_eq!(r.all("Certificate").len(), 2);
}

#[test]
fn cert_manager_mode_with_a_given_issuer() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "tls.mode=certManager",
            "tls.certManager.issuerRef.name=corp-ca",
            "tls.certManager.issuerRef.kind=ClusterIssuer",
        ],
    );
    assert!(
        r.all("Issuer").is_empty(),
        "no bootstrap Issuers with a given issuer"
    );
    let certs = r.all("Certificate");
    assert_eq!(certs.len(), 1);
    let issuer_ref = &certs[0]["spec"]["issuerRef"];
    assert_eq!(issuer_ref["name"], "corp-ca");
    assert_eq!(issuer_ref["kind"], "ClusterIssuer");
    assert_eq!(issuer_ref["group"], "cert-manager.io");
    let config = r.one("MutatingWebhookConfiguration", &mwc_name(FULLNAME));
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NS}/{}", str_of(&certs[0]["metadata"]["name"]))
    );
}

#[test]
fn existing_secret_mode_uses_the_given_secret_and_ca() {
    let Some(helm) = helm() else { return };
    let ca = selfsigned_ca_bundle(helm);
    let ca_set = format!("string:tls.existingSecret.caBundle={ca}");
    let r = render(
        helm,
        &[
            "tls.mode=existingSecret",
            "tls.existingSecret.name=my-webhook-tls",
            &ca_set,
        ],
    );
    check_webhook_wiring(&r);
    check_webhook_rules(&r, "Ignore", &[NS]);
    check_deployment(&r, "my-webhook-tls");
    assert_eq!(r.webhook()["clientConfig"]["caBundle"], ca.as_str());
    assert!(
        r.all("Secret").is_empty(),
        "the chart must not write the user's Secret"
    );
    assert!(r.all("Certificate").is_empty());
    let config = r.one("MutatingWebhookConfiguration", &mwc_name(FULLNAME));
    assert!(
        config["metadata"]["annotations"]
            .get("cert-manager.io/inject-ca-from")
            .is_none()
    );
}

#[test]
fn existing_secret_mode_fails_clearly_without_its_values() {
    let Some(helm) = helm() else { return };
    let ca = selfsigned_ca_bundle(helm);
    let ca_set = format!("string:tls.existingSecret.caBundle={ca}");

    let e = render_err(helm, &["tls.mode=existingSecret", &ca_set]);
    assert!(e.contains("tls.existingSecret.name is required"), "{e}");

    let e = render_err(
        helm,
        &["tls.mode=existingSecret", "tls.existingSecret.name=my-tls"],
    );
    assert!(e.contains("tls.existingSecret.caBundle is required"), "{e}");

    // Plain text that is base64 but not a PEM certificate.
    let e = render_err(
        helm,
        &[
            "tls.mode=existingSecret",
            "tls.existingSecret.name=my-tls",
            "string:tls.existingSecret.caBundle=aGVsbG8gd29ybGQ=",
        ],
    );
    assert!(e.contains("PEM certificate"), "{e}");
}
