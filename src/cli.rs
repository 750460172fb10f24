//! Command line (clap). Every flag is also an environment variable (`FARGATE_*`).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "fargate-webhook",
    version = env!("FARGATE_WEBHOOK_VERSION"),
    about = "The EKS Fargate-profile control plane for any Kubernetes cluster"
)]
pub struct Cli {
    /// Log level of this program (`error`, `warn`, `info`, `debug`, `trace`, `off`; other crates
    /// log at `warn`), or directives `target=level` such as `fargate_webhook=debug,kube=info`.
    /// `RUST_LOG`, where set, wins (tracing's full filter syntax).
    #[arg(long, env = "FARGATE_LOG_LEVEL", default_value = "info", global = true, value_parser = parse_log_filter)]
    pub log_level: String,
    /// Log lines as text (for people) or JSON (for log aggregators).
    #[arg(
        long,
        env = "FARGATE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The levels `--log-level` may name, in any case (tracing reads them so).
const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

fn is_level(text: &str) -> bool {
    LEVELS.contains(&text.to_ascii_lowercase().as_str())
}

/// A target as tracing names this program's and its crates' events: a Rust path (`kube`,
/// `fargate_webhook::server::http`).
fn is_target(text: &str) -> bool {
    text.split("::").all(|part| {
        let mut chars = part.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// A bare level applies to this program (other crates stay at `warn`: hyper and h2 frame dumps do
/// not drown a `debug`); anything else must be a comma-separated list of levels and `target=level`
/// directives, with no spaces. The chart's `values.schema.json` (`logLevel`) encodes this same
/// grammar as a pattern, so that a value refused here is refused at `helm install`
/// (`tests/helm_chart/logs.rs` holds the two together).
pub fn parse_log_filter(text: &str) -> Result<String, String> {
    if is_level(text) {
        return Ok(format!(
            "warn,fargate_webhook={}",
            text.to_ascii_lowercase()
        ));
    }
    let directives_ok = text.split(',').all(|d| match d.split_once('=') {
        Some((target, level)) => is_target(target) && is_level(level),
        None => is_level(d),
    });
    if !directives_ok {
        return Err(format!(
            "'{text}' is not a log level ({}) nor directives like fargate_webhook=debug,kube=info",
            LEVELS.join(", ")
        ));
    }
    Ok(text.to_string())
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the webhook, the ops port and the EKS API.
    Serve(Box<ServeArgs>),
    /// Certificates for the webhook.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Which profile would this pod get, and why not the others?
    Explain(ExplainArgs),
    /// The fargate-scheduler: place the pods the webhook sent to Fargate.
    Scheduler(Box<SchedulerArgs>),
    /// Send one pod review to a webhook URL and check the answer (the chart's `helm test`).
    Probe(ProbeArgs),
    /// Print a shell completion script (`source <(fargate-webhook completions bash)`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ProbeArgs {
    /// The webhook's URL, e.g. https://fargate-webhook.fargate-system.svc:443/mutate.
    #[arg(long)]
    pub url: String,
    /// PEM file of the CA that signed the webhook's certificate (default: the system's roots).
    #[arg(long)]
    pub ca_file: Option<PathBuf>,
    /// Namespace of the pod in the review.
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// A label of the pod (repeatable): `--label infrastructure=fargate`.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// How long to wait for the answer.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("'{text}' is not key=value")),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PlacementKind {
    /// One Node per pod, shaped like EKS's Fargate nodes (something must act as their kubelet).
    Virtual,
    /// Existing nodes chosen by `--pool-selector`.
    Pool,
}

#[derive(Args, Debug, Clone)]
pub struct SchedulerArgs {
    /// Where profiles come from (as for `serve`).
    #[arg(long, env = "FARGATE_STORE", value_enum, default_value = "file")]
    pub store: StoreKind,
    /// Directory of the file store (`profiles.json`).
    #[arg(long, env = "FARGATE_STATE_DIR", default_value = "./data")]
    pub state_dir: PathBuf,
    /// Kubernetes store: the coordination ConfigMap (as for `serve`).
    #[arg(long, env = "FARGATE_LOCK_NAME", default_value = crate::store::kubernetes::DEFAULT_LOCK_NAME)]
    pub lock_name: String,
    /// Where placed pods go.
    #[arg(long, env = "FARGATE_PLACEMENT", value_enum, default_value = "virtual")]
    pub placement: PlacementKind,
    /// Label selector of the pool's nodes (`--placement pool`), e.g. `fargate-webhook.io/pool=true`.
    #[arg(long, env = "FARGATE_POOL_SELECTOR")]
    pub pool_selector: Option<String>,
    /// Region in virtual node names and zone labels.
    #[arg(long, env = "FARGATE_REGION", default_value = "us-west-2")]
    pub region: String,
    /// Remove the pods of a profile being deleted with the Eviction API (PodDisruptionBudgets
    /// apply) instead of deleting them as EKS does.
    #[arg(long, env = "FARGATE_EVICT")]
    pub evict: bool,
    /// The Lease that elects one scheduler among replicas (in `POD_NAMESPACE`, else the client's
    /// namespace).
    #[arg(long, env = "FARGATE_LEASE_NAME", default_value = "fargate-scheduler")]
    pub lease_name: String,
    /// How long the Lease holds without a renewal: a standby takes over this long after the leader
    /// stopped renewing (the leader renews every 2 s).
    #[arg(long, env = "FARGATE_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// This replica's name in the Lease (default: `POD_NAME`, else the host name and process id).
    #[arg(long, env = "FARGATE_SCHEDULER_ID")]
    pub identity: Option<String>,
    /// Plain-HTTP ops port: /healthz, /readyz, /metrics.
    #[arg(long, env = "FARGATE_METRICS_ADDR", default_value = "127.0.0.1:9091")]
    pub metrics_addr: SocketAddr,
    /// Pods scheduled at once. A pod's reconcile mostly waits on the apiserver (two writes in a row
    /// for virtual placement), so this bounds writes in flight rather than CPU: with too few, a
    /// loaded apiserver's slower writes put the workers behind the creation rate (docs/scheduler.md).
    #[arg(long, env = "FARGATE_SCHEDULER_WORKERS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: u32,
    /// How often a pod that could not be placed yet (no room in the pool, an API error) is tried
    /// again. Refused pods are not retried, as on EKS.
    #[arg(long, env = "FARGATE_RETRY_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub retry_interval: Duration,
    /// How long a placed pod stays Pending, already annotated (`CapacityProvisioned`, `Logging`),
    /// before its node is made and it is bound: EKS takes tens of seconds; 0 binds at once.
    #[arg(long, env = "FARGATE_PROVISIONING_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub provisioning_delay: Duration,
    /// Honour the pod annotation `fargate-webhook.io/inject-fault: <fault>[:<times>|:always]`
    /// (provisioning-timeout, capacity-unavailable, account-quota, unsupported-zone): that many
    /// launches fail with EKS's event and are tried again. For testing alerts and run-books.
    #[arg(long, env = "FARGATE_SCHEDULER_FAULT_INJECTION")]
    pub fault_injection: bool,
    /// Launches a second, as Fargate's launch quota allows (1 on EKS); 0: no limit.
    #[arg(long, env = "FARGATE_LAUNCH_RATE", default_value_t = 0.0, value_parser = parse_rate)]
    pub launch_rate: f64,
    /// Launches at once above the rate (10 on EKS).
    #[arg(long, env = "FARGATE_LAUNCH_BURST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=10000))]
    pub launch_burst: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// `<state-dir>/profiles.json`, watched for changes.
    File,
    /// `FargateProfile` custom resources (several replicas share them).
    Kubernetes,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address of the TLS admission webhook (path /mutate).
    #[arg(long, env = "FARGATE_WEBHOOK_ADDR", default_value = "127.0.0.1:8443")]
    pub webhook_addr: SocketAddr,
    /// Address of the plain-HTTP ops port (/healthz, /readyz, /metrics).
    #[arg(long, env = "FARGATE_METRICS_ADDR", default_value = "127.0.0.1:9090")]
    pub metrics_addr: SocketAddr,
    /// Where profiles come from.
    #[arg(long, env = "FARGATE_STORE", value_enum, default_value = "file")]
    pub store: StoreKind,
    /// Directory of the file store (`profiles.json`); created with an example profile if missing.
    #[arg(long, env = "FARGATE_STATE_DIR", default_value = "./data")]
    pub state_dir: PathBuf,
    /// PEM certificate chain served by the webhook; its directory is watched for rotation.
    #[arg(long, env = "FARGATE_TLS_CERT", default_value = "certs/tls.crt")]
    pub tls_cert: PathBuf,
    /// PEM private key of the certificate.
    #[arg(long, env = "FARGATE_TLS_KEY", default_value = "certs/tls.key")]
    pub tls_key: PathBuf,
    /// Managed TLS: keep the CA and the serving certificate in this Secret (in `POD_NAMESPACE`, else
    /// the client's namespace) instead of reading `--tls-cert`/`--tls-key`. The claim holder creates
    /// and renews them and sets the caBundle of `--webhook-configuration`; every replica serves the
    /// Secret's certificate.
    #[arg(long, env = "FARGATE_TLS_SECRET", requires = "webhook_configuration")]
    pub tls_secret: Option<String>,
    /// The MutatingWebhookConfiguration the claim holder writes: its webhooks' caBundle (kept equal
    /// to the Secret's `ca.crt`) with `--tls-secret`, their generated matchCondition with
    /// `--generate-match-conditions`.
    #[arg(long, env = "FARGATE_WEBHOOK_CONFIGURATION")]
    pub webhook_configuration: Option<String>,
    /// Keep a matchCondition of every webhook of `--webhook-configuration` in step with the CREATING
    /// and ACTIVE profiles, so that the kube-apiserver calls the webhook only for pods a profile could
    /// select or that pin one (README, "Which pods reach the webhook"). A profile turns ACTIVE once
    /// the condition that lets its pods through is written.
    #[arg(
        long,
        env = "FARGATE_GENERATE_MATCH_CONDITIONS",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        requires = "webhook_configuration"
    )]
    pub generate_match_conditions: bool,
    /// With `--generate-match-conditions`: the claim holder owns the webhooks' namespaceSelector,
    /// these namespaces (comma-separated; the webhook's own among them) never sent, and, when every
    /// profile namespace is exact, only those sent (the pins of others through a second webhook).
    /// Without it the namespaceSelector is left as it is and the condition alone decides (README,
    /// "Which pods reach the webhook").
    #[arg(
        long,
        env = "FARGATE_NAMESPACE_SELECTOR_EXCLUDE",
        value_delimiter = ',',
        requires = "generate_match_conditions"
    )]
    pub namespace_selector_exclude: Vec<String>,
    /// Managed TLS: DNS names of the serving certificate (repeatable, or a comma list).
    #[arg(long = "tls-dns", env = "FARGATE_TLS_DNS", value_delimiter = ',')]
    pub tls_dns: Vec<String>,
    /// Managed TLS: IP addresses of the serving certificate (repeatable, or a comma list).
    #[arg(long = "tls-ip", env = "FARGATE_TLS_IP", value_delimiter = ',')]
    pub tls_ip: Vec<IpAddr>,
    /// Managed TLS: how long a CA is valid; a new one is made in the last third of its life.
    #[arg(long, env = "FARGATE_TLS_CA_VALIDITY", default_value = "365d", value_parser = parse_duration)]
    pub tls_ca_validity: Duration,
    /// Managed TLS: how long a serving certificate is valid (at most half the CA's); a new one is
    /// issued in the last third of its life.
    #[arg(long, env = "FARGATE_TLS_CERT_VALIDITY", default_value = "90d", value_parser = parse_duration)]
    pub tls_cert_validity: Duration,
    /// Managed TLS: how often every replica reads the Secret (and the holder renews).
    #[arg(long, env = "FARGATE_TLS_SYNC_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_sync_interval: Duration,
    /// Set priorityClassName system-node-critical and priority 2000001000 as EKS does.
    #[arg(long, env = "FARGATE_PRIORITY_OVERRIDE", default_value_t = true, action = clap::ArgAction::Set)]
    pub priority_override: bool,
    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "FARGATE_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Deadline for a TLS handshake and for reading request headers (an idle HTTP/1.1
    /// connection is closed after it too).
    #[arg(long, env = "FARGATE_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// Deadline for reading a request body, from the end of its headers; a late body gets 408
    /// and its connection is closed.
    #[arg(long, env = "FARGATE_BODY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub body_timeout: Duration,
    /// Close a connection (HTTP/2 with GOAWAY) that has had no request in flight this long.
    #[arg(long, env = "FARGATE_IDLE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Open connections per port; over it a new connection is closed at once and counted.
    #[arg(long, env = "FARGATE_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, env = "FARGATE_MAX_STREAMS", default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_streams: u32,
    /// MiB of request bodies a port buffers at once; a body that would go over gets 503.
    #[arg(long, env = "FARGATE_BODY_BUFFER_MIB", default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=4096))]
    pub body_buffer_mib: u32,
    /// After SIGTERM, keep serving this long with /readyz answering 503 (so endpoints and the
    /// apiserver stop sending) before connections are drained.
    #[arg(long, env = "FARGATE_SHUTDOWN_DELAY", default_value = "0s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,
    /// Warn (log and `fargate_webhook_certificate_expiring`) when the serving certificate
    /// expires within this long.
    #[arg(long, env = "FARGATE_CERT_EXPIRY_WARNING", default_value = "14d", value_parser = parse_duration)]
    pub cert_expiry_warning: Duration,
    /// Kubernetes store: the coordination ConfigMap (in `POD_NAMESPACE`, else the client's namespace).
    #[arg(long, env = "FARGATE_LOCK_NAME", default_value = crate::store::kubernetes::DEFAULT_LOCK_NAME)]
    pub lock_name: String,
    /// Kubernetes store: the Lease that elects the one replica that writes in the background (the
    /// API's lifecycle steps, the store's housekeeping); requests are answered by every replica.
    #[arg(long, env = "FARGATE_LEASE_NAME", default_value = "fargate-webhook")]
    pub lease_name: String,
    /// Kubernetes store: how long that Lease holds without a renewal; a standby takes over this long
    /// after the holder stopped renewing.
    #[arg(long, env = "FARGATE_LEASE_DURATION", default_value = "15s", value_parser = parse_duration)]
    pub lease_duration: Duration,
    /// This replica's name in the Lease (default: `POD_NAME`, else the host name and process id).
    #[arg(long, env = "FARGATE_REPLICA_ID")]
    pub identity: Option<String>,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// The API's flags (flattened into `fargate-webhook serve`). Every flag is also an environment
/// variable with the `FARGATE_` prefix.
#[derive(clap::Args, Debug, Clone)]
pub struct ApiArgs {
    /// Address of the EKS-compatible API.
    #[arg(long, env = "FARGATE_API_ADDR", default_value = "127.0.0.1:8080")]
    pub api_addr: SocketAddr,
    /// Serve the API over TLS with the webhook's certificate (plain HTTP otherwise).
    #[arg(long, env = "FARGATE_API_TLS")]
    pub api_tls: bool,
    /// The one cluster this API serves; other names answer 404 ResourceNotFoundException.
    #[arg(long, env = "FARGATE_CLUSTER_NAME", default_value = "fargate")]
    pub cluster_name: String,
    /// Region used in ARNs and required in SigV4 credential scopes.
    #[arg(long, env = "FARGATE_REGION", default_value = "us-west-2")]
    pub region: String,
    /// 12-digit account id used in ARNs.
    #[arg(long, env = "FARGATE_ACCOUNT_ID", default_value = "012345678910")]
    pub account_id: String,
    /// The cluster's private subnets (comma-separated): profiles may use these; the default when a
    /// profile names none.
    #[arg(
        long,
        env = "FARGATE_PRIVATE_SUBNETS",
        value_delimiter = ',',
        default_value = crate::api::DEFAULT_PRIVATE_SUBNETS
    )]
    pub private_subnets: Vec<String>,
    /// The cluster's public subnets (comma-separated): refused in profiles.
    #[arg(long, env = "FARGATE_PUBLIC_SUBNETS", value_delimiter = ',')]
    pub public_subnets: Vec<String>,
    /// Time a new profile stays CREATING before it turns ACTIVE (`2s`, `500ms`, `0s`).
    #[arg(long, env = "FARGATE_CREATE_DELAY", default_value = "2s", value_parser = parse_duration)]
    pub create_delay: Duration,
    /// Time a deleted profile stays DELETING before it disappears.
    #[arg(long, env = "FARGATE_DELETE_DELAY", default_value = "2s", value_parser = parse_duration)]
    pub delete_delay: Duration,
    /// The longest an API request may take (a stalled etcd, an unreachable apiserver): past it the
    /// answer is `503 ServiceUnavailableException`, which the AWS SDKs retry.
    #[arg(long, env = "FARGATE_REQUEST_DEADLINE", default_value = "10s", value_parser = parse_duration)]
    pub request_deadline: Duration,
    /// Quota: Fargate profiles per cluster.
    #[arg(long, env = "FARGATE_MAX_PROFILES", default_value_t = 10)]
    pub max_profiles: usize,
    /// Quota: selectors per profile.
    #[arg(long, env = "FARGATE_MAX_SELECTORS", default_value_t = 5)]
    pub max_selectors: usize,
    /// Quota: label pairs per selector.
    #[arg(long, env = "FARGATE_MAX_LABELS", default_value_t = 5)]
    pub max_labels: usize,
    /// Verify SigV4 signatures with the key pairs in this file (`ACCESS_KEY_ID SECRET` per line).
    #[arg(long, env = "FARGATE_SIGV4_CREDENTIALS")]
    pub sigv4_credentials: Option<PathBuf>,
    /// Verify SigV4 signatures with this key pair (`ACCESS_KEY_ID:SECRET`; repeatable).
    #[arg(
        long = "sigv4-key",
        env = "FARGATE_SIGV4_KEY",
        hide_env_values = true,
        value_delimiter = ',',
        value_name = "AKID:SECRET"
    )]
    pub sigv4_keys: Vec<String>,
    /// Allow failure injection through `PUT /fault-injection` on the API port (profiles that end
    /// CREATE_FAILED or DELETE_FAILED, slow transitions, an update in progress). Off: the path does
    /// not exist.
    #[arg(long, env = "FARGATE_FAULT_INJECTION", default_value_t = false, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub fault_injection: bool,
}

impl ApiArgs {
    /// The API's configuration (the listener's address and TLS stay with `serve`).
    pub fn config(&self) -> crate::api::ApiConfig {
        crate::api::ApiConfig {
            cluster_name: self.cluster_name.clone(),
            region: self.region.clone(),
            account_id: self.account_id.clone(),
            private_subnets: self.private_subnets.clone(),
            public_subnets: self.public_subnets.clone(),
            create_delay: self.create_delay,
            delete_delay: self.delete_delay,
            request_deadline: self.request_deadline,
            max_profiles: self.max_profiles,
            max_selectors: self.max_selectors,
            max_labels: self.max_labels,
            sigv4_credentials: self.sigv4_credentials.clone(),
            sigv4_keys: self.sigv4_keys.clone(),
            fault_injection: self.fault_injection,
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Generate a CA and a server certificate (ECDSA P-256) into a directory.
    Generate(CertsGenerateArgs),
}

#[derive(Args, Debug)]
pub struct CertsGenerateArgs {
    /// DNS names, e.g. `fargate-webhook.fargate-webhook.svc`.
    #[arg(long = "dns", env = "FARGATE_CERT_DNS", value_delimiter = ',')]
    pub dns: Vec<String>,
    /// IP addresses.
    #[arg(long = "ip", env = "FARGATE_CERT_IP", value_delimiter = ',')]
    pub ip: Vec<IpAddr>,
    /// Output directory: ca.crt, tls.crt, tls.key.
    #[arg(long, env = "FARGATE_CERT_OUT", default_value = "certs")]
    pub out: PathBuf,
    /// Validity of the server certificate in days.
    #[arg(long, env = "FARGATE_CERT_DAYS", default_value_t = 365, value_parser = clap::value_parser!(i64).range(1..=36500))]
    pub days: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// Manifests: files, directories (their `.yaml`, `.yml` and `.json` files) or `-` for standard
    /// input; Pods and the workloads that make pods, several documents per file. Repeatable.
    #[arg(
        short = 'f',
        long = "filename",
        alias = "pod",
        env = "FARGATE_EXPLAIN_FILES",
        value_delimiter = ','
    )]
    pub files: Vec<PathBuf>,
    /// Profiles file to explain against (the default when no other source is given:
    /// `./data/profiles.json`).
    #[arg(long, env = "FARGATE_PROFILES")]
    pub profiles: Option<PathBuf>,
    /// Read the profiles from a running server's EKS API (unsigned requests).
    #[arg(long, env = "FARGATE_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// The cluster the EKS API is asked about (`--endpoint-url`).
    #[arg(long, env = "FARGATE_CLUSTER_NAME", default_value = "fargate")]
    pub cluster_name: String,
    /// Read the profiles from the cluster's FargateProfile resources (kubeconfig as kubectl finds it).
    #[arg(long)]
    pub from_cluster: bool,
    /// What-if: which pods running in the cluster would stay, move to another profile, leave Fargate
    /// or join it if the profiles were those of this file (compared with the cluster's).
    #[arg(long, value_name = "PROFILES_FILE")]
    pub what_if: Option<PathBuf>,
    /// Exit with status 1 when a pod template would not run on Fargate (no profile selects it, or
    /// the fargate-scheduler would refuse it): for CI.
    #[arg(long)]
    pub fail_unless_fargate: bool,
    /// Namespace of the manifests that name none (default: the kubeconfig context's namespace when
    /// the cluster is read, as kubectl does, else `default`); with `--what-if`, only the pods of this
    /// namespace (default: every namespace).
    #[arg(long, short = 'n', env = "FARGATE_EXPLAIN_NAMESPACE")]
    pub namespace: Option<String>,
    /// The kubeconfig file to use when reading the cluster, instead of `KUBECONFIG` or
    /// `~/.kube/config` (as kubectl's `--kubeconfig`).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use when reading the cluster, instead of the current one (as
    /// kubectl's `--context`).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    #[arg(long, env = "FARGATE_PRIORITY_OVERRIDE", default_value_t = true, action = clap::ArgAction::Set)]
    pub priority_override: bool,
    #[arg(
        long,
        short,
        env = "FARGATE_OUTPUT",
        value_enum,
        default_value = "text"
    )]
    pub output: OutputFormat,
}

pub use crate::units::parse_duration;

/// A launch rate: a finite number of launches a second, 0 or more.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate >= 0.0 => Ok(rate),
        _ => Err(format!(
            "'{text}' is not a rate of launches a second (0 or more, like 1 or 0.5)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn api_flags_parse_with_the_config_defaults() {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            api: ApiArgs,
        }
        let cli = Cli::parse_from(["x"]);
        let defaults = crate::api::ApiConfig::default();
        let parsed = cli.api.config();
        assert_eq!(parsed.private_subnets, defaults.private_subnets);
        assert_eq!(parsed.create_delay, defaults.create_delay);
        assert_eq!(parsed.delete_delay, defaults.delete_delay);
        assert_eq!(parsed.request_deadline, defaults.request_deadline);
        assert_eq!(parsed.cluster_name, defaults.cluster_name);
        assert_eq!(parsed.region, defaults.region);
        assert_eq!(parsed.account_id, defaults.account_id);
        assert_eq!(
            (parsed.max_profiles, parsed.max_selectors, parsed.max_labels),
            (
                defaults.max_profiles,
                defaults.max_selectors,
                defaults.max_labels
            )
        );
        assert_eq!(cli.api.api_addr, SocketAddr::from(([127, 0, 0, 1], 8080)));
        let cli = Cli::parse_from([
            "x",
            "--sigv4-key",
            "AKID:secret",
            "--sigv4-key",
            "B:c",
            "--public-subnets",
            "subnet-1,subnet-2",
            "--create-delay",
            "500ms",
        ]);
        let parsed = cli.api.config();
        assert_eq!(parsed.sigv4_keys, vec!["AKID:secret", "B:c"]);
        assert_eq!(parsed.public_subnets, vec!["subnet-1", "subnet-2"]);
        assert_eq!(parsed.create_delay, Duration::from_millis(500));
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
