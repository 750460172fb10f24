//! Monitoring objects: the PrometheusRule (checked by promtool when it is installed) and the Grafana
//! dashboard ConfigMap.

use std::process::Command;

use serde_json::Value;

use super::support::process::promtool;
use super::{FULLNAME, RELEASE, arr, chart_dir, helm, render, render_err, str_of, template_with};

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
            "FargateWebhookMatchConditionsFailing",
            "FargateWebhookMatchConditionsFallback",
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
    check_rules(&promtool, &serde_json::json!({ "groups": groups }));
}

/// `promtool check rules` on a rules file holding `rules` (the `groups` object) passes.
fn check_rules(promtool: &std::path::Path, rules: &serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, serde_saphyr::to_string(rules).unwrap()).unwrap();
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
    // The leader's gauges are read on the leader: a former leader keeps its last values.
    for rule in arr(&group["rules"]) {
        let expr = str_of(&rule["expr"]);
        if !LEADER_GAUGES.iter().any(|g| expr.contains(g)) {
            continue;
        }
        let uses = metric_uses(expr);
        for u in uses
            .iter()
            .filter(|u| LEADER_GAUGES.contains(&u.metric.as_str()))
        {
            assert!(!summed_over_replicas(u), "{expr}");
            assert!(
                uses.iter()
                    .any(|l| l.metric == "fargate_webhook_scheduler_leader")
                    && expr.contains(" and on (")
                    && expr.contains("== 1"),
                "{} not restricted to the leader in {}: {expr}",
                u.metric,
                str_of(&rule["alert"])
            );
        }
    }
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

#[test]
fn the_monitors_take_relabelings_and_metric_relabelings() {
    let Some(helm) = helm() else { return };
    let values = r#"
scheduler:
  enabled: true
metrics:
  serviceMonitor:
    enabled: true
    relabelings:
      - targetLabel: cluster
        replacement: east
    metricRelabelings:
      - sourceLabels: [__name__]
        regex: process_.*
        action: drop
"#;
    let r = template_with(helm, RELEASE, Some(values), &[])
        .unwrap_or_else(|e| panic!("helm template: {e}"));
    let relabelings = serde_json::json!([{ "targetLabel": "cluster", "replacement": "east" }]);
    let metric_relabelings = serde_json::json!([
        { "sourceLabels": ["__name__"], "regex": "process_.*", "action": "drop" }
    ]);
    for name in [FULLNAME.to_string(), format!("{FULLNAME}-scheduler")] {
        let endpoint = &r.one("ServiceMonitor", &name)["spec"]["endpoints"][0];
        assert_eq!(endpoint["relabelings"], relabelings, "{name}");
        assert_eq!(endpoint["metricRelabelings"], metric_relabelings, "{name}");
        assert_eq!(endpoint["port"], "metrics", "{name}");
    }
    // Unset, the keys are left out (the operator's defaults), not rendered empty.
    let plain = render(helm, &["metrics.serviceMonitor.enabled=true"]);
    let endpoint = &plain.one("ServiceMonitor", FULLNAME)["spec"]["endpoints"][0];
    assert!(endpoint.get("relabelings").is_none(), "{endpoint}");
    assert!(endpoint.get("metricRelabelings").is_none(), "{endpoint}");
    // Prometheus's own snake_case keys are refused: the CRD would drop them without a word.
    let e = render_err(
        helm,
        &["metrics.serviceMonitor.relabelings[0].source_labels[0]=__name__"],
    );
    assert!(e.contains("source_labels"), "{e}");
    let e = render_err(
        helm,
        &["metrics.podMonitor.metricRelabelings[0].action=remove"],
    );
    assert!(e.contains("action"), "{e}");
}

#[test]
fn a_pod_monitor_instead_of_the_service_monitor() {
    let Some(helm) = helm() else { return };
    let scheduler = format!("{FULLNAME}-scheduler");
    let r = render(
        helm,
        &[
            "scheduler.enabled=true",
            "metrics.podMonitor.enabled=true",
            "metrics.podMonitor.labels.release=kube-prometheus-stack",
            "metrics.podMonitor.interval=15s",
            "metrics.podMonitor.relabelings[0].targetLabel=cluster",
            "metrics.podMonitor.relabelings[0].replacement=east",
        ],
    );
    assert!(r.all("ServiceMonitor").is_empty());
    for (name, deployment, component) in [
        (FULLNAME.to_string(), FULLNAME.to_string(), "webhook"),
        (scheduler.clone(), scheduler.clone(), "scheduler"),
    ] {
        let monitor = r.one("PodMonitor", &name);
        assert_eq!(
            monitor["metadata"]["labels"]["release"],
            "kube-prometheus-stack"
        );
        assert_eq!(
            monitor["spec"]["namespaceSelector"]["matchNames"],
            serde_json::json!([super::NS])
        );
        let selector = &monitor["spec"]["selector"]["matchLabels"];
        assert_eq!(selector["app.kubernetes.io/component"], component);
        let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
        assert_eq!(endpoint["interval"], "15s");
        assert_eq!(endpoint["path"], "/metrics");
        assert_eq!(
            endpoint["relabelings"],
            serde_json::json!([{ "targetLabel": "cluster", "replacement": "east" }])
        );
        // The selector takes this component's pods, and its port is one they name.
        let pod = &r.one("Deployment", &deployment)["spec"]["template"];
        for (key, value) in selector.as_object().unwrap() {
            assert_eq!(&pod["metadata"]["labels"][key], value, "{name}: {key}");
        }
        let ports: Vec<&str> = arr(&pod["spec"]["containers"][0]["ports"])
            .iter()
            .map(|p| str_of(&p["name"]))
            .collect();
        assert!(
            ports.contains(&str_of(&endpoint["port"])),
            "{name}: {ports:?}"
        );
        // Scraped by the PodMonitor, so not by the annotations as well.
        assert!(
            pod["metadata"]["annotations"]
                .get("prometheus.io/scrape")
                .is_none(),
            "{name}: {}",
            pod["metadata"]
        );
    }
    assert!(
        render(helm, &["metrics.podMonitor.enabled=true"])
            .get("PodMonitor", &scheduler)
            .is_none(),
        "no scheduler, no scheduler PodMonitor"
    );
    assert!(
        render(helm, &[]).all("PodMonitor").is_empty(),
        "off by default"
    );
    let e = render_err(
        helm,
        &[
            "metrics.podMonitor.enabled=true",
            "metrics.serviceMonitor.enabled=true",
        ],
    );
    assert!(e.contains("choose one"), "{e}");
}

#[test]
fn the_cluster_variable_shows_with_multi_cluster() {
    let Some(helm) = helm() else { return };
    let shipped = |sets: &[&str]| -> Value {
        let r = render(helm, sets);
        let map = r.one("ConfigMap", &format!("{FULLNAME}-dashboard"));
        serde_json::from_str(str_of(&map["data"]["fargate-webhook.json"])).unwrap()
    };
    let cluster_hide = |d: &Value| {
        arr(&d["templating"]["list"])
            .iter()
            .find(|v| v["name"] == "cluster")
            .expect("a cluster variable")["hide"]
            .clone()
    };
    let hidden = shipped(&["metrics.grafanaDashboard.enabled=true"]);
    assert_eq!(cluster_hide(&hidden), 2);
    let mut shown = shipped(&[
        "metrics.grafanaDashboard.enabled=true",
        "metrics.grafanaDashboard.multiCluster=true",
    ]);
    assert_eq!(cluster_hide(&shown), 0);
    // Nothing else differs.
    for v in shown["templating"]["list"].as_array_mut().unwrap() {
        if v["name"] == "cluster" {
            v["hide"] = 2.into();
        }
    }
    assert_eq!(shown, hidden);
}

// ------------------------------------------------------------------------------------------------------
// the dashboard's queries

/// Gauges every replica reports in full (each holds the whole snapshot, certificate or watch): summing
/// them over replicas counts the same thing once per replica.
const FULL_GAUGES: &[&str] = &[
    "fargate_webhook_profiles",
    "fargate_webhook_shadowed_selectors",
    "fargate_webhook_catch_all_selectors",
    "fargate_webhook_certificate_expiry_timestamp_seconds",
    "fargate_webhook_certificate_expiring",
    "fargate_webhook_scheduler_logging_configmap",
    "fargate_webhook_build_info",
    "process_max_fds",
];

/// Gauges only the scheduler's leader sets (src/scheduler/controller.rs `set_gauges`, run by `lead`): a
/// former leader keeps its last values, so they are read on the replica whose
/// `fargate_webhook_scheduler_leader` is 1.
const LEADER_GAUGES: &[&str] = &[
    "fargate_webhook_scheduler_pods_waiting",
    "fargate_webhook_scheduler_queue_depth",
    "fargate_webhook_scheduler_virtual_nodes",
];

fn dashboard() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("dashboards/fargate-webhook.json")).unwrap(),
    )
    .unwrap()
}

/// Every (panel title, refId, expr) of the dashboard.
fn dashboard_targets(dashboard: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for panel in arr(&dashboard["panels"]) {
        for target in arr(&panel["targets"]) {
            out.push((
                str_of(&panel["title"]).to_owned(),
                str_of(&target["refId"]).to_owned(),
                str_of(&target["expr"]).to_owned(),
            ));
        }
    }
    out
}

/// A metric named in a query: its name, its `{...}` selector (empty if none), and the nearest
/// aggregation around it (`sum`, with its `by` labels), if any.
#[derive(Debug)]
struct Use {
    metric: String,
    selector: String,
    aggregation: Option<(String, Vec<String>)>,
}

/// The metrics a PromQL expression names, with the aggregation that takes each over the replicas.
/// Enough PromQL for the dashboard's own queries: prefix aggregations (`sum by (x) (...)`), functions,
/// binary operators with `on (...)`; it panics on the postfix form (`sum(...) by (x)`), which would be
/// misread.
fn metric_uses(expr: &str) -> Vec<Use> {
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "count",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
        "count_values",
        "group",
    ];
    const LABEL_LISTS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    enum Frame {
        Aggregation(String, Vec<String>),
        Other,
    }
    let chars: Vec<char> = expr.chars().collect();
    let mut stack: Vec<Frame> = Vec::new();
    let mut pending: Option<(String, Vec<String>)> = None;
    let mut uses = Vec::new();
    let mut closed_aggregation = false;
    let mut i = 0;
    let skip_blank = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = skip_blank(i);
            if LABEL_LISTS.contains(&word.as_str()) && chars.get(next) == Some(&'(') {
                assert!(
                    !(closed_aggregation && (word == "by" || word == "without")),
                    "postfix grouping is not understood here: {expr}"
                );
                let end = next + chars[next..].iter().position(|&c| c == ')').unwrap();
                let labels: Vec<String> = chars[next + 1..end]
                    .iter()
                    .collect::<String>()
                    .split(',')
                    .map(|l| l.trim().to_owned())
                    .filter(|l| !l.is_empty())
                    .collect();
                if let Some((_, by)) = pending.as_mut().filter(|_| word == "by") {
                    *by = labels;
                }
                i = end + 1;
            } else if AGGREGATIONS.contains(&word.as_str()) {
                pending = Some((word, Vec::new()));
            } else if word.starts_with("fargate_webhook_")
                || word.starts_with("process_")
                || word.starts_with("apiserver_")
            {
                let selector = if chars.get(i) == Some(&'{') {
                    let end = i + chars[i..].iter().position(|&c| c == '}').unwrap();
                    let s: String = chars[i..=end].iter().collect();
                    i = end + 1;
                    s
                } else {
                    String::new()
                };
                let aggregation = stack.iter().rev().find_map(|f| match f {
                    Frame::Aggregation(op, by) => Some((op.clone(), by.clone())),
                    Frame::Other => None,
                });
                uses.push(Use {
                    metric: word,
                    selector,
                    aggregation,
                });
            }
            closed_aggregation = false;
            continue;
        }
        match c {
            '"' => {
                i += 1 + chars[i + 1..].iter().position(|&c| c == '"').unwrap();
            }
            '[' => {
                i += chars[i..].iter().position(|&c| c == ']').unwrap();
            }
            '(' => stack.push(match pending.take() {
                Some((op, by)) => Frame::Aggregation(op, by),
                None => Frame::Other,
            }),
            ')' => {
                closed_aggregation = matches!(stack.pop(), Some(Frame::Aggregation(..)));
                i += 1;
                continue;
            }
            _ => {}
        }
        if !c.is_whitespace() {
            closed_aggregation = false;
        }
        i += 1;
    }
    uses
}

/// Whether this use sums a gauge over the replicas (a `sum` without `by (pod)` or `by (instance)`).
fn summed_over_replicas(u: &Use) -> bool {
    u.aggregation
        .as_ref()
        .is_some_and(|(op, by)| op == "sum" && !by.iter().any(|l| l == "pod" || l == "instance"))
}

#[test]
fn the_query_reader_sees_sums() {
    // The checks below are only as good as this reader: it must see the sums it is there to refuse.
    let uses = metric_uses(r#"sum by (status) (fargate_webhook_profiles{namespace="$namespace"})"#);
    assert_eq!(uses.len(), 1);
    assert_eq!(uses[0].metric, "fargate_webhook_profiles");
    assert_eq!(uses[0].selector, r#"{namespace="$namespace"}"#);
    assert!(summed_over_replicas(&uses[0]));
    assert!(summed_over_replicas(
        &metric_uses("sum(max_over_time(fargate_webhook_profiles[5m]))")[0]
    ));
    assert!(!summed_over_replicas(
        &metric_uses("max by (status) (fargate_webhook_profiles)")[0]
    ));
    assert!(!summed_over_replicas(
        &metric_uses("sum by (pod) (process_max_fds)")[0]
    ));
    // The nearest aggregation counts: a max inside a sum is taken per replica first.
    let nested = metric_uses(
        "sum(max by (pod) (fargate_webhook_profiles)) + sum(fargate_webhook_scheduler_queue_depth)",
    );
    assert!(!summed_over_replicas(&nested[0]));
    assert!(summed_over_replicas(&nested[1]));
    // `and on (...)` is a label list, not an aggregation.
    let joined = metric_uses(
        "max(fargate_webhook_scheduler_queue_depth and on (instance) (fargate_webhook_scheduler_leader == 1))",
    );
    assert_eq!(joined.len(), 2);
    assert_eq!(joined[0].aggregation, Some(("max".into(), vec![])));
    assert!(
        std::panic::catch_unwind(|| metric_uses("sum(fargate_webhook_profiles) by (status)"))
            .is_err(),
        "the postfix form is refused, not misread"
    );
}

#[test]
fn the_dashboard_selects_one_release_and_never_sums_full_gauges() {
    let dashboard = dashboard();
    let variables: Vec<&Value> = arr(&dashboard["templating"]["list"]).iter().collect();
    let variable = |name: &str| {
        *variables
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no ${name} variable"))
    };
    // $cluster: the `cluster` label, hidden (kube-prometheus's single-cluster default; multiCluster shows it).
    let cluster = variable("cluster");
    assert_eq!(cluster["type"], "query");
    assert_eq!(cluster["hide"], 2);
    assert!(
        str_of(&cluster["query"]).ends_with(", cluster)"),
        "{}",
        cluster["query"]
    );
    let namespace = variable("namespace");
    assert!(
        str_of(&namespace["query"]).contains(r#"cluster="$cluster""#)
            && str_of(&namespace["query"]).ends_with(", namespace)"),
        "{}",
        namespace["query"]
    );
    assert_ne!(namespace["includeAll"], true, "one release at a time");
    let job = variable("job");
    assert!(
        str_of(&job["query"]).contains(r#"namespace="$namespace""#),
        "{}",
        job["query"]
    );

    let targets = dashboard_targets(&dashboard);
    assert!(targets.len() >= 30, "{targets:?}");
    let mut leader_gauges_read = 0;
    for (panel, ref_id, expr) in &targets {
        let at = format!("{panel} {ref_id}: {expr}");
        let uses = metric_uses(expr);
        assert!(!uses.is_empty(), "{at}");
        for u in &uses {
            // Every series is this cluster's; every series of ours is this release's.
            assert!(
                u.selector.contains(r#"cluster="$cluster""#),
                "{} without cluster=\"$cluster\" in {at}",
                u.metric
            );
            if !u.metric.starts_with("apiserver_") {
                assert!(
                    u.selector.contains(r#"namespace="$namespace""#),
                    "{} without namespace=\"$namespace\" in {at}",
                    u.metric
                );
                assert!(
                    u.selector.contains(r#"job=~"$job""#),
                    "{} without job=~\"$job\" in {at}",
                    u.metric
                );
            }
            let full = FULL_GAUGES.contains(&u.metric.as_str());
            let leader = LEADER_GAUGES.contains(&u.metric.as_str());
            if full || leader {
                assert!(
                    !summed_over_replicas(u),
                    "{} summed over the replicas in {at}",
                    u.metric
                );
            }
            if leader {
                leader_gauges_read += 1;
                assert!(
                    u.aggregation.is_some(),
                    "{} not aggregated (one line per replica) in {at}",
                    u.metric
                );
                assert!(
                    uses.iter()
                        .any(|l| l.metric == "fargate_webhook_scheduler_leader")
                        && expr.contains(" and on (")
                        && expr.contains("== 1"),
                    "{} not restricted to the leader in {at}",
                    u.metric
                );
            }
        }
    }
    assert_eq!(
        leader_gauges_read,
        LEADER_GAUGES.len(),
        "each leader gauge is shown"
    );
}

#[test]
fn the_dashboard_queries_pass_promtool() {
    let Some(promtool) = promtool() else { return };
    // Each query as a recording rule, its Grafana variables replaced by what Grafana would put there.
    let rules: Vec<Value> = dashboard_targets(&dashboard())
        .iter()
        .enumerate()
        .map(|(n, (_, _, expr))| {
            let expr = expr
                .replace("$__rate_interval", "2m")
                .replace("$cluster", "")
                .replace("$namespace", super::NS)
                .replace(
                    "$job",
                    "(fw-fargate-webhook|fw-fargate-webhook-scheduler-metrics)",
                )
                .replace("$webhook", "fargate-mutation.fargate-webhook.io");
            assert!(!expr.contains('$'), "a variable left: {expr}");
            serde_json::json!({ "record": format!("dashboard:query_{n}"), "expr": expr })
        })
        .collect();
    check_rules(
        &promtool,
        &serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] }),
    );
}
