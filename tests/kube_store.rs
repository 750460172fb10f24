//! The Kubernetes store against kube-rs's mocked API service (`tower_test::mock::pair`), no cluster:
//!
//! - one scripted scenario answers the exact requests the watcher makes with wire-format JSON
//!   (list, watch event stream, `410 Expired` ERROR event, re-list);
//! - the others run against a small in-memory API server behind the same mock (resourceVersions,
//!   optimistic concurrency with 409 Conflict, AlreadyExists, finalizers, deletion, watch history
//!   with compaction, and the CRD's CEL rules evaluated with kube's client-side CEL validator).
//!
//! The fake API server is `support::fake_kube`.
//!
//! This file holds what the groups share; the tests are in `tests/kube_store/`, one file per
//! concept: reads (list and watch), writes, the coordination ConfigMap, a journal left behind, and the
//! matchConditions writer that reads the store.

#[path = "kube_store/coordination.rs"]
mod coordination;
#[path = "kube_store/journal.rs"]
mod journal;
#[path = "kube_store/match_conditions.rs"]
mod match_conditions;
#[path = "kube_store/reads.rs"]
mod reads;
#[allow(dead_code)] // each test binary uses only part of the library
mod support;
#[path = "kube_store/writes.rs"]
mod writes;

use fargate_webhook::decision::{SharedSnapshot, Snapshot};
use fargate_webhook::metrics::Metrics;
use fargate_webhook::profile::ProfileState;
use fargate_webhook::profile::{FargateProfile, Limits, ProfileStatus, TokenRecord};
use fargate_webhook::store::kubernetes::{KubeStore, KubeStoreOptions};
use fargate_webhook::store::{BoxFuture, ProfileStore, UpdateError, update_or_refuse};
use http::Method;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::fake_kube::{Logged, NAMESPACE, ROLE};
use support::{ProfileBuilder, SUBNET_A};

/// How long the store gets to catch up with the fake API server.
const CAP: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------------
// Helpers.

struct Replica {
    store: Arc<KubeStore>,
    snapshot: SharedSnapshot,
    metrics: Arc<Metrics>,
}

fn replica(client: kube::Client) -> Replica {
    replica_with(client, |_| {})
}

/// A replica whose store options `adjust` changes (after the tests' short retry backoff).
fn replica_with(client: kube::Client, adjust: impl FnOnce(&mut KubeStoreOptions)) -> Replica {
    let snapshot: SharedSnapshot = Arc::new(arc_swap::ArcSwap::from_pointee(Snapshot::default()));
    let metrics = Arc::new(Metrics::new());
    let mut options = KubeStoreOptions::new(NAMESPACE);
    options.retry_backoff = Duration::from_millis(5);
    adjust(&mut options);
    let store = KubeStore::new(
        client,
        Arc::clone(&snapshot),
        Arc::clone(&metrics),
        Limits::default(),
        options,
    );
    Replica {
        store,
        snapshot,
        metrics,
    }
}

impl Replica {
    fn names(&self) -> Vec<String> {
        self.snapshot
            .load()
            .profiles()
            .iter()
            .map(|p| p.profile.fargate_profile_name.clone())
            .collect()
    }

    fn status_of(&self, name: &str) -> Option<ProfileStatus> {
        self.snapshot.load().get(name).map(|p| p.profile.status)
    }

    fn reloads(&self, result: &str) -> u64 {
        let text = String::from_utf8(self.metrics.render()).unwrap();
        text.lines()
            .find(|l| {
                l.starts_with("fargate_webhook_reloads_total")
                    && l.contains("source=\"profiles\"")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

/// Why a test change did not commit: it refused (its own reason), or the store failed.
#[derive(Debug)]
enum Failed {
    Refused(String),
    Store(UpdateError),
}

fn refused(failed: Failed) -> String {
    match failed {
        Failed::Refused(reason) => reason,
        Failed::Store(error) => panic!("store error: {error}"),
    }
}

/// Run a change the way the API does: `Err(reason)` aborts it, and the reason comes back.
trait RunChange {
    fn apply_change<'a>(
        &'a self,
        change: impl FnMut(&mut ProfileState) -> Result<(), String> + Send + 'a,
    ) -> BoxFuture<'a, Result<Arc<ProfileState>, Failed>>;
}

impl<S: ProfileStore + ?Sized> RunChange for S {
    fn apply_change<'a>(
        &'a self,
        change: impl FnMut(&mut ProfileState) -> Result<(), String> + Send + 'a,
    ) -> BoxFuture<'a, Result<Arc<ProfileState>, Failed>> {
        Box::pin(async move {
            match update_or_refuse(self, change).await {
                Ok(result) => result.map_err(|reason| Failed::Refused(reason.unwrap_or_default())),
                Err(error) => Err(Failed::Store(error)),
            }
        })
    }
}

fn eks_profile(name: &str, status: ProfileStatus) -> FargateProfile {
    ProfileBuilder::new(name)
        .arn(&format!(
            "arn:aws:eks:us-east-1:123456789012:fargateprofile/fargate/{name}/0000"
        ))
        .cluster("fargate")
        .created_at(1_767_323_045.123)
        .role(ROLE)
        .subnets(&[SUBNET_A])
        .namespace(&format!("ns-{name}"))
        .label("app", "web")
        .status(status)
        .build()
}

/// What the EKS API's CreateFargateProfile does inside the store: refuse a duplicate name and a
/// create while another profile is CREATING or DELETING, then add the profile and its token.
fn create_change(
    profile: FargateProfile,
    token: Option<&str>,
    runs: Arc<AtomicUsize>,
    meet: Option<Arc<AtomicUsize>>,
) -> impl FnMut(&mut ProfileState) -> Result<(), String> + Send + 'static {
    let token = token.map(str::to_owned);
    move |state: &mut ProfileState| {
        if runs.fetch_add(1, Ordering::SeqCst) == 0
            && let Some(meet) = &meet
        {
            // Both replicas read the same state before either commits.
            meet.fetch_add(1, Ordering::SeqCst);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while meet.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        let name = &profile.fargate_profile_name;
        if state
            .fargate_profiles
            .iter()
            .any(|p| &p.fargate_profile_name == name)
        {
            return Err(format!("duplicate {name}"));
        }
        if let Some(busy) = state
            .fargate_profiles
            .iter()
            .find(|p| matches!(p.status, ProfileStatus::Creating | ProfileStatus::Deleting))
        {
            return Err(format!("busy {}", busy.fargate_profile_name));
        }
        state.fargate_profiles.push(profile.clone());
        if let Some(token) = &token {
            state.client_request_tokens.insert(
                token.clone(),
                TokenRecord {
                    fargate_profile_name: name.clone(),
                    fargate_profile_arn: profile.fargate_profile_arn.clone().unwrap(),
                    request_digest: "digest".into(),
                },
            );
        }
        Ok(())
    }
}

fn set_status(
    name: &'static str,
    status: ProfileStatus,
) -> impl FnMut(&mut ProfileState) -> Result<(), String> + Send + 'static {
    move |state: &mut ProfileState| {
        let profile = state
            .fargate_profiles
            .iter_mut()
            .find(|p| p.fargate_profile_name == name)
            .ok_or_else(|| format!("missing {name}"))?;
        profile.status = status;
        Ok(())
    }
}

/// Run an update in its own task (so that two replicas' changes run on two threads at once).
fn spawn_update(
    store: &Arc<KubeStore>,
    change: impl FnMut(&mut ProfileState) -> Result<(), String> + Send + 'static,
) -> tokio::task::JoinHandle<Result<Arc<ProfileState>, Failed>> {
    let store = Arc::clone(store);
    tokio::spawn(async move { store.apply_change(change).await })
}

fn requests<'l>(log: &'l [Logged], method: Method, path: &str) -> Vec<&'l Logged> {
    log.iter()
        .filter(|l| l.method == method && l.path == path)
        .collect()
}
