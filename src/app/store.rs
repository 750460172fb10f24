//! The profile store `serve` and `scheduler` read, and the Lease claims of their one writer.

use crate::claim::Claim;
use crate::claim::lease::Elector;
use crate::cli::StoreKind;
use crate::decision::SharedSnapshot;
use crate::metrics::Metrics;
use crate::profile::Limits;
use crate::store::ProfileStore;
use crate::store::file::FileStore;
use crate::store::kubernetes::{KubeStore, KubeStoreOptions};
use anyhow::Context;
use k8s_openapi::api::coordination::v1::Lease;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Whether a process may write FargateProfile resources besides reading them.
pub(super) enum StoreAccess<'a> {
    /// `serve`: the API writes, and the background writers (lifecycle steps, housekeeping of
    /// resources made with kubectl) write under the claim of [`Writers`].
    ReadWrite(Writers<'a>),
    /// `scheduler`: reads only (its ClusterRole grants no writes), so no housekeeping.
    ReadOnly,
}

/// How `serve` replicas elect their one background writer (Kubernetes store; with the file store
/// the claim is local).
pub(super) struct Writers<'a> {
    pub(super) lease_name: &'a str,
    pub(super) lease_duration: Duration,
    pub(super) identity: String,
    pub(super) shutdown: &'a CancellationToken,
}

/// What [`open_store`] opened.
pub(super) struct Opened {
    pub(super) store: Arc<dyn ProfileStore>,
    /// The task that keeps the store current.
    pub(super) watcher: JoinHandle<()>,
    /// The background writers' claim (read-write access only) and its Lease campaign.
    pub(super) claim: Option<(Claim, Option<JoinHandle<()>>)>,
}

/// The profile store `serve` and `scheduler` read, publishing into `snapshot`.
pub(super) async fn open_store(
    kind: StoreKind,
    access: StoreAccess<'_>,
    state_dir: &std::path::Path,
    lock_name: &str,
    limits: Limits,
    snapshot: &SharedSnapshot,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Opened> {
    Ok(match kind {
        StoreKind::File => {
            let store =
                FileStore::open(state_dir, limits, Arc::clone(snapshot), Arc::clone(metrics))
                    .with_context(|| {
                        format!("opening the state directory {}", state_dir.display())
                    })?;
            let watcher = store.watch().context("watching the state directory")?;
            let claim = match access {
                StoreAccess::ReadWrite(writers) => Some((Claim::local(writers.shutdown), None)),
                StoreAccess::ReadOnly => None,
            };
            Opened {
                store,
                watcher,
                claim,
            }
        }
        StoreKind::Kubernetes => {
            let client = kube::Client::try_default().await.context(
                "connecting to the Kubernetes API (in-cluster service account or kubeconfig)",
            )?;
            // Empty: the client's default namespace (in a pod, its own).
            let namespace = std::env::var("POD_NAMESPACE").unwrap_or_default();
            let mut options = KubeStoreOptions::new(namespace);
            options.lock_name = lock_name.to_string();
            let claim = match access {
                StoreAccess::ReadWrite(writers) => {
                    let (claim, campaign) = lease_claim(
                        &client,
                        writers.lease_name,
                        writers.lease_duration,
                        &writers.identity,
                        writers.shutdown,
                    )?;
                    Some((claim, Some(campaign)))
                }
                StoreAccess::ReadOnly => None,
            };
            options.housekeeping = claim.is_some();
            options.claim = claim.as_ref().map(|(claim, _)| claim.clone());
            let store = KubeStore::new(
                client,
                Arc::clone(snapshot),
                Arc::clone(metrics),
                limits,
                options,
            );
            let watcher = store.start();
            Opened {
                store,
                watcher,
                claim,
            }
        }
    })
}

/// This replica's name in Leases: `POD_NAME`, else the host name and process id.
pub(super) fn replica_identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// Campaign for the Lease `name` (in `POD_NAMESPACE`, else the client's namespace) until `shutdown`.
pub(super) fn lease_claim(
    client: &kube::Client,
    name: &str,
    duration: Duration,
    identity: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Claim, JoinHandle<()>)> {
    anyhow::ensure!(
        duration >= Duration::from_secs(1),
        "--lease-duration must be at least 1s (a Lease counts whole seconds)"
    );
    let leases: kube::Api<Lease> = match std::env::var("POD_NAMESPACE") {
        Ok(namespace) if !namespace.is_empty() => kube::Api::namespaced(client.clone(), &namespace),
        _ => kube::Api::default_namespaced(client.clone()),
    };
    let elector = Elector::new(leases, name, identity, duration);
    Ok(Claim::lease(elector, shutdown.clone()))
}
