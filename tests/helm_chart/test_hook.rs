//! The `helm test` hook: a probe through the webhook's Service, trusting the webhook's CA.

use std::process::Command;

use super::support::process::binary;
use super::{
    FULLNAME, NS, Rendered, arr, b64decode, helm, render, selfsigned_ca_bundle, str_of, strings,
};

/// The `helm test` hook: one review through the webhook's own Service name, port and path,
/// verified against the CA the webhook configuration trusts, with flags `probe` accepts.
#[test]
fn the_test_hook_probes_the_webhook_through_its_service() {
    let Some(helm) = helm() else { return };
    let probe_args = |r: &Rendered| -> Vec<String> {
        let pod = r
            .get("Pod", &format!("{FULLNAME}-test"))
            .expect("the test pod");
        assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            r.container()["image"],
            "the webhook's own image"
        );
        strings(&pod["spec"]["containers"][0]["args"])
    };
    let service_url = |r: &Rendered| {
        let service = r.get("Service", FULLNAME).expect("the webhook Service");
        let port = &arr(&service["spec"]["ports"])[0]["port"];
        let path = str_of(&r.webhook()["clientConfig"]["service"]["path"]).to_string();
        format!("--url=https://{FULLNAME}.{NS}.svc:{port}{path}")
    };

    let r = render(helm, &["tests.labels.infrastructure=fargate"]);
    let args = probe_args(&r);
    assert_eq!(args[0], "probe");
    assert!(args.contains(&service_url(&r)), "{args:?}");
    assert!(
        args.contains(&"--namespace=default".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--label=infrastructure=fargate".to_string()),
        "{args:?}"
    );
    let pod = r.get("Pod", &format!("{FULLNAME}-test")).unwrap();
    assert_eq!(
        pod["spec"]["volumes"][0]["secret"]["secretName"],
        format!("{FULLNAME}-tls"),
        "the CAs of the managed Secret (ca.crt)"
    );
    assert!(r.get("ConfigMap", &format!("{FULLNAME}-test-ca")).is_none());

    // The flags are the binary's: parse them with the real CLI (`--help` stops before sending).
    let out = Command::new(binary())
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // existingSecret: the CA comes from tls.existingSecret.caBundle, decoded into a hook ConfigMap.
    let ca = selfsigned_ca_bundle(helm);
    let ca_set = format!("string:tls.existingSecret.caBundle={ca}");
    let r = render(
        helm,
        &[
            "tls.mode=existingSecret",
            "tls.existingSecret.name=my-tls",
            &ca_set,
        ],
    );
    let cm = r
        .get("ConfigMap", &format!("{FULLNAME}-test-ca"))
        .expect("the CA ConfigMap");
    assert_eq!(cm["metadata"]["annotations"]["helm.sh/hook"], "test");
    let pem = String::from_utf8(b64decode(&ca).unwrap()).unwrap();
    assert_eq!(str_of(&cm["data"]["ca.crt"]), pem);
    let pod = r.get("Pod", &format!("{FULLNAME}-test")).unwrap();
    assert_eq!(
        pod["spec"]["volumes"][0]["configMap"]["name"],
        format!("{FULLNAME}-test-ca")
    );

    let r = render(helm, &["tests.enabled=false"]);
    assert!(r.get("Pod", &format!("{FULLNAME}-test")).is_none());
}
