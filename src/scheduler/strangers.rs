//! What the Fargate kubelet of a virtual node does with a pod it was not made for: it refuses it
//! (docs/eks-behaviour.md §5, DaemonSets). A pod of another scheduler can be bound to a virtual
//! node (the default scheduler puts a DaemonSet pod that tolerates every taint on a node whose own
//! pod has finished); whatever stands in for the node's kubelet (kwok in the tests) would run it,
//! so the scheduler gives it the refusal itself: phase `Failed` with the kubelet's text
//! ([`placement::kubelet_refusal`]), and a Warning event.
//!
//! Level-based like the rest: a watch of the bound, unfinished pods of other schedulers keeps only
//! those on a virtual node (a pod's node never changes once bound, so the filter holds for the
//! pod's life and the cache stays the size of the misplaced pods, not of the cluster), and each is
//! reconciled on every change and after each (re-)list, with backoff on a failed write.

use super::bind::Context;
use super::listed::cached_keys;
use super::reconcile;
use super::{SCHEDULER_NAME, placement};
use futures::{StreamExt, future};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, applier, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;

/// The reason of the refused pod's status and event ([D]: no public capture shows the Fargate
/// kubelet's; its message is quoted, docs/eks-behaviour.md §5).
pub const REASON: &str = "PodNotSupported";
/// Misplaced pods written at once.
const WORKERS: u16 = 4;

/// Whether a node name is one a virtual node can have (`fargate-ip-…`): the cheap filter of the
/// watch; the node cache says whether it is one of ours.
fn on_a_fargate_node_name(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| n.starts_with(placement::NODE_NAME_PREFIX))
}

struct Strangers {
    ctx: Arc<Context>,
    /// The virtual nodes (the controller's reflector).
    nodes: Store<Node>,
    /// Failures in a row, by pod UID ([`reconcile::retry_later`]).
    failures: reconcile::Failures,
}

impl Strangers {
    /// Whether `name` is one of the scheduler's virtual nodes: the cache says so, or else the
    /// apiserver (a node made a moment ago; the cache may not have listed yet). Asked only for
    /// pods a Fargate kubelet would refuse on a node named like a Fargate node: rare.
    async fn virtual_node(&self, name: &str) -> Result<bool, kube::Error> {
        if self.nodes.get(&ObjectRef::new(name)).is_some() {
            return Ok(true);
        }
        let nodes: Api<Node> = Api::all(self.ctx.client.clone());
        Ok(nodes.get_opt(name).await?.is_some_and(|n| {
            n.labels()
                .get(placement::VIRTUAL_NODE_LABEL)
                .map(String::as_str)
                == Some("true")
        }))
    }
}

/// Refuses, until the future is dropped (the claim is lost), every pod of another scheduler bound
/// to a virtual node.
pub async fn refuse(ctx: Arc<Context>, nodes: Store<Node>) {
    let (store, writer) = reflector::store::<Pod>();
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let fields = format!(
        "spec.schedulerName!={SCHEDULER_NAME},spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"
    );
    let events = watcher(api, watcher::Config::default().fields(&fields))
        .default_backoff()
        .filter(|event| {
            future::ready(match event {
                Ok(watcher::Event::Apply(pod))
                | Ok(watcher::Event::InitApply(pod))
                | Ok(watcher::Event::Delete(pod)) => on_a_fargate_node_name(pod),
                Ok(_) => true,
                Err(error) => {
                    tracing::warn!(%error, "watching the pods of other schedulers on Fargate nodes");
                    false
                }
            })
        })
        .reflect(writer);
    let keys = cached_keys(
        events,
        store.clone(),
        "the pods of other schedulers on Fargate nodes",
    )
    .map(Ok::<_, Infallible>);
    let strangers = Arc::new(Strangers {
        ctx,
        nodes,
        failures: reconcile::Failures::default(),
    });
    applier(
        |pod, s| Box::pin(reconcile(pod, s)),
        error_policy,
        strangers,
        store,
        keys,
        controller::Config::default().concurrency(WORKERS),
    )
    .for_each(|_| future::ready(()))
    .await;
}

#[derive(Debug, thiserror::Error)]
#[error("refusing pod {pod}: {source}")]
struct RefusalError {
    pod: String,
    source: kube::Error,
}

async fn reconcile(pod: Arc<Pod>, s: Arc<Strangers>) -> Result<Action, RefusalError> {
    let uid = pod.uid().unwrap_or_default();
    let refusal = crate::decision::Pod::from_api(pod.as_ref())
        .ok()
        .and_then(|lean| placement::kubelet_refusal(&lean));
    let namespace = pod.namespace().unwrap_or_default();
    let node = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    let ours = match (&refusal, node) {
        (Some(_), Some(node)) => s.virtual_node(&node).await.map_err(|source| RefusalError {
            pod: format!("{namespace}/{}", pod.name_any()),
            source,
        })?,
        _ => false,
    };
    let (Some(message), true) = (refusal, ours) else {
        s.failures.clear(&uid);
        return Ok(Action::await_change());
    };
    let api: Api<Pod> = Api::namespaced(s.ctx.client.clone(), &namespace);
    // The UID makes it a precondition: a pod made again under the name is not touched.
    let status = json!({
        "metadata": {"uid": uid},
        "status": {"phase": "Failed", "reason": REASON, "message": message},
    });
    match api
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&status),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(pod = %pod.name_any(), %namespace, %message, "a pod of another scheduler on a Fargate node refused, as its kubelet would");
            s.ctx.metrics.scheduler_kubelet_refusals.inc();
            let event = Event {
                type_: EventType::Warning,
                reason: REASON.into(),
                note: Some(message),
                action: "Admission".into(),
                secondary: None,
            };
            let reference = pod.object_ref(&());
            match tokio::time::timeout(
                s.ctx.options.event_wait,
                s.ctx.recorder.publish(&event, &reference),
            )
            .await
            {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(%error, pod = %pod.name_any(), "could not record an event")
                }
                Err(_) => {
                    tracing::warn!(pod = %pod.name_any(), "recording an event took too long; given up")
                }
            }
        }
        // Gone, or another pod has the name now.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(source) => {
            return Err(RefusalError {
                pod: format!("{namespace}/{}", pod.name_any()),
                source,
            });
        }
    }
    s.failures.clear(&uid);
    Ok(Action::await_change())
}

fn error_policy(pod: Arc<Pod>, error: &RefusalError, s: Arc<Strangers>) -> Action {
    let uid = pod.uid().unwrap_or_default();
    reconcile::retry_later(&s.failures, uid, error, "pod", &s.ctx.metrics)
}
