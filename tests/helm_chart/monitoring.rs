//! Monitoring objects: the PrometheusRule (checked by promtool when it is installed) and the Grafana
//! dashboard ConfigMap.

use std::process::Command;

use serde_json::Value;

use super::support::process::promtool;
use super::{FULLNAME, arr, chart_dir, helm, render, str_of};

#[test]
fn the_prometheus_rules_pass_promtool_and_name_the_webhook() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        ],
    );
    let rule = r.one("PrometheusRule", FULLNAME);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let groups = &rule["spec"]["groups"];
    let alerts: Vec<&str> = arr(&groups[0]["rules"])
        .iter()
        .map(|r| str_of(&r["alert"]))
        .collect();
    assert_eq!(
        alerts,
        [
            "FargateWebhookFailOpen",
            "FargateWebhookCertificateExpiresSoon",
            "FargateWebhookReloadsFailing",
            "FargateWebhookErrorRatio",
            "FargateWebhookLatencyHigh",
            "FargateWebhookStoreWriteQuarantined",
            "FargateWebhookShadowedSelectors",
            "FargateWebhookCatchAllSelectors"
        ]
    );
    let fail_open = str_of(&arr(&groups[0]["rules"])[0]["expr"]);
    assert!(
        fail_open.contains(r#"apiserver_admission_webhook_fail_open_count{name="fargate-mutation.fargate-webhook.io"}"#),
        "{fail_open}"
    );
    assert!(
        render(helm, &[]).get("PrometheusRule", FULLNAME).is_none(),
        "off by default"
    );
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(
        &file,
        serde_saphyr::to_string(&serde_json::json!({ "groups": groups })).unwrap(),
    )
    .unwrap();
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dashboard_ships_as_a_sidecar_configmap() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &["metrics.grafanaDashboard.enabled=true"]);
    let map = r.one("ConfigMap", &format!("{FULLNAME}-dashboard"));
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value =
        serde_json::from_str(str_of(&map["data"]["fargate-webhook.json"])).unwrap();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("dashboards/fargate-webhook.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shipped, file);
    assert!(
        render(helm, &[])
            .get("ConfigMap", &format!("{FULLNAME}-dashboard"))
            .is_none()
    );
}
