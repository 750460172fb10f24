//! The Kubernetes profile store (`--store kubernetes`): profiles are cluster-scoped
//! `FargateProfile` custom resources ([`super::crd`]), so every replica shares them through the
//! API server.
//!
//! # Reads
//! A kube-rs [`watcher`] lists and watches the resources. Every event rebuilds the state (each
//! resource converted with [`profile_from_resource`] and checked with [`profile::validate`]; an
//! invalid one is skipped with an error log and counts as a failed `profiles` reload) and
//! publishes it to the webhook snapshot through `arc-swap`. [`ProfileStore::is_loaded`] (readiness)
//! turns true after the first complete list. Watch restarts (a closed stream, `410 Gone` /
//! "too old resource version", transport errors) are handled by the watcher: it re-watches or
//! re-lists after a short backoff ([`WATCH_RETRY_LONGEST`]), and the re-list replaces the state.
//! It keeps the objects newer than anything it listed (our own writes racing it); when one of
//! them is not in the list at all it may as well have been deleted before the list was read (a
//! deletion the watch missed), so a list with its own resourceVersion decides (`confirm_relist`).
//! A resource that does not even decode (a newer CRD version, an object written around the
//! schema) is read through kube's `DeserializeGuard`: it is skipped and logged likewise instead of
//! failing the whole list, and its name stays taken.
//!
//! Versions of an object learnt from our own writes and from the watch are merged by
//! `resourceVersion` (compared as integers, which they are on every API server we know; when they
//! do not parse, the latest arrival wins), so a late watch event never rolls back a state an
//! [`update`](ProfileStore::update) already returned.
//!
//! # What a resource means
//! - `status.status` is the lifecycle; only ACTIVE profiles match pods.
//! - A resource without status that this store created carries the status it was created with in
//!   the annotation [`INITIAL_STATUS_ANNOTATION`] (the status subresource cannot be set on create),
//!   so it reads as CREATING (say) from the first watch event, never as ACTIVE by accident.
//! - A resource without status and without that annotation was written by someone else
//!   (`kubectl apply`, GitOps): it is ACTIVE at once, as an entry without `status` in a
//!   hand-written profiles file is; `createdAt` is its `creationTimestamp`. The store then writes
//!   that status (`status: ACTIVE`, with the resourceVersion it saw, so a concurrent writer wins)
//!   so that `kubectl get fp` shows it; this changes nothing in the state.
//! - A resource being deleted (`deletionTimestamp`) reads as DELETING while it still carries the
//!   finalizer [`FINALIZER`], and as gone once it does not.
//!
//! # Writes
//! `update(change)` is optimistic and serialised across replicas by one coordination object: the
//! ConfigMap `options.lock_name` in `options.namespace` (writers of one process also queue on a
//! local mutex, so they never conflict with each other). Its `resourceVersion` is bumped by every
//! committed change, and its data holds the idempotency tokens and the last commit's pending
//! writes (a small write-ahead journal):
//!
//! 1. Read the lock (create it when missing).
//! 2. If it holds a pending commit (another writer committed and may not have finished, or
//!    crashed), list the resources, check the lock did not move, and apply those writes first
//!    ("roll forward"). Any conflict restarts the attempt.
//! 3. List the resources (a consistent read), build the state (profiles + the lock's tokens),
//!    run the change on it, and compute the diff: created, changed (tags, status) and removed
//!    profiles. Changes to the immutable part of a profile, or a name that cannot be a Kubernetes
//!    object name, are refused here.
//! 4. Commit: write the lock with the new tokens and the diff as its pending writes, conditional
//!    on the `resourceVersion` read in 1. A `409 Conflict` means another replica committed first:
//!    restart from 1, so the change runs again on the fresh state (bounded number of attempts).
//! 5. Apply the diff: create (`POST`, with the finalizer and the initial-status annotation) then
//!    write the status subresource; `PUT` the object for a tag change; `PUT` the status subresource
//!    for a lifecycle change; `DELETE` (preconditions uid + resourceVersion) then drop the
//!    finalizer for a removal. Every write is conditional on the resourceVersion we read, so a
//!    write never lands on a state it did not see. On a conflict the store re-reads the object and
//!    the lock: when the lock moved, the next committer has already rolled this commit forward
//!    and the store stops; otherwise it re-applies what is still missing.
//! 6. Clear the pending writes (conditional: a conflict means a later commit replaced them) and
//!    publish the new state to the webhook snapshot before returning.
//!
//! Consequences:
//! - The change always runs on a state that includes every earlier commit, and two commits can
//!   never be based on the same lock version: one CREATING/DELETING at a time, the profile quota,
//!   name uniqueness and token reuse hold across replicas exactly as in one process.
//! - Name uniqueness is also the API server's: a `POST` answered `409 AlreadyExists` by an object
//!   that is not ours (created by `kubectl` meanwhile) drops the create from the journal and runs
//!   the change again on the fresh state, where the caller's own rule sees the duplicate.
//! - Writes that bypass the store (`kubectl`) are not subject to those cluster-wide rules; they
//!   get the schema's and CEL rules' validation, and the store's per-profile checks when read.
//! - A replica that dies between commit and apply leaves its writes in the journal; the next
//!   update from any replica completes them before running its own change.
//!
//! Deletion: the API's DeleteFargateProfile sets DELETING (a status write) and later removes the
//! profile (`DELETE`, then the finalizer is dropped so the object goes away). A `kubectl delete`
//! of a resource holding the finalizer reads as DELETING at once and the store drops the
//! finalizer right away: deletes made with kubectl take effect immediately, like removing an
//! entry from a profiles file.

use super::crd::FargateProfile as ProfileResource;
use super::{BoxFuture, Change, ProfileStore, Publisher, UpdateError, Updated};
use crate::claim::Claim;
use crate::decision::SharedSnapshot;
use crate::metrics::Metrics;
use crate::profile::{self, Limits, ProfileState};
use ::kube::api::Api;
use ::kube::core::DeserializeGuard;
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event};
use ::kube::{Client, ResourceExt};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Finalizer on the resources the store creates.
pub const FINALIZER: &str = "fargate-webhook.io/lifecycle";
/// The status a resource was created with, until its status subresource is written (JSON).
pub const INITIAL_STATUS_ANNOTATION: &str = "fargate-webhook.io/initial-status";
/// Default name of the coordination ConfigMap.
pub const DEFAULT_LOCK_NAME: &str = "fargate-webhook-profiles-lock";
/// Field manager of every write.
pub const FIELD_MANAGER: &str = "fargate-webhook";
/// Data key of the idempotency tokens in the coordination ConfigMap (JSON).
pub const TOKENS_KEY: &str = "clientRequestTokens";
/// Data key of the last commit's pending writes in the coordination ConfigMap (JSON).
pub const PENDING_KEY: &str = "pending";
/// Data key of the journalled writes the apiserver refused for good (JSON list, newest last): taken
/// out of the journal so that writes go on, kept here for an operator to read.
pub const QUARANTINE_KEY: &str = "quarantined";
/// How many quarantined writes the ConfigMap keeps (the oldest go first).
pub const QUARANTINE_KEPT: usize = 20;

const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "fargate-webhook");
/// Writes tried for one operation before giving up (conflicts and transient errors included).
const MAX_OP_STEPS: usize = 8;

mod commit;
mod housekeeping;
mod journal;
mod observed;
mod resource;
#[cfg(test)]
mod tests;

pub use journal::{Op, Pending};
use observed::{Listed, Observed};
pub use resource::profile_from_resource;

/// The first pause of the profile watch after an error.
pub const WATCH_RETRY_FIRST: Duration = Duration::from_millis(200);
/// The longest pause of the profile watch between two attempts.
pub const WATCH_RETRY_LONGEST: Duration = Duration::from_secs(4);

/// The profile watch's backoff after an error: from [`WATCH_RETRY_FIRST`], doubling, jittered, up to
/// [`WATCH_RETRY_LONGEST`], reset by any event. kube-runtime's default (client-go's: up to 30 s,
/// reset only after 2 minutes without an error) left a replica serving a stale profile list for
/// up to 30 s after an apiserver restart; one watch per replica on a handful of objects costs a
/// recovering apiserver nothing at this rate (README, "Several replicas", watch retries).
fn watch_backoff() -> watcher::ExponentialBackoff {
    backon::ExponentialBuilder::default()
        .with_min_delay(WATCH_RETRY_FIRST)
        .with_max_delay(WATCH_RETRY_LONGEST)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .into()
}

/// Settings of the Kubernetes store.
#[derive(Clone, Debug)]
pub struct KubeStoreOptions {
    /// Namespace of the coordination ConfigMap (the release namespace: `POD_NAMESPACE`). Empty:
    /// the client's default namespace (in a pod, its own).
    pub namespace: String,
    /// Name of the coordination ConfigMap.
    pub lock_name: String,
    /// Attempts of one update (each runs the change on a fresh state) before it fails.
    pub max_attempts: u32,
    /// First pause between attempts; doubled up to 1 s, with jitter.
    pub retry_backoff: Duration,
    /// The longest one update may take, all attempts included. The kube client sets no read
    /// timeout, and an update holds this replica's writer lock: a request hanging on a dead
    /// connection would otherwise stop every later write here (on the claim holder, the lifecycle
    /// steps, and with them every create and delete of the cluster). An update cut off is like a
    /// crash of its commit: a journal it wrote is rolled forward by the next one. The list that
    /// confirms a relist gets the same bound.
    pub commit_deadline: Duration,
    /// Write `status: ACTIVE` on resources created without status (kubectl), and drop the
    /// finalizer of resources deleted with kubectl. Needs write access; turn off on replicas
    /// that only read.
    pub housekeeping: bool,
    /// The claim under which housekeeping writes, so that one replica does it (README, "Several
    /// replicas"). `None`: this process is the only writer.
    pub claim: Option<Claim>,
}

impl KubeStoreOptions {
    pub fn new(namespace: impl Into<String>) -> Self {
        KubeStoreOptions {
            namespace: namespace.into(),
            lock_name: DEFAULT_LOCK_NAME.into(),
            max_attempts: 10,
            retry_backoff: Duration::from_millis(20),
            commit_deadline: Duration::from_secs(30),
            housekeeping: true,
            claim: None,
        }
    }
}

/// The Kubernetes store. Build it with [`KubeStore::new`], then [`KubeStore::start`] the watch.
pub struct KubeStore {
    profiles: Api<ProfileResource>,
    /// The same resources, read so that one undecodable object does not fail a whole list.
    guarded: Api<DeserializeGuard<ProfileResource>>,
    locks: Api<ConfigMap>,
    options: KubeStoreOptions,
    limits: Limits,
    published: Publisher,
    observed: Mutex<Observed>,
    housekeeping: AtomicBool,
    /// Under a claim: the current term has taken over housekeeping (its first pass, over every
    /// resource, is done or under way); until then a change seen does not start a write, which the
    /// first pass would start again.
    housekeeping_term: AtomicBool,
    /// Lists confirming a relist ([`KubeStore::confirm_relist`]).
    confirm: Confirm,
    /// Serialises this process's writers: they would only conflict with each other on the lock.
    writer: tokio::sync::Mutex<()>,
    /// Events on FargateProfile resources (the claim holder's).
    recorder: ::kube::runtime::events::Recorder,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("namespace", &self.options.namespace)
            .field("lock_name", &self.options.lock_name)
            .finish()
    }
}

#[derive(Default)]
struct Confirm {
    /// Requests made so far.
    requested: AtomicU64,
    /// A task is listing.
    running: AtomicBool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Watch,
    Update,
}

impl KubeStore {
    /// A store reading and writing FargateProfile resources through `client`. Nothing is read
    /// until [`start`](Self::start); updates work at once.
    pub fn new(
        client: Client,
        snapshot: SharedSnapshot,
        metrics: Arc<Metrics>,
        limits: Limits,
        mut options: KubeStoreOptions,
    ) -> Arc<Self> {
        if options.namespace.is_empty() {
            options.namespace = client.default_namespace().to_owned();
        }
        let recorder = ::kube::runtime::events::Recorder::new(
            client.clone(),
            ::kube::runtime::events::Reporter {
                controller: "fargate-webhook".into(),
                instance: None,
            },
        );
        Arc::new(KubeStore {
            recorder,
            profiles: Api::all(client.clone()),
            guarded: Api::all(client.clone()),
            locks: Api::namespaced(client, &options.namespace),
            housekeeping: AtomicBool::new(options.housekeeping),
            housekeeping_term: AtomicBool::new(false),
            confirm: Confirm::default(),
            options,
            limits,
            published: Publisher::new(snapshot, metrics),
            observed: Mutex::new(Observed::default()),
            writer: tokio::sync::Mutex::new(()),
        })
    }

    /// Start watching the resources (in a task, until aborted). Call inside a Tokio runtime.
    pub fn start(self: &Arc<Self>) -> JoinHandle<()> {
        let store = Arc::clone(self);
        tokio::spawn(async move { store.run().await })
    }

    /// Watch the resources and publish every change; runs until the task is aborted.
    pub async fn run(self: Arc<Self>) {
        tokio::join!(self.watch(), self.housekeep_each_term());
    }

    async fn watch(self: &Arc<Self>) {
        let stream = watcher::watcher(self.guarded.clone(), watcher::Config::default())
            .backoff(watch_backoff());
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => self.on_event(event),
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    tracing::info!("FargateProfile watch expired (410 Gone); listing again");
                    self.published
                        .metrics()
                        .store_watch_restarts
                        .with_label_values(&["expired"])
                        .inc();
                }
                Err(error) => {
                    tracing::warn!(%error, "FargateProfile watch failed; retrying with backoff");
                    self.published
                        .metrics()
                        .store_watch_restarts
                        .with_label_values(&["error"])
                        .inc();
                }
            }
        }
    }

    /// After a relist that kept objects it did not hold: list with a resourceVersion and forget
    /// those the list says are gone (a deletion missed while the watch was down). The watcher's
    /// events do not carry the resourceVersion of its list, so this one is read on purpose.
    /// One task at a time, which lists again until a list read after the latest request went in.
    fn confirm_relist(self: &Arc<Self>) {
        self.confirm.requested.fetch_add(1, Ordering::SeqCst);
        if self.confirm.running.swap(true, Ordering::SeqCst) {
            return; // the running task sees the new request
        }
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let mut pause = WATCH_RETRY_FIRST;
            loop {
                let wanted = store.confirm.requested.load(Ordering::SeqCst);
                // Bounded like an update: a list hanging on a dead connection would keep `running`
                // set, and no later relist would be confirmed.
                let deadline = store.options.commit_deadline;
                let listed = match tokio::time::timeout(deadline, store.list()).await {
                    Ok(listed) => listed,
                    Err(_) => Err(commit::AttemptError::Retry(format!(
                        "the list did not answer within {deadline:?}"
                    ))),
                };
                match listed {
                    Ok((listed, version)) => {
                        let mut observed = store.lock_observed();
                        observed.absorb_list(&listed.objects, version);
                        store.publish(&mut observed, Source::Watch);
                        pause = WATCH_RETRY_FIRST;
                        if store.confirm.requested.load(Ordering::SeqCst) == wanted {
                            store.confirm.running.store(false, Ordering::SeqCst);
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(
                            ?error,
                            "listing FargateProfiles after a relist failed; retrying"
                        );
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(WATCH_RETRY_LONGEST);
                    }
                }
            }
        });
    }

    fn lock_observed(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.observed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn on_event(self: &Arc<Self>, event: Event<DeserializeGuard<ProfileResource>>) {
        let mut observed = self.lock_observed();
        match event {
            Event::Init => observed.init = Some(Listed::default()),
            Event::InitApply(guard) => observed.init.get_or_insert_default().add(guard),
            Event::InitDone => {
                let listed = observed.init.take().unwrap_or_default();
                if observed.replace_all(listed) {
                    self.confirm_relist();
                }
                tracing::info!(
                    profiles = observed.objects.len(),
                    "FargateProfile resources listed"
                );
                self.publish(&mut observed, Source::Watch);
                // Readiness: the first complete list is published.
                self.published.mark_loaded();
            }
            Event::Apply(guard) => {
                observed.apply(guard);
                self.publish(&mut observed, Source::Watch);
            }
            Event::Delete(guard) => {
                observed.delete(&guard);
                self.publish(&mut observed, Source::Watch);
            }
        }
        if self.is_loaded() && observed.init.is_none() {
            self.housekeep(&mut observed);
        }
    }

    /// Rebuild the state from what we observed and publish it (webhook snapshot, metrics,
    /// subscribers). Called with the observed lock held, so publications are ordered. Watch
    /// events count as `profiles` reloads (failed when a resource was skipped as invalid).
    fn publish(&self, observed: &mut Observed, source: Source) -> Arc<ProfileState> {
        let mut profiles = Vec::with_capacity(observed.objects.len());
        let mut all_valid = observed.broken.is_empty();
        let mut newly_broken = Vec::new();
        for (name, invalid) in &observed.broken {
            let key = resource::version_key(name, &invalid.metadata);
            if !observed.reported.contains(&key) {
                newly_broken.push(key);
                tracing::error!(profile = %name, error = %invalid.error, "FargateProfile resource cannot be read; ignoring it");
            }
        }
        observed.reported.extend(newly_broken);
        for obj in observed.objects.values() {
            let Some(profile) = profile_from_resource(obj) else {
                continue;
            };
            match profile::validate(&profile, &self.limits) {
                Ok(()) => profiles.push(profile),
                Err(rule) => {
                    all_valid = false;
                    let key = resource::version_key(&obj.name_any(), &obj.metadata);
                    if observed.reported.insert(key) {
                        tracing::error!(
                            profile = %obj.name_any(),
                            %rule,
                            "FargateProfile resource is invalid; ignoring it"
                        );
                    }
                }
            }
        }
        // Kept per resourceVersion on every replica: bounded (housekeeping's sets too, which are
        // small except on a holder or a former one).
        observed.prune();
        let state = Arc::new(ProfileState {
            fargate_profiles: profiles,
            client_request_tokens: observed.tokens.clone(),
        });
        self.published.publish(Arc::clone(&state));
        if source == Source::Watch {
            self.published.metrics().reload("profiles", all_valid);
        }
        state
    }
}

impl ProfileStore for KubeStore {
    fn current(&self) -> Arc<ProfileState> {
        self.published.current()
    }

    /// From every resource read, valid under the current limits or not.
    fn in_transition(&self) -> Vec<crate::profile::FargateProfile> {
        let observed = self.lock_observed();
        observed
            .objects
            .values()
            .filter_map(profile_from_resource)
            .filter(|p| p.status.in_transition())
            .collect()
    }

    fn update<'a>(&'a self, mut change: Change<'a>) -> BoxFuture<'a, Result<Updated, UpdateError>> {
        Box::pin(async move { self.update_with_retries(&mut change).await })
    }

    /// The first complete list of the resources has been published.
    fn is_loaded(&self) -> bool {
        self.published.is_loaded()
    }

    fn wait_loaded(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.published.wait_loaded())
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }
}
