//! The fargate-scheduler: places the pods the webhook sent to Fargate, as EKS's second Fargate
//! component does (docs/eks-behaviour.md §9). Pure parts: [`sizing`], [`verdict`], [`placement`],
//! [`orphans`], [`claims`].
//! I/O: [`bind`] (one pod), [`logging`] (a watch of the logging
//! ConfigMap) and the loop below: a reflected watch of the pods that name `fargate-scheduler`, a worker
//! pool, a retry tick, a half-second tick that removes the pods [`orphans`] finds in the reflector's
//! cache (their profile is not ACTIVE), and a sweep of virtual nodes whose pod is gone. All of it runs
//! only while this replica holds the scheduler's claim ([`crate::claim`]).

pub mod bind;
pub mod claims;
pub mod logging;
pub mod orphans;
pub mod placement;
pub mod pool;
pub mod sizing;
pub mod verdict;

use crate::claim::Claim;
use crate::decision::SharedSnapshot;
use crate::metrics::Metrics;
use crate::profile::ProfileStatus;
use bind::{Context, Outcome};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Preconditions};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::{reflector, watcher};
use kube::{Client, ResourceExt};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// The scheduler name EKS's webhook sets and this scheduler answers to.
pub const SCHEDULER_NAME: &str = "fargate-scheduler";

/// Where placed pods go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// A Node of its own per pod, shaped like EKS's Fargate nodes.
    Virtual,
    /// Existing nodes chosen by a label selector.
    Pool,
}

#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    pub placement: Placement,
    /// Label selector of the pool's nodes (`--pool-selector`).
    pub pool_selector: Option<String>,
    /// Region in node names and zone labels.
    pub region: String,
    /// Remove the pods of a profile being deleted through the Eviction API (honours
    /// PodDisruptionBudgets) instead of deleting them as EKS does.
    pub evict: bool,
    /// This replica's name (the Lease holder, the Events' reporting instance).
    pub identity: String,
    /// Pods scheduled at once.
    pub workers: usize,
    /// How often pods that could not be placed yet are tried again.
    pub retry: Duration,
}

/// Run until `shutdown`: stand by, lead while the claim is ours, stand by again when it is lost.
pub async fn run(
    client: Client,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
    options: SchedulerOptions,
    claim: Claim,
    shutdown: CancellationToken,
) {
    metrics.init_scheduler(&verdict::Refusal::REASONS);
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: SCHEDULER_NAME.into(),
            instance: Some(options.identity.clone()),
        },
    );
    let logging = logging::Watched::new(metrics.scheduler_logging_configmap.clone());
    let ctx = Arc::new(Context {
        client,
        snapshot,
        options,
        metrics,
        recorder,
        event_slots: Arc::new(tokio::sync::Semaphore::new(bind::EVENT_SLOTS)),
        node_removals: tokio::sync::Semaphore::new(bind::NODE_REMOVALS),
        logging,
        pool: std::sync::Mutex::new(None),
    });
    let logging_watch = {
        let (ctx, stop) = (Arc::clone(&ctx), shutdown.clone());
        tokio::spawn(async move { ctx.logging.watch(ctx.client.clone(), stop).await })
    };
    claim
        .while_held(&shutdown, |lost| {
            let ctx = Arc::clone(&ctx);
            async move {
                tracing::info!(identity = %ctx.options.identity, "leading: scheduling pods");
                ctx.metrics.scheduler_leader.set(1);
                lead(Arc::clone(&ctx), lost).await;
                ctx.metrics.scheduler_leader.set(0);
            }
        })
        .await;
    logging_watch.abort();
}

/// A pod that has asked for this scheduler and is not bound.
fn unbound(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref())
        .is_none_or(str::is_empty)
        && pod.metadata.deletion_timestamp.is_none()
}

/// [D] A pod with scheduling gates waits until they are all removed, as kube-scheduler does: the
/// apiserver refuses to bind it before (docs/eks-behaviour.md §9).
fn gated(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|gates| !gates.is_empty())
}

/// Refused before (by this or an earlier process): EKS does not retry, nor do we.
fn refused_before(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| {
            c.iter().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && (c.reason.as_deref() == Some("Unschedulable")
                        || c.reason.as_deref() == Some(sizing::TOO_LARGE_REASON))
            })
        })
}

/// The leader's work until `work` is cancelled.
async fn lead(ctx: Arc<Context>, work: CancellationToken) {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let config = watcher::Config::default().fields(&format!("spec.schedulerName={SCHEDULER_NAME}"));
    // The reflector keeps every pod of `fargate-scheduler` as it is now: the removals are decided from it.
    let (cache, writer) = reflector::store::<Pod>();
    let mut events = watcher(pods, config)
        .default_backoff()
        .reflect(writer)
        .boxed();
    // Pool placement decides from caches of the pool's nodes and the bound pods, fed while leading.
    let pool_feeds = match ctx.options.placement {
        Placement::Pool => watch_pool(&ctx),
        Placement::Virtual => Vec::new(),
    };
    // Set once the first list is in the cache: before, a pod missing from it is not known to be gone.
    let mut listed = false;
    let (queue, receiver) = mpsc::channel::<(Pod, std::time::Instant)>(1024);
    let (done_tx, mut done_rx) = mpsc::channel::<(String, Outcome)>(1024);
    let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..ctx.options.workers.max(1) {
        let (ctx, receiver, done_tx, work) = (
            Arc::clone(&ctx),
            Arc::clone(&receiver),
            done_tx.clone(),
            work.clone(),
        );
        workers.spawn(async move {
            loop {
                let pod = tokio::select! {
                    _ = work.cancelled() => return,
                    pod = async { receiver.lock().await.recv().await } => pod,
                };
                let Some((pod, seen)) = pod else { return };
                let uid = pod.uid().unwrap_or_default();
                let outcome = ctx.schedule(&pod).await;
                if matches!(outcome, Outcome::Bound(_)) {
                    ctx.metrics
                        .scheduler_bind_latency
                        .observe(seen.elapsed().as_secs_f64());
                }
                if done_tx.send((uid, outcome)).await.is_err() {
                    return;
                }
            }
        });
    }
    // Unbound pods by UID; those being scheduled (queued, or in `backlog` until the queue has room);
    // those finished (bound or refused). The loop never waits on the queue: it would stop reading
    // `done_rx`, on which the workers wait (kube-rs issue 926's class of deadlock).
    let mut waiting: HashMap<String, Pod> = HashMap::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    // With the time each pod entered it: bind latency counts the wait for a worker too.
    let mut backlog: VecDeque<(String, std::time::Instant)> = VecDeque::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut retry = tokio::time::interval(ctx.options.retry);
    let mut orphans_tick = tokio::time::interval(Duration::from_millis(500));
    let mut sweep = tokio::time::interval(Duration::from_secs(10));
    let mut sweeping: Option<tokio::task::JoinHandle<()>> = None;
    // Removals of pods whose profile is not ACTIVE: owned by this loop, so they stop with it when the
    // Lease is lost. `removing`: UIDs being removed now; `removed`: removed, until the pod is gone.
    let mut removals: tokio::task::JoinSet<(String, bool)> = tokio::task::JoinSet::new();
    let mut removing: HashSet<String> = HashSet::new();
    let mut removed: HashSet<String> = HashSet::new();
    loop {
        tokio::select! {
            _ = work.cancelled() => break,
            event = events.next() => match event {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => {
                    let uid = pod.uid().unwrap_or_default();
                    if unbound(&pod) && !gated(&pod) && !refused_before(&pod) {
                        let fresh = !finished.contains(&uid) && in_flight.insert(uid.clone());
                        waiting.insert(uid.clone(), pod);
                        if fresh {
                            backlog.push_back((uid, std::time::Instant::now()));
                            feed(&queue, &mut backlog, &waiting, &mut in_flight);
                        }
                    } else {
                        waiting.remove(&uid);
                    }
                }
                Some(Ok(watcher::Event::Delete(pod))) => {
                    let uid = pod.uid().unwrap_or_default();
                    waiting.remove(&uid);
                    finished.remove(&uid);
                    removed.remove(&uid);
                    // Off the loop: a scale-down of many pods must not hold up new ones.
                    let ctx = Arc::clone(&ctx);
                    tokio::spawn(async move { remove_virtual_node_of(&ctx, &pod).await });
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    listed = true;
                    // A re-list may have missed deletions: forget the removed pods no longer there.
                    let present: HashSet<String> = cache.state().iter().filter_map(|p| p.uid()).collect();
                    removed.retain(|uid| present.contains(uid));
                    remove_orphans(&ctx, &cache.state(), &mut removals, &mut removing, &removed);
                }
                Some(Ok(watcher::Event::Init)) => {}
                Some(Err(error)) => tracing::warn!(%error, "watching pods"),
                None => break,
            },
            Some((uid, outcome)) = done_rx.recv() => {
                in_flight.remove(&uid);
                match outcome {
                    Outcome::Bound(_) | Outcome::Refused(_) => {
                        waiting.remove(&uid);
                        finished.insert(uid);
                    }
                    Outcome::Skipped => {}
                }
                feed(&queue, &mut backlog, &waiting, &mut in_flight);
            }
            Some(joined) = removals.join_next(), if !removals.is_empty() => {
                if let Ok((uid, done)) = joined {
                    removing.remove(&uid);
                    if done {
                        removed.insert(uid);
                    }
                }
            }
            _ = orphans_tick.tick(), if listed => {
                // Level-based: whatever the profiles and pods are now, not what changed since last time.
                let pods = cache.state();
                remove_orphans(&ctx, &pods, &mut removals, &mut removing, &removed);
                count_waiting(&ctx, &pods);
                ctx.metrics.scheduler_queue_depth.set(
                    (backlog.len() + queue.max_capacity() - queue.capacity()) as i64,
                );
            }
            _ = retry.tick() => {
                let now = std::time::Instant::now();
                for uid in waiting.keys() {
                    if !finished.contains(uid) && in_flight.insert(uid.clone()) {
                        backlog.push_back((uid.clone(), now));
                    }
                }
                feed(&queue, &mut backlog, &waiting, &mut in_flight);
            }
            _ = sweep.tick() => {
                // Off the loop, one sweep at a time.
                if sweeping.as_ref().is_none_or(|s| s.is_finished()) {
                    let ctx = Arc::clone(&ctx);
                    sweeping = Some(tokio::spawn(async move { sweep_virtual_nodes(&ctx).await }));
                }
            }
        }
    }
    workers.abort_all();
    removals.abort_all();
    for feed in pool_feeds {
        feed.abort();
    }
    *ctx.pool.lock().unwrap_or_else(|e| e.into_inner()) = None;
    if let Some(sweeping) = sweeping {
        sweeping.abort();
    }
}

/// Start the caches pool placement decides from (`bind::PoolCache`): a reflector of the pool's nodes
/// and a watch of every bound, unfinished pod (any scheduler's: they all take room) into the
/// `pool::PoolIndex`. Returns the tasks that feed them.
fn watch_pool(ctx: &Arc<Context>) -> Vec<tokio::task::JoinHandle<()>> {
    let selector = ctx.options.pool_selector.clone().unwrap_or_default();
    let (nodes, writer) = reflector::store::<Node>();
    let cache = Arc::new(bind::PoolCache {
        nodes,
        index: std::sync::Mutex::new(pool::PoolIndex::default()),
    });
    *ctx.pool.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&cache));
    let node_feed = {
        let nodes: Api<Node> = Api::all(ctx.client.clone());
        let stream = watcher(nodes, watcher::Config::default().labels(&selector))
            .default_backoff()
            .reflect(writer);
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::warn!(%error, "watching the pool's nodes");
                }
            }
        })
    };
    let pod_feed = {
        let pods: Api<Pod> = Api::all(ctx.client.clone());
        let config =
            watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
        let stream = watcher(pods, config).default_backoff();
        tokio::spawn(async move {
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
                    Ok(watcher::Event::InitDone) => lock().init_done(),
                    Ok(watcher::Event::Apply(pod)) => {
                        let placed = bind::placed(&pod);
                        lock().apply(&uid(&pod), placed);
                    }
                    Ok(watcher::Event::Delete(pod)) => lock().delete(&uid(&pod)),
                    Err(error) => tracing::warn!(%error, "watching the pods on the pool"),
                }
            }
        })
    };
    vec![node_feed, pod_feed]
}

/// Move pods from the backlog into the workers' queue while it has room. A pod gone from `waiting`
/// meanwhile (bound, deleted, no longer placeable) leaves the backlog and `in_flight`.
fn feed(
    queue: &mpsc::Sender<(Pod, std::time::Instant)>,
    backlog: &mut VecDeque<(String, std::time::Instant)>,
    waiting: &HashMap<String, Pod>,
    in_flight: &mut HashSet<String>,
) {
    while let Some((uid, since)) = backlog.front() {
        let Some(pod) = waiting.get(uid) else {
            in_flight.remove(uid);
            backlog.pop_front();
            continue;
        };
        match queue.try_send((pod.clone(), *since)) {
            Ok(()) => {
                backlog.pop_front();
            }
            Err(_) => return,
        }
    }
}

fn active_profiles(ctx: &Context) -> BTreeSet<String> {
    ctx.snapshot
        .load()
        .profiles()
        .iter()
        .filter(|p| p.status() == ProfileStatus::Active)
        .map(|p| p.name().to_string())
        .collect()
}

/// Every pod that names `fargate-scheduler`, bound or not, in every namespace.
async fn fargate_pods(ctx: &Context) -> Result<Vec<Pod>, kube::Error> {
    let pods: Api<Pod> = Api::all(ctx.client.clone());
    let fields = format!("spec.schedulerName={SCHEDULER_NAME}");
    Ok(pods
        .list(&ListParams::default().fields(&fields))
        .await?
        .items)
}

/// Start the removal of every pod of the cache's snapshot whose profile is not ACTIVE ([`orphans::orphaned`]) and that
/// is neither being removed nor removed already. A removal that fails (an eviction a
/// PodDisruptionBudget refuses now, an apiserver error) is tried again on a later tick.
fn remove_orphans(
    ctx: &Arc<Context>,
    pods: &[Arc<Pod>],
    removals: &mut tokio::task::JoinSet<(String, bool)>,
    removing: &mut HashSet<String>,
    removed: &HashSet<String>,
) {
    let active = active_profiles(ctx);
    for pod in orphans::orphaned(pods.iter().map(|p| p.as_ref()), &active) {
        let Some(uid) = pod.uid() else { continue };
        if removed.contains(&uid) || !removing.insert(uid.clone()) {
            continue;
        }
        let (ctx, pod) = (Arc::clone(ctx), pod.clone());
        removals.spawn(async move {
            let done = remove_pod(&ctx, &pod, &uid).await;
            (uid, done)
        });
    }
}

/// The unbound pods naming `fargate-scheduler` in the cache, by why they wait.
fn count_waiting(ctx: &Context, pods: &[Arc<Pod>]) {
    let (mut unplaced, mut gated_pods, mut refused) = (0i64, 0i64, 0i64);
    for pod in pods {
        if !unbound(pod) {
            continue;
        }
        if gated(pod) {
            gated_pods += 1;
        } else if refused_before(pod) {
            refused += 1;
        } else {
            unplaced += 1;
        }
    }
    let waiting = &ctx.metrics.scheduler_pods_waiting;
    waiting.with_label_values(&["unplaced"]).set(unplaced);
    waiting.with_label_values(&["gated"]).set(gated_pods);
    waiting.with_label_values(&["refused"]).set(refused);
}

/// Delete (or evict, `--evict`) one pod whose profile is not ACTIVE, as EKS deletes the pods of a
/// deleted profile. The UID is a precondition: a pod made again under the same name is not touched.
/// "Already gone" is success.
async fn remove_pod(ctx: &Context, pod: &Pod, uid: &str) -> bool {
    let namespace = pod.namespace().unwrap_or_default();
    let profile = orphans::profile_of(pod).unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &namespace);
    let delete = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let (action, result) = if ctx.options.evict {
        let evict = EvictParams {
            delete_options: Some(delete),
            ..EvictParams::default()
        };
        (
            "evict",
            api.evict(&pod.name_any(), &evict).await.map(|_| ()),
        )
    } else {
        (
            "delete",
            api.delete(&pod.name_any(), &delete).await.map(|_| ()),
        )
    };
    match result {
        Ok(()) => {
            tracing::info!(pod = %pod.name_any(), %namespace, profile, action, "pod of a profile that is not ACTIVE removed");
            ctx.metrics
                .scheduler_pods_removed
                .with_label_values(&[action])
                .inc();
            true
        }
        Err(kube::Error::Api(e)) if e.code == 404 => true,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            // The UID precondition failed: this pod is gone, another has its name.
            true
        }
        Err(kube::Error::Api(e)) if e.code == 429 => {
            // A PodDisruptionBudget does not allow it now: tried again on a later tick.
            tracing::info!(pod = %pod.name_any(), %namespace, profile, "eviction refused for now: {}", e.message);
            ctx.metrics
                .scheduler_removal_errors
                .with_label_values(&[action])
                .inc();
            false
        }
        Err(error) => {
            tracing::warn!(%error, pod = %pod.name_any(), action, "removing a pod of a profile that is not ACTIVE failed");
            ctx.metrics
                .scheduler_removal_errors
                .with_label_values(&[action])
                .inc();
            false
        }
    }
}

/// The virtual node made for `pod`, if any, once the pod is gone.
/// At most [`bind::NODE_REMOVALS`] at once: a mass deletion must not burst the apiserver.
async fn remove_virtual_node_of(ctx: &Context, pod: &Pod) {
    let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
        return;
    };
    let Ok(_slot) = ctx.node_removals.acquire().await else {
        return;
    };
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    if let Ok(Some(n)) = nodes.get_opt(&node).await
        && n.annotations().get(placement::POD_UID_ANNOTATION) == pod.uid().as_ref()
        && nodes.delete(&node, &DeleteParams::default()).await.is_ok()
    {
        ctx.metrics.scheduler_virtual_nodes.dec();
    }
}

/// Delete virtual nodes whose pod is gone, finished, or bound elsewhere (after a crash between
/// making a node and binding, or a missed delete event). Two reads whatever the number of nodes: the
/// nodes, then the pods (listed after the nodes, so a node's pod, made before it, is in the list).
async fn sweep_virtual_nodes(ctx: &Context) {
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let Ok(list) = nodes
        .list(&ListParams::default().labels(&format!("{}=true", placement::VIRTUAL_NODE_LABEL)))
        .await
    else {
        return;
    };
    let pods = if list.items.is_empty() {
        Vec::new()
    } else {
        match fargate_pods(ctx).await {
            Ok(pods) => pods,
            Err(error) => {
                tracing::warn!(%error, "listing pods for the node sweep failed");
                return;
            }
        }
    };
    let by_name: HashMap<String, &Pod> = pods
        .iter()
        .map(|p| {
            (
                format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()),
                p,
            )
        })
        .collect();
    let mut left = 0;
    for node in &list.items {
        let name = node.name_any();
        let pod = placement::virtual_node_owner(node).and_then(|o| by_name.get(o).copied());
        if placement::virtual_node_needed(node, pod) {
            left += 1;
        } else if let Err(error) = nodes.delete(&name, &DeleteParams::default()).await {
            tracing::warn!(%error, node = %name, "removing a virtual node failed");
            left += 1;
        } else {
            tracing::info!(node = %name, "virtual node removed: its pod is gone");
        }
    }
    ctx.metrics.scheduler_virtual_nodes.set(left);
}
