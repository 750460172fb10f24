//! Scheduling one pod against the cluster: read what the verdict needs (claims), judge, then refuse
//! with an event, or place in EKS's order: annotate the Pending pod and record the logging event,
//! wait out the provisioning delay, make the node and bind, then record `Scheduled`. Like EKS, a
//! refused pod is not retried (docs/eks-behaviour.md §9).

use super::claims;
use super::faults;
use super::logging::{self, Logging};
use super::placement::{self, PoolNode, VirtualNode};
use super::pool::{self, PoolIndex};
use super::sizing::{self, Size};
use super::verdict::{self, Refusal, Verdict};
use super::{Placement, SchedulerOptions};
use crate::decision::SharedSnapshot;
use crate::decision::unsupported::Claim;
use crate::metrics::Metrics;
use k8s_openapi::api::core::v1::{
    Binding, ConfigMap, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::runtime::reflector;
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The annotations EKS puts on a placed pod.
pub const CAPACITY_ANNOTATION: &str = "CapacityProvisioned";
pub const LOGGING_ANNOTATION: &str = "Logging";

/// What the scheduler needs for every pod.
pub struct Context {
    pub client: Client,
    pub snapshot: SharedSnapshot,
    pub options: SchedulerOptions,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    /// Bounds the events in flight ([`EVENT_SLOTS`]).
    pub event_slots: Arc<tokio::sync::Semaphore>,
    /// Cancelled when this replica stops leading: events still on their way are dropped then, so
    /// nothing is written after the claim is lost (a new one is set each time it leads).
    pub term: std::sync::Mutex<tokio_util::sync::CancellationToken>,
    /// The logging ConfigMap as a watch knows it (run beside the scheduler, mod.rs).
    pub logging: logging::Watched,
    /// Pool placement: the pool's nodes and what they hold, while this replica leads (mod.rs).
    pub pool: std::sync::Mutex<Option<Arc<PoolCache>>>,
    /// The kubelet version virtual nodes report ([`placement::kubelet_version`]).
    pub kubelet_version: String,
    /// Pods annotated and waiting out `--provisioning-delay`, by UID: since when.
    pub provisioning: std::sync::Mutex<HashMap<String, Instant>>,
    /// Launches that failed (injected faults, the launch rate), by pod UID: the next attempt's number.
    pub attempts: std::sync::Mutex<HashMap<String, u32>>,
    /// `--launch-rate`: the launches left.
    pub launches: std::sync::Mutex<Option<super::faults::LaunchBucket>>,
}

/// What pool placement decides from: a reflector of the pool's nodes, and the [`PoolIndex`] of the
/// bound pods fed by a watch (mod.rs), plus the pods assumed here.
pub struct PoolCache {
    pub nodes: reflector::Store<Node>,
    /// Marked when `nodes` has listed (not the store's own readiness: see [`super::listed`]).
    pub nodes_listed: super::listed::Listed,
    pub index: std::sync::Mutex<PoolIndex>,
    /// Marked when `index` holds the first list of the bound pods.
    pub index_listed: super::listed::Listed,
}

impl PoolCache {
    fn lock_index(&self) -> std::sync::MutexGuard<'_, PoolIndex> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pool's nodes as the reflector has them (`used` left to the index).
    fn nodes(&self) -> Vec<PoolNode> {
        self.nodes.state().iter().map(|n| pool_node_of(n)).collect()
    }
}

/// A pool node's room and whether it takes pods: Ready and not cordoned.
fn pool_node_of(node: &Node) -> PoolNode {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
    let allocatable = node
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .map(|a| Size {
            millicpu: a
                .get("cpu")
                .and_then(|q| sizing::millicores(&q.0))
                .unwrap_or(0),
            memory_mib: a
                .get("memory")
                .and_then(|q| sizing::bytes(&q.0))
                .unwrap_or(0)
                / (1024 * 1024),
        })
        .unwrap_or(Size {
            millicpu: 0,
            memory_mib: 0,
        });
    PoolNode {
        name: node.name_any(),
        allocatable,
        used: Size {
            millicpu: 0,
            memory_mib: 0,
        },
        schedulable: ready && !cordoned,
    }
}

/// Where a pod sits and what it takes on its node, for the [`PoolIndex`]: its provisioned size when
/// the scheduler placed it, else what it requests; `None` when not bound or finished.
pub fn placed(pod: &Pod) -> pool::Placed {
    let node = pod.spec.as_ref()?.node_name.as_deref()?;
    if node.is_empty() || placement::finished(pod) {
        return None;
    }
    let lean = crate::decision::Pod::from_api(pod).unwrap_or_default();
    let provisioned = pod
        .annotations()
        .get(CAPACITY_ANNOTATION)
        .and_then(|_| sizing::size(&lean).ok());
    let size = provisioned.unwrap_or_else(|| {
        sizing::request(&lean)
            .map(|r| Size {
                millicpu: r.millicpu,
                memory_mib: r.memory_mib,
            })
            .unwrap_or(Size {
                millicpu: 0,
                memory_mib: 0,
            })
    });
    Some((node.to_owned(), size))
}

/// What happened to a pod.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Bound(String),
    Refused(&'static str),
    /// Annotated and provisioning: bound once this much more time has passed.
    Provisioning(Duration),
    /// Nothing to do: bound meanwhile, or gone.
    Skipped,
}

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether `pod` carries EKS's annotations with these values already.
fn annotated(pod: &Pod, capacity: &str, logging: &str) -> bool {
    let annotations = pod.annotations();
    annotations.get(CAPACITY_ANNOTATION).map(String::as_str) == Some(capacity)
        && annotations.get(LOGGING_ANNOTATION).map(String::as_str) == Some(logging)
}

fn object_ref(pod: &Pod) -> ObjectReference {
    pod.object_ref(&())
}

/// Pods whose events may be on their way at once (see [`Context::record`]).
pub const EVENT_SLOTS: usize = 64;
/// How long one pod's events may take to be recorded before they are given up: a request that
/// hangs (a dead connection; the client sets no read timeout) must not hold its slot for good.
pub const EVENT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Virtual nodes reconciled (and so removed) at once.
pub const NODE_REMOVALS: usize = 16;
/// How long a pool placement waits for the first lists of the pool's nodes and pods.
const POOL_CACHE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn event(type_: EventType, reason: &str, note: String) -> Event {
    Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: "Scheduling".into(),
        secondary: None,
    }
}

impl Context {
    fn lock_provisioning(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.provisioning.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pod is bound, refused or gone: it provisions no more.
    pub fn forget_provisioning(&self, uid: &str) {
        self.lock_provisioning().remove(uid);
        lock(&self.attempts).remove(uid);
    }

    /// The pods (by UID) waiting out `--provisioning-delay` now.
    pub fn provisioning_now(&self) -> std::collections::HashSet<String> {
        let delay = self.options.provisioning_delay;
        self.lock_provisioning()
            .iter()
            .filter(|(_, since)| since.elapsed() < delay)
            .map(|(uid, _)| uid.clone())
            .collect()
    }

    /// Only the pods `present` (by UID) may still be provisioning (after a relist).
    pub fn retain_provisioning(&self, present: &std::collections::HashSet<String>) {
        self.lock_provisioning()
            .retain(|uid, _| present.contains(uid));
        lock(&self.attempts).retain(|uid, _| present.contains(uid));
    }

    /// Record `events` of `pod`, in order, beside the work: the worker goes on to the next pod. At
    /// most [`EVENT_SLOTS`] pods' events are in flight; past that the worker waits for a slot. Events
    /// not recorded within `options.event_wait` ([`EVENT_WAIT`]) are given up.
    async fn record(&self, pod: &Pod, events: Vec<Event>) {
        let Ok(slot) = Arc::clone(&self.event_slots).acquire_owned().await else {
            return;
        };
        let (recorder, reference) = (self.recorder.clone(), object_ref(pod));
        let term = lock(&self.term).clone();
        let wait = self.options.event_wait;
        tokio::spawn(async move {
            let publish = async {
                for event in events {
                    if let Err(error) = recorder.publish(&event, &reference).await {
                        tracing::warn!(%error, pod = ?reference.name, "could not record an event");
                    }
                }
            };
            tokio::select! {
                _ = term.cancelled() => {}
                _ = publish => {}
                _ = tokio::time::sleep(wait) => {
                    tracing::warn!(pod = ?reference.name, "recording events took too long; given up");
                }
            }
            drop(slot);
        });
    }

    /// What the cluster says of each claim the pod mounts.
    async fn claims(&self, pod: &Pod, namespace: &str) -> HashMap<String, Claim> {
        let mut out = HashMap::new();
        let names = pod
            .spec
            .iter()
            .flat_map(|s| s.volumes.iter().flatten())
            .filter_map(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.clone());
        let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        let pvs: Api<PersistentVolume> = Api::all(self.client.clone());
        for name in names {
            let claim = match pvcs.get_opt(&name).await {
                Ok(pvc) => match claims::of_claim(pvc.as_ref()) {
                    claims::Next::Known(claim) => claim,
                    claims::Next::ReadVolume(volume) => match pvs.get_opt(&volume).await {
                        Ok(pv) => claims::of_volume(volume, pv.as_ref()),
                        Err(error) => {
                            tracing::warn!(%error, claim = %name, %volume, "reading a volume failed; judged without it");
                            Claim::Unknown
                        }
                    },
                },
                Err(error) => {
                    tracing::warn!(%error, claim = %name, "reading a claim failed; judged without it");
                    Claim::Unknown
                }
            };
            out.insert(name, claim);
        }
        out
    }

    /// The `Logging` annotation and event: the ConfigMap from the watch, or read now while it has
    /// not listed, judged by `logging::logging` (docs/eks-behaviour.md §9, item 4).
    async fn logging(&self) -> Logging {
        let config = match self.logging.get() {
            Some(config) => config,
            None => {
                let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), logging::NAMESPACE);
                match maps.get_opt(logging::CONFIGMAP).await {
                    Ok(Some(map)) => Some(logging::config_of(&map)),
                    _ => None,
                }
            }
        };
        logging::logging(config.as_deref())
    }

    /// Whether launch attempt `attempt` of `pod` fails now: an injected fault (with
    /// `--fault-injection`) or the launch rate. The metric's reason, the event's text, and when to
    /// try again (the injected faults back off as EKS's scheduler does).
    fn launch_held(
        &self,
        pod: &Pod,
        lean: &crate::decision::Pod,
        namespace: &str,
        profile: &str,
        attempt: u32,
    ) -> Option<(&'static str, String, Duration)> {
        if self.options.fault_injection
            && let Some(value) = pod.annotations().get(faults::ANNOTATION)
        {
            match faults::parse(value) {
                Ok(injection) if injection.fails(attempt) => {
                    let region = &self.options.region;
                    let subnets = self
                        .snapshot
                        .load()
                        .get(profile)
                        .map_or(1, |p| p.profile.subnets.len());
                    let uid = pod.uid().unwrap_or_default();
                    let zone = placement::zone_for(region, &uid, subnets, lean)
                        .unwrap_or_else(|| placement::zone(region, &uid, subnets));
                    let note = injection.fault.note(namespace, &pod.name_any(), &zone);
                    return Some((
                        injection.fault.name(),
                        note,
                        super::backoff::delay(attempt.saturating_add(1)),
                    ));
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(pod = %pod.name_any(), namespace, "{error}; ignored"),
            }
        }
        let (rate, burst) = self.options.launch_rate?;
        let mut launches = lock(&self.launches);
        let bucket = launches.as_mut()?;
        match bucket.take(Instant::now()) {
            Ok(()) => None,
            Err(wait) => Some(("throttled", faults::throttled_note(rate, burst), wait)),
        }
    }

    /// EKS's annotations on the Pending pod, unless it carries them already. [D] Written through
    /// pods/status, the one pod write the scheduler may make besides the binding (the apiserver keeps
    /// annotations a status write sets; the UID is a precondition) (docs/eks-behaviour.md §9).
    async fn annotate(
        &self,
        pod: &Pod,
        pods: &Api<Pod>,
        uid: &str,
        size: Size,
        logging: &Logging,
    ) -> Result<(), Outcome> {
        let capacity = size.to_string();
        if annotated(pod, &capacity, logging.annotation) {
            return Ok(());
        }
        let patch = serde_json::json!({"metadata": {"uid": uid, "annotations": {
            CAPACITY_ANNOTATION: capacity, LOGGING_ANNOTATION: logging.annotation,
        }}});
        match pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Gone, or another pod under its name now: nothing to do for this one.
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => Err(Outcome::Skipped),
            Err(error) => {
                tracing::warn!(%error, pod = %pod.name_any(), "annotating failed; will retry");
                Err(Outcome::Skipped)
            }
        }
    }

    async fn refuse(&self, pod: &Pod, namespace: &str, refusal: &Refusal) -> Outcome {
        // The condition is what keeps the pod refused (`refused_before`): until it is written the
        // pod is judged again, and counted, logged and given its event only once it is. The UID is
        // a precondition: a pod made again under the same name is judged on its own.
        let condition_reason = refusal.condition_reason();
        let status = serde_json::json!({"metadata": {"uid": pod.uid()}, "status": {"conditions": [{
            "type": "PodScheduled", "status": "False",
            "reason": condition_reason, "message": refusal.message,
        }]}});
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(status),
            )
            .await
        {
            Ok(_) => {}
            // Gone, or another pod under its name now: nothing to do for this one.
            Err(kube::Error::Api(e)) if matches!(e.code, 404 | 409 | 422) => {
                return Outcome::Skipped;
            }
            Err(error) => {
                tracing::warn!(%error, pod = %pod.name_any(), "could not set the PodScheduled condition; will retry");
                return Outcome::Skipped;
            }
        }
        tracing::info!(pod = %pod.name_any(), namespace, reason = refusal.reason, message = %refusal.message, "refused");
        self.metrics
            .scheduler_refused
            .with_label_values(&[refusal.reason])
            .inc();
        let failed = event(
            EventType::Warning,
            "FailedScheduling",
            refusal.message.clone(),
        );
        self.record(pod, vec![failed]).await;
        Outcome::Refused(refusal.reason)
    }

    /// Schedule `pod` once.
    pub async fn schedule(&self, pod: &Pod) -> Outcome {
        let namespace = pod.namespace().unwrap_or_default();
        let lean = match crate::decision::Pod::from_api(pod) {
            Ok(lean) => lean,
            Err(error) => {
                tracing::warn!(%error, pod = %pod.name_any(), "pod does not decode");
                return Outcome::Skipped;
            }
        };
        let claims = self.claims(pod, &namespace).await;
        let verdict = {
            let snapshot = self.snapshot.load();
            verdict::judge_in(
                &lean,
                &namespace,
                &snapshot,
                &|name| claims.get(name).cloned().unwrap_or(Claim::Unknown),
                Some(&self.options.region),
            )
        };
        let (profile, size, storage_gib) = match verdict {
            Verdict::Refuse(refusal) => return self.refuse(pod, &namespace, &refusal).await,
            Verdict::Place {
                profile,
                size,
                storage_gib,
            } => (profile, size, storage_gib),
        };
        let logging = self.logging().await;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let uid = pod.uid().unwrap_or_default();
        // EKS's order (docs/eks-behaviour.md §9 "Timing"): the pod is annotated while Pending and
        // the logging event comes first; the node and `Scheduled` follow the provisioning.
        let logged = event(logging.event_type, logging.reason, logging.note.clone());
        // A launch that fails now (an injected fault, the launch rate): annotated and logged like any
        // placed pod, then an event and a retry with backoff (docs/eks-behaviour.md §9).
        // Judged at the moment of launch: after the provisioning delay, if there is one.
        let delay = self.options.provisioning_delay;
        let in_delay = !delay.is_zero()
            && self
                .lock_provisioning()
                .get(&uid)
                .is_none_or(|since| since.elapsed() < delay);
        let attempt = lock(&self.attempts).get(&uid).copied().unwrap_or(0);
        let held = if in_delay {
            None
        } else {
            self.launch_held(pod, &lean, &namespace, &profile, attempt)
        };
        if let Some((reason, note, retry)) = held {
            if let Err(outcome) = self.annotate(pod, &pods, &uid, size, &logging).await {
                return outcome;
            }
            lock(&self.attempts).insert(uid.clone(), attempt.saturating_add(1));
            self.metrics
                .scheduler_launch_failures
                .with_label_values(&[reason])
                .inc();
            let failed = event(EventType::Warning, "FailedScheduling", note);
            // The logging event comes once: here on a first attempt without a delay (with one,
            // it was recorded when the delay began).
            let events = if attempt == 0 && delay.is_zero() {
                vec![logged, failed]
            } else {
                vec![failed]
            };
            self.record(pod, events).await;
            return Outcome::Provisioning(retry);
        }
        // The logging event went with the first failed launch, if there was one.
        let logged = (attempt == 0).then_some(logged);
        let annotate = self.annotate(pod, &pods, &uid, size, &logging);
        let mut events = Vec::new();
        let place = async {
            match self.options.placement {
                Placement::Virtual => self
                    .virtual_node(pod, &lean, &namespace, &profile, (size, storage_gib))
                    .await
                    .map_err(|e| e.to_string()),
                Placement::Pool => self.pool_node(&uid, size).await,
            }
        };
        let node = if delay.is_zero() {
            // [D] Without a delay the node is made while the annotation is written: one write's time
            // less per pod (the pod is still annotated before it is bound); the logging event goes
            // with `Scheduled`, in one ordered batch.
            events.extend(logged);
            let (annotated, node) = tokio::join!(annotate, place);
            if let Err(outcome) = annotated {
                // A node made for nothing goes with the node reconcile; a pool room assumed is freed.
                self.forget(&uid);
                return outcome;
            }
            node
        } else {
            if let Err(outcome) = annotate.await {
                return outcome;
            }
            let since = {
                let mut provisioning = self.lock_provisioning();
                match provisioning.get(&uid) {
                    Some(since) => Some(*since),
                    None => {
                        provisioning.insert(uid.clone(), Instant::now());
                        None
                    }
                }
            };
            let Some(since) = since else {
                self.record(pod, logged.into_iter().collect()).await;
                return Outcome::Provisioning(delay);
            };
            let left = delay.saturating_sub(since.elapsed());
            if !left.is_zero() {
                return Outcome::Provisioning(left);
            }
            place.await
        };
        let node = match node {
            Ok(Some(node)) => node,
            Ok(None) => {
                // [D] Not EKS's: a pool may get room later, so the pod waits and is tried again.
                let note = match self.options.placement {
                    Placement::Pool => format!(
                        "0/{} nodes of the Fargate pool have room for {size}; will try again",
                        self.pool_size()
                    ),
                    Placement::Virtual => {
                        "no free address for a virtual node; will try again".into()
                    }
                };
                let failed = event(EventType::Warning, "FailedScheduling", note);
                self.record(pod, vec![failed]).await;
                return Outcome::Skipped;
            }
            Err(error) => {
                tracing::warn!(%error, pod = %pod.name_any(), "placing failed; will retry");
                return Outcome::Skipped;
            }
        };
        let binding = Binding {
            metadata: ObjectMeta {
                name: Some(pod.name_any()),
                namespace: Some(namespace.clone()),
                // A precondition: a pod deleted and made again under the same name is not bound.
                uid: pod.uid(),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(node.clone()),
                ..Default::default()
            },
        };
        match pods
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &pod.name_any(),
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {
                // Bound meanwhile (by another replica before a Lease handover) or deleted: the
                // sweep removes a virtual node made for nothing.
                self.forget(&uid);
                tracing::info!(pod = %pod.name_any(), code = e.code, "not bound: {}", e.message);
                return Outcome::Skipped;
            }
            Err(error) => {
                self.forget(&uid);
                tracing::warn!(%error, pod = %pod.name_any(), "binding failed; will retry");
                return Outcome::Skipped;
            }
        }
        let placement = match self.options.placement {
            Placement::Virtual => "virtual",
            Placement::Pool => "pool",
        };
        self.metrics
            .scheduler_bound
            .with_label_values(&[placement])
            .inc();
        let scheduled = event(
            EventType::Normal,
            "Scheduled",
            format!(
                "Successfully assigned {namespace}/{} to {node}",
                pod.name_any()
            ),
        );
        self.lock_provisioning().remove(&uid);
        events.push(scheduled);
        self.record(pod, events).await;
        tracing::debug!(pod = %pod.name_any(), %namespace, %node, %size, "bound");
        Outcome::Bound(node)
    }

    /// A node of its own for the pod (made again after a restart: the same pod gets the same
    /// first address, and a node already made for it is reused).
    async fn virtual_node(
        &self,
        pod: &Pod,
        lean: &crate::decision::Pod,
        namespace: &str,
        profile: &str,
        (size, storage_gib): (Size, u64),
    ) -> Result<Option<String>, kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let uid = pod.uid().unwrap_or_default();
        let subnets = self
            .snapshot
            .load()
            .get(profile)
            .map_or(1, |p| p.profile.subnets.len());
        // The verdict refused a pod no zone satisfies; `zone` is only the fallback of a race.
        let zone = placement::zone_for(&self.options.region, &uid, subnets, lean)
            .unwrap_or_else(|| placement::zone(&self.options.region, &uid, subnets));
        for attempt in 0..8 {
            let ip = placement::address(&uid, attempt);
            let info = placement::NodeInfo {
                kubelet_version: &self.kubelet_version,
                ..placement::CAPTURED_NODE_INFO
            };
            let node = placement::virtual_node_with(
                &VirtualNode {
                    ip,
                    region: &self.options.region,
                    zone: &zone,
                    size,
                    storage_gib,
                    pod_namespace: namespace,
                    pod_name: &pod.name_any(),
                    pod_uid: &uid,
                },
                &info,
            );
            let name = node.name_any();
            match nodes.create(&PostParams::default(), &node).await {
                Ok(_) => return Ok(Some(name)),
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let existing = nodes.get_opt(&name).await?;
                    let owner = existing
                        .as_ref()
                        .and_then(|n| n.annotations().get(placement::POD_UID_ANNOTATION).cloned());
                    if owner.as_deref() == Some(uid.as_str()) {
                        return Ok(Some(name));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    fn pool_cache(&self) -> Option<Arc<PoolCache>> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn pool_size(&self) -> usize {
        self.pool_cache().map_or(0, |c| c.nodes.state().len())
    }

    /// The pool node with most room that holds `size`, with the pod assumed there: decided from
    /// the caches under a short lock, never across an API call. `Err` while the caches have not
    /// listed yet.
    async fn pool_node(&self, uid: &str, size: Size) -> Result<Option<String>, String> {
        let cache = self.pool_cache().ok_or("not leading")?;
        let ready = tokio::time::timeout(POOL_CACHE_WAIT, async {
            cache.nodes_listed.wait().await;
            cache.index_listed.wait().await;
        })
        .await;
        if ready.is_err() {
            return Err("the pool's nodes and pods are not listed yet".into());
        }
        let nodes = cache.nodes();
        Ok(cache
            .lock_index()
            .assume(uid, &nodes, size, std::time::Instant::now()))
    }

    /// The bind did not happen: the pod assumed on a pool node takes no room there.
    fn forget(&self, uid: &str) {
        if let Some(cache) = self.pool_cache() {
            cache.lock_index().forget(uid);
        }
    }
}
