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
//! re-lists with its default backoff, and the re-list replaces the state. A resource that does
//! not even decode (a newer CRD version, an object written around the schema) is read through
//! kube's `DeserializeGuard`: it is skipped and logged likewise instead of failing the whole list,
//! and its name stays taken.
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

use super::crd::{
    self, FargateProfile as ProfileResource, FargateProfileSpec, FargateProfileStatus,
};
use super::{
    BoxFuture, Change, ProfileStore, Publisher, Step as ChangeStep, UpdateError, Updated,
    Violation, check_change,
};
use crate::decision::SharedSnapshot;
use crate::ops::metrics::Metrics;
use crate::profile::{self, FargateProfile, Limits, ProfileState, ProfileStatus, TokenRecord};
use ::kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use ::kube::core::DeserializeGuard;
use ::kube::core::error_boundary::InvalidObject;
use ::kube::core::params::Preconditions;
use ::kube::runtime::WatchStreamExt;
use ::kube::runtime::watcher::{self, Event};
use ::kube::{Client, ResourceExt};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
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

const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "fargate-webhook");
/// Writes tried for one operation before giving up (conflicts and transient errors included).
const MAX_OP_STEPS: usize = 8;

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
    /// Write `status: ACTIVE` on resources created without status (kubectl), and drop the
    /// finalizer of resources deleted with kubectl. Needs write access; turn off on replicas
    /// that only read.
    pub housekeeping: bool,
}

impl KubeStoreOptions {
    pub fn new(namespace: impl Into<String>) -> Self {
        KubeStoreOptions {
            namespace: namespace.into(),
            lock_name: DEFAULT_LOCK_NAME.into(),
            max_attempts: 10,
            retry_backoff: Duration::from_millis(20),
            housekeeping: true,
        }
    }
}

/// One write of a commit, as journaled in the coordination ConfigMap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Op {
    /// Create the resource and write its status.
    #[serde(rename_all = "camelCase")]
    Create {
        name: String,
        spec: FargateProfileSpec,
        status: FargateProfileStatus,
    },
    /// Change the tags and/or the status of the resource with this uid.
    #[serde(rename_all = "camelCase")]
    Update {
        name: String,
        uid: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tags: Option<BTreeMap<String, String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<FargateProfileStatus>,
    },
    /// Delete the resource with this uid and drop its finalizer.
    #[serde(rename_all = "camelCase")]
    Remove { name: String, uid: String },
}

impl Op {
    pub fn name(&self) -> &str {
        match self {
            Op::Create { name, .. } | Op::Update { name, .. } | Op::Remove { name, .. } => name,
        }
    }
}

/// The pending writes of the last commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    pub commit: String,
    pub ops: Vec<Op>,
}

/// The coordination ConfigMap as read.
#[derive(Debug)]
struct Lock {
    resource_version: String,
    tokens: BTreeMap<String, TokenRecord>,
    pending: Option<Pending>,
}

enum AttemptError {
    /// Start the update again (conflict, moved lock, transient error).
    Retry(String),
    /// Our own create met an object of that name that is not ours.
    Clash(String),
    /// The change broke a rule every store keeps.
    Violation(Violation),
    Storage(UpdateError),
}

enum Mode<'m> {
    /// Finishing another writer's commit: any conflict restarts the attempt.
    Foreign,
    /// Applying our own commit, made at this lock resourceVersion.
    Own { lock_version: &'m str },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Watch,
    Update,
}

enum Flow {
    Continue,
    /// A later commit replaced ours (and so applied it): stop.
    Superseded,
}

enum Step {
    Done,
    /// A write succeeded; the object as it is now (None: gone).
    Wrote(Option<Box<ProfileResource>>),
    /// A create found an object of that name that is not ours.
    Clash,
}

/// What the watch and our own writes taught us about the resources.
/// A list of resources: the ones that decode, and the ones that do not.
#[derive(Default)]
struct Listed {
    objects: BTreeMap<String, ProfileResource>,
    broken: BTreeMap<String, InvalidObject>,
}

impl Listed {
    fn add(&mut self, guard: DeserializeGuard<ProfileResource>) {
        match guard.0 {
            Ok(obj) => {
                self.objects.insert(obj.name_any(), obj);
            }
            Err(invalid) => {
                let name = invalid.metadata.name.clone().unwrap_or_default();
                self.broken.insert(name, invalid);
            }
        }
    }

    /// Every name taken by a resource, decodable or not.
    fn names(&self) -> BTreeSet<String> {
        self.objects
            .keys()
            .chain(self.broken.keys())
            .cloned()
            .collect()
    }
}

fn broken_version(invalid: &InvalidObject) -> Option<u64> {
    invalid.metadata.resource_version.as_deref()?.parse().ok()
}

#[derive(Default)]
struct Observed {
    objects: BTreeMap<String, ProfileResource>,
    /// Names we removed ourselves, with the last resourceVersion seen: older events are ignored.
    tombstones: BTreeMap<String, u64>,
    /// Resources that do not even decode (a newer CRD, a hand-made object), by name.
    broken: BTreeMap<String, InvalidObject>,
    /// Objects of a list in progress (watcher `Init` … `InitDone`).
    init: Option<Listed>,
    tokens: BTreeMap<String, TokenRecord>,
    /// Invalid resource versions already logged, so each is logged once.
    reported: HashSet<(String, String)>,
    /// Resource versions whose housekeeping was started.
    housekept: HashSet<(String, String)>,
}

fn version_of(obj: &ProfileResource) -> Option<u64> {
    obj.metadata.resource_version.as_deref()?.parse().ok()
}

impl Observed {
    fn upsert(&mut self, obj: ProfileResource) {
        let name = obj.name_any();
        if let Some(&buried) = self.tombstones.get(&name) {
            match version_of(&obj) {
                Some(v) if v <= buried => return,
                _ => {
                    self.tombstones.remove(&name);
                }
            }
        }
        if let Some(existing) = self.objects.get(&name)
            && let (Some(new), Some(old)) = (version_of(&obj), version_of(existing))
            && new < old
        {
            return;
        }
        self.objects.insert(name, obj);
    }

    fn apply(&mut self, guard: DeserializeGuard<ProfileResource>) {
        match guard.0 {
            Ok(obj) => {
                self.broken.remove(&obj.name_any());
                self.upsert(obj);
            }
            Err(invalid) => {
                let name = invalid.metadata.name.clone().unwrap_or_default();
                let newer = match (broken_version(&invalid), self.objects.get(&name)) {
                    (Some(v), Some(existing)) => version_of(existing).is_none_or(|e| v >= e),
                    _ => true,
                };
                if newer {
                    self.objects.remove(&name);
                    self.broken.insert(name, invalid);
                }
            }
        }
    }

    fn delete(&mut self, guard: &DeserializeGuard<ProfileResource>) {
        match &guard.0 {
            Ok(obj) => {
                self.broken.remove(&obj.name_any());
                self.remove(obj);
            }
            Err(invalid) => {
                let name = invalid.metadata.name.clone().unwrap_or_default();
                self.broken.remove(&name);
                if self
                    .objects
                    .get(&name)
                    .is_some_and(|o| o.metadata.uid == invalid.metadata.uid)
                {
                    self.objects.remove(&name);
                }
            }
        }
    }

    fn remove(&mut self, obj: &ProfileResource) {
        let name = obj.name_any();
        if let Some(existing) = self.objects.get(&name) {
            let same = existing.metadata.uid == obj.metadata.uid;
            let older =
                matches!((version_of(existing), version_of(obj)), (Some(e), Some(d)) if e <= d);
            if same || older {
                self.objects.remove(&name);
            }
        }
    }

    fn bury(&mut self, name: &str, last: Option<&ProfileResource>) {
        self.objects.remove(name);
        if let Some(version) = last.and_then(version_of) {
            let buried = self.tombstones.entry(name.to_owned()).or_insert(version);
            *buried = (*buried).max(version);
        }
    }

    /// A complete list replaces what we knew, except versions newer than anything it holds
    /// (written by us while it was being read).
    fn replace_all(&mut self, listed: Listed) {
        let Listed {
            objects: listed,
            broken,
        } = listed;
        self.broken = broken;
        let newest = listed.values().filter_map(version_of).max();
        let newer_than_list = |obj: &ProfileResource| match (version_of(obj), newest) {
            (Some(v), Some(n)) => v > n,
            _ => false,
        };
        let mut objects = listed;
        for (name, obj) in std::mem::take(&mut self.objects) {
            if newer_than_list(&obj) {
                let keep = objects
                    .get(&name)
                    .is_none_or(|listed| version_of(listed) < version_of(&obj));
                if keep {
                    objects.insert(name, obj);
                }
            }
        }
        self.tombstones
            .retain(|_, v| newest.is_some_and(|newest| *v > newest));
        for name in self.tombstones.keys() {
            objects.remove(name);
        }
        self.objects = objects;
    }

    /// A consistent list at `list_version`: upsert its objects, forget those it no longer holds.
    fn absorb_list(
        &mut self,
        listed: &BTreeMap<String, ProfileResource>,
        list_version: Option<u64>,
    ) {
        for obj in listed.values() {
            self.upsert(obj.clone());
        }
        if let Some(at) = list_version {
            self.objects.retain(|name, obj| {
                listed.contains_key(name) || version_of(obj).is_none_or(|v| v > at)
            });
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
    /// Serialises this process's writers: they would only conflict with each other on the lock.
    writer: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore")
            .field("namespace", &self.options.namespace)
            .field("lock_name", &self.options.lock_name)
            .finish()
    }
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
        Arc::new(KubeStore {
            profiles: Api::all(client.clone()),
            guarded: Api::all(client.clone()),
            locks: Api::namespaced(client, &options.namespace),
            housekeeping: AtomicBool::new(options.housekeeping),
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
        let stream =
            watcher::watcher(self.guarded.clone(), watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => self.on_event(event),
                Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                    tracing::info!("FargateProfile watch expired (410 Gone); listing again");
                }
                Err(error) => {
                    tracing::warn!(%error, "FargateProfile watch failed; retrying with backoff");
                }
            }
        }
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
                observed.replace_all(listed);
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
            let key = (
                name.clone(),
                invalid
                    .metadata
                    .resource_version
                    .clone()
                    .unwrap_or_default(),
            );
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
                    let key = (
                        obj.name_any(),
                        obj.metadata.resource_version.clone().unwrap_or_default(),
                    );
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

    /// Stamp ACTIVE on status-less resources created by others and drop the finalizer of
    /// resources deleted by others (see the module documentation).
    fn housekeep(self: &Arc<Self>, observed: &mut Observed) {
        if !self.housekeeping.load(Ordering::Relaxed) {
            return;
        }
        let mut work = Vec::new();
        for obj in observed.objects.values() {
            let key = (
                obj.name_any(),
                obj.metadata.resource_version.clone().unwrap_or_default(),
            );
            let deleting = obj.metadata.deletion_timestamp.is_some();
            let needs_status = !deleting
                && recorded_status(obj).is_none()
                && !obj.annotations().contains_key(INITIAL_STATUS_ANNOTATION);
            let needs_release = deleting && has_finalizer(obj);
            if (needs_status || needs_release) && !observed.housekept.contains(&key) {
                observed.housekept.insert(key);
                work.push(obj.clone());
            }
        }
        if observed.housekept.len() > 4 * observed.objects.len() + 64 {
            let live: HashSet<(String, String)> = observed
                .objects
                .values()
                .map(|o| {
                    (
                        o.name_any(),
                        o.metadata.resource_version.clone().unwrap_or_default(),
                    )
                })
                .collect();
            observed.housekept.retain(|k| live.contains(k));
            observed.reported.retain(|k| live.contains(k));
        }
        for obj in work {
            let store = Arc::clone(self);
            tokio::spawn(async move { store.housekeep_one(obj).await });
        }
    }

    async fn housekeep_one(&self, obj: ProfileResource) {
        let name = obj.name_any();
        let result = if obj.metadata.deletion_timestamp.is_some() {
            self.release(&obj).await.map(|_| "finalizer dropped")
        } else {
            let mut status = FargateProfileStatus {
                status: Some(ProfileStatus::Active),
                created_at: obj
                    .metadata
                    .creation_timestamp
                    .as_ref()
                    .and_then(|t| crd::format_created_at(t.0.as_millisecond() as f64 / 1000.0)),
                ..Default::default()
            };
            status.observed_generation = obj.metadata.generation;
            let mut desired = obj.clone();
            desired.status = Some(status);
            self.profiles
                .replace_status(&name, &post_params(), &desired)
                .await
                .map(|written| {
                    self.record(written);
                    "status ACTIVE written"
                })
        };
        match result {
            Ok(what) => {
                tracing::info!(profile = %name, "{what} on a FargateProfile written by others")
            }
            Err(::kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {
                tracing::debug!(profile = %name, "FargateProfile changed meanwhile; housekeeping skipped");
            }
            Err(::kube::Error::Api(status)) if status.code == 403 => {
                self.housekeeping.store(false, Ordering::Relaxed);
                tracing::warn!(profile = %name, message = %status.message, "no permission to write FargateProfile status; housekeeping turned off");
            }
            Err(error) => {
                tracing::warn!(profile = %name, %error, "FargateProfile housekeeping failed")
            }
        }
    }

    fn record(&self, obj: ProfileResource) {
        let mut observed = self.lock_observed();
        observed.upsert(obj);
    }

    fn bury(&self, name: &str, last: Option<&ProfileResource>) {
        let mut observed = self.lock_observed();
        observed.bury(name, last);
    }

    // ---- writes ----

    async fn update_with_retries(&self, change: &mut Change<'_>) -> Result<Updated, UpdateError> {
        let _writer = self.writer.lock().await;
        let mut pause = self.options.retry_backoff;
        let attempts = self.options.max_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.attempt(change).await {
                Ok(state) => return Ok(state),
                Err(AttemptError::Violation(violation)) => return Err(violation.into()),
                Err(AttemptError::Storage(error)) => return Err(error),
                Err(AttemptError::Retry(reason) | AttemptError::Clash(reason)) => {
                    tracing::debug!(attempt, %reason, "FargateProfile update conflicted; running it again");
                    last = reason;
                    if attempt < attempts {
                        tokio::time::sleep(jitter(pause)).await;
                        pause = (pause * 2).min(Duration::from_secs(1));
                    }
                }
            }
        }
        Err(UpdateError::storage_context(format!(
            "the FargateProfile update did not go through after {attempts} attempts: {last}"
        )))
    }

    async fn attempt(&self, change: &mut Change<'_>) -> Result<Updated, AttemptError> {
        let lock = self.read_lock().await?;
        let (mut listed, mut list_version) = self.list().await?;
        if let Some(pending) = &lock.pending {
            if self.lock_moved(&lock.resource_version).await? {
                return Err(AttemptError::Retry("the coordination object moved".into()));
            }
            for op in &pending.ops {
                self.drive(op, listed.objects.get(op.name()).cloned(), &Mode::Foreign)
                    .await?;
            }
            (listed, list_version) = self.list().await?;
        }
        {
            let mut observed = self.lock_observed();
            observed.absorb_list(&listed.objects, list_version);
            observed.tokens = lock.tokens.clone();
        }

        let before = state_of(&listed.objects, &lock.tokens);
        let mut after = before.clone();
        if change(&mut after) == ChangeStep::Abort {
            if lock.pending.is_some() {
                // The journal we completed is done: clear it (conditional on the lock we read),
                // so that no later roll-forward repeats it over changes made since.
                self.clear_pending(&lock.resource_version, &lock.tokens)
                    .await;
                let mut observed = self.lock_observed();
                self.publish(&mut observed, Source::Update);
            }
            return Ok(Updated::Aborted);
        }
        let ops = plan(&before, &after, &listed, &self.limits)?;
        let tokens_changed = after.client_request_tokens != before.client_request_tokens;
        if ops.is_empty() && !tokens_changed && lock.pending.is_none() {
            let mut observed = self.lock_observed();
            return Ok(Updated::Committed(
                self.publish(&mut observed, Source::Update),
            ));
        }

        let pending = (!ops.is_empty()).then(|| Pending {
            commit: uuid::Uuid::new_v4().to_string(),
            ops,
        });
        let lock_version = self
            .write_lock(
                &lock.resource_version,
                &after.client_request_tokens,
                pending.as_ref(),
            )
            .await?;
        self.lock_observed().tokens = after.client_request_tokens.clone();

        if let Some(pending) = &pending {
            let mode = Mode::Own {
                lock_version: &lock_version,
            };
            let mut superseded = false;
            for op in &pending.ops {
                match self
                    .drive(op, listed.objects.get(op.name()).cloned(), &mode)
                    .await
                {
                    Ok(Flow::Continue) => {}
                    Ok(Flow::Superseded) => {
                        superseded = true;
                        break;
                    }
                    Err(AttemptError::Clash(reason)) => {
                        // Our create met an object that is not ours: forget that write, so no
                        // roll-forward performs it later, and run the change again on the fresh
                        // state, where the caller sees the duplicate.
                        self.drop_clashed(&lock_version, pending, op, &after.client_request_tokens)
                            .await;
                        return Err(AttemptError::Retry(reason));
                    }
                    // Committed: running the change again would see its own effects. Fail;
                    // the next update from any replica completes the journal.
                    Err(AttemptError::Retry(message)) => {
                        return Err(AttemptError::Storage(UpdateError::storage_context(
                            format!(
                                "{message} (the change is committed; the next update completes it)"
                            ),
                        )));
                    }
                    Err(other) => return Err(other),
                }
            }
            if !superseded {
                self.clear_pending(&lock_version, &after.client_request_tokens)
                    .await;
            }
        }
        let mut observed = self.lock_observed();
        Ok(Updated::Committed(
            self.publish(&mut observed, Source::Update),
        ))
    }

    async fn list(&self) -> Result<(Listed, Option<u64>), AttemptError> {
        let list = self
            .guarded
            .list(&ListParams::default())
            .await
            .map_err(|e| failure("listing FargateProfiles", e))?;
        let version = list
            .metadata
            .resource_version
            .as_deref()
            .and_then(|v| v.parse().ok());
        let mut listed = Listed::default();
        for guard in list.items {
            listed.add(guard);
        }
        Ok((listed, version))
    }

    async fn read_lock(&self) -> Result<Lock, AttemptError> {
        let name = &self.options.lock_name;
        let found = self
            .locks
            .get_opt(name)
            .await
            .map_err(|e| failure("reading the coordination ConfigMap", e))?;
        let config_map = match found {
            Some(config_map) => config_map,
            None => {
                let fresh = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.options.namespace.clone()),
                        labels: Some(BTreeMap::from([(PART_OF.0.into(), PART_OF.1.into())])),
                        ..Default::default()
                    },
                    data: Some(BTreeMap::new()),
                    ..Default::default()
                };
                self.locks
                    .create(&post_params(), &fresh)
                    .await
                    .map_err(|e| failure("creating the coordination ConfigMap", e))?
            }
        };
        Ok(parse_lock(&config_map))
    }

    async fn lock_moved(&self, version: &str) -> Result<bool, AttemptError> {
        let found = self
            .locks
            .get_opt(&self.options.lock_name)
            .await
            .map_err(|e| failure("reading the coordination ConfigMap", e))?;
        Ok(found
            .and_then(|cm| cm.metadata.resource_version)
            .is_none_or(|v| v != version))
    }

    async fn write_lock(
        &self,
        version: &str,
        tokens: &BTreeMap<String, TokenRecord>,
        pending: Option<&Pending>,
    ) -> Result<String, AttemptError> {
        let mut data = BTreeMap::new();
        data.insert(
            TOKENS_KEY.to_owned(),
            serde_json::to_string(tokens).expect("tokens serialize"),
        );
        if let Some(pending) = pending {
            data.insert(
                PENDING_KEY.to_owned(),
                serde_json::to_string(pending).expect("pending writes serialize"),
            );
        }
        let config_map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.options.lock_name.clone()),
                namespace: Some(self.options.namespace.clone()),
                resource_version: Some(version.to_owned()),
                labels: Some(BTreeMap::from([(PART_OF.0.into(), PART_OF.1.into())])),
                ..Default::default()
            },
            data: Some(data),
            ..Default::default()
        };
        let written = self
            .locks
            .replace(&self.options.lock_name, &post_params(), &config_map)
            .await
            .map_err(|e| failure("committing to the coordination ConfigMap", e))?;
        written.metadata.resource_version.ok_or_else(|| {
            AttemptError::Storage(UpdateError::storage_context(
                "the coordination ConfigMap has no resourceVersion",
            ))
        })
    }

    /// Remove the pending writes of our commit once applied. A conflict means a later commit
    /// already replaced them.
    async fn clear_pending(&self, version: &str, tokens: &BTreeMap<String, TokenRecord>) {
        if let Err(AttemptError::Storage(error)) = self.write_lock(version, tokens, None).await {
            tracing::warn!(error = %crate::store::report(&error), "could not clear the applied writes from the coordination ConfigMap; the next update will");
        }
    }

    /// Take a create that met someone else's object out of our journal (and its tokens).
    async fn drop_clashed(
        &self,
        version: &str,
        pending: &Pending,
        clashed: &Op,
        tokens: &BTreeMap<String, TokenRecord>,
    ) {
        let mut rest = pending.clone();
        rest.ops.retain(|op| op != clashed);
        let mut tokens = tokens.clone();
        if let Op::Create { name, status, .. } = clashed {
            tokens.retain(|_, r| {
                !(r.fargate_profile_name == *name
                    && Some(&r.fargate_profile_arn) == status.fargate_profile_arn.as_ref())
            });
        }
        let rest = (!rest.ops.is_empty()).then_some(rest);
        if let Err(AttemptError::Storage(error)) =
            self.write_lock(version, &tokens, rest.as_ref()).await
        {
            tracing::warn!(error = %crate::store::report(&error), "could not drop a failed create from the coordination ConfigMap");
        }
    }

    /// Apply one journaled write, step by step, until it is done.
    async fn drive(
        &self,
        op: &Op,
        mut current: Option<ProfileResource>,
        mode: &Mode<'_>,
    ) -> Result<Flow, AttemptError> {
        let mut transient = 0;
        for _ in 0..MAX_OP_STEPS {
            match self.step(op, current.as_ref()).await {
                Ok(Step::Done) => return Ok(Flow::Continue),
                Ok(Step::Wrote(now)) => {
                    let now = now.map(|obj| *obj);
                    match &now {
                        Some(obj) => self.record(obj.clone()),
                        None => self.bury(op.name(), current.as_ref()),
                    }
                    current = now;
                }
                Ok(Step::Clash) => {
                    return match mode {
                        Mode::Foreign => Ok(Flow::Continue),
                        Mode::Own { .. } => Err(AttemptError::Clash(format!(
                            "a FargateProfile named {} was created by someone else",
                            op.name()
                        ))),
                    };
                }
                Err(error) if api_code(&error) == Some(409) => match mode {
                    Mode::Foreign => {
                        return Err(AttemptError::Retry(format!(
                            "FargateProfile {} changed while finishing an earlier commit",
                            op.name()
                        )));
                    }
                    Mode::Own { lock_version } => {
                        current = self
                            .profiles
                            .get_opt(op.name())
                            .await
                            .map_err(|e| failure("reading a FargateProfile", e))?;
                        if self.lock_moved(lock_version).await? {
                            return Ok(Flow::Superseded);
                        }
                    }
                },
                Err(error) if is_transient(&error) && transient < 3 => {
                    transient += 1;
                    tracing::debug!(%error, profile = op.name(), "FargateProfile write failed; retrying");
                    tokio::time::sleep(jitter(self.options.retry_backoff * 4)).await;
                    current = self
                        .profiles
                        .get_opt(op.name())
                        .await
                        .map_err(|e| failure("reading a FargateProfile", e))?;
                }
                Err(error) => {
                    return Err(match mode {
                        Mode::Foreign => {
                            failure("finishing an earlier FargateProfile commit", error)
                        }
                        Mode::Own { .. } => AttemptError::Storage(UpdateError::storage(
                            format!(
                                "writing FargateProfile {} (the change is committed; the next update completes it)",
                                op.name()
                            ),
                            error,
                        )),
                    });
                }
            }
        }
        Err(AttemptError::Storage(UpdateError::storage_context(
            format!(
                "FargateProfile {} kept changing while it was written",
                op.name()
            ),
        )))
    }

    /// One write towards `op`'s goal, given the object as last seen.
    async fn step(
        &self,
        op: &Op,
        current: Option<&ProfileResource>,
    ) -> Result<Step, ::kube::Error> {
        match op {
            Op::Create { name, spec, status } => match current {
                None => {
                    let created = self
                        .profiles
                        .create(&post_params(), &new_resource(name, spec, status))
                        .await?;
                    Ok(Step::Wrote(Some(Box::new(created))))
                }
                Some(obj) if !created_by(obj, status) => Ok(Step::Clash),
                Some(obj) if obj.metadata.deletion_timestamp.is_some() => Ok(Step::Done),
                Some(obj) => self.write_status(obj, status).await,
            },
            Op::Update {
                uid, tags, status, ..
            } => {
                let Some(obj) = current.filter(|o| {
                    o.metadata.uid.as_deref() == Some(uid.as_str())
                        && o.metadata.deletion_timestamp.is_none()
                }) else {
                    return Ok(Step::Done);
                };
                if let Some(tags) = tags
                    && obj.spec.tags != *tags
                {
                    let mut desired = obj.clone();
                    desired.spec.tags = tags.clone();
                    let name = obj.name_any();
                    let written = self
                        .profiles
                        .replace(&name, &post_params(), &desired)
                        .await?;
                    return Ok(Step::Wrote(Some(Box::new(written))));
                }
                match status {
                    Some(status) => self.write_status(obj, status).await,
                    None => Ok(Step::Done),
                }
            }
            Op::Remove { name, uid } => {
                let Some(obj) = current.filter(|o| o.metadata.uid.as_deref() == Some(uid.as_str()))
                else {
                    return Ok(Step::Done);
                };
                if obj.metadata.deletion_timestamp.is_none() {
                    let params = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: Some(uid.clone()),
                            resource_version: obj.metadata.resource_version.clone(),
                        }),
                        ..Default::default()
                    };
                    let deleted = self.profiles.delete(name, &params).await?;
                    return Ok(Step::Wrote(deleted.left().map(Box::new)));
                }
                if has_finalizer(obj) {
                    return self
                        .release(obj)
                        .await
                        .map(|now| Step::Wrote(now.map(Box::new)));
                }
                Ok(Step::Done)
            }
        }
    }

    async fn write_status(
        &self,
        obj: &ProfileResource,
        status: &FargateProfileStatus,
    ) -> Result<Step, ::kube::Error> {
        if same_status(obj.status.as_ref(), status) {
            return Ok(Step::Done);
        }
        let mut desired = obj.clone();
        let mut status = status.clone();
        status.observed_generation = obj.metadata.generation;
        desired.status = Some(status);
        let written = self
            .profiles
            .replace_status(&obj.name_any(), &post_params(), &desired)
            .await?;
        Ok(Step::Wrote(Some(Box::new(written))))
    }

    /// Drop our finalizer (conditional on the resourceVersion seen). Returns the object if it is
    /// still there (other finalizers), None when it is gone.
    async fn release(
        &self,
        obj: &ProfileResource,
    ) -> Result<Option<ProfileResource>, ::kube::Error> {
        let finalizers: Vec<&String> = obj
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .collect();
        let patch = serde_json::json!({
            "metadata": {
                "resourceVersion": obj.metadata.resource_version,
                "finalizers": finalizers,
            }
        });
        let name = obj.name_any();
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let after = self
            .profiles
            .patch(&name, &params, &Patch::Merge(&patch))
            .await?;
        if after.metadata.deletion_timestamp.is_some() && after.finalizers().is_empty() {
            self.bury(&name, Some(&after));
            return Ok(None);
        }
        Ok(Some(after))
    }
}

impl ProfileStore for KubeStore {
    fn current(&self) -> Arc<ProfileState> {
        self.published.current()
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
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

fn api_code(error: &::kube::Error) -> Option<u16> {
    match error {
        ::kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Worth trying again: conflicts, throttling, server trouble and transport errors.
fn is_transient(error: &::kube::Error) -> bool {
    match api_code(error) {
        Some(code) => matches!(code, 409 | 429 | 500 | 502 | 503 | 504),
        None => !matches!(
            error,
            ::kube::Error::SerdeError(_) | ::kube::Error::BuildRequest(_)
        ),
    }
}

fn failure(what: &str, error: ::kube::Error) -> AttemptError {
    if is_transient(&error) {
        AttemptError::Retry(format!("{what}: {error}"))
    } else {
        AttemptError::Storage(UpdateError::storage(what, error))
    }
}

fn jitter(pause: Duration) -> Duration {
    let nanos = uuid::Uuid::new_v4().as_u128() as u64 % (pause.as_nanos() as u64 / 2 + 1);
    pause / 2 + Duration::from_nanos(nanos)
}

fn parse_lock(config_map: &ConfigMap) -> Lock {
    let data = config_map.data.clone().unwrap_or_default();
    let tokens = match data.get(TOKENS_KEY) {
        None => BTreeMap::new(),
        Some(text) => serde_json::from_str(text).unwrap_or_else(|error| {
            tracing::error!(%error, "the coordination ConfigMap's tokens are unreadable; starting without them");
            BTreeMap::new()
        }),
    };
    let pending = data.get(PENDING_KEY).and_then(|text| {
        serde_json::from_str(text)
            .map_err(|error| {
                tracing::error!(%error, "the coordination ConfigMap's pending writes are unreadable; ignoring them");
            })
            .ok()
    });
    Lock {
        resource_version: config_map
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default(),
        tokens,
        pending,
    }
}

fn has_finalizer(obj: &ProfileResource) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// The status subresource, when it says something.
fn recorded_status(obj: &ProfileResource) -> Option<&FargateProfileStatus> {
    obj.status.as_ref().filter(|s| s.status.is_some())
}

fn initial_status(obj: &ProfileResource) -> Option<FargateProfileStatus> {
    let text = obj.annotations().get(INITIAL_STATUS_ANNOTATION)?;
    serde_json::from_str(text).ok()
}

/// Whether `obj` is the resource a create with this status made.
fn created_by(obj: &ProfileResource, status: &FargateProfileStatus) -> bool {
    initial_status(obj).is_some_and(|initial| {
        initial.fargate_profile_arn == status.fargate_profile_arn
            && initial.created_at == status.created_at
    })
}

fn same_status(current: Option<&FargateProfileStatus>, desired: &FargateProfileStatus) -> bool {
    current.is_some_and(|current| {
        let mut current = current.clone();
        current.observed_generation = None;
        let mut desired = desired.clone();
        desired.observed_generation = None;
        current == desired
    })
}

fn new_resource(
    name: &str,
    spec: &FargateProfileSpec,
    status: &FargateProfileStatus,
) -> ProfileResource {
    let mut obj = ProfileResource::new(name, spec.clone());
    obj.metadata.finalizers = Some(vec![FINALIZER.to_owned()]);
    obj.metadata.labels = Some(BTreeMap::from([(PART_OF.0.into(), PART_OF.1.into())]));
    obj.metadata.annotations = Some(BTreeMap::from([(
        INITIAL_STATUS_ANNOTATION.to_owned(),
        serde_json::to_string(status).expect("status serializes"),
    )]));
    obj
}

/// The EKS profile a resource stands for; None when it is gone for us (being deleted, and our
/// finalizer already dropped).
pub fn profile_from_resource(obj: &ProfileResource) -> Option<FargateProfile> {
    let deleting = obj.metadata.deletion_timestamp.is_some();
    if deleting && !has_finalizer(obj) {
        return None;
    }
    let status = recorded_status(obj)
        .cloned()
        .or_else(|| initial_status(obj))
        .unwrap_or_default();
    let created_at = status
        .created_at
        .as_deref()
        .and_then(crd::parse_created_at)
        .or_else(|| {
            obj.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.as_millisecond() as f64 / 1000.0)
        });
    Some(FargateProfile {
        fargate_profile_name: obj.name_any(),
        fargate_profile_arn: status.fargate_profile_arn,
        cluster_name: status.cluster_name,
        created_at,
        pod_execution_role_arn: obj.spec.pod_execution_role_arn.clone(),
        subnets: obj.spec.subnets.clone(),
        selectors: obj.spec.eks_selectors(),
        status: if deleting {
            ProfileStatus::Deleting
        } else {
            status.status.unwrap_or(ProfileStatus::Active)
        },
        tags: obj.spec.tags.clone(),
        health: None,
    })
}

/// The state a change runs on: every listed resource that stands for a profile (invalid ones
/// included: the change sees what is there, e.g. to refuse a duplicate name), and the tokens.
fn state_of(
    listed: &BTreeMap<String, ProfileResource>,
    tokens: &BTreeMap<String, TokenRecord>,
) -> ProfileState {
    ProfileState {
        fargate_profiles: listed.values().filter_map(profile_from_resource).collect(),
        client_request_tokens: tokens.clone(),
    }
}

/// The status part of a profile, compared at the precision the resource keeps.
fn status_part(p: &FargateProfile) -> (ProfileStatus, Option<&str>, Option<&str>, Option<String>) {
    (
        p.status,
        p.fargate_profile_arn.as_deref(),
        p.cluster_name.as_deref(),
        p.created_at.and_then(crd::format_created_at),
    )
}

/// The writes that turn `before` into `after`.
fn plan(
    before: &ProfileState,
    after: &ProfileState,
    listed: &Listed,
    limits: &Limits,
) -> Result<Vec<Op>, AttemptError> {
    check_change(before, after, limits).map_err(AttemptError::Violation)?;
    let taken = listed.names();
    let listed = &listed.objects;
    let old: BTreeMap<&str, &FargateProfile> = before
        .fargate_profiles
        .iter()
        .map(|p| (p.fargate_profile_name.as_str(), p))
        .collect();
    let new: BTreeMap<&str, &FargateProfile> = after
        .fargate_profiles
        .iter()
        .map(|p| (p.fargate_profile_name.as_str(), p))
        .collect();
    let uid_of = |name: &str| {
        listed
            .get(name)
            .and_then(|o| o.metadata.uid.clone())
            .unwrap_or_default()
    };
    let mut ops = Vec::new();
    for name in old.keys() {
        if !new.contains_key(name) {
            ops.push(Op::Remove {
                name: (*name).to_owned(),
                uid: uid_of(name),
            });
        }
    }
    for (name, now) in &new {
        match old.get(name) {
            None => {
                if let Some(problem) = crd::k8s_name_problem(name) {
                    return Err(AttemptError::Violation(Violation::Invalid(problem)));
                }
                if taken.contains(*name) {
                    // There, but not a profile for the change: being deleted, or unreadable.
                    return Err(AttemptError::Violation(if listed.contains_key(*name) {
                        Violation::NameStillDeleting
                    } else {
                        Violation::DuplicateName
                    }));
                }
                ops.push(Op::Create {
                    name: (*name).to_owned(),
                    spec: FargateProfileSpec::from_profile(now),
                    status: FargateProfileStatus::from_profile(now),
                });
            }
            Some(was) => {
                let tags = (was.tags != now.tags).then(|| now.tags.clone());
                let status = (status_part(was) != status_part(now))
                    .then(|| FargateProfileStatus::from_profile(now));
                if tags.is_some() || status.is_some() {
                    ops.push(Op::Update {
                        name: (*name).to_owned(),
                        uid: uid_of(name),
                        tags,
                        status,
                    });
                }
            }
        }
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(name: &str, version: u64) -> ProfileResource {
        let mut obj = ProfileResource::new(name, FargateProfileSpec::default());
        obj.metadata.resource_version = Some(version.to_string());
        obj.metadata.uid = Some(format!("uid-{name}"));
        obj
    }

    #[test]
    fn newer_versions_win_and_tombstones_hold() {
        let mut observed = Observed::default();
        observed.upsert(resource("a", 5));
        observed.upsert(resource("a", 3));
        assert_eq!(version_of(&observed.objects["a"]), Some(5));
        observed.bury("a", Some(&resource("a", 7)));
        observed.upsert(resource("a", 6));
        assert!(observed.objects.is_empty());
        observed.upsert(resource("a", 9));
        assert_eq!(version_of(&observed.objects["a"]), Some(9));
    }

    #[test]
    fn a_relist_replaces_all_but_newer_writes() {
        let mut observed = Observed::default();
        observed.upsert(resource("gone", 2));
        observed.upsert(resource("written", 20));
        let listed = BTreeMap::from([
            ("kept".to_owned(), resource("kept", 10)),
            ("written".to_owned(), resource("written", 11)),
        ]);
        observed.replace_all(Listed {
            objects: listed,
            ..Default::default()
        });
        let names: Vec<&str> = observed.objects.keys().map(String::as_str).collect();
        assert_eq!(names, ["kept", "written"]);
        assert_eq!(version_of(&observed.objects["written"]), Some(20));
    }

    #[test]
    fn status_less_resources_read_as_active_or_as_created() {
        let mut obj = resource("p", 1);
        assert_eq!(
            profile_from_resource(&obj).unwrap().status,
            ProfileStatus::Active
        );
        let initial = FargateProfileStatus {
            status: Some(ProfileStatus::Creating),
            fargate_profile_arn: Some("arn".into()),
            ..Default::default()
        };
        obj.metadata.annotations = Some(BTreeMap::from([(
            INITIAL_STATUS_ANNOTATION.to_owned(),
            serde_json::to_string(&initial).unwrap(),
        )]));
        let profile = profile_from_resource(&obj).unwrap();
        assert_eq!(profile.status, ProfileStatus::Creating);
        assert_eq!(profile.fargate_profile_arn.as_deref(), Some("arn"));
        obj.metadata.deletion_timestamp = obj.metadata.creation_timestamp.clone().or(Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        ));
        assert!(profile_from_resource(&obj).is_none(), "no finalizer: gone");
        obj.metadata.finalizers = Some(vec![FINALIZER.into()]);
        assert_eq!(
            profile_from_resource(&obj).unwrap().status,
            ProfileStatus::Deleting
        );
    }

    #[test]
    fn journal_round_trips() {
        let pending = Pending {
            commit: "c".into(),
            ops: vec![
                Op::Remove {
                    name: "a".into(),
                    uid: "u".into(),
                },
                Op::Update {
                    name: "b".into(),
                    uid: "v".into(),
                    tags: None,
                    status: Some(FargateProfileStatus::default()),
                },
            ],
        };
        let text = serde_json::to_string(&pending).unwrap();
        assert!(text.contains(r#""op":"remove""#), "{text}");
        assert_eq!(serde_json::from_str::<Pending>(&text).unwrap(), pending);
    }
}
