//! The TLS modes other than the default self-signed one: cert-manager (bootstrapped CA or a given
//! issuer) and an existing Secret with its CA bundle.

use std::collections::BTreeSet;

use super::{
    FULLNAME, NS, check_deployment, check_webhook_rules, check_webhook_wiring, helm, mwc_name,
    render, render_err, selfsigned_ca_bundle, str_of, strings,
};

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
