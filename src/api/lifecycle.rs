//! The lifecycle timers: CREATING → ACTIVE and DELETING → removed after the configured delays,
//! resumed after a restart and for transitions another replica started. Only the holder of the
//! lifecycle's claim runs them ([`crate::claim`]); a timer stops when the claim is lost.

use super::Api;
use super::rules::{self, Transition};
use crate::profile::{ProfileState, ProfileStatus};
use crate::store::{Step, UpdateError, Updated};
use std::time::Duration;

impl Api {
    /// With generated matchConditions, wait until they let `name`'s pods through; false when the
    /// claim is lost first.
    async fn activation_allowed(
        &self,
        name: &str,
        lost: &tokio_util::sync::CancellationToken,
    ) -> bool {
        let Some(covered) = self.inner.activation.get() else {
            return true;
        };
        let mut covered = covered.clone();
        if covered.borrow().contains(name) {
            return true;
        }
        tracing::info!(profile = %name, "profile waits for the webhook configuration to let its pods through before it turns ACTIVE");
        tokio::select! {
            _ = lost.cancelled() => false,
            seen = covered.wait_for(|set| set.contains(name)) => seen.is_ok(),
        }
    }

    /// Start the timers for the profiles found CREATING or DELETING.
    pub(crate) fn resume_transitions(&self) {
        // Only profiles the API wrote (they carry `createdAt`) follow its lifecycle: a hand-written
        // entry keeps the status written in it (`docs/eks-behaviour.md` §6). Profiles that break a
        // limit lowered since are stepped too: they are not served, but they are stored.
        for profile in self
            .inner
            .store
            .in_transition()
            .iter()
            .filter(|p| p.created_at.is_some())
        {
            let transition = match profile.status {
                ProfileStatus::Creating => Transition::Activate,
                ProfileStatus::Deleting => Transition::Remove,
                _ => continue,
            };
            self.spawn_transition(
                transition,
                profile.fargate_profile_name.clone(),
                self.arn_of(profile),
            );
        }
    }

    /// After the delay, CREATING → ACTIVE or DELETING → removed, if the profile is still the same
    /// one in the same status. Storage failures are retried (a profile stuck CREATING would block
    /// every later create).
    pub(super) fn spawn_transition(&self, transition: Transition, name: String, arn: String) {
        // Without a claim this process is the only writer; with one, only its holder writes.
        let term = match self.inner.claim.get() {
            None => None,
            Some(claim) => match claim.held() {
                Some(term) => Some(term),
                None => return, // the holder's sweep starts it there
            },
        };
        let lost = term
            .as_ref()
            .map_or_else(tokio_util::sync::CancellationToken::new, |t| {
                t.lost().clone()
            });
        let timer = format!("{arn} {transition:?}");
        if !self
            .inner
            .timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(timer.clone())
        {
            return; // this profile's step is already scheduled here
        }
        tracing::debug!(profile = %name, ?transition, "lifecycle step scheduled");
        // However the step ends (done, or dropped when the claim is lost), its entry goes, so that
        // a later term of this replica schedules it again.
        let scheduled = Scheduled {
            api: self.clone(),
            timer,
        };
        let api = self.clone();
        let creating = matches!(transition, Transition::Activate);
        let injected = self.faults().map(|f| {
            (
                f.faults.delay(&name, creating),
                f.faults.failure(&name, creating),
            )
        });
        let (delay, failure) = match injected {
            Some((delay, failure)) => (delay, failure),
            None => (None, None),
        };
        let delay = delay.unwrap_or(match transition {
            Transition::Activate => self.inner.create_delay,
            Transition::Remove => self.inner.delete_delay,
        });
        let step = async move {
            let mut backoff = Duration::from_millis(100);
            let mut pause = delay;
            loop {
                tokio::select! {
                    _ = lost.cancelled() => {
                        tracing::info!(profile = %name, ?transition, "lifecycle claim lost: the next holder takes this step");
                        break;
                    }
                    _ = tokio::time::sleep(pause) => {}
                }
                if creating && failure.is_none() && !api.activation_allowed(&name, &lost).await {
                    break; // the claim was lost: the next holder takes this step
                }
                let result = api
                    .inner
                    .store
                    .update(Box::new(|state: &mut ProfileState| {
                        let changed = match &failure {
                            Some((status, health)) => {
                                rules::fail(state, transition, &name, &arn, *status, health, |p| {
                                    api.arn_of(p)
                                })
                            }
                            None => {
                                rules::advance(state, transition, &name, &arn, |p| api.arn_of(p))
                            }
                        };
                        if changed {
                            Step::Commit
                        } else {
                            Step::Abort // gone, replaced, or moved on by another writer
                        }
                    }))
                    .await;
                match result {
                    Ok(Updated::Committed(_)) => {
                        tracing::info!(profile = %name, ?transition, "profile lifecycle step done");
                        break;
                    }
                    Ok(Updated::Aborted) => break,
                    Err(UpdateError::Violation(violation)) => {
                        tracing::error!(profile = %name, ?transition, %violation, "profile lifecycle step refused by the store");
                        break;
                    }
                    Err(error) => {
                        tracing::error!(profile = %name, ?transition, error = %crate::store::report(&error), "profile lifecycle step failed; retrying");
                        pause = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            drop(scheduled);
        };
        // Under a claim, the step is the term's work: the Lease is given up only after it.
        crate::claim::spawn_in(term.as_ref(), step);
    }
}

/// A lifecycle step scheduled in this process (`timers`); the entry is removed when it is dropped.
struct Scheduled {
    api: Api,
    timer: String,
}

impl Drop for Scheduled {
    fn drop(&mut self) {
        self.api
            .inner
            .timers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.timer);
    }
}
