//! The fargate-scheduler: places the pods the webhook sent to Fargate, as EKS's second Fargate
//! component does (docs/eks-behaviour.md §9), and removes the pods of profiles that are no longer
//! ACTIVE. Pure parts: [`sizing`], [`verdict`], [`placement`], [`orphans`], [`claims`], [`pool`],
//! [`backoff`]. I/O: [`bind`] (one pod), [`logging`] (a watch of the logging ConfigMap),
//! [`reconcile`] (one pod, one virtual node), [`listed`] (a cache's first list, for any number of
//! waiters), [`strangers`] (pods of other schedulers on a virtual
//! node, refused as its kubelet would) and [`controller`] (the caches and work queues that
//! run the reconciles). It is level-based (docs/scheduler.md): what it does follows from the pods,
//! nodes and profiles as they are, whatever changes it saw or missed. All of it runs only while this
//! replica holds the scheduler's claim ([`crate::claim`]).

pub mod backoff;
pub mod bind;
pub mod claims;
pub mod controller;
pub mod faults;
pub mod listed;
pub mod logging;
pub mod orphans;
pub mod placement;
pub mod pool;
pub mod reconcile;
pub mod sizing;
pub mod strangers;
pub mod verdict;

use crate::claim::Claim;
use crate::decision::SharedSnapshot;
use crate::metrics::Metrics;
use crate::profile::ProfileStatus;
use bind::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
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
    /// How long a placed pod waits, annotated and Pending, before its node is made and it is bound
    /// (`--provisioning-delay`; EKS takes tens of seconds, docs/eks-behaviour.md §9 "Timing").
    pub provisioning_delay: Duration,
    /// Honour `fargate-webhook.io/inject-fault` on pods (`--fault-injection`).
    pub fault_injection: bool,
    /// Launches a second and burst (`--launch-rate`, `--launch-burst`); `None`: no limit.
    pub launch_rate: Option<(f64, u32)>,
    /// How long one pod's events may take before they are given up ([`bind::EVENT_WAIT`]).
    pub event_wait: Duration,
}

/// Run until `shutdown`: stand by, lead while the claim is ours, stand by again when it is lost.
/// `changes` changes each time `snapshot` is replaced (`ProfileStore::changes`).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    client: Client,
    snapshot: SharedSnapshot,
    changes: watch::Receiver<u64>,
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
    let kubelet_version = match client.apiserver_version().await {
        Ok(info) => placement::kubelet_version(&info.git_version),
        Err(error) => {
            tracing::warn!(%error, "the control plane's version is not known; virtual nodes report a captured one");
            placement::CAPTURED_NODE_INFO.kubelet_version.to_string()
        }
    };
    let options_launches = options
        .launch_rate
        .map(|(rate, burst)| faults::LaunchBucket::new(rate, burst, std::time::Instant::now()));
    let ctx = Arc::new(Context {
        client,
        snapshot,
        options,
        metrics,
        recorder,
        event_slots: Arc::new(tokio::sync::Semaphore::new(bind::EVENT_SLOTS)),
        term: std::sync::Mutex::new(CancellationToken::new()),
        logging,
        pool: std::sync::Mutex::new(None),
        kubelet_version,
        provisioning: std::sync::Mutex::new(std::collections::HashMap::new()),
        attempts: std::sync::Mutex::new(std::collections::HashMap::new()),
        launches: std::sync::Mutex::new(options_launches),
    });
    let logging_watch = {
        let (ctx, stop) = (Arc::clone(&ctx), shutdown.clone());
        tokio::spawn(async move { ctx.logging.watch(ctx.client.clone(), stop).await })
    };
    claim
        .while_held(&shutdown, |lost| {
            let (ctx, changes) = (Arc::clone(&ctx), changes.clone());
            async move {
                tracing::info!(identity = %ctx.options.identity, "leading: scheduling pods");
                ctx.metrics.scheduler_leader.set(1);
                controller::lead(Arc::clone(&ctx), changes, lost).await;
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
                    && c.reason.as_deref().is_some_and(verdict::is_refusal_reason)
            })
        })
}

/// The names of the profiles that are ACTIVE now.
fn active_profiles(ctx: &Context) -> BTreeSet<String> {
    ctx.snapshot
        .load()
        .profiles()
        .iter()
        .filter(|p| p.status() == ProfileStatus::Active)
        .map(|p| p.name().to_string())
        .collect()
}
