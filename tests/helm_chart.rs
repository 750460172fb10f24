//! Tests of the Helm chart in `charts/fargate-webhook`: `helm lint`, then `helm template` in each TLS mode
//! and with non-default values, with assertions on the parsed objects.
//!
//! A real `helm` binary is needed: `HELM=/path/to/helm`, else `.tools/bin/helm` (installed by
//! `tests/chart/install-helm.sh`), else `helm` on PATH. Without one every test fails, unless
//! `SKIP_HELM_TESTS=1`, which turns them into no-ops that say so.

#[path = "helm_chart/scheduler_pod.rs"]
mod scheduler_pod;
#[path = "helm_chart/selectors.rs"]
mod selectors;
#[allow(dead_code)] // each test binary uses only part of the library
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;
use support::process::{binary, promtool};

const NS: &str = "fargate-system";
const RELEASE: &str = "fw";
const FULLNAME: &str = "fw-fargate-webhook";
const TLS_DIR: &str = "/etc/fargate-webhook/tls";

/// Every flag the chart may pass to `fargate-webhook serve` (the names are fixed by the CLI).
const KNOWN_FLAGS: &[&str] = &[
    "--webhook-addr",
    "--metrics-addr",
    "--api-addr",
    "--tls-cert",
    "--tls-key",
    "--store",
    "--state-dir",
    "--cluster-name",
    "--region",
    "--account-id",
    "--private-subnets",
    "--public-subnets",
    "--priority-override",
    "--create-delay",
    "--delete-delay",
    "--log-level",
    "--lock-name",
    "--lease-name",
    "--sigv4-credentials",
    "--shutdown-delay",
    "--shutdown-timeout",
];

/// The configuration's default name: EKS's `0500-` ordering prefix and the release's fullname.
fn mwc_name(fullname: &str) -> String {
    format!("0500-{fullname}")
}

#[test]
fn the_webhook_configuration_sorts_where_eks_puts_its_own() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let name = mwc_name(FULLNAME);
    let config = r.one("MutatingWebhookConfiguration", &name);
    // kube-apiserver orders mutating webhooks by configuration name: before the letters of sidecar
    // injectors and policy engines, and level with EKS's own.
    for later in [
        "istio-sidecar-injector",
        "kyverno-resource-mutating-webhook-cfg",
        "vault-agent-injector-cfg",
        "1000-late",
    ] {
        assert!(name.as_str() < later, "{name} sorts before {later}");
    }
    assert_eq!(
        &name[..5],
        &"0500-amazon-eks-fargate-mutation.amazonaws.com"[..5]
    );
    assert_eq!(
        config["webhooks"][0]["name"],
        "fargate-mutation.fargate-webhook.io"
    );
    let custom = render(
        helm,
        &["webhook.configurationName=0500-amazon-eks-fargate-mutation.amazonaws.com"],
    );
    assert!(
        custom
            .get(
                "MutatingWebhookConfiguration",
                "0500-amazon-eks-fargate-mutation.amazonaws.com"
            )
            .is_some()
    );
}

// ------------------------------------------------------------------------------------------------------
// helm

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chart_dir() -> PathBuf {
    repo_root().join("charts").join("fargate-webhook")
}

fn find_helm() -> Option<PathBuf> {
    if let Some(h) = std::env::var_os("HELM").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(h));
    }
    let local = repo_root().join(".tools").join("bin").join("helm");
    if local.is_file() {
        return Some(local);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("helm"))
        .find(|candidate| candidate.is_file())
}

/// The helm binary, or `None` when it is absent and `SKIP_HELM_TESTS=1` (the caller then returns).
/// Panics when helm is absent and skipping was not asked for.
fn helm() -> Option<&'static Path> {
    static HELM: OnceLock<Option<PathBuf>> = OnceLock::new();
    let found = HELM.get_or_init(|| {
        let helm = find_helm()?;
        let runs = Command::new(&helm)
            .arg("version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        runs.then_some(helm)
    });
    match found {
        Some(path) => Some(path.as_path()),
        None if std::env::var("SKIP_HELM_TESTS").as_deref() == Ok("1") => {
            eprintln!("SKIP_HELM_TESTS=1 and no helm binary: chart test NOT run");
            None
        }
        None => panic!(
            "no working helm binary: set HELM=/path/to/helm, or run `tests/chart/install-helm.sh` \
             (installs .tools/bin/helm), or put helm on PATH; set SKIP_HELM_TESTS=1 to skip these tests"
        ),
    }
}

fn run_helm(helm: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", helm.display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("{stderr}{stdout}"))
    }
}

/// `helm template RELEASE chart --namespace NS <sets>`; each `set` is `key=value` for `--set`, or
/// `string:key=value` for `--set-string`.
fn template(helm: &Path, release: &str, sets: &[&str]) -> Result<Rendered, String> {
    let chart = chart_dir();
    let mut args: Vec<String> = vec![
        "template".into(),
        release.into(),
        chart.display().to_string(),
        "--namespace".into(),
        NS.into(),
    ];
    for set in sets {
        match set.strip_prefix("string:") {
            Some(s) => args.extend(["--set-string".to_string(), s.to_string()]),
            None => args.extend(["--set".to_string(), set.to_string()]),
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_helm(helm, &args).map(|yaml| Rendered::parse(&yaml))
}

fn render(helm: &Path, sets: &[&str]) -> Rendered {
    template(helm, RELEASE, sets)
        .unwrap_or_else(|e| panic!("helm template with {sets:?} failed:\n{e}"))
}

fn render_err(helm: &Path, sets: &[&str]) -> String {
    match template(helm, RELEASE, sets) {
        Ok(_) => panic!("helm template with {sets:?} succeeded, expected a failure"),
        Err(e) => e,
    }
}

// ------------------------------------------------------------------------------------------------------
// rendered objects

struct Rendered {
    docs: Vec<Value>,
}

impl Rendered {
    fn parse(yaml: &str) -> Rendered {
        let docs: Vec<Value> = serde_saphyr::from_multiple(yaml)
            .unwrap_or_else(|e| panic!("rendered YAML does not parse: {e}\n{yaml}"));
        Rendered {
            docs: docs.into_iter().filter(|d| !d.is_null()).collect(),
        }
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.docs.iter().filter(|d| d["kind"] == kind).collect()
    }

    fn get(&self, kind: &str, name: &str) -> Option<&Value> {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    fn one(&self, kind: &str, name: &str) -> &Value {
        self.get(kind, name).unwrap_or_else(|| {
            let have: Vec<String> = self
                .docs
                .iter()
                .map(|d| format!("{}/{}", str_of(&d["kind"]), str_of(&d["metadata"]["name"])))
                .collect();
            panic!("no {kind} named {name} in the rendered chart; have {have:?}")
        })
    }

    fn deployment(&self) -> &Value {
        self.one("Deployment", FULLNAME)
    }

    fn container(&self) -> &Value {
        let containers = arr(&self.deployment()["spec"]["template"]["spec"]["containers"]);
        assert_eq!(containers.len(), 1, "one container expected");
        &containers[0]
    }

    fn webhook(&self) -> &Value {
        let config = self.one("MutatingWebhookConfiguration", &mwc_name(FULLNAME));
        let hooks = arr(&config["webhooks"]);
        assert_eq!(hooks.len(), 1, "one webhook expected");
        &hooks[0]
    }

    /// The container args as a map flag -> value (after the `serve` subcommand).
    fn flags(&self) -> BTreeMap<String, String> {
        let args: Vec<&str> = arr(&self.container()["args"]).iter().map(str_of).collect();
        assert_eq!(
            args.first(),
            Some(&"serve"),
            "args must start with the serve subcommand"
        );
        let mut flags = BTreeMap::new();
        for arg in &args[1..] {
            let (name, value) = arg
                .split_once('=')
                .unwrap_or_else(|| panic!("arg {arg:?} is not --flag=value"));
            assert!(
                flags.insert(name.to_string(), value.to_string()).is_none(),
                "flag {name} given twice"
            );
        }
        flags
    }
}

fn arr(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn strings(v: &Value) -> Vec<String> {
    arr(v).iter().map(|s| str_of(s).to_string()).collect()
}

fn set_of(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Standard base64 (with padding; whitespace ignored), as Kubernetes writes Secret data and caBundle.
fn b64decode(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut padding = 0;
    let mut count = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        count += 1;
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding += 1;
                continue;
            }
            _ => return Err(format!("invalid base64 character {:?}", c as char)),
        };
        if padding > 0 {
            return Err("base64 data after padding".into());
        }
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if count % 4 != 0 || padding > 2 {
        return Err(format!("base64 length {count} is not a multiple of 4"));
    }
    Ok(out)
}

/// Decodes base64 PEM and checks it holds `label` blocks whose bodies are DER (base64 of a SEQUENCE).
fn assert_b64_pem(what: &str, b64: &str, label: &str) -> String {
    let pem = String::from_utf8(b64decode(b64).unwrap_or_else(|e| panic!("{what}: {e}")))
        .unwrap_or_else(|_| panic!("{what}: not UTF-8 PEM"));
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem
        .find(&begin)
        .unwrap_or_else(|| panic!("{what}: no {begin} in {pem}"));
    let stop = pem
        .find(&end)
        .unwrap_or_else(|| panic!("{what}: no {end} in {pem}"));
    let der = b64decode(&pem[start + begin.len()..stop])
        .unwrap_or_else(|e| panic!("{what}: PEM body: {e}"));
    assert!(
        der.len() > 100 && der[0] == 0x30,
        "{what}: PEM body is not DER"
    );
    pem
}

// ------------------------------------------------------------------------------------------------------
// checks shared by several renders

/// The webhook points at the Service (name, namespace, port), on /mutate, and the Service reaches the
/// container port the webhook listens on.
fn check_webhook_wiring(r: &Rendered) {
    let hook = r.webhook();
    let svc_ref = &hook["clientConfig"]["service"];
    let svc = r.one("Service", str_of(&svc_ref["name"]));
    assert_eq!(svc_ref["namespace"], NS);
    assert_eq!(svc["metadata"]["namespace"], NS);
    assert_eq!(svc_ref["path"], "/mutate");
    assert!(
        hook["clientConfig"].get("url").is_none(),
        "clientConfig must use the Service, not a URL"
    );

    let port = svc_ref["port"].as_u64().expect("clientConfig.service.port");
    assert_eq!(port, 443);
    let svc_port = arr(&svc["spec"]["ports"])
        .iter()
        .find(|p| p["port"].as_u64() == Some(port))
        .unwrap_or_else(|| panic!("the Service has no port {port}"));
    assert_eq!(svc_port["name"], "webhook");
    let target = container_port(r, &svc_port["targetPort"]);
    assert_eq!(target, 8443, "Service port 443 must reach the webhook port");
    assert_eq!(r.flags()["--webhook-addr"], format!("0.0.0.0:{target}"));

    let metrics = arr(&svc["spec"]["ports"])
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("the Service has a metrics port");
    assert_eq!(metrics["port"], 9090);
    assert_eq!(container_port(r, &metrics["targetPort"]), 9090);

    // The Service selects the Deployment's pods.
    let pod_labels = r.deployment()["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels");
    let selector = svc["spec"]["selector"]
        .as_object()
        .expect("Service selector");
    assert!(!selector.is_empty());
    for (k, v) in selector {
        assert_eq!(
            pod_labels.get(k),
            Some(v),
            "Service selector {k} not on the pods"
        );
    }
}

/// Resolves a Service targetPort (a name or a number) to the container's port number.
fn container_port(r: &Rendered, target: &Value) -> u64 {
    if let Some(n) = target.as_u64() {
        return n;
    }
    let name = str_of(target);
    arr(&r.container()["ports"])
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["containerPort"].as_u64())
        .unwrap_or_else(|| panic!("the container has no port named {name}"))
}

/// Rules, side effects, review versions and the namespace exclusion.
fn check_webhook_rules(r: &Rendered, failure_policy: &str, excluded: &[&str]) {
    let hook = r.webhook();
    let rules = arr(&hook["rules"]);
    assert_eq!(rules.len(), 1, "one rule expected");
    let rule = &rules[0];
    assert_eq!(strings(&rule["operations"]), ["CREATE"]);
    assert_eq!(strings(&rule["resources"]), ["pods"]);
    assert_eq!(strings(&rule["apiGroups"]), [""]);
    assert_eq!(strings(&rule["apiVersions"]), ["v1"]);
    assert_eq!(rule["scope"], "Namespaced");
    assert_eq!(hook["sideEffects"], "None");
    assert_eq!(strings(&hook["admissionReviewVersions"]), ["v1"]);
    assert_eq!(hook["failurePolicy"], failure_policy);
    assert_eq!(hook["reinvocationPolicy"], "Never");
    let timeout = hook["timeoutSeconds"].as_u64().expect("timeoutSeconds");
    assert!((1..=30).contains(&timeout));

    let exprs = arr(&hook["namespaceSelector"]["matchExpressions"]);
    let exclusion = exprs
        .iter()
        .find(|e| e["key"] == "kubernetes.io/metadata.name")
        .expect("namespaceSelector on kubernetes.io/metadata.name");
    assert_eq!(exclusion["operator"], "NotIn");
    assert_eq!(strings(&exclusion["values"]), excluded);
    assert!(
        excluded.contains(&NS),
        "the release namespace must be excluded"
    );
}

fn check_deployment(r: &Rendered, tls_secret: &str) {
    let pod = &r.deployment()["spec"]["template"]["spec"];
    let c = r.container();

    // Probes: plain HTTP on the ops port.
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe} path");
        assert_eq!(container_port(r, &get["port"]), 9090, "{probe} port");
        assert_ne!(get["scheme"], "HTTPS", "{probe} must be plain HTTP");
    }
    assert_eq!(r.flags()["--metrics-addr"], "0.0.0.0:9090");

    // Non-root, read-only, no escalation, no capabilities, RuntimeDefault seccomp.
    let psc = &pod["securityContext"];
    assert_eq!(psc["runAsNonRoot"], true);
    assert_eq!(psc["runAsUser"], 65532);
    assert_eq!(psc["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_ne!(sc["privileged"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert!(
        sc["capabilities"].get("add").is_none(),
        "no capability may be added"
    );

    // Resources.
    for part in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(
                !c["resources"][part][res].is_null(),
                "resources.{part}.{res} must be set"
            );
        }
    }

    // The TLS Secret as a directory (no subPath: rotation swaps the ..data symlink).
    let mount = arr(&c["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == TLS_DIR)
        .expect("a volume mounted at the TLS directory");
    assert!(
        mount.get("subPath").is_none(),
        "the TLS Secret must not be mounted with subPath"
    );
    assert_eq!(mount["readOnly"], true);
    let volume = arr(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the TLS volume");
    assert_eq!(volume["secret"]["secretName"], tls_secret);
    assert!(
        volume["secret"].get("items").is_none(),
        "mount the whole Secret"
    );
    let flags = r.flags();
    assert_eq!(flags["--tls-cert"], format!("{TLS_DIR}/tls.crt"));
    assert_eq!(flags["--tls-key"], format!("{TLS_DIR}/tls.key"));

    // The root filesystem is read-only: every other mount is an emptyDir.
    for m in arr(&c["volumeMounts"]) {
        if m["mountPath"] == TLS_DIR {
            continue;
        }
        let v = arr(&pod["volumes"])
            .iter()
            .find(|v| v["name"] == m["name"])
            .expect("volume for mount");
        assert!(
            v.get("emptyDir").is_some(),
            "{} must be an emptyDir",
            m["mountPath"]
        );
    }
}

fn check_anti_affinity_and_pdb(r: &Rendered) {
    let deploy = r.deployment();
    let pod_labels = &deploy["spec"]["template"]["metadata"]["labels"];
    let terms = arr(
        &deploy["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
    );
    assert!(!terms.is_empty(), "preferred pod anti-affinity expected");
    let term = &terms[0]["podAffinityTerm"];
    assert_eq!(term["topologyKey"], "kubernetes.io/hostname");
    for (k, v) in term["labelSelector"]["matchLabels"]
        .as_object()
        .expect("matchLabels")
    {
        assert_eq!(
            &pod_labels[k], v,
            "anti-affinity selects label {k} not on the pods"
        );
    }

    let pdb = r.one("PodDisruptionBudget", FULLNAME);
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    assert_eq!(pdb["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        deploy["spec"]["selector"]["matchLabels"]
    );
}

fn rbac_rules(r: &Rendered) -> BTreeSet<(String, String, String)> {
    let role = r.one("ClusterRole", FULLNAME);
    let mut out = BTreeSet::new();
    for rule in arr(&role["rules"]) {
        assert!(rule.get("resourceNames").is_none());
        assert!(rule.get("nonResourceURLs").is_none());
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    assert!(
                        out.insert((group.clone(), resource.clone(), verb.clone())),
                        "duplicate permission {group}/{resource} {verb}"
                    );
                }
            }
        }
    }
    out
}

fn expected_rbac() -> BTreeSet<(String, String, String)> {
    let group = "fargate-webhook.io";
    let mut out = BTreeSet::new();
    let grants: &[(&str, &[&str])] = &[
        (
            "fargateprofiles",
            &[
                "get", "list", "watch", "create", "update", "patch", "delete",
            ],
        ),
        ("fargateprofiles/status", &["update"]),
    ];
    for (resource, verbs) in grants {
        for verb in *verbs {
            out.insert((group.to_string(), resource.to_string(), verb.to_string()));
        }
    }
    out
}

fn check_flags_known(r: &Rendered) {
    let known = set_of(KNOWN_FLAGS);
    for flag in r.flags().keys() {
        assert!(known.contains(flag), "the chart passes unknown flag {flag}");
    }
}

// ------------------------------------------------------------------------------------------------------
// tests

#[test]
fn helm_lint_passes() {
    let Some(helm) = helm() else { return };
    let chart = chart_dir().display().to_string();
    let ca = selfsigned_ca_bundle(helm);
    let ca_set = format!("tls.existingSecret.caBundle={ca}");
    let runs: Vec<Vec<&str>> = vec![
        vec!["lint", &chart],
        vec!["lint", "--strict", &chart],
        vec!["lint", "--strict", &chart, "--set", "tls.mode=certManager"],
        vec![
            "lint",
            "--strict",
            &chart,
            "--set",
            "tls.mode=existingSecret,tls.existingSecret.name=my-tls",
            "--set-string",
            &ca_set,
        ],
        vec![
            "lint",
            "--strict",
            &chart,
            "--set",
            "store=file,replicaCount=1,api.service.enabled=true,metrics.serviceMonitor.enabled=true",
        ],
    ];
    for args in runs {
        if let Err(e) = run_helm(helm, &args) {
            panic!("helm {args:?} failed:\n{e}");
        }
    }
}

#[test]
fn default_render_is_self_signed_and_complete() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let tls_secret = format!("{FULLNAME}-tls");

    check_webhook_wiring(&r);
    check_webhook_rules(&r, "Ignore", &[NS]);
    check_deployment(&r, &tls_secret);
    check_anti_affinity_and_pdb(&r);
    check_flags_known(&r);

    let deploy = r.deployment();
    assert_eq!(deploy["spec"]["replicas"], 2);
    assert_eq!(r.webhook()["timeoutSeconds"], 5);
    assert_eq!(
        r.container()["image"],
        "fargate-webhook:0.1.0",
        "the image tag defaults to appVersion"
    );

    // selfSigned: a CA bundle in the webhook and the matching Secret.
    let ca_bundle = str_of(&r.webhook()["clientConfig"]["caBundle"]);
    assert!(!ca_bundle.is_empty());
    assert_b64_pem("caBundle", ca_bundle, "CERTIFICATE");
    let secret = r.one("Secret", &tls_secret);
    assert_eq!(secret["type"], "kubernetes.io/tls");
    assert_eq!(secret["metadata"]["namespace"], NS);
    assert_b64_pem("tls.crt", str_of(&secret["data"]["tls.crt"]), "CERTIFICATE");
    let key = String::from_utf8(b64decode(str_of(&secret["data"]["tls.key"])).unwrap()).unwrap();
    assert!(key.contains("PRIVATE KEY-----"), "tls.key is not a PEM key");
    assert_eq!(
        secret["data"]["ca.crt"],
        r.webhook()["clientConfig"]["caBundle"],
        "the caBundle must be the CA in the Secret"
    );
    assert_ne!(secret["data"]["tls.crt"], secret["data"]["ca.crt"]);

    // No cert-manager objects, no optional objects.
    assert!(r.all("Certificate").is_empty());
    assert!(r.all("Issuer").is_empty());
    assert!(r.all("ServiceMonitor").is_empty());
    assert!(r.get("Service", &format!("{FULLNAME}-api")).is_none());

    // Without a ServiceMonitor the pods carry prometheus.io annotations.
    let ann = &deploy["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], "9090");
    assert_eq!(ann["prometheus.io/path"], "/metrics");

    // store=kubernetes: the minimum RBAC, bound to the pod's ServiceAccount.
    assert_eq!(r.flags()["--store"], "kubernetes");
    assert!(!r.flags().contains_key("--state-dir"));
    assert_eq!(rbac_rules(&r), expected_rbac());
    let sa_name = str_of(&deploy["spec"]["template"]["spec"]["serviceAccountName"]);
    r.one("ServiceAccount", sa_name);
    let binding = r.one("ClusterRoleBinding", FULLNAME);
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], FULLNAME);
    let subjects = arr(&binding["subjects"]);
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], sa_name);
    assert_eq!(subjects[0]["namespace"], NS);
    assert_eq!(
        deploy["spec"]["template"]["spec"]["automountServiceAccountToken"],
        true
    );
    // The coordination ConfigMap: create, then get/update of that one name, in the release namespace.
    let lock = format!("{FULLNAME}-lock");
    assert_eq!(r.flags()["--lock-name"], lock);
    let role = r.one("Role", FULLNAME);
    assert_eq!(role["metadata"]["namespace"], NS);
    let mut grants = BTreeSet::new();
    for rule in arr(&role["rules"]) {
        let names = rule.get("resourceNames").map(strings).unwrap_or_default();
        for resource in strings(&rule["resources"]) {
            for verb in strings(&rule["verbs"]) {
                grants.insert((resource.clone(), verb, names.clone()));
            }
        }
    }
    // The Lease of the background writers: create, then get/update of that one name.
    assert_eq!(r.flags()["--lease-name"], FULLNAME);
    let lease = FULLNAME.to_string();
    let expected: BTreeSet<(String, String, Vec<String>)> = [
        ("configmaps", "create", vec![]),
        ("configmaps", "get", vec![lock.clone()]),
        ("configmaps", "update", vec![lock.clone()]),
        ("leases", "create", vec![]),
        ("leases", "get", vec![lease.clone()]),
        ("leases", "update", vec![lease.clone()]),
    ]
    .into_iter()
    .map(|(r, v, n)| (r.to_string(), v.to_string(), n))
    .collect();
    assert_eq!(grants, expected);
    let role_binding = r.one("RoleBinding", FULLNAME);
    assert_eq!(role_binding["roleRef"]["kind"], "Role");
    assert_eq!(role_binding["subjects"][0]["name"], sa_name);
    let env = arr(&deploy["spec"]["template"]["spec"]["containers"][0]["env"]);
    assert!(
        env.iter().any(|e| e["name"] == "POD_NAMESPACE"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "POD_NAMESPACE from the downward API: {env:?}"
    );
}

#[test]
fn default_flags_have_the_documented_values() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &[]);
    let flags = r.flags();
    let expected = [
        ("--webhook-addr", "0.0.0.0:8443"),
        ("--metrics-addr", "0.0.0.0:9090"),
        // Not exposed without its Service: the API writes profiles.
        ("--api-addr", "127.0.0.1:8080"),
        ("--tls-cert", "/etc/fargate-webhook/tls/tls.crt"),
        ("--tls-key", "/etc/fargate-webhook/tls/tls.key"),
        ("--store", "kubernetes"),
        ("--cluster-name", "fargate"),
        ("--region", "us-east-1"),
        ("--account-id", "012345678910"),
        (
            "--private-subnets",
            "subnet-0420a37ee456daf3f,subnet-09a8afb8db4f02d21",
        ),
        ("--priority-override", "true"),
        ("--create-delay", "2s"),
        ("--delete-delay", "2s"),
        ("--log-level", "info"),
        ("--lock-name", "fw-fargate-webhook-lock"),
        ("--lease-name", "fw-fargate-webhook"),
        ("--shutdown-delay", "5s"),
        ("--shutdown-timeout", "20s"),
    ];
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(flags, expected);

    // Every address flag has a matching named container port.
    for (flag, port_name) in [
        ("--webhook-addr", "webhook"),
        ("--metrics-addr", "metrics"),
        ("--api-addr", "api"),
    ] {
        let port: u64 = flags[flag].rsplit(':').next().unwrap().parse().unwrap();
        assert_eq!(
            container_port(&r, &Value::String(port_name.into())),
            port,
            "{flag}"
        );
    }
}

#[test]
fn the_scheduler_deploys_with_its_own_account_rights_and_flags_the_cli_accepts() {
    let Some(helm) = helm() else { return };
    let name = format!("{FULLNAME}-scheduler");
    let r = render(helm, &["scheduler.enabled=true"]);
    let deployment = r.one("Deployment", &name);
    let spec = &deployment["spec"]["template"]["spec"];
    assert_eq!(str_of(&spec["serviceAccountName"]), name);
    let container = &arr(&spec["containers"])[0];
    let args = strings(&container["args"]);
    // The real CLI parses exactly what the chart passes.
    let argv: Vec<String> = std::iter::once("fargate-webhook".to_string())
        .chain(args.iter().cloned())
        .collect();
    match <fargate_webhook::cli::Cli as clap::Parser>::try_parse_from(&argv) {
        Ok(cli) => match cli.command {
            fargate_webhook::cli::Command::Scheduler(a) => {
                assert_eq!(a.placement, fargate_webhook::cli::PlacementKind::Pool);
                assert_eq!(
                    a.pool_selector.as_deref(),
                    Some("fargate-webhook.io/pool=true")
                );
                assert_eq!(a.lease_name, name);
                assert!(!a.evict);
            }
            other => panic!("not the scheduler: {other:?}"),
        },
        Err(e) => panic!("the chart's scheduler arguments {argv:?} do not parse: {e}"),
    }
    // Rights: binding, nodes, pod deletion and events; never secrets; the Lease by name.
    let role = r.one("ClusterRole", &name);
    let mut granted = BTreeSet::new();
    for rule in arr(&role["rules"]) {
        for resource in strings(&rule["resources"]) {
            for verb in strings(&rule["verbs"]) {
                granted.insert(format!("{resource}:{verb}"));
            }
        }
    }
    for needed in [
        "pods:watch",
        "pods:delete",
        "pods/binding:create",
        "pods/eviction:create",
        "pods/status:patch",
        "nodes:create",
        "nodes:delete",
        "persistentvolumeclaims:get",
        "configmaps:watch",
        "events:create",
        "fargateprofiles:watch",
    ] {
        assert!(
            granted.contains(needed),
            "{needed} missing from {granted:?}"
        );
    }
    // Pods are annotated through their Binding, never patched.
    assert!(!granted.contains("pods:patch"), "{granted:?}");
    // ConfigMaps: the logging one only, by name.
    let config_maps: Vec<&Value> = arr(&role["rules"])
        .iter()
        .filter(|rule| strings(&rule["resources"]).contains(&"configmaps".to_string()))
        .collect();
    assert_eq!(config_maps.len(), 1, "{config_maps:?}");
    assert_eq!(strings(&config_maps[0]["resourceNames"]), ["aws-logging"]);
    assert_eq!(strings(&config_maps[0]["verbs"]), ["get", "list", "watch"]);
    assert!(
        !granted.iter().any(|g| g.starts_with("secrets")),
        "{granted:?}"
    );
    let lease_role = r.one("Role", &name);
    assert!(arr(&lease_role["rules"]).iter().any(|rule| {
        strings(&rule["resources"]) == ["leases"]
            && rule.get("resourceNames").map(strings) == Some(vec![name.clone()])
    }));
    // The webhook's own account gains nothing.
    assert_eq!(rbac_rules(&r), expected_rbac());

    let virtual_evict = render(
        helm,
        &[
            "scheduler.enabled=true",
            "scheduler.placement=virtual",
            "scheduler.evict=true",
        ],
    );
    let args = strings(
        &arr(&virtual_evict.one("Deployment", &name)["spec"]["template"]["spec"]["containers"])[0]
            ["args"],
    );
    assert!(
        args.contains(&"--placement=virtual".to_string()) && args.contains(&"--evict".to_string()),
        "{args:?}"
    );
    assert!(
        render(helm, &[]).get("Deployment", &name).is_none(),
        "off by default"
    );
    let error = render_err(helm, &["scheduler.enabled=true", "store=file"]);
    assert!(
        error.contains("scheduler.enabled needs store: kubernetes"),
        "{error}"
    );
    let error = render_err(helm, &["scheduler.enabled=true", "scheduler.poolSelector="]);
    assert!(error.contains("needs scheduler.poolSelector"), "{error}");
}

#[test]
fn the_prometheus_rules_pass_promtool_and_name_the_webhook() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "metrics.prometheusRule.enabled=true",
            "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        ],
    );
    let rule = r.one("PrometheusRule", FULLNAME);
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let groups = &rule["spec"]["groups"];
    let alerts: Vec<&str> = arr(&groups[0]["rules"])
        .iter()
        .map(|r| str_of(&r["alert"]))
        .collect();
    assert_eq!(
        alerts,
        [
            "FargateWebhookFailOpen",
            "FargateWebhookCertificateExpiresSoon",
            "FargateWebhookReloadsFailing",
            "FargateWebhookErrorRatio",
            "FargateWebhookLatencyHigh",
            "FargateWebhookStoreWriteQuarantined",
            "FargateWebhookShadowedSelectors"
        ]
    );
    let fail_open = str_of(&arr(&groups[0]["rules"])[0]["expr"]);
    assert!(
        fail_open.contains(r#"apiserver_admission_webhook_fail_open_count{name="fargate-mutation.fargate-webhook.io"}"#),
        "{fail_open}"
    );
    assert!(
        render(helm, &[]).get("PrometheusRule", FULLNAME).is_none(),
        "off by default"
    );
    let Some(promtool) = promtool() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(
        &file,
        serde_saphyr::to_string(&serde_json::json!({ "groups": groups })).unwrap(),
    )
    .unwrap();
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_dashboard_ships_as_a_sidecar_configmap() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &["metrics.grafanaDashboard.enabled=true"]);
    let map = r.one("ConfigMap", &format!("{FULLNAME}-dashboard"));
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value =
        serde_json::from_str(str_of(&map["data"]["fargate-webhook.json"])).unwrap();
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("dashboards/fargate-webhook.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(shipped, file);
    assert!(
        render(helm, &[])
            .get("ConfigMap", &format!("{FULLNAME}-dashboard"))
            .is_none()
    );
}

#[test]
fn the_chart_adapts_to_the_cluster() {
    let Some(helm) = helm() else { return };
    // One replica: no budget, so node drains are never blocked.
    assert!(
        render(helm, &["replicaCount=1"])
            .get("PodDisruptionBudget", FULLNAME)
            .is_none()
    );
    let digest = format!("sha256:{}", "a".repeat(64));
    let r = render(
        helm,
        &[
            "commonLabels.team=platform",
            &format!("image.digest={digest}"),
            "podSecurityContext=null",
            "securityContext.runAsUser=null",
            "securityContext.runAsGroup=null",
            "extraArgs={--idle-timeout=60s,--max-connections=2048}",
            "extraVolumes[0].name=ca",
            "extraVolumes[0].configMap.name=corp-ca",
            "extraVolumeMounts[0].name=ca",
            "extraVolumeMounts[0].mountPath=/etc/corp-ca",
            "networkPolicy.enabled=true",
            "networkPolicy.apiFrom[0].namespaceSelector.matchLabels.team=platform",
            "webhook.skipOptOutsBeforeTheCall=true",
            "webhook.objectSelector.matchExpressions[0].key=fargate",
            "webhook.objectSelector.matchExpressions[0].operator=NotIn",
            "webhook.objectSelector.matchExpressions[0].values[0]=no",
        ],
    );
    for doc in &r.docs {
        assert_eq!(
            doc["metadata"]["labels"]["team"], "platform",
            "{}",
            doc["kind"]
        );
    }
    let deploy = r.deployment();
    let pod = &deploy["spec"]["template"];
    // The recommended label set on the pods.
    for key in [
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/component",
        "helm.sh/chart",
    ] {
        assert!(pod["metadata"]["labels"][key].is_string(), "{key}");
    }
    let container = r.container();
    assert_eq!(
        str_of(&container["image"]),
        format!("fargate-webhook@{digest}")
    );
    // OpenShift's restricted SCC: no fixed uid anywhere.
    assert!(
        pod["spec"]["securityContext"].is_null()
            || pod["spec"]["securityContext"].get("runAsUser").is_none()
    );
    assert!(container["securityContext"].get("runAsUser").is_none());
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    let args = strings(&container["args"]);
    assert!(
        args.ends_with(&[
            "--idle-timeout=60s".to_string(),
            "--max-connections=2048".to_string()
        ]),
        "{args:?}"
    );
    assert!(
        arr(&pod["spec"]["volumes"])
            .iter()
            .any(|v| v["configMap"]["name"] == "corp-ca")
    );
    assert!(
        arr(&container["volumeMounts"])
            .iter()
            .any(|m| m["mountPath"] == "/etc/corp-ca")
    );
    let policy = r.one("NetworkPolicy", FULLNAME);
    let rules = arr(&policy["spec"]["ingress"]);
    assert_eq!(rules.len(), 3);
    assert!(
        rules[0].get("from").is_none(),
        "the webhook port is open to the apiserver"
    );
    assert_eq!(rules[2]["ports"][0]["port"], 8080);
    assert_eq!(
        rules[2]["from"][0]["namespaceSelector"]["matchLabels"]["team"],
        "platform"
    );
    let webhook = r.webhook();
    let conditions: Vec<&str> = arr(&webhook["matchConditions"])
        .iter()
        .map(|c| str_of(&c["name"]))
        .collect();
    assert_eq!(conditions, ["not-opted-out", "not-a-daemonset-pod"]);
    assert_eq!(
        webhook["objectSelector"]["matchExpressions"][0]["key"],
        "fargate"
    );
    // Ports and the node's network, for clusters whose apiserver cannot reach pod addresses.
    let host = render(
        helm,
        &[
            "hostNetwork=true",
            "containerPorts.webhook=10260",
            "containerPorts.metrics=10261",
            "containerPorts.api=10262",
        ],
    );
    let spec = &host.deployment()["spec"]["template"]["spec"];
    assert_eq!(spec["hostNetwork"], true);
    assert_eq!(spec["dnsPolicy"], "ClusterFirstWithHostNet");
    let flags = host.flags();
    assert_eq!(flags["--webhook-addr"], "0.0.0.0:10260");
    assert_eq!(flags["--metrics-addr"], "0.0.0.0:10261");
    assert_eq!(flags["--api-addr"], "127.0.0.1:10262");
    for (name, port) in [("webhook", 10260), ("metrics", 10261), ("api", 10262)] {
        assert_eq!(
            container_port(&host, &Value::String(name.into())),
            port,
            "{name}"
        );
    }
    // Defaults keep today's behaviour: no conditions, no selector, no policy.
    let plain = render(helm, &[]);
    assert!(
        plain.webhook().get("matchConditions").is_none()
            && plain.webhook().get("objectSelector").is_none()
    );
    assert!(plain.get("NetworkPolicy", FULLNAME).is_none());
    assert_eq!(plain.container()["securityContext"]["runAsUser"], 65532);
}

#[test]
fn the_grace_period_must_cover_the_shutdown_delay_and_drain() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "shutdown.delaySeconds=10",
            "terminationGracePeriodSeconds=45",
        ],
    );
    assert_eq!(r.flags()["--shutdown-delay"], "10s");
    assert_eq!(
        r.deployment()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        45
    );
    let error = render_err(helm, &["shutdown.delaySeconds=15"]);
    assert!(
        error.contains("terminationGracePeriodSeconds (30) must be at least")
            && error.contains("(35)"),
        "{error}"
    );
}

#[test]
fn every_flag_is_known_in_every_configuration() {
    let Some(helm) = helm() else { return };
    let ca = selfsigned_ca_bundle(helm);
    let ca_set = format!("string:tls.existingSecret.caBundle={ca}");
    let configs: Vec<Vec<&str>> = vec![
        vec![],
        vec!["tls.mode=certManager"],
        vec![
            "tls.mode=existingSecret",
            "tls.existingSecret.name=my-tls",
            &ca_set,
        ],
        non_default_values().to_vec(),
        vec![
            "cluster.publicSubnets={subnet-aaaa,subnet-bbbb}",
            "priorityOverride=false",
            "logLevel=debug",
            "cluster.name=prod",
        ],
    ];
    for sets in configs {
        let r = render(helm, &sets);
        check_flags_known(&r);
    }
    let r = render(
        helm,
        &[
            "cluster.publicSubnets={subnet-aaaa,subnet-bbbb}",
            "priorityOverride=false",
            "cluster.name=prod",
        ],
    );
    let flags = r.flags();
    assert_eq!(flags["--public-subnets"], "subnet-aaaa,subnet-bbbb");
    assert_eq!(flags["--priority-override"], "false");
    assert_eq!(flags["--cluster-name"], "prod");
}

#[test]
fn cert_manager_mode_bootstraps_a_ca_and_injects_it() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &["tls.mode=certManager"]);
    let tls_secret = format!("{FULLNAME}-tls");
    check_webhook_wiring(&r);
    check_webhook_rules(&r, "Ignore", &[NS]);
    check_deployment(&r, &tls_secret);

    let config = r.one("MutatingWebhookConfiguration", &mwc_name(FULLNAME));
    let inject = str_of(&config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"]);
    let (ns, cert_name) = inject
        .split_once('/')
        .expect("inject-ca-from is <ns>/<name>");
    assert_eq!(ns, NS);
    assert!(
        r.webhook()["clientConfig"].get("caBundle").is_none(),
        "cert-manager injects the caBundle"
    );

    // The serving Certificate: the Service's DNS names, written to the mounted Secret.
    let cert = r.one("Certificate", cert_name);
    assert_eq!(cert["metadata"]["namespace"], NS);
    assert_eq!(cert["spec"]["secretName"], tls_secret.as_str());
    let svc = str_of(&r.webhook()["clientConfig"]["service"]["name"]);
    let dns: BTreeSet<String> = strings(&cert["spec"]["dnsNames"]).into_iter().collect();
    let want = [
        svc.to_string(),
        format!("{svc}.{NS}"),
        format!("{svc}.{NS}.svc"),
        format!("{svc}.{NS}.svc.cluster.local"),
    ];
    for name in &want {
        assert!(
            dns.contains(name),
            "Certificate lacks DNS name {name}: {dns:?}"
        );
    }
    assert!(r.all("Secret").is_empty(), "cert-manager writes the Secret");

    // Issuer chain: serving cert <- CA Issuer <- CA Certificate <- self-signed Issuer.
    let issuer_ref = &cert["spec"]["issuerRef"];
    assert_eq!(issuer_ref["kind"], "Issuer");
    let ca_issuer = r.one("Issuer", str_of(&issuer_ref["name"]));
    let ca_secret = str_of(&ca_issuer["spec"]["ca"]["secretName"]);
    let ca_cert = r
        .all("Certificate")
        .into_iter()
        .find(|c| c["spec"]["secretName"] == ca_secret)
        .expect("a Certificate writes the CA Issuer's Secret");
    assert_eq!(ca_cert["spec"]["isCA"], true);
    let root = r.one("Issuer", str_of(&ca_cert["spec"]["issuerRef"]["name"]));
    assert!(root["spec"].get("selfSigned").is_some());
    assert_eq!(r.all("Issuer").len(), 2);
    assert_eq!(r.all("Certificate").len(), 2);
}

#[test]
fn cert_manager_mode_with_a_given_issuer() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "tls.mode=certManager",
            "tls.certManager.issuerRef.name=corp-ca",
            "tls.certManager.issuerRef.kind=ClusterIssuer",
        ],
    );
    assert!(
        r.all("Issuer").is_empty(),
        "no bootstrap Issuers with a given issuer"
    );
    let certs = r.all("Certificate");
    assert_eq!(certs.len(), 1);
    let issuer_ref = &certs[0]["spec"]["issuerRef"];
    assert_eq!(issuer_ref["name"], "corp-ca");
    assert_eq!(issuer_ref["kind"], "ClusterIssuer");
    assert_eq!(issuer_ref["group"], "cert-manager.io");
    let config = r.one("MutatingWebhookConfiguration", &mwc_name(FULLNAME));
    assert_eq!(
        config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        format!("{NS}/{}", str_of(&certs[0]["metadata"]["name"]))
    );
}

/// A valid base64 PEM CA bundle, taken from a selfSigned render.
fn selfsigned_ca_bundle(helm: &Path) -> String {
    let r = render(helm, &[]);
    str_of(&r.webhook()["clientConfig"]["caBundle"]).to_string()
}

#[test]
fn existing_secret_mode_uses_the_given_secret_and_ca() {
    let Some(helm) = helm() else { return };
    let ca = selfsigned_ca_bundle(helm);
    let ca_set = format!("string:tls.existingSecret.caBundle={ca}");
    let r = render(
        helm,
        &[
            "tls.mode=existingSecret",
            "tls.existingSecret.name=my-webhook-tls",
            &ca_set,
        ],
    );
    check_webhook_wiring(&r);
    check_webhook_rules(&r, "Ignore", &[NS]);
    check_deployment(&r, "my-webhook-tls");
    assert_eq!(r.webhook()["clientConfig"]["caBundle"], ca.as_str());
    assert!(
        r.all("Secret").is_empty(),
        "the chart must not write the user's Secret"
    );
    assert!(r.all("Certificate").is_empty());
    let config = r.one("MutatingWebhookConfiguration", &mwc_name(FULLNAME));
    assert!(
        config["metadata"]["annotations"]
            .get("cert-manager.io/inject-ca-from")
            .is_none()
    );
}

#[test]
fn existing_secret_mode_fails_clearly_without_its_values() {
    let Some(helm) = helm() else { return };
    let ca = selfsigned_ca_bundle(helm);
    let ca_set = format!("string:tls.existingSecret.caBundle={ca}");

    let e = render_err(helm, &["tls.mode=existingSecret", &ca_set]);
    assert!(e.contains("tls.existingSecret.name is required"), "{e}");

    let e = render_err(
        helm,
        &["tls.mode=existingSecret", "tls.existingSecret.name=my-tls"],
    );
    assert!(e.contains("tls.existingSecret.caBundle is required"), "{e}");

    // Plain text that is base64 but not a PEM certificate.
    let e = render_err(
        helm,
        &[
            "tls.mode=existingSecret",
            "tls.existingSecret.name=my-tls",
            "string:tls.existingSecret.caBundle=aGVsbG8gd29ybGQ=",
        ],
    );
    assert!(e.contains("PEM certificate"), "{e}");
}

fn non_default_values() -> [&'static str; 9] {
    [
        "store=file",
        "replicaCount=3",
        "api.service.enabled=true",
        "metrics.serviceMonitor.enabled=true",
        "metrics.serviceMonitor.labels.release=prometheus",
        "webhook.excludeNamespaces={kube-system,monitoring}",
        "webhook.failurePolicy=Fail",
        "webhook.timeoutSeconds=10",
        "lifecycle.createDelay=500ms",
    ]
}

#[test]
fn non_default_values_render_as_asked() {
    let Some(helm) = helm() else { return };
    let r = render(helm, &non_default_values());
    let tls_secret = format!("{FULLNAME}-tls");
    check_webhook_wiring(&r);
    check_webhook_rules(&r, "Fail", &[NS, "kube-system", "monitoring"]);
    check_deployment(&r, &tls_secret);
    check_anti_affinity_and_pdb(&r);
    check_flags_known(&r);

    let deploy = r.deployment();
    assert_eq!(deploy["spec"]["replicas"], 3);
    assert_eq!(r.webhook()["timeoutSeconds"], 10);

    // store=file: state on an emptyDir, no ClusterRole, no API token.
    let flags = r.flags();
    assert_eq!(flags["--store"], "file");
    assert_eq!(flags["--create-delay"], "500ms");
    let state_dir = &flags["--state-dir"];
    assert_eq!(state_dir, "/var/lib/fargate-webhook");
    let pod = &deploy["spec"]["template"]["spec"];
    let mount = arr(&r.container()["volumeMounts"])
        .iter()
        .find(|m| m["mountPath"] == state_dir.as_str())
        .expect("the state directory is mounted");
    let volume = arr(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("state volume");
    assert!(volume.get("emptyDir").is_some());
    assert!(
        r.all("ClusterRole").is_empty(),
        "store=file needs no ClusterRole"
    );
    assert!(r.all("ClusterRoleBinding").is_empty());
    assert!(r.all("Role").is_empty());
    assert_eq!(pod["automountServiceAccountToken"], false);

    // The API Service: port 80 -> container port 8080.
    let api = r.one("Service", &format!("{FULLNAME}-api"));
    let ports = arr(&api["spec"]["ports"]);
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["port"], 80);
    assert_eq!(ports[0]["name"], "api");
    assert_eq!(container_port(&r, &ports[0]["targetPort"]), 8080);
    assert_eq!(flags["--api-addr"], "0.0.0.0:8080");

    // The ServiceMonitor scrapes the webhook Service's metrics port; no scrape annotations then.
    let sm = r.one("ServiceMonitor", FULLNAME);
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    let endpoints = arr(&sm["spec"]["endpoints"]);
    assert_eq!(endpoints.len(), 1);
    assert_eq!(endpoints[0]["port"], "metrics");
    assert_eq!(endpoints[0]["path"], "/metrics");
    let svc = r.one("Service", FULLNAME);
    for (k, v) in sm["spec"]["selector"]["matchLabels"]
        .as_object()
        .expect("ServiceMonitor selector")
    {
        assert_eq!(
            &svc["metadata"]["labels"][k], v,
            "ServiceMonitor selects {k}"
        );
    }
    assert_ne!(
        api["metadata"]["labels"]["app.kubernetes.io/component"],
        sm["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
        "the ServiceMonitor must not select the API Service"
    );
    let ann = &deploy["spec"]["template"]["metadata"]["annotations"];
    assert!(ann.get("prometheus.io/scrape").is_none());
}

#[test]
fn optional_objects_can_be_turned_off() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "podDisruptionBudget.enabled=false",
            "rbac.create=false",
            "metrics.podAnnotations=false",
        ],
    );
    assert!(r.all("PodDisruptionBudget").is_empty());
    assert!(r.all("ClusterRole").is_empty());
    let ann = &r.deployment()["spec"]["template"]["metadata"]["annotations"];
    assert!(ann.get("prometheus.io/scrape").is_none());
}

#[test]
fn schema_rejects_bad_values() {
    let Some(helm) = helm() else { return };
    let bad: &[(&str, &str)] = &[
        ("replicaCount=-1", "replicaCount"),
        ("tls.mode=bogus", "mode"),
        ("store=etcd", "store"),
        ("webhook.failurePolicy=Sometimes", "failurePolicy"),
        ("webhook.timeoutSeconds=31", "timeoutSeconds"),
        ("cluster.accountId=123", "accountId"),
        ("lifecycle.createDelay=soon", "createDelay"),
        ("noSuchKey=1", "noSuchKey"),
        // The labels the chart's selectors use are the chart's alone.
        (
            "commonLabels.app\\.kubernetes\\.io/component=x",
            "app.kubernetes.io/component",
        ),
        (
            "podLabels.app\\.kubernetes\\.io/instance=x",
            "app.kubernetes.io/instance",
        ),
    ];
    for (set, mention) in bad {
        let e = render_err(helm, &[set]);
        assert!(
            e.contains(mention),
            "the error for {set} should mention {mention}: {e}"
        );
    }
}

#[test]
fn names_follow_the_release() {
    let Some(helm) = helm() else { return };
    // A release named like the chart is not doubled.
    let r = template(helm, "fargate-webhook", &[]).expect("helm template");
    assert!(r.get("Deployment", "fargate-webhook").is_some());
    assert_eq!(
        r.one("MutatingWebhookConfiguration", &mwc_name("fargate-webhook"))["webhooks"][0]["clientConfig"]
            ["service"]["name"],
        "fargate-webhook"
    );
    // Every namespaced object lands in the release namespace.
    for doc in &r.docs {
        let kind = str_of(&doc["kind"]);
        let cluster_scoped = matches!(
            kind,
            "ClusterRole" | "ClusterRoleBinding" | "MutatingWebhookConfiguration"
        );
        if !cluster_scoped {
            assert_eq!(doc["metadata"]["namespace"], NS, "{kind} namespace");
        }
    }
}

#[test]
fn crd_matches_the_chart() {
    let Some(helm) = helm() else { return };
    let path = chart_dir().join("crds").join("fargateprofiles.yaml");
    let text = std::fs::read_to_string(&path).expect("crds/fargateprofiles.yaml");
    let crd: Value = serde_saphyr::from_str(&text).expect("CRD YAML");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"]["name"],
        "fargateprofiles.fargate-webhook.io"
    );
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "fargate-webhook.io");
    assert_eq!(spec["scope"], "Cluster");
    assert_eq!(spec["names"]["kind"], "FargateProfile");
    assert_eq!(spec["names"]["plural"], "fargateprofiles");
    assert_eq!(strings(&spec["names"]["shortNames"]), ["fp"]);
    let versions = arr(&spec["versions"]);
    assert_eq!(versions.len(), 1);
    let v = &versions[0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert!(v["subresources"]["status"].is_object());
    let columns: Vec<&str> = arr(&v["additionalPrinterColumns"])
        .iter()
        .map(|c| str_of(&c["name"]))
        .collect();
    for want in ["Status", "Selectors", "Age"] {
        assert!(columns.contains(&want), "printer column {want}");
    }

    let schema = &v["schema"]["openAPIV3Schema"];
    let root_rules: Vec<&str> = arr(&schema["x-kubernetes-validations"])
        .iter()
        .map(|r| str_of(&r["rule"]))
        .collect();
    assert!(root_rules.iter().any(|r| r.contains("size() <= 100")));
    assert!(root_rules.iter().any(|r| r.contains("startsWith('eks-')")));
    let fp = &schema["properties"]["spec"];
    assert_eq!(
        strings(&fp["required"]),
        ["podExecutionRoleArn", "selectors"]
    );
    let immutability = &arr(&fp["x-kubernetes-validations"])[0];
    let rule = str_of(&immutability["rule"]);
    assert!(rule.contains("oldSelf.selectors") && rule.contains("oldSelf.podExecutionRoleArn"));
    assert!(!rule.contains("tags"), "tags stay mutable");
    assert_eq!(
        immutability["message"],
        "spec is immutable; create a new FargateProfile and delete the old one"
    );
    let props = &fp["properties"];
    assert_eq!(
        props["podExecutionRoleArn"]["pattern"],
        "^arn:[a-z-]+:iam::[0-9]{12}:role/.+$"
    );
    assert_eq!(props["selectors"]["minItems"], 1);
    assert_eq!(props["selectors"]["maxItems"], 5);
    let selector = &props["selectors"]["items"];
    assert_eq!(strings(&selector["required"]), ["namespace"]);
    assert_eq!(selector["properties"]["namespace"]["minLength"], 1);
    assert_eq!(selector["properties"]["labels"]["maxProperties"], 5);
    assert_eq!(props["tags"]["maxProperties"], 50);
    assert_eq!(props["tags"]["additionalProperties"]["maxLength"], 256);
    assert_eq!(
        strings(&schema["properties"]["status"]["properties"]["status"]["enum"]),
        [
            "CREATING",
            "ACTIVE",
            "DELETING",
            "CREATE_FAILED",
            "DELETE_FAILED"
        ]
    );

    // The ClusterRole grants exactly this CRD's group and plural.
    let r = render(helm, &[]);
    for (group, resource, _) in rbac_rules(&r) {
        assert_eq!(group, "fargate-webhook.io");
        assert!(resource.split('/').next() == Some("fargateprofiles"));
    }

    // Helm installs it from crds/ (rendered only with --include-crds).
    let chart = chart_dir().display().to_string();
    let with_crds = run_helm(
        helm,
        &[
            "template",
            RELEASE,
            &chart,
            "--namespace",
            NS,
            "--include-crds",
        ],
    )
    .expect("helm template --include-crds");
    let rendered = Rendered::parse(&with_crds);
    assert_eq!(
        rendered.one(
            "CustomResourceDefinition",
            "fargateprofiles.fargate-webhook.io"
        ),
        &crd
    );
    assert!(
        !text.contains('\t'),
        "the CRD is 2-space indented YAML without tabs"
    );
}

/// The chart's flags against the real CLI: every flag in KNOWN_FLAGS must appear in `serve --help`.
/// Ignored until the `serve` subcommand has all of them (the API, cluster and lifecycle flags).
#[test]
fn known_flags_exist_in_the_cli() {
    let out = Command::new(binary())
        .args(["serve", "--help"])
        .output()
        .expect("run fargate-webhook serve --help");
    assert!(out.status.success(), "serve --help failed");
    let help = String::from_utf8_lossy(&out.stdout);
    let offered: BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=' || c == '[' || c == '<')
        .filter(|w| w.starts_with("--"))
        .collect();
    let missing: Vec<&&str> = KNOWN_FLAGS
        .iter()
        .filter(|f| !offered.contains(**f))
        .collect();
    assert!(
        missing.is_empty(),
        "serve --help lacks {missing:?}:\n{help}"
    );
}

#[test]
fn sigv4_secret_turns_verification_on() {
    let Some(helm) = helm() else { return };
    let r = render(
        helm,
        &[
            "api.service.enabled=true",
            "api.sigv4.existingSecret=api-keys",
        ],
    );
    let flags = r.flags();
    assert_eq!(flags["--api-addr"], "0.0.0.0:8080");
    assert_eq!(
        flags["--sigv4-credentials"],
        "/etc/fargate-webhook/sigv4/credentials"
    );
    let deploy = r.one("Deployment", FULLNAME);
    let pod = &deploy["spec"]["template"]["spec"];
    let volume = arr(&pod["volumes"])
        .iter()
        .find(|v| v["name"] == "sigv4")
        .expect("the sigv4 volume");
    assert_eq!(volume["secret"]["secretName"], "api-keys");
    assert_eq!(volume["secret"]["items"][0]["key"], "credentials");
    let mount = arr(&pod["containers"][0]["volumeMounts"])
        .iter()
        .find(|m| m["name"] == "sigv4")
        .expect("the sigv4 mount");
    assert_eq!(mount["mountPath"], "/etc/fargate-webhook/sigv4");
    assert_eq!(mount["readOnly"], true);
    // Without the secret: no flag, no volume.
    let plain = render(helm, &["api.service.enabled=true"]);
    assert!(!plain.flags().contains_key("--sigv4-credentials"));
}

/// The `helm test` hook: one review through the webhook's own Service name, port and path,
/// verified against the CA the webhook configuration trusts, with flags `probe` accepts.
#[test]
fn the_test_hook_probes_the_webhook_through_its_service() {
    let Some(helm) = helm() else { return };
    let probe_args = |r: &Rendered| -> Vec<String> {
        let pod = r
            .get("Pod", &format!("{FULLNAME}-test"))
            .expect("the test pod");
        assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
        assert_eq!(pod["spec"]["restartPolicy"], "Never");
        assert_eq!(
            pod["spec"]["containers"][0]["image"],
            r.container()["image"],
            "the webhook's own image"
        );
        strings(&pod["spec"]["containers"][0]["args"])
    };
    let service_url = |r: &Rendered| {
        let service = r.get("Service", FULLNAME).expect("the webhook Service");
        let port = &arr(&service["spec"]["ports"])[0]["port"];
        let path = str_of(&r.webhook()["clientConfig"]["service"]["path"]).to_string();
        format!("--url=https://{FULLNAME}.{NS}.svc:{port}{path}")
    };

    let r = render(helm, &["tests.labels.infrastructure=fargate"]);
    let args = probe_args(&r);
    assert_eq!(args[0], "probe");
    assert!(args.contains(&service_url(&r)), "{args:?}");
    assert!(
        args.contains(&"--namespace=default".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--label=infrastructure=fargate".to_string()),
        "{args:?}"
    );
    let pod = r.get("Pod", &format!("{FULLNAME}-test")).unwrap();
    assert_eq!(
        pod["spec"]["volumes"][0]["secret"]["secretName"],
        format!("{FULLNAME}-tls"),
        "the CA of the self-signed Secret"
    );
    assert!(r.get("ConfigMap", &format!("{FULLNAME}-test-ca")).is_none());

    // The flags are the binary's: parse them with the real CLI (`--help` stops before sending).
    let out = Command::new(binary())
        .args(&args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // existingSecret: the CA comes from tls.existingSecret.caBundle, decoded into a hook ConfigMap.
    let ca = selfsigned_ca_bundle(helm);
    let ca_set = format!("string:tls.existingSecret.caBundle={ca}");
    let r = render(
        helm,
        &[
            "tls.mode=existingSecret",
            "tls.existingSecret.name=my-tls",
            &ca_set,
        ],
    );
    let cm = r
        .get("ConfigMap", &format!("{FULLNAME}-test-ca"))
        .expect("the CA ConfigMap");
    assert_eq!(cm["metadata"]["annotations"]["helm.sh/hook"], "test");
    let pem = String::from_utf8(b64decode(&ca).unwrap()).unwrap();
    assert_eq!(str_of(&cm["data"]["ca.crt"]), pem);
    let pod = r.get("Pod", &format!("{FULLNAME}-test")).unwrap();
    assert_eq!(
        pod["spec"]["volumes"][0]["configMap"]["name"],
        format!("{FULLNAME}-test-ca")
    );

    let r = render(helm, &["tests.enabled=false"]);
    assert!(r.get("Pod", &format!("{FULLNAME}-test")).is_none());
}

/// `scripts/package-chart.sh`, as `scripts/release.sh` runs it: the packaged chart pulls the released
/// image by digest (the webhook and its test hook) and names its source; bad arguments are refused.
#[test]
fn the_release_package_pulls_the_released_image_by_digest_and_names_its_source() {
    let Some(helm) = helm() else { return };
    let out = tempfile::tempdir().unwrap();
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let package = |args: [&str; 4]| {
        Command::new("bash")
            .arg(repo_root().join("scripts/package-chart.sh"))
            .args(args)
            .arg(out.path())
            .env("HELM", helm)
            .output()
            .unwrap()
    };
    let source = "https://github.com/example/fargate-webhook";
    let done = package([
        "registry.example/team/fargate-webhook",
        &digest,
        source,
        "1.2.3",
    ]);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "package-chart.sh failed: {stderr}");
    let tgz = String::from_utf8_lossy(&done.stdout).trim().to_string();
    assert_eq!(
        tgz,
        out.path()
            .join("fargate-webhook-1.2.3.tgz")
            .display()
            .to_string()
    );

    let chart: Value =
        serde_saphyr::from_str(&run_helm(helm, &["show", "chart", &tgz]).unwrap()).unwrap();
    assert_eq!(chart["version"], "1.2.3");
    assert_eq!(chart["appVersion"], "1.2.3");
    assert_eq!(chart["home"], source);
    assert_eq!(strings(&chart["sources"]), [source]);

    let args = [
        "template",
        RELEASE,
        &tgz,
        "--namespace",
        NS,
        "--set",
        "tests.enabled=true",
    ];
    let r = Rendered::parse(&run_helm(helm, &args).unwrap());
    let image = format!("registry.example/team/fargate-webhook@{digest}");
    assert_eq!(r.container()["image"], image.as_str());
    let pods: Vec<&Value> = r.all("Pod");
    assert!(!pods.is_empty(), "the helm test hook pod must render");
    for pod in pods {
        assert_eq!(pod["spec"]["containers"][0]["image"], image.as_str());
    }
    assert!(run_helm(helm, &["lint", "--strict", &tgz]).is_ok());

    for (bad, says) in [
        (
            [
                "registry.example/fargate-webhook",
                "sha256:abc",
                source,
                "1.2.3",
            ],
            "IMAGE_DIGEST",
        ),
        (
            [
                "registry.example/fargate-webhook",
                "latest",
                source,
                "1.2.3",
            ],
            "IMAGE_DIGEST",
        ),
        (["Bad Name", &digest, source, "1.2.3"], "IMAGE_REPOSITORY"),
        (
            [
                "registry.example/fargate-webhook",
                &digest,
                "git@github.com:a/b.git",
                "1.2.3",
            ],
            "SOURCE_URL",
        ),
        (
            [
                "registry.example/fargate-webhook",
                &digest,
                "unknown",
                "1.2.3",
            ],
            "SOURCE_URL",
        ),
    ] {
        let refused = package(bad);
        assert_eq!(refused.status.code(), Some(2), "{bad:?} must be refused");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(says), "{bad:?}: {stderr}");
    }
}
