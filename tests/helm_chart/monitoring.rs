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
            // The scheduler's group too, so that promtool checks it.
            "scheduler.enabled=true",
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
            "FargateWebhookStoreCannotCommit",
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
fn the_scheduler_is_monitored_on_its_own() {
    let Some(helm) = helm() else { return };
    let scheduler = format!("{FULLNAME}-scheduler");
    let r = render(
        helm,
        &[
            "scheduler.enabled=true",
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
        ],
    );
    // Its metrics Service selects the scheduler's pods only, on their ops port.
    let service = r.one("Service", &format!("{scheduler}-metrics"));
    assert_eq!(
        service["spec"]["selector"]["app.kubernetes.io/component"],
        "scheduler"
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    let monitor = r.one("ServiceMonitor", &scheduler);
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "scheduler"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let webhook_monitor = r.one("ServiceMonitor", FULLNAME);
    assert_eq!(
        webhook_monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "webhook"
    );
    // Its alerts, in their own group.
    let rule = r.one("PrometheusRule", FULLNAME);
    let group = &arr(&rule["spec"]["groups"])[1];
    assert_eq!(str_of(&group["name"]), "fargate-scheduler");
    let alerts: Vec<&str> = arr(&group["rules"])
        .iter()
        .map(|r| str_of(&r["alert"]))
        .collect();
    assert_eq!(
        alerts,
        [
            "FargateSchedulerNoLeader",
            "FargateSchedulerPodsWaiting",
            "FargateSchedulerBindLatencyHigh",
            "FargateSchedulerRefusals"
        ]
    );
    // With the ServiceMonitor off, its pods carry the scrape annotations.
    let annotated = render(helm, &["scheduler.enabled=true"]);
    let annotations =
        &annotated.one("Deployment", &scheduler)["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    // Without a scheduler, none of it.
    let without = render(
        helm,
        &[
            "metrics.serviceMonitor.enabled=true",
            "metrics.prometheusRule.enabled=true",
        ],
    );
    assert!(without.get("ServiceMonitor", &scheduler).is_none());
    assert_eq!(
        arr(&without.one("PrometheusRule", FULLNAME)["spec"]["groups"]).len(),
        1
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
