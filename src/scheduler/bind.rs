//! Scheduling one pod against the cluster: read what the verdict needs (claims), judge, then refuse
//! with an event, or place and bind with EKS's annotations in the Binding (the apiserver copies them to
//! the pod in the same write that sets the node). Like EKS, a refused pod is not retried
//! (docs/eks-behaviour.md §9).

use super::claims;
use super::logging::{self, Logging};
use super::placement::{self, PoolNode, VirtualNode};
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
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::Arc;

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
    /// Bounds the virtual nodes being removed at once ([`NODE_REMOVALS`]).
    pub node_removals: tokio::sync::Semaphore,
    /// The logging ConfigMap as a watch knows it (run beside the scheduler, mod.rs).
    pub logging: logging::Watched,
    /// Pool placement reads what each node holds and binds under this lock: two workers must not
    /// both count the same free room.
    pub pool_lock: tokio::sync::Mutex<()>,
}

/// What happened to a pod.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Bound(String),
    Refused(&'static str),
    /// Nothing to do: bound meanwhile, or gone.
    Skipped,
}

fn object_ref(pod: &Pod) -> ObjectReference {
    pod.object_ref(&())
}

/// Pods whose events may be on their way at once (see [`Context::record`]).
pub const EVENT_SLOTS: usize = 64;
/// Virtual nodes of deleted pods removed at once (each a read and a delete).
pub const NODE_REMOVALS: usize = 16;

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
    /// Record `events` of `pod`, in order, beside the work: the worker goes on to the next pod. At
    /// most [`EVENT_SLOTS`] pods' events are in flight; past that the worker waits for a slot.
    async fn record(&self, pod: &Pod, events: Vec<Event>) {
        let Ok(slot) = Arc::clone(&self.event_slots).acquire_owned().await else {
            return;
        };
        let (recorder, reference) = (self.recorder.clone(), object_ref(pod));
        tokio::spawn(async move {
            for event in events {
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(%error, pod = ?reference.name, "could not record an event");
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

    /// The `Logging` annotation and event: from the watch, or read now while it has not listed.
    async fn logging(&self) -> Logging {
        let exists = match self.logging.get() {
            Some(exists) => exists,
            None => {
                let maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), logging::NAMESPACE);
                matches!(maps.get_opt(logging::CONFIGMAP).await, Ok(Some(_)))
            }
        };
        logging::logging(exists)
    }

    async fn refuse(&self, pod: &Pod, namespace: &str, refusal: &Refusal) -> Outcome {
        tracing::info!(pod = %pod.name_any(), namespace, reason = refusal.reason, message = %refusal.message, "refused");
        self.metrics
            .scheduler_refused
            .with_label_values(&[refusal.reason])
            .inc();
        let condition_reason = if refusal.reason == "too_large" {
            sizing::TOO_LARGE_REASON
        } else {
            "Unschedulable"
        };
        let status = serde_json::json!({"status": {"conditions": [{
            "type": "PodScheduled", "status": "False",
            "reason": condition_reason, "message": refusal.message,
        }]}});
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        if let Err(error) = pods
            .patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Strategic(status),
            )
            .await
        {
            tracing::warn!(%error, pod = %pod.name_any(), "could not set the PodScheduled condition");
        }
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
        let lean: crate::decision::Pod =
            match serde_json::to_value(pod).and_then(serde_json::from_value) {
                Ok(lean) => lean,
                Err(error) => {
                    tracing::warn!(%error, pod = %pod.name_any(), "pod does not decode");
                    return Outcome::Skipped;
                }
            };
        let claims = self.claims(pod, &namespace).await;
        let verdict = {
            let snapshot = self.snapshot.load();
            verdict::judge(&lean, &namespace, &snapshot, &|name| {
                claims.get(name).cloned().unwrap_or(Claim::Unknown)
            })
        };
        let (profile, size) = match verdict {
            Verdict::Refuse(refusal) => return self.refuse(pod, &namespace, &refusal).await,
            Verdict::Place { profile, size } => (profile, size),
        };
        let logging = self.logging().await;
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
        let pool_guard = match self.options.placement {
            Placement::Pool => Some(self.pool_lock.lock().await),
            Placement::Virtual => None,
        };
        let node = match self.options.placement {
            Placement::Virtual => self.virtual_node(pod, &namespace, &profile, size).await,
            Placement::Pool => self.pool_node(size).await,
        };
        let node = match node {
            Ok(Some(node)) => node,
            Ok(None) => {
                // [D] Not EKS's: a pool may get room later, so the pod waits and is tried again.
                let note = match self.options.placement {
                    Placement::Pool => format!(
                        "0/{} nodes of the Fargate pool have room for {size}; will try again",
                        self.pool_size().await
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
                annotations: Some(
                    [
                        (CAPACITY_ANNOTATION.to_string(), size.to_string()),
                        (
                            LOGGING_ANNOTATION.to_string(),
                            logging.annotation.to_string(),
                        ),
                    ]
                    .into(),
                ),
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
                tracing::info!(pod = %pod.name_any(), code = e.code, "not bound: {}", e.message);
                return Outcome::Skipped;
            }
            Err(error) => {
                tracing::warn!(%error, pod = %pod.name_any(), "binding failed; will retry");
                return Outcome::Skipped;
            }
        }
        drop(pool_guard);
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
        let logged = event(logging.event_type, logging.reason, logging.note);
        self.record(pod, vec![scheduled, logged]).await;
        tracing::debug!(pod = %pod.name_any(), %namespace, %node, %size, "bound");
        Outcome::Bound(node)
    }

    /// A node of its own for the pod (made again after a restart: the same pod gets the same
    /// first address, and a node already made for it is reused).
    async fn virtual_node(
        &self,
        pod: &Pod,
        namespace: &str,
        profile: &str,
        size: Size,
    ) -> Result<Option<String>, kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let uid = pod.uid().unwrap_or_default();
        let subnets = self
            .snapshot
            .load()
            .get(profile)
            .map_or(1, |p| p.profile.subnets.len());
        let zone = placement::zone(&self.options.region, &uid, subnets);
        for attempt in 0..8 {
            let ip = placement::address(&uid, attempt);
            let node = placement::virtual_node(&VirtualNode {
                ip,
                region: &self.options.region,
                zone: &zone,
                size,
                pod_namespace: namespace,
                pod_name: &pod.name_any(),
                pod_uid: &uid,
            });
            let name = node.name_any();
            match nodes.create(&PostParams::default(), &node).await {
                Ok(_) => {
                    self.metrics.scheduler_virtual_nodes.inc();
                    return Ok(Some(name));
                }
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

    async fn pool_nodes(&self) -> Result<Vec<Node>, kube::Error> {
        let nodes: Api<Node> = Api::all(self.client.clone());
        let selector = self.options.pool_selector.clone().unwrap_or_default();
        Ok(nodes
            .list(&ListParams::default().labels(&selector))
            .await?
            .items)
    }

    async fn pool_size(&self) -> usize {
        self.pool_nodes().await.map_or(0, |n| n.len())
    }

    /// The pool node with most room that holds `size` (what its pods request counted).
    async fn pool_node(&self, size: Size) -> Result<Option<String>, kube::Error> {
        let mut candidates = Vec::new();
        let all_pods: Api<Pod> = Api::all(self.client.clone());
        for node in self.pool_nodes().await? {
            let name = node.name_any();
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
            let on_node = all_pods
                .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
                .await?;
            let mut used = Size {
                millicpu: 0,
                memory_mib: 0,
            };
            for p in on_node.items {
                if placement::finished(&p) {
                    continue;
                }
                let lean: crate::decision::Pod = serde_json::to_value(&p)
                    .and_then(serde_json::from_value)
                    .unwrap_or_default();
                let provisioned = p
                    .annotations()
                    .get(CAPACITY_ANNOTATION)
                    .and_then(|_| sizing::size(&lean).ok());
                let r = match provisioned {
                    Some(s) => (s.millicpu, s.memory_mib),
                    None => sizing::request(&lean)
                        .map(|r| (r.millicpu, r.memory_mib))
                        .unwrap_or((0, 0)),
                };
                used.millicpu += r.0;
                used.memory_mib += r.1;
            }
            candidates.push(PoolNode {
                name,
                allocatable,
                used,
                schedulable: ready && !cordoned,
            });
        }
        Ok(placement::choose_pool_node(&candidates, size).map(|n| n.name.clone()))
    }
}
