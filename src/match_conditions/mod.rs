//! The generated `matchConditions` (`serve --generate-match-conditions`; README, "Which pods reach
//! the webhook"): the claim holder keeps one condition of every webhook of the configuration
//! `--webhook-configuration` equal to [`reach`] of the profiles, so the kube-apiserver calls the
//! webhook only for pods a CREATING or ACTIVE profile could select or that pin a profile.
//!
//! Level-based: each pass reads the configuration and the profiles as they are and writes only
//! what differs, on every profile change, every [`RESYNC`] (a hand edit that removed the
//! condition) and after a failed write. Every write names the `resourceVersion` it
//! read (a configuration changed meanwhile is read again); the other conditions, and every other
//! field, are kept as read. An expression the apiserver refuses (400/422: its CEL cost budget) is
//! replaced by `true`, every pod being sent, and the fallback is logged and counted.
//!
//! What the holder has written, once it has had [`SETTLE`] to reach the apiserver's webhook
//! informer, is published as the set of covered profiles: a profile turns ACTIVE only once it is
//! in it (the API's lifecycle waits; README, "Which pods reach the webhook"), so no pod created
//! after ACTIVE is missed.

use crate::claim::Claim;
use crate::decision::reach::{CONDITION_NAME, PIN_WEBHOOK_PREFIX, Reach, not_skipped, reach};
use crate::metrics::Metrics;
use crate::profile::PROFILE_LABEL;
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
/// The longest one sync may take (its reads and its write).
const SYNC_DEADLINE: Duration = Duration::from_secs(30);
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
    /// Namespaces never sent; not empty: the writer owns the webhooks' namespace selector.
    exclusions: Vec<String>,
    store: Arc<dyn ProfileStore>,
    metrics: Arc<Metrics>,
    covered: watch::Sender<Arc<BTreeSet<String>>>,
    /// The longest one pass may take ([`SYNC_DEADLINE`]).
    deadline: Duration,
}

impl Writer {
    pub fn new(
        client: kube::Client,
        configuration: String,
        exclusions: Vec<String>,
        store: Arc<dyn ProfileStore>,
        metrics: Arc<Metrics>,
    ) -> Writer {
        let resource = ApiResource::erase::<MutatingWebhookConfiguration>(&());
        Writer {
            configs: Api::all_with(client, &resource),
            configuration,
            exclusions,
            store,
            metrics,
            covered: watch::Sender::new(Arc::default()),
            deadline: SYNC_DEADLINE,
        }
    }

    /// The longest one pass may take, instead of [`SYNC_DEADLINE`] (tests).
    pub fn with_deadline(mut self, deadline: Duration) -> Writer {
        self.deadline = deadline;
        self
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
        let desired = desired_webhooks(webhooks, &wanted, &self.exclusions);
        if desired == *webhooks {
            return Ok((Synced::Unchanged, wanted));
        }
        let version = config.metadata.resource_version.clone();
        let synced = match self
            .write(desired, &version, wanted.fallback.is_some())
            .await
        {
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
                    namespaces: None,
                    fallback: Some(format!(
                        "the kube-apiserver refused the condition: {}",
                        e.message
                    )),
                    ..wanted
                };
                let desired = desired_webhooks(webhooks, &everyone, &self.exclusions);
                let synced = self.write(desired, &version, true).await?;
                return Ok((synced, everyone));
            }
            other => other?,
        };
        Ok((synced, wanted))
    }

    async fn write(
        &self,
        hooks: Vec<Value>,
        version: &Option<String>,
        fallback: bool,
    ) -> Result<Synced, kube::Error> {
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
            Ok(_) => Ok(Synced::Written { fallback }),
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
            // Bounded: a request hanging on a dead connection would stop the term's syncs.
            let synced = match tokio::time::timeout(self.deadline, self.sync()).await {
                Ok(synced) => synced,
                Err(_) => Err(kube::Error::Service(
                    format!("the API server did not answer within {:?}", self.deadline).into(),
                )),
            };
            match synced {
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

/// The label every namespace carries with its own name (Kubernetes 1.21+).
const NAMESPACE_NAME: &str = "kubernetes.io/metadata.name";

/// The webhooks the configuration should hold, from what it holds: every webhook of the chart (any
/// not named [`PIN_WEBHOOK_PREFIX`]…) with our condition (when `reach` needs one) and, when we own
/// the namespace selector (`exclusions` not empty: the chart then renders none), a
/// `namespaceSelector` of ours: the excluded namespaces out and, when `reach` narrows, only its
/// namespaces in; then, when it narrows, one pin webhook per chart webhook. Every other field of
/// the chart's is kept as it is (nothing `helm upgrade` applies is ever changed here, so its
/// server-side apply meets no conflict), and a pass over its own output changes nothing.
pub fn desired_webhooks(current: &[Value], reach: &Reach, exclusions: &[String]) -> Vec<Value> {
    let own_selector = !exclusions.is_empty();
    let narrowed = reach.namespaces.as_ref().filter(|_| own_selector);
    let chart: Vec<&Value> = current
        .iter()
        .filter(|hook| !is_pin_webhook(hook))
        .collect();
    let mut out: Vec<Value> = chart
        .iter()
        .map(|hook| {
            let mut hook = if reach.condition_needed || narrowed.is_none() {
                with_condition(hook, &reach.expression)
            } else {
                without_condition(hook)
            };
            if own_selector {
                let mut requirements = vec![not_in(exclusions.iter())];
                if let Some(namespaces) = narrowed {
                    requirements.push(if namespaces.is_empty() {
                        // No namespace needs it (an empty `In` is not a valid selector).
                        json!({"key": NAMESPACE_NAME, "operator": "DoesNotExist"})
                    } else {
                        json!({"key": NAMESPACE_NAME, "operator": "In", "values": namespaces})
                    });
                }
                hook["namespaceSelector"] = json!({"matchExpressions": requirements});
            }
            hook
        })
        .collect();
    if let Some(namespaces) = narrowed {
        out.extend(
            chart
                .iter()
                .map(|hook| pin_webhook(hook, namespaces, exclusions)),
        );
    }
    out
}

fn is_pin_webhook(hook: &Value) -> bool {
    hook["name"]
        .as_str()
        .is_some_and(|n| n.starts_with(PIN_WEBHOOK_PREFIX))
}

/// `kubernetes.io/metadata.name NotIn` these namespaces (sorted, once each).
fn not_in<'a>(namespaces: impl Iterator<Item = &'a String>) -> Value {
    let values: BTreeSet<&String> = namespaces.collect();
    json!({"key": NAMESPACE_NAME, "operator": "NotIn", "values": values})
}

fn push_requirement(hook: &mut Value, selector: &str, requirement: Value) {
    if !hook[selector].is_object() {
        hook[selector] = json!({});
    }
    let list = &mut hook[selector]["matchExpressions"];
    if !list.is_array() {
        *list = json!([]);
    }
    if let Some(list) = list.as_array_mut() {
        list.push(requirement);
    }
}

/// The second webhook: the chart webhook's endpoint and rules, for the pods of the other namespaces
/// that carry the pin label, with the skip rules as its condition.
fn pin_webhook(chart: &Value, namespaces: &BTreeSet<String>, exclusions: &[String]) -> Value {
    let mut hook = chart.clone();
    let name = chart["name"].as_str().unwrap_or_default();
    hook["name"] = json!(format!("{PIN_WEBHOOK_PREFIX}{name}"));
    hook["namespaceSelector"] =
        json!({"matchExpressions": [not_in(exclusions.iter().chain(namespaces))]});
    push_requirement(
        &mut hook,
        "objectSelector",
        json!({"key": PROFILE_LABEL, "operator": "Exists"}),
    );
    with_condition(&hook, &not_skipped())
}

/// `hook` without our condition (the key goes when no condition is left).
fn without_condition(hook: &Value) -> Value {
    let mut hook = hook.clone();
    if let Some(object) = hook.as_object_mut() {
        let left: Vec<Value> = object
            .get("matchConditions")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter(|c| c["name"] != CONDITION_NAME)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if left.is_empty() {
            object.remove("matchConditions");
        } else {
            object.insert("matchConditions".into(), Value::Array(left));
        }
    }
    hook
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
    use crate::decision::reach::reach;
    use crate::profile::{FargateProfile, ProfileStatus, Selector};

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

    fn profile(name: &str, namespace: &str) -> FargateProfile {
        FargateProfile {
            fargate_profile_name: name.into(),
            status: ProfileStatus::Active,
            selectors: vec![Selector {
                namespace: Some(namespace.into()),
                labels: Default::default(),
            }],
            ..Default::default()
        }
    }

    /// A webhook as the chart renders it when the writer owns the namespace selector: none of its
    /// own, an objectSelector.
    fn chart_hook() -> Value {
        json!({"name": "fargate-mutation.fargate-webhook.io",
               "clientConfig": {"service": {"name": "fw", "namespace": "fs"}, "caBundle": "Q0E="},
               "objectSelector": {"matchLabels": {"team": "a"}},
               "rules": [{"operations": ["CREATE"], "resources": ["pods"]}]})
    }

    fn excluded() -> Vec<String> {
        vec!["fs".into(), "kube-system".into()]
    }

    #[test]
    fn exact_namespaces_narrow_the_chart_webhook_and_add_a_pin_webhook() {
        let reached = reach(&[profile("a", "apps"), profile("b", "web")]);
        let hooks = desired_webhooks(&[chart_hook()], &reached, &excluded());
        assert_eq!(hooks.len(), 2);
        let [main, pins] = &hooks[..] else {
            unreachable!()
        };
        assert_eq!(
            main["namespaceSelector"]["matchExpressions"],
            json!([{"key": NAMESPACE_NAME, "operator": "NotIn", "values": ["fs", "kube-system"]},
                   {"key": NAMESPACE_NAME, "operator": "In", "values": ["apps", "web"]}])
        );
        // Namespace-only selectors: the namespace selector says it all.
        assert!(!reached.condition_needed);
        assert_eq!(condition_of(main), None);
        assert_eq!(main["objectSelector"], chart_hook()["objectSelector"]);
        assert_eq!(pins["name"], "pins.fargate-mutation.fargate-webhook.io");
        assert_eq!(pins["clientConfig"], chart_hook()["clientConfig"]);
        assert_eq!(
            pins["namespaceSelector"]["matchExpressions"],
            json!([{"key": NAMESPACE_NAME, "operator": "NotIn",
                    "values": ["apps", "fs", "kube-system", "web"]}])
        );
        assert_eq!(
            pins["objectSelector"],
            json!({"matchLabels": {"team": "a"},
                   "matchExpressions": [{"key": PROFILE_LABEL, "operator": "Exists"}]})
        );
        assert_eq!(condition_of(pins), Some(&not_skipped()));
        // A pass over its own output changes nothing.
        assert_eq!(desired_webhooks(&hooks, &reached, &excluded()), hooks);
    }

    #[test]
    fn without_the_namespace_selector_the_condition_alone_decides() {
        // The chart renders its own selector (failurePolicy Fail): it is never touched.
        let mut hook = chart_hook();
        hook["namespaceSelector"] = json!({"matchExpressions": [
            {"key": NAMESPACE_NAME, "operator": "NotIn", "values": ["fs"]}]});
        let reached = reach(&[profile("a", "apps")]);
        let hooks = desired_webhooks(std::slice::from_ref(&hook), &reached, &[]);
        assert_eq!(hooks.len(), 1, "no pin webhook");
        assert_eq!(hooks[0]["namespaceSelector"], hook["namespaceSelector"]);
        assert_eq!(condition_of(&hooks[0]), Some(&reached.expression));
    }

    #[test]
    fn namespace_only_selectors_need_no_condition_on_the_chart_webhook() {
        let mut hook = chart_hook();
        hook["matchConditions"] = json!([{"name": "not-opted-out", "expression": "a"}]);
        let labelled = desired_webhooks(
            &[hook],
            &reach(&[{
                let mut p = profile("a", "apps");
                p.selectors[0].labels.insert("app".into(), "web".into());
                p
            }]),
            &excluded(),
        );
        assert_eq!(labelled[0]["matchConditions"].as_array().unwrap().len(), 2);
        let plain = reach(&[profile("a", "apps")]);
        assert!(!plain.condition_needed);
        let hooks = desired_webhooks(&labelled, &plain, &excluded());
        assert_eq!(
            hooks[0]["matchConditions"],
            json!([{"name": "not-opted-out", "expression": "a"}])
        );
        assert_eq!(condition_of(&hooks[1]), Some(&not_skipped()));
        assert_eq!(desired_webhooks(&hooks, &plain, &excluded()), hooks);
        let bare = desired_webhooks(&[chart_hook()], &plain, &excluded());
        assert!(bare[0].get("matchConditions").is_none(), "{}", bare[0]);
    }

    #[test]
    fn a_wildcard_namespace_takes_the_narrowing_and_the_pin_webhook_away() {
        let exact = desired_webhooks(
            &[chart_hook()],
            &reach(&[profile("a", "apps")]),
            &excluded(),
        );
        let glob = reach(&[profile("a", "apps"), profile("g", "team-*")]);
        let hooks = desired_webhooks(&exact, &glob, &excluded());
        assert_eq!(hooks.len(), 1);
        assert_eq!(
            hooks[0]["namespaceSelector"],
            json!({"matchExpressions": [
                {"key": NAMESPACE_NAME, "operator": "NotIn", "values": ["fs", "kube-system"]}]})
        );
        assert_eq!(condition_of(&hooks[0]), Some(&glob.expression));
        assert_eq!(desired_webhooks(&hooks, &glob, &excluded()), hooks);
    }

    #[test]
    fn without_profiles_no_namespace_needs_the_chart_webhook() {
        let hooks = desired_webhooks(
            &[json!({"name": "w.example.io"})],
            &reach(&[]),
            &["fs".to_string()],
        );
        assert_eq!(
            hooks[0]["namespaceSelector"]["matchExpressions"],
            json!([{"key": NAMESPACE_NAME, "operator": "NotIn", "values": ["fs"]},
                   {"key": NAMESPACE_NAME, "operator": "DoesNotExist"}])
        );
        assert_eq!(hooks[1]["name"], "pins.w.example.io");
        assert_eq!(
            hooks[1]["namespaceSelector"]["matchExpressions"],
            json!([{"key": NAMESPACE_NAME, "operator": "NotIn", "values": ["fs"]}])
        );
    }

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
