//! The fargate-scheduler as a controller (`fargate_webhook::scheduler`), in process against the
//! fake API server of `support::fake_kube` and `support::fake_core` (Pods, Nodes, Bindings,
//! Evictions, Events, Leases): what it does follows from the pods, nodes and profiles as they are,
//! whatever it saw or missed; many waiting pods get placed once there is room, without a deadlock;
//! a failed removal is tried again with a backoff; a replica that loses the claim stops writing
//! and a standby takes over. The cluster suite proves the same against a real control plane.

#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use fargate_webhook::claim::Claim;
use fargate_webhook::claim::lease::Elector;
use fargate_webhook::decision::{SharedSnapshot, Snapshot};
use fargate_webhook::metrics::{Metrics, Process};
use fargate_webhook::profile::{FargateProfile, PROFILE_LABEL, ProfileStatus};
use fargate_webhook::scheduler::{self, Placement, SchedulerOptions};
use http::Method;
use k8s_openapi::api::coordination::v1::Lease;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::fake_kube::{Fake, NAMESPACE};
use support::{ProfileBuilder, SUBNET_A, metric_value, until};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CAP: Duration = Duration::from_secs(20);
const NS: &str = "apps";

fn profile(name: &str) -> FargateProfile {
    ProfileBuilder::new(name)
        .namespace(NS)
        .subnets(&[SUBNET_A])
        .status(ProfileStatus::Active)
        .build()
}

/// A pod the webhook sent to Fargate for `profile`.
fn fargate_pod(name: &str, profile: &str) -> Value {
    json!({
        "metadata": {"name": name, "namespace": NS, "labels": {PROFILE_LABEL: profile}},
        "spec": {
            "schedulerName": "fargate-scheduler",
            "containers": [{"name": "app", "image": "app:1",
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}],
        },
    })
}

fn bound(mut pod: Value, node: &str) -> Value {
    pod["spec"]["nodeName"] = json!(node);
    pod
}

fn options(placement: Placement, identity: &str) -> SchedulerOptions {
    SchedulerOptions {
        placement,
        pool_selector: (placement == Placement::Pool).then(|| "pool=fargate".to_string()),
        region: "us-east-1".into(),
        evict: false,
        identity: identity.into(),
        workers: 4,
        retry: Duration::from_millis(300),
        provisioning_delay: Duration::ZERO,
        fault_injection: true,
        launch_rate: None,
        event_wait: scheduler::bind::EVENT_WAIT,
    }
}

/// One scheduler process: its profiles (published as a store would) and its metrics.
struct Scheduler {
    snapshot: SharedSnapshot,
    changes: watch::Sender<u64>,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Scheduler {
    /// A scheduler that is the only writer (a local claim).
    fn start(fake: &Arc<Fake>, profiles: Vec<FargateProfile>, options: SchedulerOptions) -> Self {
        let stop = CancellationToken::new();
        let claim = Claim::local(&stop);
        Self::with_claim(fake.client(), profiles, options, claim, stop)
    }

    fn with_claim(
        client: kube::Client,
        profiles: Vec<FargateProfile>,
        options: SchedulerOptions,
        claim: Claim,
        stop: CancellationToken,
    ) -> Self {
        let snapshot: SharedSnapshot =
            Arc::new(arc_swap::ArcSwap::from_pointee(Snapshot::new(profiles)));
        let (changes, receiver) = watch::channel(0);
        let metrics = Arc::new(Metrics::for_process(Process::Scheduler));
        let task = tokio::spawn(scheduler::run(
            client,
            Arc::clone(&snapshot),
            receiver,
            Arc::clone(&metrics),
            options,
            claim,
            stop.clone(),
        ));
        Scheduler {
            snapshot,
            changes,
            metrics,
            stop,
            task,
        }
    }

    /// Replace the profiles, as a store publishing a new state does.
    fn publish(&self, profiles: Vec<FargateProfile>) {
        self.snapshot.store(Arc::new(Snapshot::new(profiles)));
        self.changes.send_modify(|n| *n += 1);
    }

    /// NaN until the scheduler has registered its series (it does so as it starts).
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = String::from_utf8(self.metrics.render()).unwrap();
        if !text.contains(&format!("# TYPE {name} ")) {
            return f64::NAN;
        }
        metric_value(&text, name, labels)
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

fn pod(fake: &Fake, name: &str) -> Option<Value> {
    fake.with(|s| s.core.pods.items.get(&format!("{NS}/{name}")).cloned())
}

fn node_of(fake: &Fake, name: &str) -> Option<String> {
    pod(fake, name).and_then(|p| p["spec"]["nodeName"].as_str().map(str::to_owned))
}

fn nodes(fake: &Fake) -> BTreeMap<String, Value> {
    fake.with(|s| s.core.nodes.items.clone())
}

fn create(fake: &Fake, pod: Value) {
    fake.with(|s| s.core.create_pod(pod));
}

/// A scheduler with virtual placement and one ACTIVE profile, `web`.
fn virtual_web(fake: &Arc<Fake>) -> Scheduler {
    Scheduler::start(fake, vec![profile("web")], options(Placement::Virtual, "s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_of_a_profile_deleted_while_no_scheduler_ran_are_removed_when_one_starts() {
    let fake = Fake::new();
    create(
        &fake,
        bound(fargate_pod("of-gone", "gone"), "fargate-ip-10-0-0-1"),
    );
    create(
        &fake,
        bound(fargate_pod("of-kept", "kept"), "fargate-ip-10-0-0-2"),
    );
    create(&fake, bound(fargate_pod("no-profile", "x"), "n"));
    fake.with(|s| {
        s.core.modify_pod(&format!("{NS}/no-profile"), |p| {
            p["metadata"]["labels"] = json!({});
        })
    });
    let scheduler = Scheduler::start(
        &fake,
        vec![profile("kept")],
        options(Placement::Virtual, "s"),
    );
    until("the pod of the deleted profile is removed", CAP, || {
        pod(&fake, "of-gone").is_none()
    })
    .await;
    // Level-based, not a one-off: the survivors are still there a while later.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        pod(&fake, "of-kept").is_some(),
        "a pod of an ACTIVE profile was removed"
    );
    assert!(
        pod(&fake, "no-profile").is_some(),
        "a pod the webhook did not send was removed"
    );
    assert_eq!(
        scheduler.metric(
            "fargate_webhook_scheduler_pods_removed_total",
            &[("action", "delete")]
        ),
        1.0
    );
    scheduler.stop().await;
}

/// The reasons of the Events posted for pod `name`, in the order they were posted.
fn event_reasons(fake: &Fake, name: &str) -> Vec<String> {
    fake.with(|s| {
        s.core
            .events
            .iter()
            .filter(|e| e["regarding"]["name"] == name)
            .filter_map(|e| e["reason"].as_str().map(str::to_owned))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_placed_pod_is_annotated_while_pending_and_bound_after_the_provisioning_delay() {
    let fake = Fake::new();
    let delay = Duration::from_millis(1500);
    let scheduler = Scheduler::start(
        &fake,
        vec![profile("web")],
        SchedulerOptions {
            provisioning_delay: delay,
            ..options(Placement::Virtual, "s")
        },
    );
    create(&fake, fargate_pod("slow", "web"));
    until("annotated", CAP, || {
        pod(&fake, "slow")
            .is_some_and(|p| p["metadata"]["annotations"]["CapacityProvisioned"].is_string())
    })
    .await;
    let annotated_at = Instant::now();
    // As on EKS: annotated and logged while Pending, with no node yet.
    let p = pod(&fake, "slow").unwrap();
    assert!(
        p["spec"]["nodeName"].is_null(),
        "bound before the delay: {p}"
    );
    assert_eq!(
        p["metadata"]["annotations"]["CapacityProvisioned"],
        "0.25vCPU 0.5GB"
    );
    assert_eq!(
        p["metadata"]["annotations"]["Logging"],
        "LoggingDisabled: LOGGING_CONFIGMAP_NOT_FOUND"
    );
    assert!(nodes(&fake).is_empty(), "a node made before the delay");
    until("the logging event", CAP, || {
        event_reasons(&fake, "slow") == ["LoggingDisabled"]
    })
    .await;
    until("counted as provisioning", CAP, || {
        scheduler.metric(
            "fargate_webhook_scheduler_pods_waiting",
            &[("reason", "provisioning")],
        ) == 1.0
    })
    .await;
    until("bound", CAP, || node_of(&fake, "slow").is_some()).await;
    assert!(
        annotated_at.elapsed() >= delay - Duration::from_millis(400),
        "bound {:?} after the annotation, the delay is {delay:?}",
        annotated_at.elapsed()
    );
    until("the Scheduled event, after the logging one", CAP, || {
        event_reasons(&fake, "slow") == ["LoggingDisabled", "Scheduled"]
    })
    .await;
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_delay_the_logging_event_still_comes_before_scheduled() {
    let fake = Fake::new();
    let scheduler = virtual_web(&fake);
    for i in 0..5 {
        create(&fake, fargate_pod(&format!("quick-{i}"), "web"));
    }
    for i in 0..5 {
        let name = format!("quick-{i}");
        until("the two events", CAP, || {
            event_reasons(&fake, &name).len() == 2
        })
        .await;
        assert_eq!(
            event_reasons(&fake, &name),
            ["LoggingDisabled", "Scheduled"]
        );
    }
    scheduler.stop().await;
}

/// Events that never get an answer (a dead connection: the client sets no read timeout) are given
/// up after the event wait, so their slots come back and pods past the slots are still bound; the
/// events of later pods are recorded once the apiserver answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_hang_are_given_up_and_pods_past_the_event_slots_are_bound() {
    let fake = Fake::new();
    fake.with(|s| s.hang = Some((String::new(), Method::POST, "/events".into())));
    let scheduler = Scheduler::start(
        &fake,
        vec![profile("web")],
        SchedulerOptions {
            event_wait: Duration::from_millis(300),
            ..options(Placement::Virtual, "s")
        },
    );
    let pods = scheduler::bind::EVENT_SLOTS + 16;
    for i in 0..pods {
        create(&fake, fargate_pod(&format!("web-{i}"), "web"));
    }
    until("every pod is bound", CAP, || {
        (0..pods).all(|i| node_of(&fake, &format!("web-{i}")).is_some())
    })
    .await;
    assert!(event_reasons(&fake, "web-0").is_empty(), "events hang");

    fake.with(|s| s.hang = None);
    create(&fake, fargate_pod("late", "web"));
    until("the later pod's events are recorded", CAP, || {
        event_reasons(&fake, "late") == ["LoggingDisabled", "Scheduled"]
    })
    .await;
    scheduler.stop().await;
}

fn faulty_pod(name: &str, injection: &str) -> Value {
    let mut pod = fargate_pod(name, "web");
    pod["metadata"]["annotations"] = json!({"fargate-webhook.io/inject-fault": injection});
    pod
}

/// The notes of the `FailedScheduling` events of pod `name`, in order.
fn failures(fake: &Fake, name: &str) -> Vec<String> {
    fake.with(|s| {
        s.core
            .events
            .iter()
            .filter(|e| e["regarding"]["name"] == name && e["reason"] == "FailedScheduling")
            .filter_map(|e| e["note"].as_str().map(str::to_owned))
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_launch_failures_are_reported_as_eks_does_and_retried_with_backoff() {
    let fake = Fake::new();
    let scheduler = virtual_web(&fake);
    create(&fake, faulty_pod("flaky", "provisioning-timeout:2"));
    create(&fake, faulty_pod("never", "capacity-unavailable:always"));
    until("flaky bound after two failed launches", CAP, || {
        node_of(&fake, "flaky").is_some()
    })
    .await;
    assert_eq!(
        failures(&fake, "flaky"),
        ["Pod provisioning timed out (will retry) for pod: apps/flaky"; 2]
    );
    until("the events in EKS's order", CAP, || {
        event_reasons(&fake, "flaky")
            == [
                "LoggingDisabled",
                "FailedScheduling",
                "FailedScheduling",
                "Scheduled",
            ]
    })
    .await;
    assert_eq!(
        scheduler.metric(
            "fargate_webhook_scheduler_launch_failures_total",
            &[("reason", "provisioning-timeout")]
        ),
        2.0
    );
    // Always failing: tried again and again (with backoff), never bound, annotated while Pending.
    until("never tried three times", CAP, || {
        failures(&fake, "never").len() >= 3
    })
    .await;
    let never = pod(&fake, "never").unwrap();
    assert!(never["spec"]["nodeName"].is_null(), "{never}");
    assert!(never["metadata"]["annotations"]["CapacityProvisioned"].is_string());
    assert!(
        failures(&fake, "never")[0].starts_with("Fargate capacity is unavailable at this time.")
    );
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_provisioning_delay_a_launch_fails_after_it_and_the_logging_event_comes_once() {
    let fake = Fake::new();
    let delay = Duration::from_millis(800);
    let scheduler = Scheduler::start(
        &fake,
        vec![profile("web")],
        SchedulerOptions {
            provisioning_delay: delay,
            ..options(Placement::Virtual, "s")
        },
    );
    let start = Instant::now();
    create(&fake, faulty_pod("slow-flaky", "provisioning-timeout"));
    until("slow-flaky bound", CAP, || {
        node_of(&fake, "slow-flaky").is_some()
    })
    .await;
    until("its three events", CAP, || {
        event_reasons(&fake, "slow-flaky") == ["LoggingDisabled", "FailedScheduling", "Scheduled"]
    })
    .await;
    assert!(start.elapsed() >= delay, "bound before the delay");
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_fault_injection_the_annotation_does_nothing() {
    let fake = Fake::new();
    let scheduler = Scheduler::start(
        &fake,
        vec![profile("web")],
        SchedulerOptions {
            fault_injection: false,
            ..options(Placement::Virtual, "s")
        },
    );
    create(&fake, faulty_pod("calm", "account-quota:always"));
    until("calm bound", CAP, || node_of(&fake, "calm").is_some()).await;
    assert!(failures(&fake, "calm").is_empty());
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launch_rate_lets_a_burst_through_then_one_launch_per_interval() {
    let fake = Fake::new();
    let scheduler = Scheduler::start(
        &fake,
        vec![profile("web")],
        SchedulerOptions {
            launch_rate: Some((4.0, 2)),
            ..options(Placement::Virtual, "s")
        },
    );
    let start = Instant::now();
    for i in 0..6 {
        create(&fake, fargate_pod(&format!("burst-{i}"), "web"));
    }
    until("all six bound", CAP, || {
        (0..6).all(|i| node_of(&fake, &format!("burst-{i}")).is_some())
    })
    .await;
    // Two at once, then four more at 4 a second: not before about one second.
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "six launches in {:?}",
        start.elapsed()
    );
    assert!(
        scheduler.metric(
            "fargate_webhook_scheduler_launch_failures_total",
            &[("reason", "throttled")]
        ) >= 4.0
    );
    let throttled: Vec<String> = (0..6)
        .flat_map(|i| failures(&fake, &format!("burst-{i}")))
        .collect();
    assert!(
        throttled
            .iter()
            .all(|n| n == "Fargate launch rate exceeded (4 per second, burst 2) (will retry)"),
        "{throttled:?}"
    );
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_is_bound_to_a_node_of_its_own_and_loses_both_when_its_profile_goes() {
    let fake = Fake::new();
    let scheduler = virtual_web(&fake);
    create(&fake, fargate_pod("web-1", "web"));
    until("the pod is bound", CAP, || {
        node_of(&fake, "web-1").is_some()
    })
    .await;
    let node = node_of(&fake, "web-1").unwrap();
    let pod_uid = pod(&fake, "web-1").unwrap()["metadata"]["uid"].clone();
    let made = nodes(&fake);
    assert_eq!(made.len(), 1, "one node per pod: {made:?}");
    assert_eq!(
        made[&node]["metadata"]["annotations"]["fargate-webhook.io/pod-uid"],
        pod_uid
    );
    let annotations = &pod(&fake, "web-1").unwrap()["metadata"]["annotations"];
    assert!(
        annotations["CapacityProvisioned"].is_string(),
        "{annotations}"
    );

    // Deleted between two looks of nobody: the change of the ACTIVE set is the trigger.
    scheduler.publish(vec![]);
    until("the pod of the deleted profile is removed", CAP, || {
        pod(&fake, "web-1").is_none()
    })
    .await;
    until("its node is removed", CAP, || nodes(&fake).is_empty()).await;
    scheduler.stop().await;
}

/// Ephemeral storage is provisioned from the pod's requests (docs/eks-behaviour.md §9): its node
/// reports the disk that goes with it; above 175 GiB asked the pod is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_asking_for_ephemeral_storage_gets_a_node_with_that_disk_or_a_refusal() {
    let fake = Fake::new();
    let scheduler = virtual_web(&fake);
    let storage = |name: &str, quantity: &str| {
        let mut pod = fargate_pod(name, "web");
        pod["spec"]["containers"][0]["resources"]["requests"]["ephemeral-storage"] =
            json!(quantity);
        pod
    };
    create(&fake, storage("data", "100Gi"));
    create(&fake, storage("huge", "176Gi"));
    until("data is bound", CAP, || node_of(&fake, "data").is_some()).await;
    let node = &nodes(&fake)[&node_of(&fake, "data").unwrap()];
    assert_eq!(
        node["status"]["capacity"]["ephemeral-storage"],
        "130447268Ki"
    );
    assert_eq!(
        node["status"]["allocatable"]["ephemeral-storage"],
        "120220202187"
    );
    until("huge is refused", CAP, || {
        event_reasons(&fake, "huge").contains(&"FailedScheduling".to_string())
    })
    .await;
    assert!(node_of(&fake, "huge").is_none());
    let refused = ("reason", "storage_too_large");
    assert_eq!(
        scheduler.metric("fargate_webhook_scheduler_pods_refused_total", &[refused]),
        1.0
    );
    scheduler.stop().await;
}

/// A refusal stands once its `PodScheduled=False` condition is written; one whose write failed is
/// not final: the pod is judged again, and counted and given its event once, when the write goes
/// through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_whose_condition_could_not_be_written_is_written_on_a_retry() {
    let fake = Fake::new();
    fake.with(|s| s.core.fail_status_patches = 1);
    let scheduler = virtual_web(&fake);
    let mut huge = fargate_pod("huge", "web");
    huge["spec"]["containers"][0]["resources"]["requests"]["ephemeral-storage"] = json!("176Gi");
    create(&fake, huge);
    let refused_condition = || {
        pod(&fake, "huge").is_some_and(|p| {
            p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        })
    };
    until("huge has PodScheduled=False", CAP, refused_condition).await;
    assert_eq!(
        fake.with(|s| s.core.fail_status_patches),
        0,
        "the first write failed"
    );
    until("huge's event", CAP, || {
        !event_reasons(&fake, "huge").is_empty()
    })
    .await;
    let refused = ("reason", "storage_too_large");
    assert_eq!(
        scheduler.metric("fargate_webhook_scheduler_pods_refused_total", &[refused]),
        1.0
    );
    assert_eq!(event_reasons(&fake, "huge"), vec!["FailedScheduling"]);
    assert!(node_of(&fake, "huge").is_none());
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn virtual_nodes_are_kept_while_their_pod_needs_them_and_removed_otherwise() {
    let fake = Fake::new();
    // Made by an earlier scheduler for pods that are gone, or bound elsewhere.
    let stale = |name: &str, owner: &str, uid: &str| {
        json!({"metadata": {"name": name,
            "labels": {"fargate-webhook.io/virtual-node": "true"},
            "annotations": {"fargate-webhook.io/pod": format!("{NS}/{owner}"),
                            "fargate-webhook.io/pod-uid": uid}}})
    };
    create(
        &fake,
        bound(fargate_pod("elsewhere", "web"), "another-node"),
    );
    let elsewhere_uid = pod(&fake, "elsewhere").unwrap()["metadata"]["uid"].clone();
    fake.with(|s| {
        s.core
            .create_node(stale("fargate-ip-gone", "gone", "uid-gone"));
        s.core.create_node(stale(
            "fargate-ip-else",
            "elsewhere",
            elsewhere_uid.as_str().unwrap(),
        ));
        // Not a virtual node: never touched.
        s.core
            .create_node(json!({"metadata": {"name": "worker-1"}}));
    });
    let scheduler = virtual_web(&fake);
    create(&fake, fargate_pod("web-1", "web"));
    until("web-1 is bound", CAP, || node_of(&fake, "web-1").is_some()).await;
    until("the stale nodes are removed", CAP, || {
        let n = nodes(&fake);
        !n.contains_key("fargate-ip-gone") && !n.contains_key("fargate-ip-else")
    })
    .await;
    let left: Vec<String> = nodes(&fake).into_keys().collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&"worker-1".to_string()));
    assert!(left.contains(&node_of(&fake, "web-1").unwrap()));

    // A pod deleted by its owner: its node goes with it.
    fake.with(|s| s.core.delete_pod(&format!("{NS}/web-1")));
    until("the deleted pod's node is removed", CAP, || {
        nodes(&fake).len() == 1
    })
    .await;
    until("the gauge counts the virtual nodes left", CAP, || {
        scheduler.metric("fargate_webhook_scheduler_virtual_nodes", &[]) == 0.0
    })
    .await;
    scheduler.stop().await;
}

/// A pod of the default scheduler, tolerating every taint, owned by a DaemonSet.
fn daemon_pod(name: &str) -> Value {
    json!({"metadata": {"name": name, "namespace": NS,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent",
                                 "uid": "ds-uid", "controller": true}]},
           "spec": {"schedulerName": "default-scheduler",
                    "tolerations": [{"operator": "Exists"}],
                    "containers": [{"name": "agent", "image": "registry.example/agent:1"}]}})
}

/// The Fargate kubelet refuses what is not Fargate's (docs/eks-behaviour.md §5): a DaemonSet pod
/// the default scheduler put on a virtual node whose own pod finished fails there with its text;
/// the same pod on a node of the cluster, and the virtual node's own pod, are left alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_of_another_scheduler_bound_to_a_virtual_node_is_refused_as_its_kubelet_would() {
    let fake = Fake::new();
    fake.with(|s| {
        s.core
            .create_node(json!({"metadata": {"name": "worker-1"}}));
    });
    let scheduler = virtual_web(&fake);
    create(&fake, fargate_pod("job-1", "web"));
    until("job-1 is bound", CAP, || node_of(&fake, "job-1").is_some()).await;
    let node = node_of(&fake, "job-1").unwrap();
    // Finished: the node stays (as on EKS) and has room for the default scheduler again.
    fake.with(|s| {
        s.core.modify_pod(&format!("{NS}/job-1"), |p| {
            p["status"]["phase"] = json!("Succeeded")
        })
    });
    create(&fake, bound(daemon_pod("agent-fargate"), &node));
    create(&fake, bound(daemon_pod("agent-worker"), "worker-1"));
    until("the DaemonSet pod on the Fargate node fails", CAP, || {
        pod(&fake, "agent-fargate").is_some_and(|p| p["status"]["phase"] == "Failed")
    })
    .await;
    let failed = pod(&fake, "agent-fargate").unwrap();
    assert_eq!(failed["status"]["reason"], "PodNotSupported");
    assert_eq!(
        failed["status"]["message"],
        "Pod not supported: SchedulerName is not fargate-scheduler, DaemonSet not supported"
    );
    until("a Warning event says it", CAP, || {
        event_reasons(&fake, "agent-fargate") == ["PodNotSupported"]
    })
    .await;
    until("counted", CAP, || {
        scheduler.metric("fargate_webhook_scheduler_kubelet_refusals_total", &[]) == 1.0
    })
    .await;
    // A second or two for anything else it would do.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(pod(&fake, "agent-worker").unwrap()["status"]["phase"].is_null());
    assert_eq!(pod(&fake, "job-1").unwrap()["status"]["phase"], "Succeeded");
    assert!(
        nodes(&fake).contains_key(&node),
        "the finished pod keeps its node"
    );
    scheduler.stop().await;
}

fn pool_node(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"pool": "fargate"}},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "10000"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_waiting_pods_are_all_bound_once_the_pool_gets_room() {
    const PODS: usize = 5_000;
    let fake = Fake::new();
    let mut options = options(Placement::Pool, "s");
    // Long: what places them is the pool getting room, not the retry.
    options.retry = Duration::from_secs(600);
    options.workers = 16;
    let scheduler = Scheduler::start(&fake, vec![profile("batch")], options);
    fake.with(|s| s.core.create_node(pool_node("small", "1", "2Gi")));
    fake.with(|s| {
        for i in 0..PODS {
            s.core.create_pod(fargate_pod(&format!("job-{i}"), "batch"));
        }
    });
    until(
        "every pod was tried and waits",
        Duration::from_secs(120),
        || {
            scheduler.metric(
                "fargate_webhook_scheduler_pods_waiting",
                &[("reason", "unplaced")],
            ) >= (PODS - 4) as f64
                && scheduler.metric("fargate_webhook_scheduler_queue_depth", &[]) == 0.0
        },
    )
    .await;
    let placed_early = fake.with(|s| {
        s.core
            .pods
            .items
            .values()
            .filter(|p| p["spec"]["nodeName"].is_string())
            .count()
    });
    assert!(
        placed_early <= 4,
        "a 1-vCPU node holds at most four 0.25-vCPU pods: {placed_early}"
    );

    let started = Instant::now();
    fake.with(|s| {
        for i in 0..10 {
            s.core
                .create_node(pool_node(&format!("big-{i}"), "200", "1000Gi"));
        }
    });
    until("every pod is bound", Duration::from_secs(240), || {
        fake.with(|s| {
            s.core
                .pods
                .items
                .values()
                .all(|p| p["spec"]["nodeName"].is_string())
        })
    })
    .await;
    let took = started.elapsed();
    // No node holds more than it has.
    let mut used: BTreeMap<String, u64> = BTreeMap::new();
    fake.with(|s| {
        for p in s.core.pods.items.values() {
            let size = p["metadata"]["annotations"]["CapacityProvisioned"]
                .as_str()
                .unwrap_or("");
            let vcpu: f64 = size
                .split("vCPU")
                .next()
                .unwrap_or("0")
                .trim()
                .parse()
                .unwrap();
            *used
                .entry(p["spec"]["nodeName"].as_str().unwrap().to_owned())
                .or_default() += (vcpu * 1000.0) as u64;
        }
    });
    for (node, millicpu) in &used {
        let cap = if node == "small" { 1_000 } else { 200_000 };
        assert!(*millicpu <= cap, "{node} holds {millicpu}m of {cap}m");
    }
    eprintln!("{PODS} pods bound {took:?} after the pool got room");
    scheduler.stop().await;
}

/// Regression: pods reconciled before the pool's nodes have listed all wait for that list, not only
/// the last one that began waiting (kube-runtime's `Store::wait_until_ready` wakes one waiter; the
/// others sat out a 10 s timeout and a retry).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_waiting_for_the_pools_first_list_are_all_placed_when_it_comes() {
    const PODS: usize = 8;
    let fake = Fake::new();
    fake.with(|s| {
        s.core.create_node(pool_node("big", "100", "400Gi"));
        for i in 0..PODS {
            s.core
                .create_pod(fargate_pod(&format!("early-{i}"), "batch"));
        }
        // The pool's first list fails: the watcher lists again after its backoff (about 1 s),
        // while every pod's reconcile is already waiting for it.
        s.core.fail_node_lists = Some(("pool=fargate".into(), 1));
    });
    let mut options = options(Placement::Pool, "s");
    options.workers = PODS;
    // Long: a pod bound here was placed by the list, not by a retry.
    options.retry = Duration::from_secs(600);
    let started = Instant::now();
    let scheduler = Scheduler::start(&fake, vec![profile("batch")], options);
    until("every pod is bound", Duration::from_secs(6), || {
        fake.with(|s| {
            s.core
                .pods
                .items
                .values()
                .all(|p| p["spec"]["nodeName"] == "big")
        })
    })
    .await;
    assert_eq!(
        fake.with(|s| s.core.fail_node_lists.clone()),
        Some(("pool=fargate".to_string(), 0)),
        "the first list did fail"
    );
    eprintln!("{PODS} pods bound {:?} after the start", started.elapsed());
    scheduler.stop().await;
}

/// A bound pod `name` of the deleted profile `gone`, and a scheduler that evicts (`--evict`).
fn evicting(fake: &Arc<Fake>, name: &str) -> Scheduler {
    create(
        fake,
        bound(fargate_pod(name, "gone"), "fargate-ip-10-0-0-9"),
    );
    let mut options = options(Placement::Virtual, "s");
    options.evict = true;
    Scheduler::start(fake, vec![], options)
}

/// The Eviction requests the fake apiserver received.
fn evictions(fake: &Fake) -> usize {
    fake.log()
        .iter()
        .filter(|l| l.method == Method::POST && l.path.ends_with("/eviction"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_eviction_refused_is_tried_again_with_a_backoff_until_it_is_allowed() {
    let fake = Fake::new();
    fake.with(|s| s.core.refuse_evictions = true);
    let scheduler = evicting(&fake, "guarded");
    until("three evictions were refused", CAP, || {
        scheduler.metric(
            "fargate_webhook_scheduler_reconcile_errors_total",
            &[("kind", "pod")],
        ) >= 3.0
    })
    .await;
    // Backoff: 0.5 s, 1 s, 2 s, ... so a few seconds see a handful of tries, not hundreds.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let tried = evictions(&fake);
    assert!((3..=6).contains(&tried), "{tried} evictions in about 3.5 s");
    assert!(pod(&fake, "guarded").is_some());
    fake.with(|s| s.core.refuse_evictions = false);
    until("the pod is evicted once allowed, and counted", CAP, || {
        let removed = ("action", "evict");
        pod(&fake, "guarded").is_none()
            && scheduler.metric("fargate_webhook_scheduler_pods_removed_total", &[removed]) == 1.0
    })
    .await;
    scheduler.stop().await;
}

/// The apiserver's eviction writes the pod twice: its `DisruptionTarget` condition, then its
/// deletion. The first write triggers a reconcile that sees a bound pod of a deleted profile and no
/// deletion yet; it must not evict (and count) that pod a second time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_evicted_is_evicted_once_while_its_deletion_is_on_the_way() {
    let fake = Fake::new();
    fake.with(|s| s.core.evictions_only_mark = true);
    let scheduler = evicting(&fake, "leaving");
    until("the pod is evicted", CAP, || evictions(&fake) >= 1).await;
    until("the scheduler saw the eviction's condition", CAP, || {
        let conditions = pod(&fake, "leaving").unwrap()["status"]["conditions"].clone();
        conditions
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "DisruptionTarget"))
    })
    .await;
    // Time for the reconcile the condition triggered (and a second or two of requeues).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        evictions(&fake),
        1,
        "evicted again before its deletion showed"
    );
    let removed = ("action", "evict");
    assert_eq!(
        scheduler.metric("fargate_webhook_scheduler_pods_removed_total", &[removed]),
        1.0
    );
    fake.with(|s| s.core.delete_pod(&format!("{NS}/leaving")));
    scheduler.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduler_that_loses_the_claim_stops_writing_and_the_standby_takes_over() {
    const DURATION: Duration = Duration::from_secs(2);
    let fake = Fake::new();
    let start = |name: &'static str| {
        let client = fake.client_named(name);
        let stop = CancellationToken::new();
        let leases: kube::Api<Lease> = kube::Api::namespaced(client.clone(), NAMESPACE);
        let (claim, _campaign) = Claim::lease(
            Elector::new(leases, "fargate-scheduler", name, DURATION),
            stop.clone(),
        );
        Scheduler::with_claim(
            client,
            vec![profile("web")],
            options(Placement::Virtual, name),
            claim,
            stop,
        )
    };
    let a = start("a");
    until("a leads", CAP, || {
        a.metric("fargate_webhook_scheduler_leader", &[]) == 1.0
    })
    .await;
    let b = start("b");
    create(&fake, fargate_pod("before", "web"));
    until("a binds", CAP, || node_of(&fake, "before").is_some()).await;
    until("a counts the node it made", CAP, || {
        a.metric("fargate_webhook_scheduler_virtual_nodes", &[]) == 1.0
    })
    .await;

    fake.with(|s| s.cut_off_leases_of = Some("a".into()));
    until("a knows it lost the claim", CAP, || {
        a.metric("fargate_webhook_scheduler_leader", &[]) == 0.0
    })
    .await;
    let lost_at = fake.log().len();
    // A standby reports no former leader's numbers (dashboards read the leader's, alerts too).
    until("a's leader-only gauges are cleared", CAP, || {
        a.metric("fargate_webhook_scheduler_virtual_nodes", &[]) == 0.0
    })
    .await;
    assert_eq!(
        a.metric(
            "fargate_webhook_scheduler_pods_waiting",
            &[("reason", "unplaced")]
        ),
        0.0
    );
    until("b leads", CAP, || {
        b.metric("fargate_webhook_scheduler_leader", &[]) == 1.0
    })
    .await;
    create(&fake, fargate_pod("after", "web"));
    until("b binds the new pod", CAP, || {
        node_of(&fake, "after").is_some()
    })
    .await;
    let writes_of_a: Vec<String> = fake.log()[lost_at..]
        .iter()
        .filter(|l| l.client == "a" && l.method != Method::GET && !l.path.contains("/leases"))
        .map(|l| format!("{} {}", l.method, l.path))
        .collect();
    assert!(
        writes_of_a.is_empty(),
        "a wrote after losing the claim: {writes_of_a:?}"
    );
    let binds_of_b = fake
        .log()
        .iter()
        .filter(|l| l.client == "b" && l.path.ends_with("/binding"))
        .count();
    assert_eq!(binds_of_b, 1);
    a.stop().await;
    b.stop().await;
}
