//! The generated `matchConditions` (`serve --generate-match-conditions`; README, "Which pods reach
//! the webhook"): the claim holder keeps one condition of every webhook of the configuration
//! `--webhook-configuration` equal to [`reach`] of the profiles, so the kube-apiserver calls the
//! webhook only for pods a CREATING or ACTIVE profile could select or that pin a profile.
//!
//! Level-based: each pass reads the configuration and the profiles as they are and writes only
//! what differs, on every profile change, every [`RESYNC`] (a `helm upgrade` or a hand edit that
//! removed the condition) and after a failed write. Every write names the `resourceVersion` it
//! read (a configuration changed meanwhile is read again); the other conditions, and every other
//! field, are kept as read. An expression the apiserver refuses (400/422: its CEL cost budget) is
//! replaced by `true`, every pod being sent, and the fallback is logged and counted.
//!
//! What the holder has written, once it has had [`SETTLE`] to reach the apiserver's webhook
//! informer, is published as the set of covered profiles: a profile turns ACTIVE only once it is
//! in it (the API's lifecycle waits; README, "Which pods reach the webhook"), so no pod created
//! after ACTIVE is missed.

use crate::claim::Claim;
use crate::decision::reach::{CONDITION_NAME, Reach, reach};
use crate::metrics::Metrics;
use crate::store::ProfileStore;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the configuration is read again when nothing changed.
pub const RESYNC: Duration = Duration::from_secs(30);
/// [D] The time a written condition is given to reach the apiserver's informer before the profiles
/// it lets through count as covered (it takes milliseconds; one second is a wide margin).
pub const SETTLE: Duration = Duration::from_secs(1);
/// The pause after a failed pass, doubled up to [`RESYNC`].
const RETRY: Duration = Duration::from_millis(500);

/// What one pass did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Synced {
    /// The configuration already held the condition.
    Unchanged,
    /// The condition was written (`fallback`: as `true`, after the apiserver refused it).
    Written { fallback: bool },
    /// The configuration changed between the read and the write: read again.
    Conflict,
}

pub struct Writer {
    configs: Api<DynamicObject>,
    configuration: String,
    store: Arc<dyn ProfileStore>,
    metrics: Arc<Metrics>,
    covered: watch::Sender<Arc<BTreeSet<String>>>,
}

impl Writer {
    pub fn new(
        client: kube::Client,
        configuration: String,
        store: Arc<dyn ProfileStore>,
        metrics: Arc<Metrics>,
    ) -> Writer {
        let resource = ApiResource::erase::<MutatingWebhookConfiguration>(&());
        Writer {
            configs: Api::all_with(client, &resource),
            configuration,
            store,
            metrics,
            covered: watch::Sender::new(Arc::default()),
        }
    }

    /// The profiles whose pods reach the webhook as far as the claim holder knows, as published by
    /// [`run`](Self::run): what the API's lifecycle waits for before a profile turns ACTIVE.
    pub fn covered(&self) -> watch::Receiver<Arc<BTreeSet<String>>> {
        self.covered.subscribe()
    }

    /// One pass: the condition for the profiles as they are now, written where it differs.
    /// Returns what was done and the expression's [`Reach`].
    pub async fn sync(&self) -> Result<(Synced, Reach), kube::Error> {
        let wanted = reach(&self.store.current().fargate_profiles);
        let config = self.configs.get(&self.configuration).await?;
        let Some(webhooks) = config.data["webhooks"].as_array() else {
            return Ok((Synced::Unchanged, wanted));
        };
        if webhooks
            .iter()
            .all(|hook| condition_of(hook) == Some(&wanted.expression))
        {
            return Ok((Synced::Unchanged, wanted));
        }
        let version = config.metadata.resource_version.clone();
        let synced = match self.write(webhooks, &wanted.expression, &version).await {
            Err(kube::Error::Api(e))
                if matches!(e.code, 400 | 422) && wanted.fallback.is_none() =>
            {
                tracing::error!(
                    configuration = %self.configuration,
                    error = %e.message,
                    "the kube-apiserver refused the generated matchCondition; every pod is sent to the webhook"
                );
                let everyone = Reach {
                    expression: "true".into(),
                    fallback: Some(format!(
                        "the kube-apiserver refused the condition: {}",
                        e.message
                    )),
                    ..wanted
                };
                let synced = self.write(webhooks, &everyone.expression, &version).await?;
                return Ok((synced, everyone));
            }
            other => other?,
        };
        Ok((synced, wanted))
    }

    async fn write(
        &self,
        webhooks: &[Value],
        expression: &str,
        version: &Option<String>,
    ) -> Result<Synced, kube::Error> {
        let hooks: Vec<Value> = webhooks
            .iter()
            .map(|hook| with_condition(hook, expression))
            .collect();
        let patch = json!({"metadata": {"resourceVersion": version}, "webhooks": hooks});
        match self
            .configs
            .patch(
                &self.configuration,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => Ok(Synced::Written {
                fallback: expression == "true",
            }),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Synced::Conflict),
            Err(error) => Err(error),
        }
    }

    /// Keep the condition in step while `claim` is held, until `shutdown`.
    pub fn run(self, claim: Claim, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            claim.while_held(&shutdown, |lost| self.term(lost)).await;
            self.covered.send_replace(Arc::default());
        })
    }

    /// One term of the claim: sync on every change of the profiles, every [`RESYNC`], and after a
    /// failure with backoff. The covered set is emptied when the term ends.
    async fn term(&self, lost: CancellationToken) {
        let mut changes = self.store.changes();
        let mut retry = RETRY;
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                _ = lost.cancelled() => break,
                _ = changes.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            changes.borrow_and_update();
            wait = RESYNC;
            match self.sync().await {
                Ok((Synced::Conflict, _)) => wait = Duration::ZERO,
                Ok((synced, reached)) => {
                    retry = RETRY;
                    self.metrics
                        .match_conditions_fallback
                        .set(i64::from(reached.fallback.is_some()));
                    if let Synced::Written { .. } = synced {
                        self.metrics.match_conditions_writes.inc();
                        match &reached.fallback {
                            Some(why) => {
                                tracing::warn!(configuration = %self.configuration, %why, "matchCondition written as `true`: every pod is sent to the webhook")
                            }
                            None => {
                                tracing::info!(configuration = %self.configuration, profiles = reached.covered.len(), "matchCondition written for the profiles")
                            }
                        }
                        tokio::select! {
                            _ = lost.cancelled() => break,
                            _ = tokio::time::sleep(SETTLE) => {}
                        }
                    }
                    self.covered.send_replace(Arc::new(reached.covered));
                }
                Err(error) => {
                    tracing::warn!(%error, configuration = %self.configuration, "writing the generated matchCondition failed; retrying");
                    self.metrics.match_conditions_failures.inc();
                    wait = retry;
                    retry = (retry * 2).min(RESYNC);
                }
            }
        }
        self.metrics.match_conditions_fallback.set(0);
        self.covered.send_replace(Arc::default());
    }
}

/// The expression of our condition in one webhook, if it has it.
fn condition_of(hook: &Value) -> Option<&String> {
    hook["matchConditions"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == CONDITION_NAME)
        .and_then(|c| match &c["expression"] {
            Value::String(s) => Some(s),
            _ => None,
        })
}

/// `hook` with our condition set to `expression`, every other condition kept in its place.
fn with_condition(hook: &Value, expression: &str) -> Value {
    let mut hook = hook.clone();
    let ours = json!({"name": CONDITION_NAME, "expression": expression});
    let mut conditions = hook["matchConditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match conditions.iter_mut().find(|c| c["name"] == CONDITION_NAME) {
        Some(existing) => *existing = ours,
        None => conditions.push(ours),
    }
    hook["matchConditions"] = Value::Array(conditions);
    hook
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_condition_is_set_in_place_and_the_others_kept() {
        let hook = json!({"name": "w", "matchConditions": [
            {"name": "not-opted-out", "expression": "a"},
            {"name": CONDITION_NAME, "expression": "old"},
            {"name": "last", "expression": "b"},
        ]});
        let got = with_condition(&hook, "new");
        assert_eq!(got["matchConditions"][0]["expression"], "a");
        assert_eq!(got["matchConditions"][1]["expression"], "new");
        assert_eq!(got["matchConditions"][2]["expression"], "b");
        assert_eq!(condition_of(&got).map(String::as_str), Some("new"));
        let bare = with_condition(&json!({"name": "w"}), "x");
        assert_eq!(
            bare["matchConditions"],
            json!([{"name": CONDITION_NAME, "expression": "x"}])
        );
        assert_eq!(condition_of(&json!({"name": "w"})), None);
    }
}
