//! The chart's selectors: each selects the pods of its own component (webhook, scheduler, test), and only
//! those. The selections are computed from the rendered pod templates, so a template that crosses again
//! fails here.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{FULLNAME, NS, RELEASE, Rendered, arr, helm, render, set_of, str_of, strings};

const COMPONENT: &str = "app.kubernetes.io/component";

type Labels = BTreeMap<String, String>;

/// A pod the chart renders: a workload's pod template, or a bare Pod (the `helm test` hook).
struct PodTemplate<'a> {
    /// `Kind/name` of the object that holds it.
    owner: String,
    namespace: String,
    labels: Labels,
    spec: &'a Value,
}

fn labels_of(v: &Value) -> Labels {
    v.as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), str_of(v).to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn kind_and_name(doc: &Value) -> String {
    format!(
        "{}/{}",
        str_of(&doc["kind"]),
        str_of(&doc["metadata"]["name"])
    )
}

fn namespace_of(doc: &Value) -> String {
    doc["metadata"]["namespace"]
        .as_str()
        .unwrap_or(NS)
        .to_string()
}

/// Every pod the rendered chart would make, with its labels: computed from the manifests, so a new
/// workload or hook is covered without naming it here.
fn pod_templates(r: &Rendered) -> Vec<PodTemplate<'_>> {
    let mut pods = Vec::new();
    for doc in &r.docs {
        let (labels, spec) = match str_of(&doc["kind"]) {
            "Pod" => (&doc["metadata"]["labels"], &doc["spec"]),
            "CronJob" => {
                let template = &doc["spec"]["jobTemplate"]["spec"]["template"];
                (&template["metadata"]["labels"], &template["spec"])
            }
            _ => {
                let template = &doc["spec"]["template"];
                (&template["metadata"]["labels"], &template["spec"])
            }
        };
        if spec["containers"].is_array() {
            pods.push(PodTemplate {
                owner: kind_and_name(doc),
                namespace: namespace_of(doc),
                labels: labels_of(labels),
                spec,
            });
        }
    }
    pods
}

/// A Kubernetes LabelSelector: every `matchLabels` pair and every `matchExpressions` requirement (`{}`
/// selects everything).
fn selector_matches(selector: &Value, labels: &Labels) -> bool {
    let pairs = labels_of(&selector["matchLabels"])
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expressions = selector["matchExpressions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    pairs
        && expressions.iter().all(|e| {
            let value = labels.get(str_of(&e["key"]));
            let values = if e["values"].is_array() {
                strings(&e["values"])
            } else {
                Vec::new()
            };
            let listed = value.is_some_and(|v| values.contains(v));
            match str_of(&e["operator"]) {
                "In" => listed,
                "NotIn" => !listed,
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                op => panic!("unknown label selector operator {op}"),
            }
        })
}

/// A Service's `spec.selector`: a plain map, every pair on the pod (empty: no pod, no endpoints).
fn service_selects(service: &Value, labels: &Labels) -> bool {
    let selector = labels_of(&service["spec"]["selector"]);
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The component whose pods an object is for: its own `app.kubernetes.io/component` label, except the API
/// Service's `api` (a label of its own so that the ServiceMonitor leaves it out; the webhook pods serve it).
fn own_component(doc: &Value) -> Option<String> {
    let component = doc["metadata"]["labels"][COMPONENT].as_str()?;
    Some(
        if component == "api" {
            "webhook"
        } else {
            component
        }
        .to_string(),
    )
}

#[derive(Default)]
struct SelectorReport {
    /// What was checked: `Kind/name` of each selecting object (affinity terms: `Kind/name podAntiAffinity`).
    checked: Vec<String>,
    problems: Vec<String>,
}

impl SelectorReport {
    /// `what`, for the pods of component `own` in `namespace`, selects the pods for which `selects` holds:
    /// they must be exactly the pods of that component, and there must be some.
    fn expect(
        &mut self,
        pods: &[PodTemplate],
        what: String,
        own: Option<&str>,
        namespace: &str,
        selects: impl Fn(&Labels) -> bool,
    ) {
        let here = || pods.iter().filter(|p| p.namespace == namespace);
        let chosen: BTreeSet<&str> = here()
            .filter(|p| selects(&p.labels))
            .map(|p| p.owner.as_str())
            .collect();
        match own {
            None => self.problems.push(format!(
                "{what} has no {COMPONENT} label: whose pods is it for? (it selects {chosen:?})"
            )),
            Some(own) => {
                let mine: BTreeSet<&str> = here()
                    .filter(|p| p.labels.get(COMPONENT).map(String::as_str) == Some(own))
                    .map(|p| p.owner.as_str())
                    .collect();
                if mine.is_empty() {
                    self.problems
                        .push(format!("{what}: no pod of its component {own} is rendered"));
                } else if chosen != mine {
                    self.problems.push(format!(
                        "{what} (component {own}) selects {chosen:?}; the {own} pods are {mine:?}"
                    ));
                }
            }
        }
        self.checked.push(what);
    }
}

/// Checks every label selector of the rendered chart against the rendered pods: workload selectors,
/// Service selectors, PodDisruptionBudgets, NetworkPolicy podSelectors, ServiceMonitors (through the
/// Services they select) and PodMonitors, pod anti-affinity terms and topology spread constraints.
fn check_selectors(r: &Rendered) -> SelectorReport {
    let pods = pod_templates(r);
    let mut report = SelectorReport::default();

    // Each pod names its component, and a component is one workload.
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for pod in &pods {
        match pod.labels.get(COMPONENT) {
            None => report.problems.push(format!(
                "the pods of {} have no {COMPONENT} label",
                pod.owner
            )),
            Some(c) => {
                if let Some(other) = seen.insert(c, &pod.owner) {
                    report.problems.push(format!(
                        "the pods of {} and {other} share the component {c}",
                        pod.owner
                    ));
                }
            }
        }
    }

    for pod in &pods {
        let own = pod.labels.get(COMPONENT).map(String::as_str);
        // A workload's selector: its own pod template, and no other workload's pods.
        if !pod.owner.starts_with("Pod/") {
            let doc = r
                .docs
                .iter()
                .find(|d| kind_and_name(d) == pod.owner)
                .expect("the workload");
            let selector = &doc["spec"]["selector"];
            if selector.is_object() {
                if !selector_matches(selector, &pod.labels) {
                    report.problems.push(format!(
                        "{}: the selector {selector} does not match its own pod template {:?}",
                        pod.owner, pod.labels
                    ));
                }
                report.expect(&pods, pod.owner.clone(), own, &pod.namespace, |l| {
                    selector_matches(selector, l)
                });
            }
        }
        // Anti-affinity and spreading count the pods of the same workload (terms naming other namespaces
        // count pods elsewhere, not the chart's).
        let anti = &pod.spec["affinity"]["podAntiAffinity"];
        let required = anti["requiredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten();
        let preferred = anti["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|weighted| &weighted["podAffinityTerm"]);
        for term in required.chain(preferred) {
            if term["namespaces"].is_array() || term["namespaceSelector"].is_object() {
                continue;
            }
            let selector = &term["labelSelector"];
            report.expect(
                &pods,
                format!("{} podAntiAffinity", pod.owner),
                own,
                &pod.namespace,
                |l| selector.is_object() && selector_matches(selector, l),
            );
        }
        for constraint in pod.spec["topologySpreadConstraints"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let selector = &constraint["labelSelector"];
            report.expect(
                &pods,
                format!("{} topologySpreadConstraints", pod.owner),
                own,
                &pod.namespace,
                |l| selector.is_object() && selector_matches(selector, l),
            );
        }
    }

    for doc in &r.docs {
        let what = kind_and_name(doc);
        let namespace = namespace_of(doc);
        let own = own_component(doc);
        let spec = &doc["spec"];
        match str_of(&doc["kind"]) {
            // A Service without a selector has its endpoints made by hand: nothing to check.
            "Service" if !labels_of(&spec["selector"]).is_empty() => {
                report.expect(&pods, what, own.as_deref(), &namespace, |l| {
                    service_selects(doc, l)
                });
            }
            "PodDisruptionBudget" | "PodMonitor" => {
                let selector = &spec["selector"];
                report.expect(&pods, what, own.as_deref(), &namespace, |l| {
                    selector_matches(selector, l)
                });
            }
            "NetworkPolicy" => {
                let selector = &spec["podSelector"];
                report.expect(&pods, what, own.as_deref(), &namespace, |l| {
                    selector_matches(selector, l)
                });
            }
            // Selects Services, then scrapes the pods behind them, on the endpoints' ports.
            "ServiceMonitor" => {
                let in_scope = |svc: &Value| {
                    let ns_selector = &spec["namespaceSelector"];
                    if ns_selector["any"] == true {
                        true
                    } else if ns_selector["matchNames"].is_array() {
                        strings(&ns_selector["matchNames"]).contains(&namespace_of(svc))
                    } else {
                        namespace_of(svc) == namespace
                    }
                };
                let services: Vec<&Value> = r
                    .all("Service")
                    .into_iter()
                    .filter(|svc| {
                        in_scope(svc)
                            && selector_matches(
                                &spec["selector"],
                                &labels_of(&svc["metadata"]["labels"]),
                            )
                    })
                    .collect();
                if services.is_empty() {
                    report.problems.push(format!("{what} selects no Service"));
                }
                for svc in &services {
                    for endpoint in arr(&spec["endpoints"]) {
                        let port = &endpoint["port"];
                        if !arr(&svc["spec"]["ports"])
                            .iter()
                            .any(|p| &p["name"] == port)
                        {
                            report.problems.push(format!(
                                "{what} selects {}, which has no port {port}",
                                kind_and_name(svc)
                            ));
                        }
                    }
                }
                report.expect(&pods, what, own.as_deref(), &namespace, |l| {
                    services.iter().any(|svc| service_selects(svc, l))
                });
            }
            _ => {}
        }
    }
    report
}

/// Values that render every selector the chart has: both Deployments, the `helm test` pod, the webhook and
/// API Services, the PodDisruptionBudget, the NetworkPolicies and the ServiceMonitor.
fn every_selector_values() -> [&'static str; 6] {
    [
        "scheduler.enabled=true",
        "tests.enabled=true",
        "api.service.enabled=true",
        "networkPolicy.enabled=true",
        "metrics.serviceMonitor.enabled=true",
        "podDisruptionBudget.enabled=true",
    ]
}

fn assert_no_crossing(sets: &[&str], report: &SelectorReport) {
    assert!(
        report.problems.is_empty(),
        "with {sets:?}, selectors that cross components:\n{}",
        report.problems.join("\n")
    );
}

/// Issue 19: every selector of the chart selects the pods of its own component and none of the others',
/// as computed from the rendered pod labels.
#[test]
fn every_selector_selects_the_pods_of_its_own_component_only() {
    let Some(helm) = helm() else { return };
    let sets = every_selector_values();
    let r = render(helm, &sets);
    let report = check_selectors(&r);
    assert_no_crossing(&sets, &report);

    // Three components, and every kind of selector was there to be checked.
    let components: BTreeSet<String> = pod_templates(&r)
        .iter()
        .filter_map(|p| p.labels.get(COMPONENT).cloned())
        .collect();
    assert_eq!(components, set_of(&["scheduler", "test", "webhook"]));
    let checked: BTreeSet<String> = report.checked.into_iter().collect();
    for what in [
        format!("Deployment/{FULLNAME}"),
        format!("Deployment/{FULLNAME} podAntiAffinity"),
        format!("Deployment/{FULLNAME}-scheduler"),
        format!("Service/{FULLNAME}"),
        format!("Service/{FULLNAME}-api"),
        format!("PodDisruptionBudget/{FULLNAME}"),
        format!("NetworkPolicy/{FULLNAME}"),
        format!("NetworkPolicy/{FULLNAME}-scheduler"),
        format!("ServiceMonitor/{FULLNAME}"),
    ] {
        assert!(
            checked.contains(&what),
            "{what} was not checked: {checked:?}"
        );
    }

    // The scheduler's policy opens its ops port only, to the same peers as the webhook's ops port.
    let policy = r.one("NetworkPolicy", &format!("{FULLNAME}-scheduler"));
    let rules = arr(&policy["spec"]["ingress"]);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0]["ports"][0]["port"], 9091);
    let scheduler = r.one("Deployment", &format!("{FULLNAME}-scheduler"));
    assert!(
        strings(&scheduler["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--metrics-addr=0.0.0.0:9091".to_string())
    );

    // Other configurations: the defaults, the scheduler without the hook, and a topology spread of the
    // webhook pods written as the chart's README shows.
    let instance = format!(
        "topologySpreadConstraints[0].labelSelector.matchLabels.app\\.kubernetes\\.io/instance={RELEASE}"
    );
    let spread = [
        "scheduler.enabled=true",
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "topologySpreadConstraints[0].labelSelector.matchLabels.app\\.kubernetes\\.io/name=fargate-webhook",
        &instance,
        "topologySpreadConstraints[0].labelSelector.matchLabels.app\\.kubernetes\\.io/component=webhook",
    ];
    let configurations: [&[&str]; 3] = [
        &[],
        &[
            "scheduler.enabled=true",
            "tests.enabled=false",
            "networkPolicy.enabled=true",
        ],
        &spread,
    ];
    for sets in configurations {
        let report = check_selectors(&render(helm, sets));
        assert_no_crossing(sets, &report);
        assert!(report.checked.contains(&format!("Service/{FULLNAME}")));
    }
    let report = check_selectors(&render(helm, &spread));
    assert!(
        report
            .checked
            .contains(&format!("Deployment/{FULLNAME} topologySpreadConstraints")),
        "{:?}",
        report.checked
    );
}

/// Each Deployment's selector matches its own pod template (the API refuses one that does not) and names
/// the template's component.
#[test]
fn each_deployment_selects_its_own_pod_template() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &every_selector_values());
    let deployments = r.all("Deployment");
    assert_eq!(deployments.len(), 2);
    for deployment in &deployments {
        let what = kind_and_name(deployment);
        let selector = &deployment["spec"]["selector"];
        let labels = labels_of(&deployment["spec"]["template"]["metadata"]["labels"]);
        assert!(
            selector_matches(selector, &labels),
            "{what}: {selector} does not match {labels:?}"
        );
        assert_eq!(
            selector["matchLabels"][COMPONENT].as_str(),
            labels.get(COMPONENT).map(String::as_str),
            "{what}: the selector names the pods' component"
        );
        for other in deployments.iter().filter(|d| kind_and_name(d) != what) {
            let their = labels_of(&other["spec"]["template"]["metadata"]["labels"]);
            assert!(
                !selector_matches(selector, &their),
                "{what} selects the pods of {}",
                kind_and_name(other)
            );
        }
    }
}

/// The check above has teeth: the selectors as they were before the fix (the release's labels alone), and
/// other ways of crossing, are each reported.
#[test]
fn the_selector_check_catches_selectors_that_cross_components() {
    let Some(helm) = helm() else { return };
    let fixed = render(helm, &every_selector_values());
    let mut broken = Rendered {
        docs: fixed.docs.clone(),
    };
    let unscoped = |v: &mut Value| {
        v.as_object_mut()
            .expect("a label map")
            .remove(COMPONENT)
            .expect("a component label to remove");
    };
    let find = |r: &Rendered, kind: &str, name: &str| -> usize {
        r.docs
            .iter()
            .position(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind}/{name}"))
    };
    let scheduler = format!("{FULLNAME}-scheduler");
    for (kind, name, path) in [
        (
            "Deployment",
            FULLNAME,
            &["spec", "selector", "matchLabels"][..],
        ),
        ("Service", FULLNAME, &["spec", "selector"][..]),
        (
            "Service",
            &format!("{FULLNAME}-api"),
            &["spec", "selector"][..],
        ),
        (
            "PodDisruptionBudget",
            FULLNAME,
            &["spec", "selector", "matchLabels"][..],
        ),
        (
            "NetworkPolicy",
            FULLNAME,
            &["spec", "podSelector", "matchLabels"][..],
        ),
        (
            "ServiceMonitor",
            FULLNAME,
            &["spec", "selector", "matchLabels"][..],
        ),
    ] {
        let i = find(&broken, kind, name);
        let mut v = &mut broken.docs[i];
        for key in path {
            v = &mut v[*key];
        }
        unscoped(v);
    }
    let i = find(&broken, "Deployment", FULLNAME);
    let affinity = &mut broken.docs[i]["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
        [0]["podAffinityTerm"]["labelSelector"]["matchLabels"];
    unscoped(affinity);
    // The scheduler's policy selecting every pod of the namespace.
    let i = find(&broken, "NetworkPolicy", &scheduler);
    broken.docs[i]["spec"]["podSelector"] = serde_json::json!({});

    let problems = check_selectors(&broken).problems;
    let reported = |what: String, selects: &[String]| {
        assert!(
            problems.iter().any(|p| p.starts_with(&format!("{what} "))
                && selects.iter().all(|s| p.contains(s.as_str()))),
            "{what} selecting {selects:?} is not reported: {problems:#?}"
        );
    };
    let webhook_pods = format!("Deployment/{FULLNAME}");
    let scheduler_pods = format!("Deployment/{scheduler}");
    let test_pod = format!("Pod/{FULLNAME}-test");
    let all = [
        webhook_pods.clone(),
        scheduler_pods.clone(),
        test_pod.clone(),
    ];
    reported(format!("Deployment/{FULLNAME}"), &all);
    reported(format!("Deployment/{FULLNAME} podAntiAffinity"), &all);
    reported(format!("Service/{FULLNAME}"), &all);
    reported(format!("Service/{FULLNAME}-api"), &all);
    reported(format!("PodDisruptionBudget/{FULLNAME}"), &all);
    reported(format!("NetworkPolicy/{FULLNAME}"), &all);
    reported(format!("NetworkPolicy/{scheduler}"), &all);
    reported(format!("ServiceMonitor/{FULLNAME}"), &all);
    // The ServiceMonitor without its component also takes in the API Service, which has no metrics port.
    reported(
        format!("ServiceMonitor/{FULLNAME}"),
        &[format!("Service/{FULLNAME}-api"), "no port".to_string()],
    );

    // Two workloads sharing a component, and a Deployment whose selector misses its own pods.
    let mut shared = Rendered {
        docs: fixed.docs.clone(),
    };
    let i = find(&shared, "Deployment", &scheduler);
    shared.docs[i]["spec"]["template"]["metadata"]["labels"][COMPONENT] = "webhook".into();
    let problems = check_selectors(&shared).problems;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("share the component webhook")),
        "{problems:#?}"
    );
    assert!(
        problems.iter().any(
            |p| p.starts_with(&format!("Deployment/{scheduler}: the selector"))
                && p.contains("does not match its own pod template")
        ),
        "{problems:#?}"
    );

    // An object that selects pods but names no component.
    let mut anonymous = Rendered { docs: fixed.docs };
    let i = find(&anonymous, "PodDisruptionBudget", FULLNAME);
    unscoped(&mut anonymous.docs[i]["metadata"]["labels"]);
    let problems = check_selectors(&anonymous).problems;
    assert!(
        problems.iter().any(|p| p.starts_with(&format!(
            "PodDisruptionBudget/{FULLNAME} has no {COMPONENT} label"
        ))),
        "{problems:#?}"
    );
}
