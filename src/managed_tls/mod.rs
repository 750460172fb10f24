//! The managed TLS mode (`serve --tls-secret`; README, "TLS: the managed mode"): the webhook keeps its
//! own CA and serving certificate in one Secret, as Kyverno does, so the chart renders no certificate
//! and two renders are the same.
//!
//! Every replica reads the Secret each sync and serves its certificate (through the
//! [`CertReloader`], as for files). The replica that holds the writers' claim ([`Claim`]) also
//! decides ([`plan`]): it creates the Secret, renews the serving certificate and the CA before they
//! expire, and keeps the `caBundle` of the one MutatingWebhookConfiguration it is given equal to the
//! Secret's `ca.crt`. Every write carries the `resourceVersion` it read, so a write based on a stale
//! read is refused (409) and retried from a fresh read at the next sync.

pub mod pki;
pub mod plan;

use crate::claim::Claim;
use crate::server::tls::{self, CertReloader};
use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use pki::Material;
use plan::{Plan, Policy};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Set on the Secret the managed mode writes; a Secret of that name without it is left alone.
pub const ANNOTATION: &str = "fargate-webhook.io/managed-tls";
/// The key of the newest CA's private key in the Secret (beside `ca.crt`, `tls.crt`, `tls.key`).
pub const CA_KEY: &str = "ca.key";

/// While nothing is served yet, the Secret is read this often (a new replica waits for the holder's
/// first write).
const FIRST_SYNC: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct Options {
    pub namespace: String,
    pub secret: String,
    pub webhook_configuration: String,
    pub policy: Policy,
    pub sync_interval: Duration,
}

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Synced {
    /// The holder's decision (None: not the holder).
    pub plan: Option<Plan>,
    /// The Secret was written.
    pub wrote: bool,
    /// The caBundle was patched.
    pub patched: bool,
}

pub struct Manager {
    secrets: Api<Secret>,
    configs: Api<DynamicObject>,
    options: Options,
    certs: Arc<CertReloader>,
}

fn material_of(secret: &Secret) -> Material {
    let text = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .unwrap_or_default()
    };
    Material {
        ca_bundle: text("ca.crt"),
        ca_key: text(CA_KEY),
        cert: text("tls.crt"),
        key: text("tls.key"),
    }
}

fn is_ours(secret: &Secret) -> bool {
    secret
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.get(ANNOTATION).is_some_and(|v| v == "true"))
}

/// The caBundle of each webhook of the configuration, decoded (empty when absent).
fn ca_bundles(config: &DynamicObject) -> Vec<Vec<u8>> {
    config.data["webhooks"]
        .as_array()
        .map(|hooks| {
            hooks
                .iter()
                .map(|hook| {
                    hook["clientConfig"]["caBundle"]
                        .as_str()
                        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn is_conflict(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(e) if e.code == 409)
}

impl Manager {
    pub fn new(client: kube::Client, options: Options, certs: Arc<CertReloader>) -> Manager {
        let resource = ApiResource::erase::<MutatingWebhookConfiguration>(&());
        Manager {
            secrets: Api::namespaced(client.clone(), &options.namespace),
            configs: Api::all_with(client, &resource),
            options,
            certs,
        }
    }

    /// Where the pair comes from, in logs and errors.
    pub fn source(namespace: &str, secret: &str) -> String {
        format!("secret {namespace}/{secret}")
    }

    /// One sync at `now` (Unix seconds): as the holder, bring the Secret and the caBundle up to date;
    /// in every case, serve the Secret's certificate.
    pub async fn sync(&self, holder: bool, now: i64) -> Result<Synced, kube::Error> {
        let mut synced = Synced::default();
        let mut secret = self.secrets.get_opt(&self.options.secret).await?;
        // A failed write (the configuration unreadable, say) must not keep this replica from serving.
        let mut failed = None;
        if holder {
            match self.write(secret.as_ref(), now).await {
                Ok((plan, written, patched)) => {
                    synced.plan = Some(plan);
                    synced.patched = patched;
                    if let Some(written) = written {
                        synced.wrote = true;
                        secret = Some(written);
                    }
                }
                Err(error) => failed = Some(error),
            }
        }
        if let Some(secret) = secret.as_ref().filter(|s| is_ours(s)) {
            self.install(&material_of(secret));
        }
        failed.map_or(Ok(synced), Err)
    }

    fn install(&self, material: &Material) {
        let name = Self::source(&self.options.namespace, &self.options.secret);
        match tls::parse(
            material.cert.as_bytes(),
            material.key.as_bytes(),
            &PathBuf::from(format!("{name} tls.crt")),
            &PathBuf::from(format!("{name} tls.key")),
        ) {
            Ok(loaded) => {
                self.certs.install(loaded);
            }
            Err(error) => {
                tracing::warn!(%error, "the managed Secret holds no serving certificate to serve yet")
            }
        }
    }

    /// The holder's part: plan, write the Secret, then patch the caBundle. Returns the plan, the
    /// Secret written (if any) and whether the caBundle was patched.
    async fn write(
        &self,
        secret: Option<&Secret>,
        now: i64,
    ) -> Result<(Plan, Option<Secret>, bool), kube::Error> {
        let config = self
            .configs
            .get_opt(&self.options.webhook_configuration)
            .await?;
        if config.is_none() {
            tracing::warn!(
                configuration = %self.options.webhook_configuration,
                "the MutatingWebhookConfiguration does not exist (yet): its caBundle cannot be set"
            );
        }
        let current = secret.map(material_of).unwrap_or_default();
        let stored = secret.map(|s| pki::inspect(&current, is_ours(s)));
        let newest_ca = pki::ders(current.ca_bundle.as_bytes()).into_iter().next();
        let trusted = match (&config, &newest_ca) {
            (Some(config), Some(ca)) => {
                let bundles = ca_bundles(config);
                !bundles.is_empty() && bundles.iter().all(|bundle| pki::ders(bundle).contains(ca))
            }
            _ => false,
        };
        let step = plan::plan(stored.as_ref(), &self.options.policy, trusted, now);
        let next = match pki::apply(&step, &current, &self.options.policy, now) {
            Ok(next) => next,
            Err(error) => {
                tracing::error!(%error, ?step, "making the managed certificates failed");
                None
            }
        };
        match &step {
            Plan::Refuse => tracing::error!(
                secret = %self.options.secret,
                "Secret {} exists without the annotation {ANNOTATION}: it is not the managed mode's, so it is left alone (delete it, or name another with --tls-secret)",
                self.options.secret
            ),
            Plan::AwaitTrust(reason) => tracing::info!(
                ?reason,
                "the serving certificate is due; waiting for the caBundle to trust the newest CA"
            ),
            Plan::Keep => {}
            step => {
                tracing::info!(?step, secret = %self.options.secret, "managed certificates: writing the Secret")
            }
        }
        let mut written = None;
        if let Some(next) = next {
            match self.put(secret, &next).await {
                Ok(secret) => written = Some(secret),
                // Another writer was first: read again at the next sync.
                Err(error) if is_conflict(&error) => {
                    tracing::info!("the managed Secret changed meanwhile; syncing again later");
                    return Ok((step, None, false));
                }
                Err(error) => return Err(error),
            }
        }
        let bundle = match &written {
            Some(secret) => material_of(secret).ca_bundle,
            None => current.ca_bundle,
        };
        let patched = match config {
            Some(config) if !bundle.is_empty() => self.patch_bundle(&config, &bundle).await?,
            _ => false,
        };
        Ok((step, written, patched))
    }

    /// Create the Secret, or replace its data with the `resourceVersion` read.
    async fn put(&self, read: Option<&Secret>, material: &Material) -> Result<Secret, kube::Error> {
        let data: BTreeMap<String, ByteString> = [
            ("ca.crt", &material.ca_bundle),
            (CA_KEY, &material.ca_key),
            ("tls.crt", &material.cert),
            ("tls.key", &material.key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
        .collect();
        match read {
            None => {
                let secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(self.options.secret.clone()),
                        namespace: Some(self.options.namespace.clone()),
                        annotations: Some(BTreeMap::from([(ANNOTATION.into(), "true".into())])),
                        labels: Some(BTreeMap::from([(
                            "app.kubernetes.io/managed-by".into(),
                            "fargate-webhook".into(),
                        )])),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    data: Some(data),
                    ..Secret::default()
                };
                self.secrets.create(&PostParams::default(), &secret).await
            }
            Some(read) => {
                let mut secret = read.clone();
                secret.data = Some(data);
                secret.string_data = None;
                self.secrets
                    .replace(&self.options.secret, &PostParams::default(), &secret)
                    .await
            }
        }
    }

    /// Set every webhook's caBundle to `bundle` unless it is already; the patch names the
    /// `resourceVersion` read, so a configuration changed meanwhile (409) waits for the next sync.
    async fn patch_bundle(
        &self,
        config: &DynamicObject,
        bundle: &str,
    ) -> Result<bool, kube::Error> {
        let encoded = base64::engine::general_purpose::STANDARD.encode(bundle.as_bytes());
        let Some(hooks) = config.data["webhooks"].as_array() else {
            return Ok(false);
        };
        if ca_bundles(config)
            .iter()
            .all(|current| current == bundle.as_bytes())
        {
            return Ok(false);
        }
        let hooks: Vec<Value> = hooks
            .iter()
            .cloned()
            .map(|mut hook| {
                hook["clientConfig"]["caBundle"] = json!(encoded);
                hook
            })
            .collect();
        let patch = json!({
            "metadata": {"resourceVersion": config.metadata.resource_version},
            "webhooks": hooks,
        });
        match self
            .configs
            .patch(
                &self.options.webhook_configuration,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(configuration = %self.options.webhook_configuration, "caBundle set to the managed CAs");
                Ok(true)
            }
            Err(error) if is_conflict(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Sync every `--tls-sync-interval` (every second while nothing is served) until `shutdown`;
    /// the writes happen only while `claim` is held.
    pub fn run(self, claim: Claim, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                // The holder's writes belong to its term: dropped if the claim is lost meanwhile,
                // awaited before the Lease is given up.
                let result = match claim.held() {
                    Some(term) => term
                        .run(self.sync(true, tls::unix_now()))
                        .await
                        .unwrap_or_else(|| Ok(Synced::default())),
                    None => self.sync(false, tls::unix_now()).await,
                };
                if let Err(error) = result {
                    tracing::warn!(%error, secret = %self.options.secret, "syncing the managed certificates failed; retrying");
                }
                let wait = if self.certs.is_loaded() {
                    self.options.sync_interval
                } else {
                    self.options.sync_interval.min(FIRST_SYNC)
                };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }
}
