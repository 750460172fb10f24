//! `scheduler`: the fargate-scheduler with its ops port, run until SIGTERM or SIGINT.

use super::signals::Signals;
use super::store::{Opened, StoreAccess, lease_claim, open_store, replica_identity};
use super::{bind, readiness};
use crate::cli::{PlacementKind, SchedulerArgs};
use crate::decision::{SharedSnapshot, Snapshot};
use crate::metrics::Metrics;
use crate::profile::Limits;
use crate::scheduler::{Placement, SchedulerOptions};
use crate::server::http::{self, Port, PortLimits};
use anyhow::Context;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// Run the fargate-scheduler until SIGTERM or SIGINT.
pub async fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut signals = Signals::new();
    let options = options(&args)?;
    let metrics = Arc::new(Metrics::for_process(crate::metrics::Process::Scheduler));
    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let Opened { store, watcher, .. } = open_store(
        args.store,
        StoreAccess::ReadOnly,
        &args.state_dir,
        &args.lock_name,
        Limits::default(),
        &snapshot,
        &metrics,
    )
    .await?;
    let client = client().await?;
    let ops_listener = bind(args.metrics_addr, "metrics").await?;
    let ops_addr = ops_listener.local_addr()?;
    let stop = CancellationToken::new();
    let ready = {
        let store = Arc::clone(&store);
        readiness(stop.clone(), move || store.is_loaded())
    };
    let ops = tokio::spawn(http::serve(
        ops_listener,
        None,
        crate::server::ops_handler(Arc::clone(&metrics), ready),
        stop.clone(),
        PortLimits::default(),
        Port {
            name: "ops",
            metrics: Arc::clone(&metrics),
        },
    ));
    announce!("fargate-webhook: scheduler ops http://{ops_addr} (/healthz /readyz /metrics)");
    tokio::select! {
        _ = store.wait_loaded() => {}
        _ = signals.recv() => {
            stop.cancel();
            let _ = ops.await;
            return Ok(());
        }
    }
    let (claim, campaign) = lease_claim(
        &client,
        &args.lease_name,
        args.lease_duration,
        &options.identity,
        &stop,
    )?;
    let running = tokio::spawn(crate::scheduler::run(
        client,
        snapshot,
        store.changes(),
        Arc::clone(&metrics),
        options,
        claim,
        stop.clone(),
    ));
    signals.recv().await;
    tracing::info!("shutting down the scheduler");
    stop.cancel();
    let _ = running.await;
    let _ = campaign.await;
    let _ = ops.await;
    watcher.abort();
    Ok(())
}

/// The scheduler's options from its flags; `--placement pool` needs a pool to place on.
fn options(args: &SchedulerArgs) -> anyhow::Result<SchedulerOptions> {
    let placement = match args.placement {
        PlacementKind::Virtual => Placement::Virtual,
        PlacementKind::Pool => Placement::Pool,
    };
    if placement == Placement::Pool && args.pool_selector.as_deref().is_none_or(str::is_empty) {
        anyhow::bail!(
            "--placement pool needs --pool-selector (a label selector of the pool's nodes)"
        );
    }
    Ok(SchedulerOptions {
        placement,
        pool_selector: args.pool_selector.clone(),
        region: args.region.clone(),
        evict: args.evict,
        identity: args.identity.clone().unwrap_or_else(replica_identity),
        workers: args.workers as usize,
        retry: args.retry_interval,
        provisioning_delay: args.provisioning_delay,
        fault_injection: args.fault_injection,
        launch_rate: (args.launch_rate > 0.0).then_some((args.launch_rate, args.launch_burst)),
        event_wait: crate::scheduler::bind::EVENT_WAIT,
    })
}

/// The scheduler's client, without client-side retries: the scheduler retries on its own terms,
/// and kube's default retry of a 429 (an eviction a PodDisruptionBudget refuses) would hold a
/// worker for minutes.
async fn client() -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::infer()
        .await
        .context("finding the Kubernetes API (in-cluster service account or kubeconfig)")?;
    config.default_retry = false;
    kube::Client::try_from(config).context("connecting to the Kubernetes API")
}
