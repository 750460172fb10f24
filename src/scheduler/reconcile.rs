//! The two reconciles of the scheduler (docs/scheduler.md): one pod, one virtual node, each decided
//! from the object as the cache has it now and the ACTIVE profiles now, never from the change that
//! triggered it. kube-runtime's applier runs them: at most one reconcile per object at a time, a
//! bounded number at once, and the [`Action`] returned (or [`error_policy`]'s) says when the object
//! is looked at again.

use super::bind::{Context, Outcome};
use super::{active_profiles, backoff, gated, orphans, placement, refused_before, unbound};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A virtual node still needed is looked at again this often even without a change (a missed
/// event, a pod store that lagged behind the trigger): reads of the caches only.
pub const NODE_RESYNC: Duration = Duration::from_secs(30);

/// How long a pod removed is taken as removed while the cache does not show its deletion.
pub const REMOVAL_SHOWS: Duration = Duration::from_secs(30);

/// A failure entry not renewed for this long is forgotten: a live object that keeps failing is
/// tried again within [`backoff::LONGEST`], so such an entry is most likely of an object deleted
/// while it failed, which no success will ever clear.
pub const FORGET_FAILURES_AFTER: Duration = Duration::from_secs(300);

/// Failures in a row per object (by key), for [`backoff::delay`], with when the last one was. A
/// success clears an object's entry; entries older than [`FORGET_FAILURES_AFTER`] are dropped by a
/// later failure (at most once per [`PRUNE_FAILURES_EVERY`], so a burst of failures does not scan
/// the map each time), so the map holds only objects that failed lately.
#[derive(Debug, Default)]
pub struct Failures(Mutex<FailureMap>);

#[derive(Debug, Default)]
struct FailureMap {
    counts: HashMap<String, (u32, Instant)>,
    pruned: Option<Instant>,
}

/// How often [`Failures::add`] looks for entries to forget, at most.
const PRUNE_FAILURES_EVERY: Duration = Duration::from_secs(60);

impl Failures {
    pub fn clear(&self, key: &str) {
        lock(&self.0).counts.remove(key);
    }

    /// One more failure of `key` at `now`: the failures in a row so far.
    pub fn add(&self, key: String, now: Instant) -> u32 {
        let mut failures = lock(&self.0);
        if failures
            .pruned
            .is_none_or(|at| now.saturating_duration_since(at) >= PRUNE_FAILURES_EVERY)
        {
            failures.pruned = Some(now);
            failures.counts.retain(|_, (_, last)| {
                now.saturating_duration_since(*last) < FORGET_FAILURES_AFTER
            });
        }
        let (count, last) = failures.counts.entry(key).or_insert((0, now));
        *count = count.saturating_add(1);
        *last = now;
        *count
    }

    pub fn len(&self) -> usize {
        lock(&self.0).counts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An unbound pod the scheduler has seen: since when (bind latency counts the wait in the queue),
/// and whether it was bound or refused already while the cache still shows it unbound.
#[derive(Clone, Copy, Debug)]
pub struct Waiting {
    pub since: Instant,
    pub done: bool,
}

/// What the reconciles share with the feeds that trigger them (controller.rs).
pub struct Reconciler {
    pub ctx: Arc<Context>,
    /// Every pod of `fargate-scheduler`, as the reflector has it.
    pub pods: Store<Pod>,
    /// Marked when `pods` has listed ([`super::listed`]).
    pub pods_listed: super::listed::Listed,
    /// Unbound pods by UID (kept by the pod feed: added when seen unbound, dropped when bound or
    /// gone).
    pub waiting: Mutex<HashMap<String, Waiting>>,
    /// Pods removed (deleted or evicted) whose deletion the cache does not show yet, by UID: a
    /// second reconcile in between (an eviction writes the pod's status before deleting it) must not
    /// remove it again. Kept by the pod feed; an entry older than [`REMOVAL_SHOWS`] is forgotten,
    /// so a removal that never took effect is tried again.
    pub removed: Mutex<HashMap<String, Instant>>,
    /// Pods triggered whose reconcile has not started: the queue depth.
    pub due: Mutex<HashSet<ObjectRef<Pod>>>,
    /// Failures in a row, per object, for [`backoff::delay`].
    pub failures: Failures,
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a reconcile failed; tried again after [`backoff::delay`].
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("removing pod {pod}: {reason}")]
    Removal { pod: String, reason: String },
    #[error("removing virtual node {node}: {source}")]
    Node { node: String, source: kube::Error },
    #[error("the reconcile task ended: {0}")]
    Task(String),
}

impl ReconcileError {
    /// The kind of object whose reconcile failed: the `kind` label of the errors counter.
    pub fn kind(&self) -> &'static str {
        match self {
            ReconcileError::Removal { .. } => "pod",
            ReconcileError::Node { .. } => "node",
            ReconcileError::Task(_) => "task",
        }
    }
}

fn key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!("{}/{}", K::kind(&()), ObjectRef::from_obj(object))
}

impl Reconciler {
    fn succeeded<K: Resource<DynamicType = ()>>(&self, object: &K) {
        self.failures.clear(&key(object));
    }

    fn mark_done(&self, uid: &str) -> Option<Instant> {
        lock(&self.waiting).get_mut(uid).map(|w| {
            w.done = true;
            w.since
        })
    }
}

/// What to do with one pod of `fargate-scheduler` as it is now:
/// - being deleted: nothing;
/// - bound, naming a profile that is not ACTIVE: removed ([`orphans`]);
/// - unbound, not gated, not refused before: scheduled once; tried again after `--retry-interval`
///   when it could not be placed yet.
pub async fn pod(pod: Arc<Pod>, r: Arc<Reconciler>) -> Result<Action, ReconcileError> {
    lock(&r.due).remove(&ObjectRef::from_obj(pod.as_ref()));
    let action = pod_action(&pod, &r).await?;
    r.succeeded(pod.as_ref());
    Ok(action)
}

async fn pod_action(pod: &Pod, r: &Reconciler) -> Result<Action, ReconcileError> {
    if pod.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    if !unbound(pod) {
        let uid = pod.uid().unwrap_or_default();
        if let Some(at) = lock(&r.removed).get(&uid) {
            // Removed a moment ago; the cache does not show the deletion yet.
            let left = REMOVAL_SHOWS.saturating_sub(at.elapsed());
            if !left.is_zero() {
                return Ok(Action::requeue(left));
            }
        }
        let active = active_profiles(&r.ctx);
        if orphans::orphaned([pod], &active).is_empty() {
            return Ok(Action::await_change());
        }
        remove_pod(&r.ctx, pod).await?;
        // The feed may drop this pod's entry before it is made (its deletion seen first): entries
        // past their use are pruned every second with the gauges (controller.rs), so none stays.
        lock(&r.removed).insert(uid, Instant::now());
        return Ok(Action::await_change());
    }
    if gated(pod) || refused_before(pod) {
        return Ok(Action::await_change());
    }
    let uid = pod.uid().unwrap_or_default();
    if lock(&r.waiting).get(&uid).is_some_and(|w| w.done) {
        // Bound or refused a moment ago; the cache has not caught up yet.
        return Ok(Action::await_change());
    }
    match r.ctx.schedule(pod).await {
        Outcome::Bound(_) => {
            if let Some(since) = r.mark_done(&uid) {
                // The scheduler's own time: the provisioning delay asked for is not counted.
                let delay = r.ctx.options.provisioning_delay;
                r.ctx
                    .metrics
                    .scheduler_bind_latency
                    .observe(since.elapsed().saturating_sub(delay).as_secs_f64());
            }
            Ok(Action::await_change())
        }
        Outcome::Refused(_) => {
            r.mark_done(&uid);
            Ok(Action::await_change())
        }
        Outcome::Provisioning(left) => Ok(Action::requeue(left)),
        Outcome::Skipped => Ok(Action::requeue(r.ctx.options.retry)),
    }
}

/// A virtual node stays while its pod is there, unbound or bound to it, and not finished
/// ([`placement::virtual_node_needed`]); otherwise it is deleted.
pub async fn node(node: Arc<Node>, r: Arc<Reconciler>) -> Result<Action, ReconcileError> {
    let pod = placement::virtual_node_owner(&node)
        .and_then(|owner| owner.split_once('/'))
        .and_then(|(namespace, name)| r.pods.get(&ObjectRef::new(name).within(namespace)));
    if placement::virtual_node_needed(&node, pod.as_deref()) {
        r.succeeded(node.as_ref());
        return Ok(Action::requeue(NODE_RESYNC));
    }
    let name = node.name_any();
    let nodes: Api<Node> = Api::all(r.ctx.client.clone());
    let delete = DeleteParams {
        preconditions: Some(Preconditions {
            uid: node.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match nodes.delete(&name, &delete).await {
        Ok(_) => {
            tracing::info!(node = %name, "virtual node removed: its pod is gone, finished or elsewhere")
        }
        // Gone already, or another node has the name now: either way this one is gone.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
        Err(source) => return Err(ReconcileError::Node { node: name, source }),
    }
    r.succeeded(node.as_ref());
    Ok(Action::await_change())
}

/// Tried again after [`backoff::delay`] of the object's failures in a row; counted by kind.
pub fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &ReconcileError,
    r: Arc<Reconciler>,
) -> Action {
    retry_later(
        &r.failures,
        key(object.as_ref()),
        error,
        error.kind(),
        &r.ctx.metrics,
    )
}

/// One more failure in a row of the object under `key`: logged, counted by `kind`, and tried
/// again after [`backoff::delay`] of the failures so far. Every reconcile's error policy.
pub fn retry_later(
    failures: &Failures,
    key: String,
    error: &dyn std::fmt::Display,
    kind: &str,
    metrics: &crate::metrics::Metrics,
) -> Action {
    let failures = failures.add(key, Instant::now());
    let delay = backoff::delay(failures);
    tracing::warn!(%error, failures, retry_in = ?delay, "reconcile failed");
    metrics
        .scheduler_reconcile_errors
        .with_label_values(&[kind])
        .inc();
    Action::requeue(delay)
}

/// Delete (or evict, `--evict`) one pod whose profile is not ACTIVE, as EKS deletes the pods of a
/// deleted profile. The UID is a precondition: a pod made again under the same name is not touched.
/// "Already gone" is success.
async fn remove_pod(ctx: &Context, pod: &Pod) -> Result<(), ReconcileError> {
    let namespace = pod.namespace().unwrap_or_default();
    let profile = orphans::profile_of(pod).unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let delete = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let (action, result) = if ctx.options.evict {
        let evict = EvictParams {
            delete_options: Some(delete),
            ..EvictParams::default()
        };
        let result = api.evict(&pod.name_any(), &evict).await.map(|_| ());
        ("evict", result)
    } else {
        let result = api.delete(&pod.name_any(), &delete).await.map(|_| ());
        ("delete", result)
    };
    let failed = |reason: String| {
        ctx.metrics
            .scheduler_removal_errors
            .with_label_values(&[action])
            .inc();
        Err(ReconcileError::Removal {
            pod: format!("{namespace}/{}", pod.name_any()),
            reason,
        })
    };
    match result {
        Ok(()) => {
            tracing::info!(pod = %pod.name_any(), %namespace, profile, action, "pod of a profile that is not ACTIVE removed");
            ctx.metrics
                .scheduler_pods_removed
                .with_label_values(&[action])
                .inc();
            Ok(())
        }
        // Gone, or the UID precondition failed: this pod is gone and another has its name.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => Ok(()),
        // A PodDisruptionBudget does not allow it now.
        Err(kube::Error::Api(e)) if e.code == 429 => {
            failed(format!("eviction refused for now: {}", e.message))
        }
        Err(error) => failed(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::{FORGET_FAILURES_AFTER, Failures};
    use std::time::{Duration, Instant};

    #[test]
    fn failures_count_in_a_row_and_entries_of_objects_gone_do_not_stay() {
        let failures = Failures::default();
        let t0 = Instant::now();
        assert_eq!(failures.add("Pod/a".into(), t0), 1);
        assert_eq!(failures.add("Pod/a".into(), t0 + Duration::from_secs(1)), 2);
        assert_eq!(
            failures.add("Pod/gone".into(), t0 + Duration::from_secs(2)),
            1
        );
        failures.clear("Pod/a");
        assert_eq!(
            failures.add("Pod/a".into(), t0 + Duration::from_secs(3)),
            1,
            "a success resets"
        );
        // `gone` was deleted while failing: nothing clears it, but the next failure after the
        // forget time drops it, while `a`, failing again within it, keeps its count.
        let later = t0 + Duration::from_secs(3) + FORGET_FAILURES_AFTER - Duration::from_secs(1);
        assert_eq!(failures.add("Pod/a".into(), later), 2);
        assert_eq!(failures.len(), 1, "only a is left");
    }
}
