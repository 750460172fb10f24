//! `serve`: the profile store, the certificate reloader, and the webhook, EKS API and ops servers,
//! run until a signal and stopped in order. Tests drive [`start`] and get the bound addresses back.

use super::signals::Signals;
use super::store::{Opened, StoreAccess, Writers, open_store, replica_identity};
use super::{bind, readiness};
use crate::api::Api;
use crate::claim::Claim;
use crate::cli::ServeArgs;
use crate::decision::{Options, SharedSnapshot, Snapshot};
use crate::metrics::Metrics;
use crate::server::http::{self, Port, PortLimits};
use crate::server::{self as webhook_server, Webhook, tls};
use anyhow::Context;
use arc_swap::ArcSwap;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A started service: the addresses it listens on and the handle to stop it.
pub struct Running {
    pub webhook_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    pub api_addr: SocketAddr,
    pub snapshot: SharedSnapshot,
    pub metrics: Arc<Metrics>,
    /// Cancelled by [`Running::shutdown`]; the stopping sequence starts then.
    stop: CancellationToken,
    stopped: JoinHandle<()>,
    /// The tasks that keep the store and the certificate current: aborted once all has drained.
    watchers: Vec<JoinHandle<()>>,
    /// The Lease campaign of the background writers (Kubernetes store): it gives the Lease up once
    /// `stop` is cancelled.
    campaign: Option<JoinHandle<()>>,
}

impl Running {
    /// Start stopping (what SIGTERM does): `/readyz` answers 503 at once, the webhook and API
    /// keep serving for `--shutdown-delay`, then stop accepting and drain; the ops port closes
    /// last, so readiness can be asked until the end.
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Wait until every server has drained.
    pub async fn wait(self) {
        let _ = self.stopped.await;
        if let Some(campaign) = self.campaign {
            let _ = campaign.await;
        }
        for watcher in self.watchers {
            watcher.abort();
        }
    }
}

/// Run until SIGTERM or SIGINT, then drain; a second signal exits at once.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut signals = Signals::new();
    let running = start(&args).await?;
    signals.recv().await;
    tracing::info!(deadline = ?args.shutdown_timeout, "shutting down: no new connections, draining");
    running.shutdown();
    tokio::select! {
        _ = running.wait() => {}
        _ = signals.recv() => {
            tracing::warn!("second signal: exiting without waiting");
        }
    }
    Ok(())
}

/// Start everything `serve` runs. Returns once all ports are bound.
pub async fn start(args: &ServeArgs) -> anyhow::Result<Running> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::new());
    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let stop = CancellationToken::new();

    let api_config = args.api.config();
    let Opened {
        store,
        watcher,
        claim,
    } = open_store(
        args.store,
        StoreAccess::ReadWrite(Writers {
            lease_name: &args.lease_name,
            lease_duration: args.lease_duration,
            identity: args.identity.clone().unwrap_or_else(replica_identity),
            shutdown: &stop,
        }),
        &args.state_dir,
        &args.lock_name,
        api_config.limits(),
        &snapshot,
        &metrics,
    )
    .await?;
    let (claim, campaign) = claim.context("a read-write store comes with its writers' claim")?;
    let mut watchers = vec![watcher];
    let certs = certificates(args, &claim, &stop, &metrics, &mut watchers).await?;

    let webhook = Arc::new(Webhook {
        snapshot: Arc::clone(&snapshot),
        profiles_loaded: {
            let store = Arc::clone(&store);
            Arc::new(move || store.is_loaded())
        },
        options: Options {
            priority_override: args.priority_override,
        },
        metrics: Arc::clone(&metrics),
    });
    let webhook_listener = bind(args.webhook_addr, "webhook").await?;
    let metrics_listener = bind(args.metrics_addr, "metrics").await?;
    let webhook_addr = webhook_listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;

    let api = Api::new(&api_config, Arc::clone(&store), Arc::clone(&metrics))
        .context("configuring the EKS API")?;
    if args.generate_match_conditions {
        let client = kube::Client::try_default().await.context(
            "--generate-match-conditions: connecting to the Kubernetes API (in-cluster service account or kubeconfig)",
        )?;
        let configuration = args.webhook_configuration.clone().unwrap_or_default();
        let writer = crate::match_conditions::Writer::new(
            client,
            configuration,
            args.namespace_selector_exclude
                .iter()
                .filter(|ns| !ns.is_empty())
                .cloned()
                .collect(),
            Arc::clone(&store),
            Arc::clone(&metrics),
        );
        api.gate_activation(writer.covered());
        watchers.push(writer.run(claim.clone(), stop.clone()));
    }
    let api_listener = bind(args.api.api_addr, "API").await?;
    let api_addr = api_listener.local_addr()?;
    // Lifecycle timers resume once the store has the whole state (the Kubernetes store lists
    // first; a file store waits for a valid file).
    {
        let (store, api) = (Arc::clone(&store), api.clone());
        tokio::spawn(async move {
            store.wait_loaded().await;
            api.resume_lifecycle(claim);
        });
    }

    let ready = {
        let (store, certs) = (Arc::clone(&store), Arc::clone(&certs));
        readiness(stop.clone(), move || store.is_loaded() && certs.is_loaded())
    };
    let limits = port_limits(args);
    let port = |name: &'static str| Port {
        name,
        metrics: Arc::clone(&metrics),
    };
    let serving = CancellationToken::new();
    let ops_shutdown = CancellationToken::new();
    let servers = vec![
        tokio::spawn(http::serve(
            webhook_listener,
            Some(tls::server_config(Arc::clone(&certs))),
            webhook.handler(),
            serving.clone(),
            limits,
            port("webhook"),
        )),
        tokio::spawn(http::serve(
            api_listener,
            args.api
                .api_tls
                .then(|| tls::server_config(Arc::clone(&certs))),
            api.handler(),
            serving.clone(),
            limits,
            port("api"),
        )),
    ];
    let ops = tokio::spawn(http::serve(
        metrics_listener,
        None,
        webhook_server::ops_handler(Arc::clone(&metrics), ready),
        ops_shutdown.clone(),
        limits,
        port("ops"),
    ));
    let stopped = tokio::spawn(stop_in_order(
        stop.clone(),
        args.shutdown_delay,
        (serving, servers),
        (ops_shutdown, ops),
    ));
    announce!(
        "fargate-webhook: webhook https://{webhook_addr}{}",
        webhook_server::MUTATE_PATH
    );
    announce!("fargate-webhook: ops http://{metrics_addr} (/healthz /readyz /metrics)");
    let scheme = if args.api.api_tls { "https" } else { "http" };
    announce!(
        "fargate-webhook: EKS API {scheme}://{api_addr} (cluster {})",
        args.api.cluster_name
    );
    Ok(Running {
        webhook_addr,
        metrics_addr,
        api_addr,
        snapshot,
        metrics,
        stop,
        stopped,
        watchers,
        campaign,
    })
}

/// The serving certificate of `serve`: read from `--tls-cert`/`--tls-key` (watched; a development
/// pair is made when both are missing), or, with `--tls-secret`, kept in a Secret by the managed mode
/// (`managed_tls`), whose writes `claim` gates. The tasks that reload it and warn before it expires
/// go to `watchers`.
async fn certificates(
    args: &ServeArgs,
    claim: &Claim,
    stop: &CancellationToken,
    metrics: &Arc<Metrics>,
    watchers: &mut Vec<JoinHandle<()>>,
) -> anyhow::Result<Arc<tls::CertReloader>> {
    let certs = if let Some(secret) = &args.tls_secret {
        use crate::managed_tls::{Manager, Options, pki::canonical_name, plan};
        let policy = plan::Policy {
            ca_validity: args.tls_ca_validity.as_secs() as i64,
            cert_validity: args.tls_cert_validity.as_secs() as i64,
            names: args
                .tls_dns
                .iter()
                .cloned()
                .chain(args.tls_ip.iter().map(ToString::to_string))
                .map(|name| canonical_name(&name))
                .collect(),
        };
        plan::check_policy(&policy, args.tls_sync_interval.as_secs() as i64)
            .map_err(anyhow::Error::msg)?;
        let client = kube::Client::try_default().await.context(
            "--tls-secret: connecting to the Kubernetes API (in-cluster service account or kubeconfig)",
        )?;
        let namespace = match std::env::var("POD_NAMESPACE") {
            Ok(namespace) if !namespace.is_empty() => namespace,
            _ => client.default_namespace().to_string(),
        };
        let certs = tls::CertReloader::empty(
            &Manager::source(&namespace, secret),
            args.cert_expiry_warning,
            Arc::clone(metrics),
        );
        let options = Options {
            namespace,
            secret: secret.clone(),
            webhook_configuration: args.webhook_configuration.clone().unwrap_or_default(),
            policy,
            sync_interval: args.tls_sync_interval,
        };
        watchers.push(
            Manager::new(client, options, Arc::clone(&certs)).run(claim.clone(), stop.clone()),
        );
        certs
    } else {
        if let Some(ca) = crate::certs::ensure_dev_certs(&args.tls_cert, &args.tls_key)? {
            announce!(
                "fargate-webhook: generated a development CA and a certificate for localhost/127.0.0.1; trust {}",
                ca.display()
            );
        }
        let certs = tls::CertReloader::new(
            &args.tls_cert,
            &args.tls_key,
            args.cert_expiry_warning,
            Arc::clone(metrics),
        )
        .context("loading the serving certificate")?;
        watchers.push(
            certs
                .watch()
                .context("watching the certificate directory")?,
        );
        certs
    };
    watchers.push(certs.watch_expiry());
    Ok(certs)
}

/// The connection limits of every port, from the flags.
fn port_limits(args: &ServeArgs) -> PortLimits {
    PortLimits {
        handshake: args.handshake_timeout,
        header_read: args.handshake_timeout,
        body_read: args.body_timeout,
        idle: args.idle_timeout,
        drain: args.shutdown_timeout,
        max_connections: args.max_connections as usize,
        max_streams: args.max_streams,
        body_buffer: args.body_buffer_mib as usize * 1024 * 1024,
    }
}

/// The stopping sequence behind [`Running::shutdown`].
async fn stop_in_order(
    stop: CancellationToken,
    delay: std::time::Duration,
    serving: (CancellationToken, Vec<JoinHandle<()>>),
    ops: (CancellationToken, JoinHandle<()>),
) {
    stop.cancelled().await;
    if !delay.is_zero() {
        tracing::info!(?delay, "not ready; serving on until endpoints stop sending");
        tokio::time::sleep(delay).await;
    }
    serving.0.cancel();
    for server in serving.1 {
        let _ = server.await;
    }
    ops.0.cancel();
    let _ = ops.1.await;
}
