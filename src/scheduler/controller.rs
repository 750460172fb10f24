//! The leader's work, in the shape of a Kubernetes controller (docs/scheduler.md): reflector caches
//! of the pods of `fargate-scheduler` and of the virtual nodes, and two keyed work queues (pods,
//! nodes) run by kube-runtime's applier: one reconcile per object at a time, a bounded number at
//! once, requeue with backoff. Feeds turn what the caches see into keys to reconcile:
//! - a pod changed: that pod; a pod gone: its node;
//! - a (re-)list done: every pod, and every virtual node (level-based: whatever happened before);
//! - the ACTIVE profiles changed: every pod;
//! - room on the pool (pool placement): every pod waiting to be placed.
//!
//! Virtual placement also refuses pods of other schedulers bound to a virtual node
//! ([`super::strangers`]).
//!
//! Nothing here waits on a reconcile: the feeds only push keys into channels the appliers always
//! drain (their schedulers take new keys even while every slot is busy), so the class of deadlock of
//! kube-rs issue 926 has no cycle to form. Everything stops when the claim is lost: dropping the
//! appliers aborts the reconciles in flight.

use super::bind::{self, Context, PoolCache};
use super::listed::{Listed, cached_keys};
use super::reconcile::{self, Reconciler, Waiting};
use super::{
    Placement, SCHEDULER_NAME, active_profiles, gated, placement, pool, refused_before, unbound,
};
use futures::{Stream, StreamExt, future};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::Api;
use kube::runtime::controller::{self, Action};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, applier, watcher};
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

/// Keys in flight from the feeds to an applier.
const KEYS_BUFFER: usize = 1024;
/// Room on the pool is acted on at most this often: a burst of deletions is one pass.
const ROOM_COALESCE: Duration = Duration::from_millis(200);
/// How often the gauges of the caches are set.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// The leader's work until `work` is cancelled.
pub async fn lead(ctx: Arc<Context>, changes: watch::Receiver<u64>, work: CancellationToken) {
    let term = CancellationToken::new();
    *ctx.term.lock().unwrap_or_else(|e| e.into_inner()) = term.clone();
    let _end_of_term = term.drop_guard();
    let (pods, pod_writer) = reflector::store::<Pod>();
    let (nodes, node_writer) = reflector::store::<Node>();
    let r = Arc::new(Reconciler {
        ctx: Arc::clone(&ctx),
        pods: pods.clone(),
        pods_listed: Listed::default(),
        waiting: Mutex::new(HashMap::new()),
        removed: Mutex::new(HashMap::new()),
        due: Mutex::new(HashSet::new()),
        failures: reconcile::Failures::default(),
    });
    let (pod_keys, pod_queue) = mpsc::channel::<ObjectRef<Pod>>(KEYS_BUFFER);
    let (node_keys, node_queue) = mpsc::channel::<ObjectRef<Node>>(KEYS_BUFFER);
    let room = Arc::new(Notify::new());
    let mut feeds = tokio::task::JoinSet::new();
    feeds.spawn(feed_pods(
        Arc::clone(&r),
        pod_writer,
        pod_keys.clone(),
        node_keys.clone(),
    ));
    feeds.spawn(feed_nodes(
        Arc::clone(&ctx),
        node_writer,
        nodes.clone(),
        node_keys,
    ));
    feeds.spawn(on_profile_changes(
        Arc::clone(&ctx),
        changes,
        pods.clone(),
        pod_keys.clone(),
    ));
    if ctx.options.placement == Placement::Pool {
        for feed in watch_pool(&ctx, &room) {
            feeds.spawn(feed);
        }
        feeds.spawn(on_room(Arc::clone(&room), pods.clone(), pod_keys));
    } else {
        drop(pod_keys);
        // Virtual nodes are Fargate's: their kubelet refuses what is not Fargate's. Pool nodes are
        // the cluster's own, whose kubelets run what they run (docs/scheduler.md).
        feeds.spawn(super::strangers::refuse(Arc::clone(&ctx), nodes.clone()));
    }

    let due = Arc::clone(&r);
    let pod_queue = keys(pod_queue)
        .inspect(move |key| {
            due.due
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.clone());
        })
        .map(Ok::<_, Infallible>);
    let workers = u16::try_from(ctx.options.workers.max(1)).unwrap_or(u16::MAX);
    // The reconciles run on tasks of their own; the term's work returns (and the Lease is given
    // up) only once they have returned or been aborted.
    let writes = TaskTracker::new();
    let pod_writes = writes.clone();
    let pod_applier = applier(
        move |pod, r| spawned(&pod_writes, reconcile::pod(pod, r)),
        reconcile::error_policy,
        Arc::clone(&r),
        pods.clone(),
        pod_queue,
        controller::Config::default().concurrency(workers),
    )
    .for_each(|result| log("pod", result));
    // A node is judged against the pods: not before the pods' first list is in.
    let ready = r.pods_listed.clone();
    let node_queue = futures::stream::once(async move {
        ready.wait().await;
        keys(node_queue)
    })
    .flatten()
    .map(Ok::<_, Infallible>);
    let node_writes = writes.clone();
    let node_applier = applier(
        move |node, r| spawned(&node_writes, reconcile::node(node, r)),
        reconcile::error_policy,
        Arc::clone(&r),
        nodes.clone(),
        node_queue,
        controller::Config::default().concurrency(bind::NODE_REMOVALS as u16),
    )
    .for_each(|result| log("node", result));
    let gauges = set_gauges(Arc::clone(&r), nodes);
    // The feeds run as long as the term: one that ends (a panic) would leave the caches or the
    // queues without their source while the Lease is still renewed, so the term's work ends with it
    // and starts again (`Claim::while_held`).
    tokio::select! {
        _ = work.cancelled() => {}
        _ = pod_applier => tracing::error!("the pod work queue ended"),
        _ = node_applier => tracing::error!("the node work queue ended"),
        Some(ended) = feeds.join_next() => tracing::error!(?ended, "a feed of the scheduler ended"),
        _ = gauges => {}
    }
    feeds.abort_all();
    // The appliers are dropped: their reconciles are aborted, and end at their next await.
    writes.close();
    writes.wait().await;
    *ctx.pool.lock().unwrap_or_else(|e| e.into_inner()) = None;
    clear_gauges(&ctx);
}

/// The gauges only the leader sets go to zero when this replica stops leading, so that a standby
/// never reports a former leader's last numbers.
fn clear_gauges(ctx: &Context) {
    let metrics = &ctx.metrics;
    for reason in ["unplaced", "gated", "refused", "provisioning"] {
        metrics
            .scheduler_pods_waiting
            .with_label_values(&[reason])
            .set(0);
    }
    metrics.scheduler_queue_depth.set(0);
    metrics.scheduler_virtual_nodes.set(0);
}

/// A reconcile on a task of its own (both cores work), tracked by `writes`, aborted when the
/// applier drops it.
fn spawned<F>(
    writes: &TaskTracker,
    reconcile: F,
) -> impl std::future::Future<Output = Result<Action, reconcile::ReconcileError>> + Unpin + use<F>
where
    F: std::future::Future<Output = Result<Action, reconcile::ReconcileError>> + Send + 'static,
{
    let task = AbortOnDropHandle::new(writes.spawn(reconcile));
    futures::FutureExt::map(task, |joined| {
        joined.unwrap_or_else(|e| Err(reconcile::ReconcileError::Task(e.to_string())))
    })
}

fn keys<K>(mut receiver: mpsc::Receiver<K>) -> impl Stream<Item = K> + Send
where
    K: Send + 'static,
{
    futures::stream::poll_fn(move |cx| receiver.poll_recv(cx))
}

async fn log<K: kube::Resource, E: std::fmt::Display>(
    what: &'static str,
    result: Result<(ObjectRef<K>, Action), controller::Error<E, Infallible>>,
) where
    K::DynamicType: std::fmt::Debug + Eq + std::hash::Hash + Clone,
{
    match result {
        Ok(_) => {}
        // Triggered, then gone from the cache before its turn: nothing to do.
        Err(controller::Error::ObjectNotFound(_)) => {}
        // Counted and logged by the error policy.
        Err(controller::Error::ReconcilerFailed(..)) => {}
        Err(error) => tracing::warn!(%error, what, "work queue"),
    }
}

/// Sends `key`, unless the applier is gone (the leader is stopping).
async fn push<K>(keys: &mpsc::Sender<K>, key: K) {
    let _ = keys.send(key).await;
}

/// The pods of `fargate-scheduler` into the cache, and their keys into the pod queue: a changed pod
/// is reconciled; a deleted pod's node is; a (re-)list reconciles every pod in it (after it is in
/// the cache, so that no key is looked up in a cache that does not have it yet).
async fn feed_pods(
    r: Arc<Reconciler>,
    writer: reflector::store::Writer<Pod>,
    pod_keys: mpsc::Sender<ObjectRef<Pod>>,
    node_keys: mpsc::Sender<ObjectRef<Node>>,
) {
    let api: Api<Pod> = Api::all(r.ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.schedulerName={SCHEDULER_NAME}"));
    let stream = watcher(api, config).default_backoff().reflect(writer);
    let mut stream = std::pin::pin!(stream);
    while let Some(event) = stream.next().await {
        let lock = || r.waiting.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Ok(watcher::Event::Apply(pod)) => {
                seen(&mut lock(), &pod);
                if pod.metadata.deletion_timestamp.is_some()
                    && let Some(uid) = pod.uid()
                {
                    r.removed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&uid);
                }
                push(&pod_keys, ObjectRef::from_obj(&pod)).await;
            }
            Ok(watcher::Event::InitApply(pod)) => seen(&mut lock(), &pod),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = pod.uid() {
                    lock().remove(&uid);
                    r.ctx.forget_provisioning(&uid);
                    r.removed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&uid);
                }
                r.due
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&ObjectRef::from_obj(&pod));
                if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) {
                    push(&node_keys, ObjectRef::new(&node)).await;
                }
            }
            Ok(watcher::Event::InitDone) => {
                r.pods_listed.mark();
                let pods = r.pods.state();
                let present: HashSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
                lock().retain(|uid, _| present.contains(uid));
                r.ctx.retain_provisioning(&present);
                r.removed
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain(|uid, _| present.contains(uid));
                for pod in pods {
                    push(&pod_keys, ObjectRef::from_obj(pod.as_ref())).await;
                }
            }
            Ok(watcher::Event::Init) => {}
            Err(error) => tracing::warn!(%error, "watching the pods of fargate-scheduler"),
        }
    }
}

/// Keeps [`Waiting`] in step with a pod as the cache has it.
fn seen(waiting: &mut HashMap<String, Waiting>, pod: &Pod) {
    let Some(uid) = pod.uid() else { return };
    if unbound(pod) {
        waiting.entry(uid).or_insert(Waiting {
            since: Instant::now(),
            done: false,
        });
    } else {
        waiting.remove(&uid);
    }
}

/// The virtual nodes into their cache, and their keys into the node queue once the cache holds them.
async fn feed_nodes(
    ctx: Arc<Context>,
    writer: reflector::store::Writer<Node>,
    cache: Store<Node>,
    node_keys: mpsc::Sender<ObjectRef<Node>>,
) {
    let api: Api<Node> = Api::all(ctx.client.clone());
    let config =
        watcher::Config::default().labels(&format!("{}=true", placement::VIRTUAL_NODE_LABEL));
    let events = watcher(api, config).default_backoff().reflect(writer);
    let mut keys = std::pin::pin!(cached_keys(events, cache, "the virtual nodes"));
    while let Some(key) = keys.next().await {
        push(&node_keys, key).await;
    }
}

/// Every pod, each time the set of ACTIVE profiles changes (a profile deleted: its pods go).
async fn on_profile_changes(
    ctx: Arc<Context>,
    mut changes: watch::Receiver<u64>,
    pods: Store<Pod>,
    pod_keys: mpsc::Sender<ObjectRef<Pod>>,
) {
    let mut active = active_profiles(&ctx);
    while changes.changed().await.is_ok() {
        let now = active_profiles(&ctx);
        if now == active {
            continue;
        }
        active = now;
        for pod in pods.state() {
            push(&pod_keys, ObjectRef::from_obj(pod.as_ref())).await;
        }
    }
    // The store is gone (the process is stopping): nothing changes any more.
    future::pending::<()>().await;
}

/// Every pod waiting to be placed, each time the pool may have room: a node joined or changed, a pod
/// left it or finished.
async fn on_room(room: Arc<Notify>, pods: Store<Pod>, pod_keys: mpsc::Sender<ObjectRef<Pod>>) {
    loop {
        room.notified().await;
        tokio::time::sleep(ROOM_COALESCE).await;
        let waiting: Vec<ObjectRef<Pod>> = pods
            .state()
            .iter()
            .filter(|p| unbound(p) && !gated(p) && !refused_before(p))
            .map(|p| ObjectRef::from_obj(p.as_ref()))
            .collect();
        for key in waiting {
            push(&pod_keys, key).await;
        }
    }
}

/// The caches pool placement decides from ([`PoolCache`]): a reflector of the pool's nodes and a
/// watch of every bound, unfinished pod (any scheduler's: they all take room) into the
/// [`pool::PoolIndex`]. `room` is told whenever room may have been made.
fn watch_pool(
    ctx: &Arc<Context>,
    room: &Arc<Notify>,
) -> Vec<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>> {
    let selector = ctx.options.pool_selector.clone().unwrap_or_default();
    let (nodes, writer) = reflector::store::<Node>();
    let cache = Arc::new(PoolCache {
        nodes,
        nodes_listed: Listed::default(),
        index: Mutex::new(pool::PoolIndex::default()),
        index_listed: Listed::default(),
    });
    *ctx.pool.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&cache));
    let node_feed = {
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let stream = watcher(nodes, watcher::Config::default().labels(&selector))
            .default_backoff()
            .reflect(writer);
        let room = Arc::clone(room);
        let listed = cache.nodes_listed.clone();
        async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => {
                        listed.mark();
                        room.notify_one();
                    }
                    Ok(watcher::Event::Apply(_)) => room.notify_one(),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "watching the pool's nodes"),
                }
            }
        }
    };
    let pod_feed = {
        let pods: Api<Pod> = Api::all(ctx.client.clone());
        let config =
            watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
        let stream = watcher(pods, config).default_backoff();
        let room = Arc::clone(room);
        async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                // Sized before the lock: placements wait on it.
                let uid = |pod: &Pod| pod.uid().unwrap_or_default();
                let lock = || cache.index.lock().unwrap_or_else(|e| e.into_inner());
                match event {
                    Ok(watcher::Event::Init) => lock().init(),
                    Ok(watcher::Event::InitApply(pod)) => {
                        let placed = bind::placed(&pod);
                        lock().init_apply(&uid(&pod), placed);
                    }
                    Ok(watcher::Event::InitDone) => {
                        lock().init_done();
                        cache.index_listed.mark();
                        room.notify_one();
                    }
                    Ok(watcher::Event::Apply(pod)) => {
                        let placed = bind::placed(&pod);
                        if placed.is_none() && !unbound(&pod) {
                            room.notify_one();
                        }
                        lock().apply(&uid(&pod), placed);
                    }
                    Ok(watcher::Event::Delete(pod)) => {
                        lock().delete(&uid(&pod));
                        room.notify_one();
                    }
                    Err(error) => tracing::warn!(%error, "watching the pods on the pool"),
                }
            }
        }
    };
    vec![Box::pin(node_feed), Box::pin(pod_feed)]
}

/// The gauges read from the caches, every [`GAUGES_EVERY`].
async fn set_gauges(r: Arc<Reconciler>, nodes: Store<Node>) {
    let mut tick = tokio::time::interval(GAUGES_EVERY);
    loop {
        tick.tick().await;
        let pods = r.pods.state();
        let in_delay = r.ctx.provisioning_now();
        let (mut unplaced, mut gated_pods, mut refused, mut provisioning) =
            (0i64, 0i64, 0i64, 0i64);
        for pod in pods.iter().filter(|p| unbound(p)) {
            if gated(pod) {
                gated_pods += 1;
            } else if refused_before(pod) {
                refused += 1;
            } else if pod.uid().is_some_and(|uid| in_delay.contains(&uid)) {
                provisioning += 1;
            } else {
                unplaced += 1;
            }
        }
        let metrics = &r.ctx.metrics;
        let waiting = &metrics.scheduler_pods_waiting;
        waiting.with_label_values(&["unplaced"]).set(unplaced);
        waiting.with_label_values(&["gated"]).set(gated_pods);
        waiting.with_label_values(&["refused"]).set(refused);
        waiting
            .with_label_values(&["provisioning"])
            .set(provisioning);
        let due = {
            let mut due = r.due.lock().unwrap_or_else(|e| e.into_inner());
            due.retain(|key| r.pods.get(key).is_some());
            due.len()
        };
        metrics.scheduler_queue_depth.set(due as i64);
        reconcile::lock(&r.removed).retain(|_, at| at.elapsed() < reconcile::REMOVAL_SHOWS);
        if r.ctx.options.placement == Placement::Virtual {
            metrics
                .scheduler_virtual_nodes
                .set(nodes.state().len() as i64);
        }
    }
}
