//! The write protocol (see the module documentation): read the lock, roll a pending commit
//! forward, run the change on a fresh list, commit to the lock, apply the writes.

use super::journal::{Lock, Op, Pending, Quarantined, parse_lock, plan};
use super::observed::Listed;
use super::resource::{created_by, has_finalizer, new_resource, same_status, state_of};
use super::{
    FIELD_MANAGER, FINALIZER, KubeStore, MAX_OP_STEPS, PART_OF, PENDING_KEY, QUARANTINE_KEPT,
    QUARANTINE_KEY, Source, TOKENS_KEY,
};
use crate::profile::TokenRecord;
use crate::store::crd::{FargateProfile as ProfileResource, FargateProfileStatus};
use crate::store::{Change, Step as ChangeStep, UpdateError, Updated, Violation};
use ::kube::ResourceExt;
use ::kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use ::kube::core::params::Preconditions;
use k8s_openapi::api::core::v1::ConfigMap;
use std::collections::BTreeMap;
use std::time::Duration;

/// Tries to clear a journal carried out, before leaving it to the next update.
const CLEAR_ATTEMPTS: u32 = 3;

#[derive(Debug)]
pub(super) enum AttemptError {
    /// Start the update again (conflict, moved lock, transient error).
    Retry(String),
    /// Our own create met an object of that name that is not ours.
    Clash(String),
    /// The change broke a rule every store keeps.
    Violation(Violation),
    /// The apiserver refused a journalled write of another commit for good (400, 422): it is taken
    /// out of the journal (quarantined) and the update runs again.
    Refused(String),
    Storage(UpdateError),
}

impl AttemptError {
    /// What went wrong, for logs.
    pub(super) fn reason(&self) -> String {
        match self {
            AttemptError::Storage(error) => crate::store::report(error).to_string(),
            AttemptError::Retry(reason)
            | AttemptError::Clash(reason)
            | AttemptError::Refused(reason) => reason.clone(),
            AttemptError::Violation(violation) => violation.to_string(),
        }
    }
}

pub(super) enum Mode<'m> {
    /// Finishing another writer's commit, read at this lock resourceVersion: any conflict
    /// restarts the attempt.
    Foreign { lock_version: &'m str },
    /// Applying our own commit, made at this lock resourceVersion.
    Own {
        lock_version: &'m str,
        commit: &'m str,
    },
}

pub(super) enum Flow {
    Continue,
    /// A later commit replaced ours (and so applied it): stop.
    Superseded,
}

pub(super) enum Step {
    Done,
    /// A write succeeded; the object as it is now (None: gone).
    Wrote(Option<Box<ProfileResource>>),
    /// A create found an object of that name that is not ours.
    Clash,
}

impl KubeStore {
    pub(super) async fn update_with_retries(
        &self,
        change: &mut Change<'_>,
    ) -> Result<Updated, UpdateError> {
        let result = self.update_with_retries_inner(change).await;
        if let Err(error) = &result
            && !matches!(error, UpdateError::Violation(_))
        {
            // Not a rule: the cluster cannot take profile writes now (alert
            // FargateWebhookStoreCannotCommit).
            self.published.metrics().store_commit_failures.inc();
            tracing::error!(error = %crate::store::report(error), "a FargateProfile write could not be committed");
        }
        result
    }

    async fn update_with_retries_inner(
        &self,
        change: &mut Change<'_>,
    ) -> Result<Updated, UpdateError> {
        let _writer = self.writer.lock().await;
        let deadline = self.options.commit_deadline;
        match tokio::time::timeout(deadline, self.attempts(change)).await {
            Ok(result) => result,
            Err(_) => Err(UpdateError::storage_context(format!(
                "the Kubernetes API did not finish the FargateProfile update within {deadline:?}; \
                 a write it left half done is completed by the next one"
            ))),
        }
    }

    /// Attempts of one update, under the writer lock.
    async fn attempts(&self, change: &mut Change<'_>) -> Result<Updated, UpdateError> {
        let mut pause = self.options.retry_backoff;
        let attempts = self.options.max_attempts.max(1);
        let mut last = String::new();
        for attempt in 1..=attempts {
            match self.attempt(change).await {
                Ok(state) => return Ok(state),
                Err(AttemptError::Violation(violation)) => return Err(violation.into()),
                Err(AttemptError::Storage(error)) => return Err(error),
                // Only another commit's write is quarantined; attempt() turns that into a retry.
                Err(AttemptError::Refused(message)) => {
                    return Err(UpdateError::storage_context(message));
                }
                Err(AttemptError::Retry(reason) | AttemptError::Clash(reason)) => {
                    tracing::debug!(attempt, %reason, "FargateProfile update conflicted; running it again");
                    self.published.metrics().store_write_conflicts.inc();
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

    pub(super) async fn attempt(&self, change: &mut Change<'_>) -> Result<Updated, AttemptError> {
        let lock = self.read_lock().await?;
        let (mut listed, mut list_version) = self.list().await?;
        if let Some(pending) = &lock.pending {
            if self.lock_moved(&lock.resource_version).await? {
                return Err(AttemptError::Retry("the coordination object moved".into()));
            }
            let state = state_of(&listed.objects, &lock.tokens);
            for op in &pending.ops {
                if let Err(rule) = op.check(&state, &self.limits) {
                    let refused = format!("the API's rules refuse it: {rule}");
                    self.quarantine(&lock, pending, op, &refused).await?;
                    return Err(AttemptError::Retry(format!(
                        "a journalled write that breaks the API's rules was quarantined: {rule}"
                    )));
                }
                match self
                    .drive(
                        op,
                        listed.objects.get(op.name()).cloned(),
                        &Mode::Foreign {
                            lock_version: &lock.resource_version,
                        },
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(AttemptError::Refused(refused)) => {
                        self.quarantine(&lock, pending, op, &refused).await?;
                        return Err(AttemptError::Retry(format!(
                            "a journalled write the apiserver refuses was quarantined: {refused}"
                        )));
                    }
                    Err(other) => return Err(other),
                }
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
                self.clear_pending(&lock.resource_version, &lock.tokens, &lock.quarantined)
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
                &lock.quarantined,
            )
            .await?;
        self.lock_observed().tokens = after.client_request_tokens.clone();

        if let Some(pending) = &pending {
            let mode = Mode::Own {
                lock_version: &lock_version,
                commit: &pending.commit,
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
                        self.drop_clashed(
                            &lock_version,
                            pending,
                            op,
                            &after.client_request_tokens,
                            &lock.quarantined,
                        )
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
                self.clear_pending(
                    &lock_version,
                    &after.client_request_tokens,
                    &lock.quarantined,
                )
                .await;
            }
        }
        let mut observed = self.lock_observed();
        Ok(Updated::Committed(
            self.publish(&mut observed, Source::Update),
        ))
    }

    pub(super) async fn list(&self) -> Result<(Listed, Option<u64>), AttemptError> {
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

    /// The coordination ConfigMap, made empty first if there is none.
    pub(super) async fn read_lock(&self) -> Result<Lock, AttemptError> {
        if let Some(lock) = self.read_lock_if_any().await? {
            return Ok(lock);
        }
        let fresh = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.options.lock_name.clone()),
                namespace: Some(self.options.namespace.clone()),
                labels: Some(BTreeMap::from([(PART_OF.0.into(), PART_OF.1.into())])),
                ..Default::default()
            },
            data: Some(BTreeMap::new()),
            ..Default::default()
        };
        let made = self
            .locks
            .create(&post_params(), &fresh)
            .await
            .map_err(|e| failure("creating the coordination ConfigMap", e))?;
        parsed(&made)
    }

    /// The coordination ConfigMap as it is, if there is one (none is made).
    pub(super) async fn read_lock_if_any(&self) -> Result<Option<Lock>, AttemptError> {
        let found = self
            .locks
            .get_opt(&self.options.lock_name)
            .await
            .map_err(|e| failure("reading the coordination ConfigMap", e))?;
        found.as_ref().map(parsed).transpose()
    }

    /// The journal changed hands while `mode`'s op was applied: finishing another writer's commit
    /// starts the attempt again; our own commit was carried out or quarantined ([`Self::superseded`]).
    /// `None`: the lock is where it was.
    async fn journal_moved(&self, mode: &Mode<'_>) -> Result<Option<Flow>, AttemptError> {
        let (lock_version, commit) = match mode {
            Mode::Foreign { lock_version } => (lock_version, None),
            Mode::Own {
                lock_version,
                commit,
            } => (lock_version, Some(commit)),
        };
        if !self.lock_moved(lock_version).await? {
            return Ok(None);
        }
        match commit {
            None => Err(AttemptError::Retry(
                "the coordination object moved while finishing an earlier commit".into(),
            )),
            Some(commit) => self.superseded(commit).await.map(Some),
        }
    }

    pub(super) async fn lock_moved(&self, version: &str) -> Result<bool, AttemptError> {
        let found = self
            .locks
            .get_opt(&self.options.lock_name)
            .await
            .map_err(|e| failure("reading the coordination ConfigMap", e))?;
        Ok(found
            .and_then(|cm| cm.metadata.resource_version)
            .is_none_or(|v| v != version))
    }

    /// Our commit's journal was replaced: another writer carried it out, unless it quarantined one
    /// of its writes instead (the apiserver or the API's rules refused it), which the caller must
    /// hear about rather than a success. The holder's housekeeping also moves the lock when it
    /// takes out a create kubectl has deleted since: applied, then deleted. (The API's commits
    /// hold one write each; a commit of several would leave the rest to the next writer.)
    async fn superseded(&self, commit: &str) -> Result<Flow, AttemptError> {
        let Some(lock) = self.read_lock_if_any().await? else {
            return Ok(Flow::Superseded);
        };
        match lock.quarantined.iter().find(|q| q.commit == commit) {
            Some(refused) => Err(AttemptError::Storage(UpdateError::storage_context(
                format!(
                    "the {} of FargateProfile {} was refused for good and quarantined: {}",
                    refused.op.verb(),
                    refused.op.name(),
                    refused.refused
                ),
            ))),
            None => Ok(Flow::Superseded),
        }
    }

    pub(super) async fn write_lock(
        &self,
        version: &str,
        tokens: &BTreeMap<String, TokenRecord>,
        pending: Option<&Pending>,
        quarantined: &[Quarantined],
    ) -> Result<String, AttemptError> {
        let mut data = BTreeMap::new();
        data.insert(
            TOKENS_KEY.to_owned(),
            serde_json::to_string(tokens).expect("tokens serialize"),
        );
        if !quarantined.is_empty() {
            data.insert(
                QUARANTINE_KEY.to_owned(),
                serde_json::to_string(quarantined).expect("quarantined writes serialize"),
            );
        }
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
    pub(super) async fn clear_pending(
        &self,
        version: &str,
        tokens: &BTreeMap<String, TokenRecord>,
        quarantined: &[Quarantined],
    ) {
        // A journal left behind is carried out again by the next update, and by then kubectl may
        // have changed what it wrote: a transient failure is retried before it is left there. A
        // conflict means another writer moved the lock, and with it took the journal over.
        let mut pause = self.options.retry_backoff;
        for attempt in 1..=CLEAR_ATTEMPTS {
            let reason = match self.write_lock(version, tokens, None, quarantined).await {
                Ok(_) => return,
                Err(error) => error.reason(),
            };
            if attempt == CLEAR_ATTEMPTS {
                tracing::warn!(%reason, "could not clear the applied writes from the coordination ConfigMap; the next update carries them out again");
                return;
            }
            tokio::time::sleep(jitter(pause)).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Take a create that met someone else's object out of our journal (and its tokens).
    pub(super) async fn drop_clashed(
        &self,
        version: &str,
        pending: &Pending,
        clashed: &Op,
        tokens: &BTreeMap<String, TokenRecord>,
        quarantined: &[Quarantined],
    ) {
        let (rest, tokens) = without_op(pending, clashed, tokens);
        if let Err(AttemptError::Storage(error)) = self
            .write_lock(version, &tokens, rest.as_ref(), quarantined)
            .await
        {
            tracing::warn!(error = %crate::store::report(&error), "could not drop a failed create from the coordination ConfigMap");
        }
    }

    /// Take a write the apiserver refuses for good (a spec the CRD's schema or CEL rules reject, say
    /// after a CRD upgrade tightened them) out of the journal and keep it under [`QUARANTINE_KEY`],
    /// conditional on the lock as read: retrying it forever would stop every write of the cluster.
    pub(super) async fn quarantine(
        &self,
        lock: &Lock,
        pending: &Pending,
        refused_op: &Op,
        refused: &str,
    ) -> Result<(), AttemptError> {
        let (rest, tokens) = without_op(pending, refused_op, &lock.tokens);
        let mut quarantined = lock.quarantined.clone();
        quarantined.push(Quarantined {
            commit: pending.commit.clone(),
            op: refused_op.clone(),
            refused: refused.to_owned(),
            at: jiff::Timestamp::now().to_string(),
        });
        let excess = quarantined.len().saturating_sub(QUARANTINE_KEPT);
        quarantined.drain(..excess);
        self.write_lock(&lock.resource_version, &tokens, rest.as_ref(), &quarantined)
            .await?;
        self.published.metrics().store_quarantined.inc();
        tracing::error!(
            profile = refused_op.name(),
            commit = %pending.commit,
            %refused,
            "a journalled FargateProfile write the apiserver refuses was quarantined (data.{QUARANTINE_KEY} of the coordination ConfigMap {}/{}); writes go on",
            self.options.namespace,
            self.options.lock_name,
        );
        Ok(())
    }

    /// Apply one journaled write, step by step, until it is done.
    pub(super) async fn drive(
        &self,
        op: &Op,
        mut current: Option<ProfileResource>,
        mode: &Mode<'_>,
    ) -> Result<Flow, AttemptError> {
        let mut transient = 0;
        for _ in 0..MAX_OP_STEPS {
            match self.step(op, current.as_ref(), mode).await {
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
                        Mode::Foreign { .. } => Ok(Flow::Continue),
                        Mode::Own { .. } => Err(AttemptError::Clash(format!(
                            "a FargateProfile named {} was created by someone else",
                            op.name()
                        ))),
                    };
                }
                Err(error) if api_code(&error) == Some(409) => match mode {
                    Mode::Foreign { .. } => {
                        return Err(AttemptError::Retry(format!(
                            "FargateProfile {} changed while finishing an earlier commit",
                            op.name()
                        )));
                    }
                    Mode::Own { .. } => {
                        current = self
                            .profiles
                            .get_opt(op.name())
                            .await
                            .map_err(|e| failure("reading a FargateProfile", e))?;
                        if let Some(flow) = self.journal_moved(mode).await? {
                            return Ok(flow);
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
                    // Meanwhile the journal may have changed hands (or lost this op: a create
                    // of a resource kubectl has deleted since, which must not be made again).
                    if let Some(flow) = self.journal_moved(mode).await? {
                        return Ok(flow);
                    }
                }
                Err(error) => {
                    return Err(match mode {
                        Mode::Foreign { .. } if refused_for_good(&error) => AttemptError::Refused(
                            format!("{} of FargateProfile {}: {error}", op.verb(), op.name()),
                        ),
                        Mode::Foreign { .. } => {
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
    pub(super) async fn step(
        &self,
        op: &Op,
        current: Option<&ProfileResource>,
        mode: &Mode<'_>,
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
                uid,
                tags,
                generation,
                status,
                ..
            } => {
                let Some(obj) = current.filter(|o| {
                    o.metadata.uid.as_deref() == Some(uid.as_str())
                        && o.metadata.deletion_timestamp.is_none()
                }) else {
                    return Ok(Step::Done);
                };
                // Replaying a journal: a spec past the planned generation was written since, by
                // this op (the tags are then there) or by kubectl after it, whose edit the replay
                // must not revert (README, "Several replicas"). The writer's own commit writes its
                // tags over a concurrent edit: the caller is told they were written.
                let replay = matches!(mode, Mode::Foreign { .. });
                if let Some(tags) = tags
                    && obj.spec.tags != *tags
                    && !(replay && generation.is_some_and(|g| obj.metadata.generation != Some(g)))
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
                let written = if obj.metadata.deletion_timestamp.is_none() {
                    let params = DeleteParams {
                        preconditions: Some(Preconditions {
                            uid: Some(uid.clone()),
                            resource_version: obj.metadata.resource_version.clone(),
                        }),
                        ..Default::default()
                    };
                    self.profiles
                        .delete(name, &params)
                        .await
                        .map(|deleted| deleted.left())
                } else if has_finalizer(obj) {
                    self.release(obj).await
                } else {
                    return Ok(Step::Done);
                };
                // The goal is that the object be gone: "not found" is that goal reached.
                match written {
                    Ok(now) => Ok(Step::Wrote(now.map(Box::new))),
                    Err(error) if api_code(&error) == Some(404) => Ok(Step::Wrote(None)),
                    Err(error) => Err(error),
                }
            }
        }
    }

    pub(super) async fn write_status(
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
    pub(super) async fn release(
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

/// The lock read from `config_map`; a part that does not parse stops writes ([`parse_lock`]).
fn parsed(config_map: &ConfigMap) -> Result<Lock, AttemptError> {
    parse_lock(config_map).map_err(|message| {
        tracing::error!("{message}");
        AttemptError::Storage(UpdateError::storage_context(message))
    })
}

pub(super) fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..Default::default()
    }
}

pub(super) fn api_code(error: &::kube::Error) -> Option<u16> {
    match error {
        ::kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// [D] Refused for good, whatever the number of tries: the request itself is wrong (400) or invalid
/// (422: the CRD's schema or CEL rules, an immutable field). Not a 403 or a 404: a missing right or
/// CRD is the cluster's state, not the write's, and quarantining would drop acknowledged writes.
pub(super) fn refused_for_good(error: &::kube::Error) -> bool {
    matches!(api_code(error), Some(400 | 422))
}

/// The journal without `op`, and the tokens without the one a create of `op` recorded.
fn without_op(
    pending: &Pending,
    op: &Op,
    tokens: &BTreeMap<String, TokenRecord>,
) -> (Option<Pending>, BTreeMap<String, TokenRecord>) {
    let mut rest = pending.clone();
    rest.ops.retain(|o| o != op);
    let mut tokens = tokens.clone();
    if let Op::Create { name, status, .. } = op {
        tokens.retain(|_, r| {
            !(r.fargate_profile_name == *name
                && Some(&r.fargate_profile_arn) == status.fargate_profile_arn.as_ref())
        });
    }
    ((!rest.ops.is_empty()).then_some(rest), tokens)
}

/// Worth trying again: conflicts, throttling, server trouble and transport errors.
pub(super) fn is_transient(error: &::kube::Error) -> bool {
    match api_code(error) {
        Some(code) => matches!(code, 409 | 429 | 500 | 502 | 503 | 504),
        None => !matches!(
            error,
            ::kube::Error::SerdeError(_) | ::kube::Error::BuildRequest(_)
        ),
    }
}

pub(super) fn failure(what: &str, error: ::kube::Error) -> AttemptError {
    if is_transient(&error) {
        AttemptError::Retry(format!("{what}: {error}"))
    } else {
        AttemptError::Storage(UpdateError::storage(what, error))
    }
}

pub(super) fn jitter(pause: Duration) -> Duration {
    let nanos = uuid::Uuid::new_v4().as_u128() as u64 % (pause.as_nanos() as u64 / 2 + 1);
    pause / 2 + Duration::from_nanos(nanos)
}
