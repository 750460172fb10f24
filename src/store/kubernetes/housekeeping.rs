//! Housekeeping of resources written by others: stamp ACTIVE on status-less resources created
//! with kubectl, and drop the finalizer of resources deleted with kubectl. A resource whose recorded
//! status is DELETING is being deleted by the store itself (the API writes DELETING before its
//! `DELETE`): the replica doing it drops the finalizer, and the others leave it alone, so replicas
//! never race each other on an API delete. If that replica dies in between, the journal's pending
//! removal is completed by the next write of any replica. Only the replica holding the store's claim
//! housekeeps; a new holder looks at every resource again.

use super::*;

impl KubeStore {
    /// Stamp ACTIVE on status-less resources created by others and drop the finalizer of
    /// resources deleted by others (see the module documentation).
    pub(super) fn housekeep(self: &Arc<Self>, observed: &mut Observed) {
        if !self.housekeeping.load(Ordering::Relaxed) || !self.holds_claim() {
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
            let needs_release = deleting && has_finalizer(obj) && !deleted_by_the_store(obj);
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

    /// This replica may write in the background now.
    fn holds_claim(&self) -> bool {
        self.options.claim.as_ref().is_none_or(Claim::is_held)
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
                        let mut observed = store.lock_observed();
                        observed.housekept.clear();
                        if store.is_loaded() && observed.init.is_none() {
                            store.housekeep(&mut observed);
                        }
                    }
                    lost.cancelled().await;
                }
            })
            .await;
    }

    pub(super) async fn housekeep_one(&self, obj: ProfileResource) {
        let name = obj.name_any();
        if !self.holds_claim() {
            return; // lost meanwhile: the new holder does it
        }
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
