//! Tests of the Helm chart in `charts/fargate-webhook`: `helm lint`, then `helm template` in each TLS mode
//! and with non-default values, with assertions on the parsed objects.
//!
//! A real `helm` binary is needed: `HELM=/path/to/helm`, else `.tools/bin/helm` (installed by
//! `tests/chart/install-helm.sh`), else `helm` on PATH. Without one every test fails, unless
//! `SKIP_HELM_TESTS=1`, which turns them into no-ops that say so.
//!
//! This file holds the shared helpers (running helm, the rendered objects, checks shared by several
//! renders); the tests are in `tests/helm_chart/`, one file per concept.

#[path = "helm_chart/crd.rs"]
mod crd;
#[path = "helm_chart/flags.rs"]
mod flags;
#[path = "helm_chart/logs.rs"]
mod logs;
#[path = "helm_chart/monitoring.rs"]
mod monitoring;
#[path = "helm_chart/notes.rs"]
mod notes;
#[path = "helm_chart/packaging.rs"]
mod packaging;
#[path = "helm_chart/pod_settings.rs"]
mod pod_settings;
#[path = "helm_chart/render_defaults.rs"]
mod render_defaults;
#[path = "helm_chart/scheduler_deployment.rs"]
mod scheduler_deployment;
#[path = "helm_chart/scheduler_pod.rs"]
mod scheduler_pod;
#[path = "helm_chart/selectors.rs"]
mod selectors;
#[allow(dead_code)] // each test binary uses only part of the library
mod support;
#[path = "helm_chart/test_hook.rs"]
mod test_hook;
#[path = "helm_chart/tls_modes.rs"]
mod tls_modes;
#[path = "helm_chart/values.rs"]
mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

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
    "--tls-secret",
    "--webhook-configuration",
    "--generate-match-conditions",
    "--namespace-selector-exclude",
    "--tls-dns",
    "--tls-ca-validity",
    "--tls-cert-validity",
    "--tls-sync-interval",
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
    "--log-format",
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
    template_with(helm, release, None, sets)
}

/// `helm template` as [`template`], with a values file (`-f`) holding `values` (YAML) before the sets.
fn template_with(
    helm: &Path,
    release: &str,
    values: Option<&str>,
    sets: &[&str],
) -> Result<Rendered, String> {
    let chart = chart_dir();
    let mut args: Vec<String> = vec![
        "template".into(),
        release.into(),
        chart.display().to_string(),
        "--namespace".into(),
        NS.into(),
    ];
    let file = values.map(|yaml| {
        let file = tempfile::NamedTempFile::new().expect("a temporary values file");
        std::fs::write(file.path(), yaml).expect("write the values file");
        file
    });
    if let Some(file) = &file {
        args.extend(["-f".to_string(), file.path().display().to_string()]);
    }
    for set in sets {
        match set.strip_prefix("string:") {
            Some(s) => args.extend(["--set-string".to_string(), s.to_string()]),
            None => args.extend(["--set".to_string(), set.to_string()]),
        }
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run_helm(helm, &args).map(|yaml| Rendered::parse(&yaml))
}

/// The NOTES `helm install --dry-run=client` prints for release `fw` in namespace `ns` with these `--set`s,
/// and the objects it would install.
fn install_notes(helm: &Path, ns: &str, sets: &[&str]) -> (String, Rendered) {
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let mut args = vec!["install", RELEASE, chart, "-n", ns, "--dry-run=client"];
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = run_helm(helm, &args).unwrap_or_else(|e| panic!("helm install {sets:?}: {e}"));
    let (manifest, notes) = out.split_once("NOTES:").expect("helm printed NOTES");
    let manifest = manifest
        .split_once("MANIFEST:")
        .expect("helm printed the manifest")
        .1;
    (notes.to_owned(), Rendered::parse(manifest))
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

    /// The namespaces never sent to the webhook: the chart's namespaceSelector when it renders one,
    /// else the exclusions it passes to the replica that writes the selector at run time.
    fn excluded_namespaces(&self) -> Vec<String> {
        let hook = self.webhook();
        match hook.get("namespaceSelector") {
            Some(selector) => {
                assert!(
                    !self.flags().contains_key("--namespace-selector-exclude"),
                    "a rendered namespaceSelector and a written one"
                );
                let exprs = arr(&selector["matchExpressions"]);
                let exclusion = exprs
                    .iter()
                    .find(|e| e["key"] == "kubernetes.io/metadata.name")
                    .expect("namespaceSelector on kubernetes.io/metadata.name");
                assert_eq!(exclusion["operator"], "NotIn");
                strings(&exclusion["values"])
            }
            None => self.flags()["--namespace-selector-exclude"]
                .split(',')
                .map(String::from)
                .collect(),
        }
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

/// A valid base64 PEM CA bundle, taken from a selfSigned render.
fn selfsigned_ca_bundle(helm: &Path) -> String {
    let r = render(helm, &["tls.mode=selfSigned"]);
    str_of(&r.webhook()["clientConfig"]["caBundle"]).to_string()
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

    assert_eq!(r.excluded_namespaces(), excluded);
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

    let flags = r.flags();
    if flags.contains_key("--tls-secret") {
        // tls.mode=managed: the webhook reads and writes the Secret through the API; nothing mounted.
        assert_eq!(flags["--tls-secret"], tls_secret);
        assert!(
            !arr(&c["volumeMounts"])
                .iter()
                .any(|m| m["mountPath"] == TLS_DIR),
            "managed mode mounts no TLS Secret"
        );
        assert!(!flags.contains_key("--tls-cert") && !flags.contains_key("--tls-key"));
        assert_eq!(
            pod["automountServiceAccountToken"], true,
            "the API is needed"
        );
    } else {
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
        assert_eq!(flags["--tls-cert"], format!("{TLS_DIR}/tls.crt"));
        assert_eq!(flags["--tls-key"], format!("{TLS_DIR}/tls.key"));
    }

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
    // The Warning Event on a FargateProfile with a catch-all selector.
    for verb in ["create", "patch"] {
        out.insert(("events.k8s.io".into(), "events".into(), verb.into()));
    }
    out
}

fn check_flags_known(r: &Rendered) {
    let known = set_of(KNOWN_FLAGS);
    for flag in r.flags().keys() {
        assert!(known.contains(flag), "the chart passes unknown flag {flag}");
    }
}
