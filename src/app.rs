//! Wiring: build the store, the certificate reloader and the servers from the command line, and
//! run them until a signal. Tests drive [`start`] and get the bound addresses back.

use crate::api::Api;
use crate::claim::Claim;
use crate::claim::lease::Elector;
use crate::cli::{
    CertsCommand, Cli, Command, ExplainArgs, OutputFormat, PlacementKind, SchedulerArgs, ServeArgs,
    StoreKind,
};
use crate::decision::{Options, SharedSnapshot, Snapshot};
use crate::metrics::Metrics;
use crate::profile::Limits;
use crate::scheduler::{Placement, SchedulerOptions};
use crate::server::http::{self, Port, PortLimits};
use crate::server::{self as webhook_server, Webhook, tls};
use crate::store::ProfileStore;
use crate::store::file::FileStore;
use crate::store::kubernetes::{KubeStore, KubeStoreOptions};
use anyhow::Context;
use arc_swap::ArcSwap;
use k8s_openapi::api::coordination::v1::Lease;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A line for whoever started the server (the bound addresses, the CA to trust). A closed stdout
/// must not take the server down, so write errors are ignored (`println!` would panic).
macro_rules! announce {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

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

async fn bind(addr: SocketAddr, what: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} address {addr}"))
}

/// Whether a process may write FargateProfile resources besides reading them.
enum StoreAccess<'a> {
    /// `serve`: the API writes, and the background writers (lifecycle steps, housekeeping of
    /// resources made with kubectl) write under the claim of [`Writers`].
    ReadWrite(Writers<'a>),
    /// `scheduler`: reads only (its ClusterRole grants no writes), so no housekeeping.
    ReadOnly,
}

/// How `serve` replicas elect their one background writer (Kubernetes store; with the file store
/// the claim is local).
struct Writers<'a> {
    lease_name: &'a str,
    lease_duration: Duration,
    identity: String,
    shutdown: &'a CancellationToken,
}

/// What [`open_store`] opened.
struct Opened {
    store: Arc<dyn ProfileStore>,
    /// The task that keeps the store current.
    watcher: JoinHandle<()>,
    /// The background writers' claim (read-write access only) and its Lease campaign.
    claim: Option<(Claim, Option<JoinHandle<()>>)>,
}

/// The profile store `serve` and `scheduler` read, publishing into `snapshot`.
async fn open_store(
    kind: StoreKind,
    access: StoreAccess<'_>,
    state_dir: &std::path::Path,
    lock_name: &str,
    limits: Limits,
    snapshot: &SharedSnapshot,
    metrics: &Arc<Metrics>,
) -> anyhow::Result<Opened> {
    Ok(match kind {
        StoreKind::File => {
            let store =
                FileStore::open(state_dir, limits, Arc::clone(snapshot), Arc::clone(metrics))
                    .with_context(|| {
                        format!("opening the state directory {}", state_dir.display())
                    })?;
            let watcher = store.watch().context("watching the state directory")?;
            let claim = match access {
                StoreAccess::ReadWrite(writers) => Some((Claim::local(writers.shutdown), None)),
                StoreAccess::ReadOnly => None,
            };
            Opened {
                store,
                watcher,
                claim,
            }
        }
        StoreKind::Kubernetes => {
            let client = kube::Client::try_default().await.context(
                "connecting to the Kubernetes API (in-cluster service account or kubeconfig)",
            )?;
            // Empty: the client's default namespace (in a pod, its own).
            let namespace = std::env::var("POD_NAMESPACE").unwrap_or_default();
            let mut options = KubeStoreOptions::new(namespace);
            options.lock_name = lock_name.to_string();
            let claim = match access {
                StoreAccess::ReadWrite(writers) => {
                    let (claim, campaign) = lease_claim(
                        &client,
                        writers.lease_name,
                        writers.lease_duration,
                        &writers.identity,
                        writers.shutdown,
                    )?;
                    Some((claim, Some(campaign)))
                }
                StoreAccess::ReadOnly => None,
            };
            options.housekeeping = claim.is_some();
            options.claim = claim.as_ref().map(|(claim, _)| claim.clone());
            let store = KubeStore::new(
                client,
                Arc::clone(snapshot),
                Arc::clone(metrics),
                limits,
                options,
            );
            let watcher = store.start();
            Opened {
                store,
                watcher,
                claim,
            }
        }
    })
}

/// This replica's name in Leases: `POD_NAME`, else the host name and process id.
fn replica_identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    })
}

/// Campaign for the Lease `name` (in `POD_NAMESPACE`, else the client's namespace) until `shutdown`.
fn lease_claim(
    client: &kube::Client,
    name: &str,
    duration: Duration,
    identity: &str,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Claim, JoinHandle<()>)> {
    anyhow::ensure!(
        duration >= Duration::from_secs(1),
        "--lease-duration must be at least 1s (a Lease counts whole seconds)"
    );
    let leases: kube::Api<Lease> = match std::env::var("POD_NAMESPACE") {
        Ok(namespace) if !namespace.is_empty() => kube::Api::namespaced(client.clone(), &namespace),
        _ => kube::Api::default_namespaced(client.clone()),
    };
    let elector = Elector::new(leases, name, identity, duration);
    Ok(Claim::lease(elector, shutdown.clone()))
}

/// Run the fargate-scheduler until SIGTERM or SIGINT.
pub async fn scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut signals = Signals::new();
    let placement = match args.placement {
        PlacementKind::Virtual => Placement::Virtual,
        PlacementKind::Pool => Placement::Pool,
    };
    if placement == Placement::Pool && args.pool_selector.as_deref().is_none_or(str::is_empty) {
        anyhow::bail!(
            "--placement pool needs --pool-selector (a label selector of the pool's nodes)"
        );
    }
    let metrics = Arc::new(Metrics::for_process(crate::metrics::Process::Scheduler));
    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let Opened { store, watcher, .. } = open_store(
        args.store,
        StoreAccess::ReadOnly,
        &args.state_dir,
        &args.lock_name,
        Limits::default(),
        &snapshot,
        &metrics,
    )
    .await?;
    // No client-side retries: the scheduler retries on its own terms, and kube's default retry of a
    // 429 (an eviction a PodDisruptionBudget refuses) would hold a worker for minutes.
    let mut config = kube::Config::infer()
        .await
        .context("finding the Kubernetes API (in-cluster service account or kubeconfig)")?;
    config.default_retry = false;
    let client = kube::Client::try_from(config).context("connecting to the Kubernetes API")?;
    let identity = args.identity.clone().unwrap_or_else(replica_identity);
    let options = SchedulerOptions {
        placement,
        pool_selector: args.pool_selector.clone(),
        region: args.region.clone(),
        evict: args.evict,
        identity: identity.clone(),
        workers: args.workers as usize,
        retry: args.retry_interval,
        provisioning_delay: args.provisioning_delay,
        fault_injection: args.fault_injection,
        launch_rate: (args.launch_rate > 0.0).then_some((args.launch_rate, args.launch_burst)),
    };
    let ops_listener = bind(args.metrics_addr, "metrics").await?;
    let ops_addr = ops_listener.local_addr()?;
    let stop = CancellationToken::new();
    let ready = {
        let store = Arc::clone(&store);
        let stop = stop.clone();
        Arc::new(move || {
            if stop.is_cancelled() {
                webhook_server::Readiness::ShuttingDown
            } else if store.is_loaded() {
                webhook_server::Readiness::Ready
            } else {
                webhook_server::Readiness::Loading
            }
        })
    };
    let ops = tokio::spawn(http::serve(
        ops_listener,
        None,
        webhook_server::ops_handler(Arc::clone(&metrics), ready),
        stop.clone(),
        PortLimits::default(),
        Port {
            name: "ops",
            metrics: Arc::clone(&metrics),
        },
    ));
    announce!("fargate-webhook: scheduler ops http://{ops_addr} (/healthz /readyz /metrics)");
    tokio::select! {
        _ = store.wait_loaded() => {}
        _ = signals.recv() => {
            stop.cancel();
            let _ = ops.await;
            return Ok(());
        }
    }
    let (claim, campaign) = lease_claim(
        &client,
        &args.lease_name,
        args.lease_duration,
        &identity,
        &stop,
    )?;
    let running = tokio::spawn(crate::scheduler::run(
        client,
        snapshot,
        store.changes(),
        Arc::clone(&metrics),
        options,
        claim,
        stop.clone(),
    ));
    signals.recv().await;
    tracing::info!("shutting down the scheduler");
    stop.cancel();
    let _ = running.await;
    let _ = campaign.await;
    let _ = ops.await;
    watcher.abort();
    Ok(())
}

/// Start everything `serve` runs. Returns once all ports are bound.
pub async fn start(args: &ServeArgs) -> anyhow::Result<Running> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = Arc::new(Metrics::new());
    let snapshot: SharedSnapshot = Arc::new(ArcSwap::from_pointee(Snapshot::default()));
    let mut watchers = Vec::new();

    let api_config = args.api.config();
    let limits = api_config.limits();
    let stop = CancellationToken::new();
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
        limits,
        &snapshot,
        &metrics,
    )
    .await?;
    watchers.push(watcher);
    let (claim, campaign) = claim.context("a read-write store comes with its writers' claim")?;

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
        Arc::clone(&metrics),
    )
    .context("loading the serving certificate")?;
    watchers.push(certs.watch_expiry());
    watchers.push(
        certs
            .watch()
            .context("watching the certificate directory")?,
    );

    let webhook = Arc::new(Webhook {
        snapshot: Arc::clone(&snapshot),
        options: Options {
            priority_override: args.priority_override,
        },
        metrics: Arc::clone(&metrics),
    });
    let port_limits = PortLimits {
        handshake: args.handshake_timeout,
        header_read: args.handshake_timeout,
        body_read: args.body_timeout,
        idle: args.idle_timeout,
        drain: args.shutdown_timeout,
        max_connections: args.max_connections as usize,
        max_streams: args.max_streams,
        body_buffer: args.body_buffer_mib as usize * 1024 * 1024,
    };
    let port = |name: &'static str| Port {
        name,
        metrics: Arc::clone(&metrics),
    };
    let serving = CancellationToken::new();
    let ops_shutdown = CancellationToken::new();

    let webhook_listener = bind(args.webhook_addr, "webhook").await?;
    let metrics_listener = bind(args.metrics_addr, "metrics").await?;
    let webhook_addr = webhook_listener.local_addr()?;
    let metrics_addr = metrics_listener.local_addr()?;

    let api = Api::new(&api_config, Arc::clone(&store), Arc::clone(&metrics))
        .context("configuring the EKS API")?;
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
    let api_handler = api.handler();

    let ready = {
        let certs = Arc::clone(&certs);
        let store = Arc::clone(&store);
        let stop = stop.clone();
        Arc::new(move || {
            if stop.is_cancelled() {
                webhook_server::Readiness::ShuttingDown
            } else if store.is_loaded() && certs.is_loaded() {
                webhook_server::Readiness::Ready
            } else {
                webhook_server::Readiness::Loading
            }
        })
    };
    let servers = vec![
        tokio::spawn(http::serve(
            webhook_listener,
            Some(tls::server_config(Arc::clone(&certs))),
            webhook.handler(),
            serving.clone(),
            port_limits,
            port("webhook"),
        )),
        tokio::spawn(http::serve(
            api_listener,
            args.api
                .api_tls
                .then(|| tls::server_config(Arc::clone(&certs))),
            api_handler,
            serving.clone(),
            port_limits,
            port("api"),
        )),
    ];
    let ops = tokio::spawn(http::serve(
        metrics_listener,
        None,
        webhook_server::ops_handler(Arc::clone(&metrics), ready),
        ops_shutdown.clone(),
        port_limits,
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

/// SIGTERM and SIGINT, listened to from creation on: made before anything is announced, so a
/// signal sent as soon as the addresses are printed drains instead of killing the process.
struct Signals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Signals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Signals {}
        }
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                match s {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            tokio::select! {
                _ = next(&mut self.term) => {}
                _ = next(&mut self.int) => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The manifests named by `-f`: files, the `.yaml`/`.yml`/`.json` files of directories (sorted), `-`.
fn read_manifests(
    paths: &[std::path::PathBuf],
) -> anyhow::Result<Vec<crate::explain::manifests::Template>> {
    let mut files = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            files.push(("-".to_string(), std::io::read_to_string(std::io::stdin())?));
        } else if path.is_dir() {
            let mut entries: Vec<_> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
                })
                .collect();
            entries.sort();
            for entry in entries {
                let text = std::fs::read_to_string(&entry)
                    .with_context(|| format!("reading {}", entry.display()))?;
                files.push((entry.display().to_string(), text));
            }
        } else {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            files.push((path.display().to_string(), text));
        }
    }
    let mut templates = Vec::new();
    for (name, text) in files {
        templates.extend(crate::explain::manifests::templates(&name, &text)?);
    }
    Ok(templates)
}

/// The client `explain` reads the cluster with, and the namespace of its kubeconfig context: the
/// kubeconfig and context as kubectl picks them (`--kubeconfig` is the only file read when given,
/// else `KUBECONFIG` or `~/.kube/config`, else in-cluster; `--context` instead of the current one).
async fn explain_client(args: &ExplainArgs) -> anyhow::Result<(kube::Client, String)> {
    use kube::config::{KubeConfigOptions, Kubeconfig};
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = match (&args.kubeconfig, &args.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options).await?
        }
        (None, Some(context)) => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| format!("--context {context}"))?,
        (None, None) => kube::Config::infer().await?,
    };
    let namespace = config.default_namespace.clone();
    Ok((kube::Client::try_from(config)?, namespace))
}

/// `explain`: the answers for every pod template (or, with `--what-if`, for every pod of the
/// cluster) as text or JSON, and whether every pod would run on Fargate.
pub async fn explain(args: &ExplainArgs) -> anyhow::Result<(String, bool)> {
    use crate::explain::sources;
    let options = Options {
        priority_override: args.priority_override,
    };
    let sources_given = usize::from(args.profiles.is_some())
        + usize::from(args.endpoint_url.is_some())
        + usize::from(args.from_cluster);
    if sources_given > 1 {
        anyhow::bail!("give one source of profiles: --profiles, --endpoint-url or --from-cluster");
    }
    if let Some(what_if) = &args.what_if {
        let (client, _) = explain_client(args)
            .await
            .context("--what-if compares with the cluster: connecting to it (kubeconfig)")?;
        let then = Snapshot::new(sources::from_file(what_if)?);
        let mut moves = Vec::new();
        for (namespace, pod) in sources::cluster_pods(&client, args.namespace.as_deref()).await? {
            moves.push(crate::explain::what_if(&pod, &namespace, &then, &options));
        }
        let all_stay = moves
            .iter()
            .all(|m| m.verdict != crate::explain::MoveKind::LeavesFargate);
        let out = match args.output {
            OutputFormat::Text => moves.iter().map(ToString::to_string).collect(),
            OutputFormat::Json => serde_json::to_string_pretty(&moves)? + "\n",
        };
        return Ok((out, all_stay));
    }
    if args.files.is_empty() {
        anyhow::bail!("name the manifests to explain with -f FILE|DIR|- (or use --what-if)");
    }
    // A manifest without a namespace lands in the context's namespace, as with `kubectl apply`.
    let mut default_namespace = String::from("default");
    let profiles = if let Some(endpoint) = &args.endpoint_url {
        sources::from_api(endpoint, &args.cluster_name).await?
    } else if args.from_cluster {
        let (client, namespace) = explain_client(args)
            .await
            .context("--from-cluster: connecting to the cluster (kubeconfig)")?;
        default_namespace = namespace;
        sources::from_cluster(&client).await?
    } else {
        let path = args
            .profiles
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("./data/profiles.json"));
        sources::from_file(&path)?
    };
    let snapshot = Snapshot::new(profiles);
    let templates = read_manifests(&args.files)?;
    if templates.is_empty() {
        anyhow::bail!("no Pod or workload that makes pods in the manifests given");
    }
    let namespace = args.namespace.as_deref().unwrap_or(&default_namespace);
    let answers: Vec<_> = templates
        .iter()
        .map(|t| crate::explain::answer(t, namespace, &snapshot, &options))
        .collect();
    let all_on_fargate = answers.iter().all(|a| a.on_fargate);
    let out = match args.output {
        OutputFormat::Text => answers
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        OutputFormat::Json => serde_json::to_string_pretty(&answers)? + "\n",
    };
    Ok((out, all_on_fargate))
}

/// Entry point for `main`: dispatch the subcommand.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(*args).await,
        Command::Certs(CertsCommand::Generate(args)) => {
            let generated = crate::certs::generate(&args.dns, &args.ip, args.days)?;
            crate::certs::write_dir(&args.out, &generated)?;
            println!(
                "wrote {0}/ca.crt, {0}/tls.crt and {0}/tls.key; use base64 of ca.crt as the webhook's caBundle",
                args.out.display()
            );
            Ok(())
        }
        Command::Explain(args) => {
            let (out, all_on_fargate) = explain(&args).await?;
            print!("{out}");
            if args.fail_unless_fargate && !all_on_fargate {
                anyhow::bail!(
                    "--fail-unless-fargate: not every pod would run on Fargate (see above)"
                );
            }
            Ok(())
        }
        Command::Scheduler(args) => scheduler(*args).await,
        Command::Probe(args) => {
            let probe = crate::probe::Probe {
                url: args.url,
                ca_file: args.ca_file,
                namespace: args.namespace,
                labels: args.labels.into_iter().collect(),
                timeout: args.timeout,
            };
            let answer = crate::probe::run(&probe).await?;
            println!("{}: {answer}", probe.url);
            Ok(())
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(
                shell,
                &mut command,
                "fargate-webhook",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}
