//! Housekeeping of resources written by others: stamp ACTIVE on status-less resources created
//! with kubectl, CREATE_FAILED (with the rule, in `health`) on those that break a rule the CRD
//! cannot express, so that no resource reads ACTIVE while no replica serves it, and drop the
//! finalizer of resources deleted with kubectl. A resource whose recorded
//! status is DELETING is being deleted by the store itself (the API writes DELETING before its
//! `DELETE`): the replica doing it drops the finalizer, and the others leave it alone, so replicas
//! never race each other on an API delete. If that replica dies in between, the journal's pending
//! removal is completed by the next write of any replica. Only the replica holding the store's claim
//! housekeeps; a new holder looks at every resource again.

use super::commit::post_params;
use super::journal::Op;
use super::observed::Observed;
use super::resource::{
    created_by, has_finalizer, profile_from_resource, recorded_status, version_key,
};
use super::{INITIAL_STATUS_ANNOTATION, KubeStore};
use crate::claim::Claim;
use crate::profile::{self, ProfileStatus};
use crate::store::ProfileStore;
use crate::store::crd::{self, FargateProfile as ProfileResource, FargateProfileStatus};
use ::kube::ResourceExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The pause before a failed housekeeping write is tried again, doubled with each failure in a row.
const HOUSEKEEP_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest pause between two tries of a housekeeping write.
const HOUSEKEEP_RETRY_LONGEST: Duration = Duration::from_secs(60);

impl KubeStore {
    /// Stamp ACTIVE on status-less resources created by others and drop the finalizer of
    /// resources deleted by others (see the module documentation).
    pub(super) fn housekeep(self: &Arc<Self>, observed: &mut Observed) {
        if !self.housekeeping.load(Ordering::Relaxed) || !self.housekeeps_now() {
            return;
        }
        let mut work = Vec::new();
        for obj in observed.objects.values() {
            let key = version_key(&obj.name_any(), &obj.metadata);
            let deleting = obj.metadata.deletion_timestamp.is_some();
            let unservable = if deleting { None } else { self.unservable(obj) };
            let needs_status = !deleting
                && match &unservable {
                    Some(rule) => !refused_for(obj, rule),
                    // Status-less, or refused by us for a rule it no longer breaks (a limit raised).
                    None => {
                        (recorded_status(obj).is_none() || refused_by_us(obj))
                            && !obj.annotations().contains_key(INITIAL_STATUS_ANNOTATION)
                    }
                };
            let needs_release = deleting && has_finalizer(obj) && !deleted_by_the_store(obj);
            if (needs_status || needs_release) && !observed.housekept.contains(&key) {
                observed.housekept.insert(key);
                work.push(obj.clone());
            }
        }
        for obj in work {
            let store = Arc::clone(self);
            let write = async move { store.housekeep_one(obj).await };
            // Under a claim, the write is the term's work: the Lease is given up only after it.
            let term = self.options.claim.as_ref().and_then(Claim::held);
            crate::claim::spawn_in(term.as_ref(), write);
        }
        self.warn_catch_all(observed);
        observed.prune();
    }

    /// A Warning Event on each resource with a catch-all selector (`decision::catch_all`), once per
    /// resource and selector in this process.
    fn warn_catch_all(&self, observed: &mut Observed) {
        let snapshot = self.published.snapshot();
        for found in snapshot.catch_all() {
            let Some(obj) = observed.objects.get(&found.profile) else {
                continue;
            };
            let uid = obj.metadata.uid.clone().unwrap_or_default();
            if !observed.warned.insert((uid, found.selector)) {
                continue;
            }
            let (recorder, reference) = (
                self.recorder.clone(),
                ::kube::Resource::object_ref(obj, &()),
            );
            let event = ::kube::runtime::events::Event {
                type_: ::kube::runtime::events::EventType::Warning,
                reason: "CatchAllSelector".into(),
                note: Some(found.message()),
                action: "Matching".into(),
                secondary: None,
            };
            tokio::spawn(async move {
                if let Err(error) = recorder.publish(&event, &reference).await {
                    tracing::warn!(%error, profile = ?reference.name, "could not record an event");
                }
            });
        }
    }

    /// The rule a resource written by others breaks, if it breaks one the CRD could not express
    /// (control characters in labels, limits set lower by flags): no replica serves it. Resources
    /// the API wrote were checked when it wrote them.
    fn unservable(&self, obj: &ProfileResource) -> Option<String> {
        if obj.annotations().contains_key(INITIAL_STATUS_ANNOTATION) {
            return None;
        }
        let profile = profile_from_resource(obj)?;
        profile::validate(&profile, &self.limits)
            .err()
            .map(|rule| rule.0)
    }

    /// This replica may write in the background now.
    fn holds_claim(&self) -> bool {
        self.options.claim.as_ref().is_none_or(Claim::is_held)
    }

    /// This replica housekeeps now: it holds the claim and the term's first pass has begun
    /// ([`Self::housekeep_each_term`]). A change seen between the claim's taking and that pass
    /// would otherwise start a write the pass starts again.
    fn housekeeps_now(&self) -> bool {
        match &self.options.claim {
            None => true,
            Some(claim) => claim.is_held() && self.housekeeping_term.load(Ordering::SeqCst),
        }
    }

    /// For each term of the claim, housekeep every resource as it is now, whatever an earlier term
    /// of this or another replica started. Runs until aborted.
    pub(super) async fn housekeep_each_term(self: &Arc<Self>) {
        let Some(claim) = self.options.claim.clone() else {
            return;
        };
        claim
            .while_held(&CancellationToken::new(), |lost| {
                let store = Arc::clone(self);
                async move {
                    {
                        // Under the lock every housekeeping pass takes: a pass before this one
                        // did nothing (`housekeeps_now`), and every pass after sees the set cleared.
                        let mut observed = store.lock_observed();
                        observed.housekept.clear();
                        store.housekeeping_term.store(true, Ordering::SeqCst);
                        if store.is_loaded() && observed.init.is_none() {
                            store.housekeep(&mut observed);
                        }
                    }
                    lost.cancelled().await;
                    store.housekeeping_term.store(false, Ordering::SeqCst);
                }
            })
            .await;
    }

    pub(super) async fn housekeep_one(self: &Arc<Self>, obj: ProfileResource) {
        let name = obj.name_any();
        if !self.holds_claim() {
            return; // lost meanwhile: the new holder does it
        }
        let result = if obj.metadata.deletion_timestamp.is_some() {
            if let Err(reason) = self.forget_journalled_create(&obj).await {
                tracing::warn!(profile = %name, %reason, "could not take a create of a FargateProfile deleted with kubectl out of the journal; its finalizer stays until it is");
                self.housekeep_later(&obj);
                return;
            }
            self.release(&obj).await.map(|_| "finalizer dropped")
        } else {
            let unservable = self.unservable(&obj);
            let mut status = FargateProfileStatus {
                status: Some(if unservable.is_some() {
                    ProfileStatus::CreateFailed
                } else {
                    ProfileStatus::Active
                }),
                health: unservable.as_deref().map(refusal_health),
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
                    if unservable.is_some() {
                        "status CREATE_FAILED written (a rule the CRD cannot express is broken)"
                    } else {
                        "status ACTIVE written"
                    }
                })
        };
        match result {
            Ok(what) => {
                let key = version_key(&name, &obj.metadata);
                self.lock_observed().housekeep_failures.remove(&key);
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
                tracing::warn!(profile = %name, %error, "FargateProfile housekeeping failed; it is tried again");
                self.housekeep_later(&obj);
            }
        }
    }

    /// Housekeep this version of the resource again after a pause that doubles with each failure in
    /// a row (up to [`HOUSEKEEP_RETRY_LONGEST`]): a write that failed for a passing reason is not
    /// left until the resource next changes, which may be never. Nothing is tried once the claim
    /// is lost, or for a version the resource has moved past.
    fn housekeep_later(self: &Arc<Self>, obj: &ProfileResource) {
        let key = version_key(&obj.name_any(), &obj.metadata);
        let failures = {
            let mut observed = self.lock_observed();
            let failures = observed.housekeep_failures.entry(key.clone()).or_default();
            *failures = failures.saturating_add(1);
            *failures
        };
        let pause = HOUSEKEEP_RETRY_FIRST
            .saturating_mul(1 << failures.saturating_sub(1).min(16))
            .min(HOUSEKEEP_RETRY_LONGEST);
        let store = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(super::commit::jitter(pause)).await;
            let mut observed = store.lock_observed();
            observed.housekept.remove(&key);
            if store.is_loaded() && observed.init.is_none() {
                store.housekeep(&mut observed);
            }
        });
    }

    /// Before the finalizer of a resource deleted with kubectl is dropped, take a journalled create
    /// of that very resource out of a journal left behind (a replica killed between its last write
    /// and the journal's clear): carried out once the resource is gone, it would bring back what
    /// kubectl deleted. Conditional on the lock as read; the finalizer holds until it is done.
    async fn forget_journalled_create(&self, obj: &ProfileResource) -> Result<(), String> {
        let lock = self.read_lock_if_any().await.map_err(|e| e.reason())?;
        let Some((lock, pending)) = lock.as_ref().and_then(|l| Some((l, l.pending.as_ref()?)))
        else {
            return Ok(());
        };
        let name = obj.name_any();
        let applied = |op: &Op| matches!(op, Op::Create { name: n, status, .. } if *n == name && created_by(obj, status));
        if !pending.ops.iter().any(applied) {
            return Ok(());
        }
        let mut rest = pending.clone();
        rest.ops.retain(|op| !applied(op));
        let rest = (!rest.ops.is_empty()).then_some(rest);
        self.write_lock(
            &lock.resource_version,
            &lock.tokens,
            rest.as_ref(),
            &lock.quarantined,
        )
        .await
        .map_err(|e| e.reason())?;
        tracing::info!(profile = %name, commit = %pending.commit, "a journalled create of a FargateProfile deleted with kubectl was taken out of the journal left behind");
        Ok(())
    }

    pub(super) fn record(&self, obj: ProfileResource) {
        let mut observed = self.lock_observed();
        observed.upsert(obj);
    }

    pub(super) fn bury(&self, name: &str, last: Option<&ProfileResource>) {
        let mut observed = self.lock_observed();
        observed.bury(name, last);
    }
}

/// The store's own deletion: the API wrote DELETING before it issued the `DELETE`.
pub(super) fn deleted_by_the_store(obj: &ProfileResource) -> bool {
    recorded_status(obj).and_then(|s| s.status) == Some(ProfileStatus::Deleting)
}

/// [D] The `health` of a resource no replica serves: EKS's issue codes have none for a spec (its
/// API refuses one), so `InternalFailure`, with the rule broken as the message (README, "Several
/// replicas").
fn refusal_health(rule: &str) -> profile::Health {
    profile::Health {
        issues: vec![profile::HealthIssue {
            code: Some("InternalFailure".into()),
            message: Some(format!("not served: {rule}")),
            resource_ids: Vec::new(),
        }],
    }
}

/// The resource says it is not served, in our words ([`refusal_health`]).
fn refused_by_us(obj: &ProfileResource) -> bool {
    recorded_status(obj).is_some_and(|s| {
        s.status == Some(ProfileStatus::CreateFailed)
            && s.health.as_ref().is_some_and(|h| {
                h.issues.iter().any(|i| {
                    i.message
                        .as_deref()
                        .is_some_and(|m| m.starts_with("not served: "))
                })
            })
    })
}

/// The resource already says it is not served, for this rule.
fn refused_for(obj: &ProfileResource, rule: &str) -> bool {
    recorded_status(obj).is_some_and(|s| {
        s.status == Some(ProfileStatus::CreateFailed) && s.health == Some(refusal_health(rule))
    })
}
