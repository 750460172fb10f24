//! Prometheus metrics. Labels are bounded: outcomes, reasons, sources and profile names (at most
//! the profile quota), never pod names or paths.

use prometheus::{
    Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// `outcome` = mutated | not_matched | skipped | error; `reason` says which rule.
    pub admission_requests: IntCounterVec,
    /// By `outcome` = mutated | not_matched | skipped | error.
    pub admission_duration: HistogramVec,
    pub profiles: IntGaugeVec,
    /// Selectors no pod can ever reach (an earlier profile always wins): see `Snapshot::shadowed`.
    pub shadowed_selectors: prometheus::IntGauge,
    /// Wildcard selectors that also take a system namespace: see `decision::catch_all`.
    pub catch_all_selectors: prometheus::IntGauge,
    /// `source` = profiles | certificate; `result` = ok | failed.
    pub reloads: IntCounterVec,
    pub certificate_expiry: Gauge,
    /// 1 while the serving certificate is within the warning window of its notAfter (or past it).
    pub certificate_expiring: prometheus::IntGauge,
    pub api_requests: IntCounterVec,
    /// EKS API request latency, by `operation`.
    pub api_duration: HistogramVec,
    /// Requests and connections refused before any review or API call, by `port` and `reason` =
    /// not_found | method | tls_handshake | plain_http (scanners and misdirected clients).
    pub http_rejected: IntCounterVec,
    /// The Kubernetes store: restarts of its FargateProfile watch (`reason` = expired | error).
    pub store_watch_restarts: IntCounterVec,
    /// The Kubernetes store: writes that met a concurrent writer and were run again.
    pub store_write_conflicts: prometheus::IntCounter,
    /// The Kubernetes store: journalled writes the apiserver refused for good, taken out of the journal.
    pub store_quarantined: prometheus::IntCounter,
    /// Profile writes the store could not commit (not refusals by a rule).
    pub store_commit_failures: prometheus::IntCounter,
    /// Generated matchConditions: 1 while the holder sends every pod to the webhook because the
    /// profiles could not be expressed (or the apiserver refused the condition).
    pub match_conditions_fallback: prometheus::IntGauge,
    /// Generated matchConditions written to the webhook configuration.
    pub match_conditions_writes: prometheus::IntCounter,
    /// Passes of the generated matchConditions that failed (read or write) and were retried.
    pub match_conditions_failures: prometheus::IntCounter,
    /// Open connections, by `port` = webhook | ops | api.
    pub connections: IntGaugeVec,
    /// Connections closed at once because the port was at `--max-connections`, by `port`.
    pub connections_refused: IntCounterVec,
    /// Request bodies not read, by `port` and `reason` = timeout | buffer_full.
    pub bodies_refused: IntCounterVec,
    /// The fargate-scheduler: pods bound, by `placement` = virtual | pool.
    pub scheduler_bound: IntCounterVec,
    /// Pods refused with a `FailedScheduling` event, by `reason`.
    pub scheduler_refused: IntCounterVec,
    /// The scheduler: launches that failed and are tried again, by `reason` (an injected fault, or
    /// `throttled` by the launch rate).
    pub scheduler_launch_failures: IntCounterVec,
    /// From seeing an unbound pod to its binding, in seconds.
    pub scheduler_bind_latency: Histogram,
    /// Virtual Fargate nodes that exist now.
    pub scheduler_virtual_nodes: prometheus::IntGauge,
    /// Pods removed because their profile is being deleted, by `action` = delete | evict.
    pub scheduler_pods_removed: IntCounterVec,
    /// 1 while this process holds the scheduler's Lease.
    pub scheduler_leader: prometheus::IntGauge,
    /// The scheduler: pods whose reconcile is due and has not started.
    pub scheduler_queue_depth: prometheus::IntGauge,
    /// The scheduler: reconciles that failed and are tried again after a backoff, by `kind` =
    /// pod | node | task.
    pub scheduler_reconcile_errors: IntCounterVec,
    /// The scheduler: unbound pods naming it, by `reason` = unplaced | gated | refused | provisioning.
    pub scheduler_pods_waiting: IntGaugeVec,
    /// The scheduler: removals of pods whose profile is not ACTIVE that failed (tried again), by `action`.
    pub scheduler_removal_errors: IntCounterVec,
    pub scheduler_kubelet_refusals: prometheus::IntCounter,
    /// The logging ConfigMap as the scheduler's watch knows it: 1 exists, 0 absent, -1 not known.
    pub scheduler_logging_configmap: prometheus::IntGauge,
}

/// Sub-millisecond buckets (a webhook decision takes tens of microseconds) up to the longest
/// `timeoutSeconds` the apiserver allows a webhook (30 s).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    2.5, 5.0, 10.0, 30.0,
];

/// The `port` label values: the three listeners of `serve`.
pub const PORTS: [&str; 3] = ["webhook", "ops", "api"];

/// Which process a registry serves: each exports its own metrics and no other's (a scheduler has no
/// certificate, a webhook no scheduling queue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Process {
    /// `serve`: admission, the API, certificates, the store; no `fargate_webhook_scheduler_*`.
    Serve,
    /// `scheduler`: `fargate_webhook_scheduler_*`, the profiles it reads and its ops port.
    Scheduler,
}

impl Process {
    /// Whether this process exports the metric family `name`.
    pub fn exports(self, name: &str) -> bool {
        let scheduler = name.starts_with("fargate_webhook_scheduler_");
        match self {
            Process::Serve => !scheduler,
            Process::Scheduler => {
                let serve_only = ["admission_", "api_", "certificate_", "match_conditions_"]
                    .iter()
                    .any(|p| name.starts_with(&format!("fargate_webhook_{p}")));
                scheduler || !serve_only
            }
        }
    }
}

impl Metrics {
    /// The metrics of `serve`.
    pub fn new() -> Self {
        Metrics::for_process(Process::Serve)
    }

    pub fn for_process(process: Process) -> Self {
        let registry = Registry::new();
        let admission_requests = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_admission_requests_total",
                "Admission reviews answered, by outcome, reason and chosen profile.",
            ),
            &["outcome", "reason", "profile"],
        )
        .expect("valid metric");
        let admission_duration = HistogramVec::new(
            HistogramOpts::new(
                "fargate_webhook_admission_duration_seconds",
                "Time from request arrival (before the body is read) to the encoded answer, in seconds, by outcome.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["outcome"],
        )
        .expect("valid metric");
        let api_duration = HistogramVec::new(
            HistogramOpts::new(
                "fargate_webhook_api_duration_seconds",
                "EKS API request latency (body read, operation, store write), in seconds, by operation.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("valid metric");
        let http_rejected = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_http_rejected_total",
                "Requests and connections refused before any review or API call (wrong path or method, failed TLS handshakes, plain HTTP on a TLS port), by port and reason.",
            ),
            &["port", "reason"],
        )
        .expect("valid metric");
        let store_watch_restarts = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_store_watch_restarts_total",
                "Restarts of the Kubernetes store's FargateProfile watch, by reason (expired: 410 Gone; error).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let store_write_conflicts = prometheus::IntCounter::new(
            "fargate_webhook_store_write_conflicts_total",
            "Kubernetes store writes that met a concurrent writer (409 or a moved lock) and were run again.",
        )
        .expect("valid metric");
        let store_quarantined = prometheus::IntCounter::new(
            "fargate_webhook_store_quarantined_writes_total",
            "Journalled Kubernetes store writes the apiserver refused for good (400, 422), quarantined in the coordination ConfigMap so that writes go on.",
        )
        .expect("valid metric");
        let store_commit_failures = prometheus::IntCounter::new(
            "fargate_webhook_store_commit_failures_total",
            "Profile writes the store could not commit (the storage failed or refused; a write refused by a profile rule is not counted).",
        )
        .expect("valid metric");
        let match_conditions_fallback = prometheus::IntGauge::new(
            "fargate_webhook_match_conditions_fallback",
            "1 while the claim holder sends every pod to the webhook because the profiles' selectors could not be written as a matchCondition (see the log).",
        )
        .expect("valid metric");
        let match_conditions_writes = prometheus::IntCounter::new(
            "fargate_webhook_match_conditions_writes_total",
            "Generated matchConditions written to the MutatingWebhookConfiguration.",
        )
        .expect("valid metric");
        let match_conditions_failures = prometheus::IntCounter::new(
            "fargate_webhook_match_conditions_failures_total",
            "Passes of the generated matchConditions that failed to read or write the MutatingWebhookConfiguration and were retried.",
        )
        .expect("valid metric");
        let profiles = IntGaugeVec::new(
            Opts::new(
                "fargate_webhook_profiles",
                "Fargate profiles in the current snapshot, by status.",
            ),
            &["status"],
        )
        .expect("valid metric");
        let shadowed_selectors = prometheus::IntGauge::new(
            "fargate_webhook_shadowed_selectors",
            "Selectors of ACTIVE profiles that an earlier profile always wins over (never chosen unless pinned).",
        )
        .expect("valid metric");
        let catch_all_selectors = prometheus::IntGauge::new(
            "fargate_webhook_catch_all_selectors",
            "Wildcard selectors of ACTIVE profiles that also take pods of kube-system, kube-public or kube-node-lease.",
        )
        .expect("valid metric");
        let reloads = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_reloads_total",
                "Reloads of profiles and certificates, by source and result.",
            ),
            &["source", "result"],
        )
        .expect("valid metric");
        let certificate_expiry = Gauge::new(
            "fargate_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, as Unix time.",
        )
        .expect("valid metric");
        let certificate_expiring = prometheus::IntGauge::new(
            "fargate_webhook_certificate_expiring",
            "1 while the serving certificate expires within --cert-expiry-warning (or has expired).",
        )
        .expect("valid metric");
        let connections = IntGaugeVec::new(
            Opts::new(
                "fargate_webhook_open_connections",
                "Connections open now, by port.",
            ),
            &["port"],
        )
        .expect("valid metric");
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_connections_refused_total",
                "Connections closed on accept because the port had --max-connections open, by port.",
            ),
            &["port"],
        )
        .expect("valid metric");
        let bodies_refused = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_request_bodies_refused_total",
                "Requests answered without reading their body: not received within --body-timeout \
                 (timeout) or over the port's --body-buffer budget (buffer_full), by port.",
            ),
            &["port", "reason"],
        )
        .expect("valid metric");
        let scheduler_bound = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_scheduler_pods_bound_total",
                "Pods the fargate-scheduler bound, by placement.",
            ),
            &["placement"],
        )
        .expect("valid metric");
        let scheduler_refused = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_scheduler_pods_refused_total",
                "Pods the fargate-scheduler refused with a FailedScheduling event, by reason.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let scheduler_launch_failures = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_scheduler_launch_failures_total",
                "Launches the fargate-scheduler tried again, by reason: a transient failure injected with --fault-injection (provisioning-timeout, capacity-unavailable, account-quota, unsupported-zone) or throttled by --launch-rate.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let scheduler_bind_latency = Histogram::with_opts(
            HistogramOpts::new(
                "fargate_webhook_scheduler_bind_latency_seconds",
                "Time from the fargate-scheduler seeing an unbound pod to its binding (queue, checks, node, binding), in seconds.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
        )
        .expect("valid metric");
        let scheduler_virtual_nodes = prometheus::IntGauge::new(
            "fargate_webhook_scheduler_virtual_nodes",
            "Virtual Fargate nodes (one per pod) that exist now.",
        )
        .expect("valid metric");
        let scheduler_pods_removed = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_scheduler_pods_removed_total",
                "Pods removed because their Fargate profile is being deleted, by action.",
            ),
            &["action"],
        )
        .expect("valid metric");
        let scheduler_leader = prometheus::IntGauge::new(
            "fargate_webhook_scheduler_leader",
            "1 while this process holds the fargate-scheduler Lease.",
        )
        .expect("valid metric");
        let scheduler_queue_depth = prometheus::IntGauge::new(
            "fargate_webhook_scheduler_queue_depth",
            "Pods whose reconcile is due and has not started (the work queue), on the leader.",
        )
        .expect("valid metric");
        let scheduler_reconcile_errors = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_scheduler_reconcile_errors_total",
                "Reconciles that failed and are tried again after a backoff, by kind of object: pod (a removal failed), node (a virtual node's deletion failed), task (a reconcile ended abnormally).",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let scheduler_pods_waiting = IntGaugeVec::new(
            Opts::new(
                "fargate_webhook_scheduler_pods_waiting",
                "Unbound pods naming fargate-scheduler, by reason: unplaced (no room yet, or not tried yet), gated (scheduling gates), refused (FailedScheduling given, never retried), provisioning (annotated, waiting out --provisioning-delay). Set by the leader.",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let scheduler_removal_errors = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_scheduler_removal_errors_total",
                "Removals of pods whose profile is not ACTIVE that failed and are tried again (an eviction a PodDisruptionBudget refuses, an apiserver error), by action.",
            ),
            &["action"],
        )
        .expect("valid metric");
        let scheduler_kubelet_refusals = prometheus::IntCounter::new(
            "fargate_webhook_scheduler_kubelet_refusals_total",
            "Pods of other schedulers bound to a virtual Fargate node (a DaemonSet pod tolerating every taint, on a node whose own pod finished) and refused as the Fargate kubelet refuses them: phase Failed, reason PodNotSupported. Counted by the leader.",
        )
        .expect("valid metric");
        let scheduler_logging_configmap = prometheus::IntGauge::new(
            "fargate_webhook_scheduler_logging_configmap",
            "1 while aws-observability/aws-logging exists (pods get LoggingEnabled if EKS would accept it), 0 while it does not, -1 while its watch has not listed or fails (it is then read per pod).",
        )
        .expect("valid metric");
        scheduler_logging_configmap.set(-1);
        let api_requests = IntCounterVec::new(
            Opts::new(
                "fargate_webhook_api_requests_total",
                "EKS API requests, by operation and code (`ok`, or the EKS error code).",
            ),
            &["operation", "code"],
        )
        .expect("valid metric");
        let build_info = GaugeVec::new(
            Opts::new(
                "fargate_webhook_build_info",
                "Always 1; labels say the build.",
            ),
            &["version", "revision"],
        )
        .expect("valid metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), env!("FARGATE_WEBHOOK_REVISION")])
            .set(1.0);
        for collector in [
            Box::new(admission_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(admission_duration.clone()),
            Box::new(profiles.clone()),
            Box::new(shadowed_selectors.clone()),
            Box::new(catch_all_selectors.clone()),
            Box::new(reloads.clone()),
            Box::new(certificate_expiry.clone()),
            Box::new(certificate_expiring.clone()),
            Box::new(api_requests.clone()),
            Box::new(api_duration.clone()),
            Box::new(http_rejected.clone()),
            Box::new(store_watch_restarts.clone()),
            Box::new(store_write_conflicts.clone()),
            Box::new(store_quarantined.clone()),
            Box::new(store_commit_failures.clone()),
            Box::new(match_conditions_fallback.clone()),
            Box::new(match_conditions_writes.clone()),
            Box::new(match_conditions_failures.clone()),
            Box::new(connections.clone()),
            Box::new(connections_refused.clone()),
            Box::new(bodies_refused.clone()),
            Box::new(scheduler_bound.clone()),
            Box::new(scheduler_refused.clone()),
            Box::new(scheduler_launch_failures.clone()),
            Box::new(scheduler_bind_latency.clone()),
            Box::new(scheduler_virtual_nodes.clone()),
            Box::new(scheduler_pods_removed.clone()),
            Box::new(scheduler_leader.clone()),
            Box::new(scheduler_queue_depth.clone()),
            Box::new(scheduler_reconcile_errors.clone()),
            Box::new(scheduler_pods_waiting.clone()),
            Box::new(scheduler_removal_errors.clone()),
            Box::new(scheduler_kubelet_refusals.clone()),
            Box::new(scheduler_logging_configmap.clone()),
            Box::new(build_info.clone()),
        ] {
            let name = collector.desc()[0].fq_name.clone();
            if process.exports(&name) {
                registry
                    .register(collector)
                    .expect("metric names are unique");
            }
        }
        // Resident memory, CPU seconds, open and maximum file descriptors, start time.
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process metrics register once");
        let sources: &[&str] = match process {
            Process::Serve => &["profiles", "certificate"],
            Process::Scheduler => &["profiles"],
        };
        for source in sources {
            for result in ["ok", "failed"] {
                reloads.with_label_values(&[source, result]);
            }
        }
        for reason in ["expired", "error"] {
            store_watch_restarts.with_label_values(&[reason]);
        }
        for outcome in ["mutated", "not_matched", "skipped", "error"] {
            admission_duration.with_label_values(&[outcome]);
        }
        for port in PORTS {
            for reason in ["not_found", "method", "tls_handshake", "plain_http"] {
                http_rejected.with_label_values(&[port, reason]);
            }
            connections.with_label_values(&[port]);
            connections_refused.with_label_values(&[port]);
            for reason in ["timeout", "buffer_full"] {
                bodies_refused.with_label_values(&[port, reason]);
            }
        }
        Metrics {
            registry,
            admission_requests,
            admission_duration,
            profiles,
            shadowed_selectors,
            catch_all_selectors,
            reloads,
            certificate_expiry,
            certificate_expiring,
            api_requests,
            api_duration,
            http_rejected,
            store_watch_restarts,
            store_write_conflicts,
            store_quarantined,
            store_commit_failures,
            match_conditions_fallback,
            match_conditions_writes,
            match_conditions_failures,
            connections,
            connections_refused,
            bodies_refused,
            scheduler_bound,
            scheduler_refused,
            scheduler_launch_failures,
            scheduler_bind_latency,
            scheduler_virtual_nodes,
            scheduler_pods_removed,
            scheduler_leader,
            scheduler_queue_depth,
            scheduler_reconcile_errors,
            scheduler_pods_waiting,
            scheduler_removal_errors,
            scheduler_kubelet_refusals,
            scheduler_logging_configmap,
        }
    }

    /// The scheduler's series, made before its first event (`refusals`: every reason it can give).
    pub fn init_scheduler(&self, refusals: &[&str]) {
        for placement in ["virtual", "pool"] {
            self.scheduler_bound.with_label_values(&[placement]);
        }
        for reason in refusals {
            self.scheduler_refused.with_label_values(&[reason]);
        }
        for action in ["delete", "evict"] {
            self.scheduler_pods_removed.with_label_values(&[action]);
            self.scheduler_removal_errors.with_label_values(&[action]);
        }
        for reason in ["unplaced", "gated", "refused", "provisioning"] {
            self.scheduler_pods_waiting.with_label_values(&[reason]);
        }
        for kind in ["pod", "node", "task"] {
            self.scheduler_reconcile_errors.with_label_values(&[kind]);
        }
        for reason in [
            "provisioning-timeout",
            "capacity-unavailable",
            "account-quota",
            "unsupported-zone",
            "throttled",
        ] {
            self.scheduler_launch_failures.with_label_values(&[reason]);
        }
    }

    pub fn reload(&self, source: &str, ok: bool) {
        self.reloads
            .with_label_values(&[source, if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// Refresh the snapshot gauges (and warn about shadowed selectors: every store publishes
    /// through here, so this is the one place that sees each new snapshot).
    pub fn observe_snapshot(&self, snapshot: &crate::decision::Snapshot) {
        let shadowed = snapshot.shadowed();
        self.shadowed_selectors.set(shadowed.len() as i64);
        for s in shadowed {
            tracing::warn!(
                profile = %s.profile,
                selector = s.selector,
                by = %s.by,
                "selector is shadowed: profile '{}' comes first by name and matches every pod it matches",
                s.by
            );
        }
        let catch_all = snapshot.catch_all();
        self.catch_all_selectors.set(catch_all.len() as i64);
        for c in catch_all {
            tracing::warn!(profile = %c.profile, selector = c.selector, "{}", c.message());
        }
        for (status, count) in snapshot.count_by_status() {
            self.profiles
                .with_label_values(&[status.as_str()])
                .set(count as i64);
        }
        self.forget_gone_profiles(snapshot);
    }

    /// Drop the `admission_requests` series of profiles that are no longer in the snapshot, so the
    /// `profile` label is bounded by the profiles that exist now (whatever their status; the
    /// API's quota does not bound hand-written files or kubectl-applied resources), not by every
    /// profile ever chosen.
    fn forget_gone_profiles(&self, snapshot: &crate::decision::Snapshot) {
        use prometheus::core::Collector;
        for family in self.admission_requests.collect() {
            for metric in family.get_metric() {
                let labels: Vec<(&str, &str)> = metric
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                let value = |name: &str| {
                    labels
                        .iter()
                        .find(|(n, _)| *n == name)
                        .map_or("", |(_, v)| *v)
                };
                let profile = value("profile");
                if !profile.is_empty() && snapshot.get(profile).is_none() {
                    let _ = self.admission_requests.remove_label_values(&[
                        value("outcome"),
                        value("reason"),
                        profile,
                    ]);
                }
            }
        }
    }

    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 * 1024);
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding into a Vec cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{FargateProfile, Selector};

    #[test]
    fn each_process_exports_its_own_metrics() {
        let families = |process| {
            let metrics = Metrics::for_process(process);
            metrics.init_scheduler(&["x"]);
            metrics.certificate_expiry.set(1.0);
            let text = String::from_utf8(metrics.render()).unwrap();
            let names: std::collections::BTreeSet<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("# TYPE "))
                .filter_map(|l| l.split(' ').next())
                .map(str::to_owned)
                .collect();
            names
        };
        let serve = families(Process::Serve);
        let scheduler = families(Process::Scheduler);
        assert!(serve.contains("fargate_webhook_certificate_expiry_timestamp_seconds"));
        assert!(serve.contains("fargate_webhook_certificate_expiring"));
        assert!(
            !serve
                .iter()
                .any(|n| n.starts_with("fargate_webhook_scheduler_")),
            "{serve:?}"
        );
        assert!(scheduler.contains("fargate_webhook_scheduler_pods_bound_total"));
        assert!(scheduler.contains("fargate_webhook_reloads_total"));
        assert!(scheduler.contains("fargate_webhook_build_info"));
        for serve_only in ["certificate_", "admission_", "api_"] {
            let prefix = format!("fargate_webhook_{serve_only}");
            assert!(
                !scheduler.iter().any(|n| n.starts_with(&prefix)),
                "{scheduler:?}"
            );
        }
        let text = String::from_utf8(Metrics::for_process(Process::Scheduler).render()).unwrap();
        assert!(!text.contains(r#"source="certificate""#), "{text}");
    }

    #[test]
    fn snapshot_gauges() {
        let profile = |name: &str| FargateProfile {
            fargate_profile_name: name.into(),
            pod_execution_role_arn: "arn:aws:iam::012345678910:role/R".into(),
            selectors: vec![Selector {
                namespace: Some("default".into()),
                labels: Default::default(),
            }],
            ..Default::default()
        };
        let metrics = Metrics::new();
        metrics.observe_snapshot(&crate::decision::Snapshot::new(vec![
            profile("a"),
            profile("b"),
        ]));
        assert_eq!(metrics.shadowed_selectors.get(), 1);
        assert_eq!(metrics.profiles.with_label_values(&["ACTIVE"]).get(), 2);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("fargate_webhook_shadowed_selectors 1"),
            "{text}"
        );
        metrics.observe_snapshot(&crate::decision::Snapshot::new(vec![profile("a")]));
        assert_eq!(metrics.shadowed_selectors.get(), 0);
        assert_eq!(metrics.catch_all_selectors.get(), 0);
        let mut everything = profile("c");
        everything.selectors[0].namespace = Some("*".into());
        metrics.observe_snapshot(&crate::decision::Snapshot::new(vec![everything]));
        assert_eq!(metrics.catch_all_selectors.get(), 1);
        let text = String::from_utf8(metrics.render()).unwrap();
        assert!(
            text.contains("fargate_webhook_catch_all_selectors 1"),
            "{text}"
        );
    }

    #[test]
    fn series_of_gone_profiles_are_dropped() {
        let profile = |name: &str| FargateProfile {
            fargate_profile_name: name.into(),
            pod_execution_role_arn: "arn:aws:iam::012345678910:role/R".into(),
            selectors: vec![Selector {
                namespace: Some(format!("ns-{name}")),
                labels: Default::default(),
            }],
            ..Default::default()
        };
        let metrics = Metrics::new();
        let series = |m: &Metrics| {
            String::from_utf8(m.render())
                .unwrap()
                .lines()
                .filter(|l| l.starts_with("fargate_webhook_admission_requests_total{"))
                .count()
        };
        // 300 create/delete cycles, each profile chosen once: the series stay bounded.
        for i in 0..300 {
            let name = format!("p{i}");
            metrics.observe_snapshot(&crate::decision::Snapshot::new(vec![
                profile("keep"),
                profile(&name),
            ]));
            metrics
                .admission_requests
                .with_label_values(&["mutated", "", &name])
                .inc();
            metrics
                .admission_requests
                .with_label_values(&["mutated", "", "keep"])
                .inc();
            metrics
                .admission_requests
                .with_label_values(&["skipped", "opt_out", ""])
                .inc();
            metrics.observe_snapshot(&crate::decision::Snapshot::new(vec![profile("keep")]));
        }
        assert_eq!(
            series(&metrics),
            2,
            "only keep's and the profile-less series remain"
        );
        assert_eq!(
            metrics
                .admission_requests
                .with_label_values(&["mutated", "", "keep"])
                .get(),
            300
        );
        assert_eq!(
            metrics
                .admission_requests
                .with_label_values(&["skipped", "opt_out", ""])
                .get(),
            300
        );
    }
}
