//! Pods Fargate cannot run, named the way EKS's `fargate-scheduler` names them in its
//! `FailedScheduling` event (`Pod not supported on Fargate: …`). The webhook warns with the same
//! text at admission, the scheduler refuses with it, `explain` prints it. Every text and its
//! source: docs/eks-behaviour.md §5.

use super::pod::Pod;

/// What every refusal starts with.
pub const PREFIX: &str = "Pod not supported on Fargate: ";

/// Volume sources Fargate mounts (docs/eks-behaviour.md §5); `persistentVolumeClaim` is checked
/// against its claim.
const SUPPORTED_VOLUMES: &[&str] = &[
    "emptyDir",
    "configMap",
    "secret",
    "projected",
    "downwardAPI",
    "nfs",
];

/// The one CSI driver whose volumes Fargate mounts through a claim (docs/eks-behaviour.md §5).
pub const EFS_CSI_DRIVER: &str = "efs.csi.aws.com";

/// The capabilities a container may add: the container runtime's default set, named as Kubernetes
/// writes them (no `CAP_` prefix) and compared as written (docs/eks-behaviour.md §5).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// What is known of a claim a volume names. The webhook and `explain` know nothing (no refusal
/// then); the scheduler reads the claim and its volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not looked up, or the lookup failed.
    Unknown,
    /// No claim of that name in the pod's namespace.
    Missing,
    NotBound,
    /// Bound to `volume`, a PersistentVolume whose CSI driver is `driver` (`None`: no CSI spec,
    /// e.g. `hostPath`, `local` or in-tree `awsElasticBlockStore`).
    Bound {
        volume: String,
        driver: Option<String>,
    },
    /// Bound to `volume`, which does not exist.
    VolumeMissing {
        volume: String,
    },
}

/// The reasons, in the order EKS prints its categories; `None` when Fargate can run the pod.
pub fn check(pod: &Pod, claim: &dyn Fn(&str) -> Claim) -> Option<String> {
    let spec = &pod.spec;
    let mut parts: Vec<String> = Vec::new();

    let fields: Vec<&str> = [
        (spec.host_network, "HostNetwork"),
        (spec.host_pid, "HostPID"),
        (spec.host_ipc, "HostIPC"),
    ]
    .into_iter()
    .filter(|(set, _)| *set == Some(true))
    .map(|(_, name)| name)
    .collect();
    if !fields.is_empty() {
        parts.push(format!("fields not supported: {}", fields.join(", ")));
    }

    let running = || spec.init_containers.iter().chain(&spec.containers);
    // One entry per container, in the pod's order (init containers first), joined by `,` alone.
    let security: Vec<String> = running()
        .filter_map(|c| c.security_context.as_ref())
        .filter_map(container_security)
        .collect();
    if !security.is_empty() {
        parts.push(format!(
            "invalid SecurityContext fields: {}",
            security.join(",")
        ));
    }

    if running().any(|c| !c.volume_devices.is_empty()) {
        parts.push("volumeDevices not supported".into());
    }

    if running().any(|c| {
        c.ports.iter().any(|p| {
            p.host_port.is_some_and(|h| h != 0)
                || p.host_ip.as_deref().is_some_and(|ip| !ip.is_empty())
        })
    }) {
        parts.push("port contains HostIP or HostPort".into());
    }

    let volumes: Vec<String> = spec
        .volumes
        .iter()
        .filter_map(|v| volume_refusal(v, claim))
        .collect();
    if !volumes.is_empty() {
        parts.push(format!("volumes not supported: {}", volumes.join(", ")));
    }

    let mut gpus: Vec<&str> = running()
        .flat_map(|c| {
            c.resources
                .requests
                .names()
                .chain(c.resources.limits.names())
        })
        .filter(|name| name.ends_with("/gpu"))
        .collect();
    gpus.sort_unstable();
    gpus.dedup();
    if !gpus.is_empty() {
        parts.push(format!("GPU resources not supported: {}", gpus.join(", ")));
    }

    (!parts.is_empty()).then(|| format!("{PREFIX}{}", parts.join(", ")))
}

/// What one container's security context holds that Fargate refuses, in EKS's order: the added
/// capabilities outside [`DEFAULT_CAPABILITIES`] (as written, in the order written), then
/// `AllowPrivilegeEscalation`, then `Privileged`.
fn container_security(context: &super::pod::SecurityContext) -> Option<String> {
    let mut fields: Vec<String> = Vec::new();
    let refused: Vec<&str> = context
        .capabilities
        .iter()
        .flat_map(|c| &c.add)
        .map(String::as_str)
        .filter(|cap| !DEFAULT_CAPABILITIES.contains(cap))
        .collect();
    if !refused.is_empty() {
        fields.push(format!("Capabilities added: {}", refused.join(", ")));
    }
    if context.allow_privilege_escalation == Some(true) {
        fields.push("AllowPrivilegeEscalation".into());
    }
    if context.privileged == Some(true) {
        fields.push("Privileged".into());
    }
    (!fields.is_empty()).then(|| fields.join(", "))
}

fn volume_refusal(volume: &super::pod::Volume, claim: &dyn Fn(&str) -> Claim) -> Option<String> {
    let name = &volume.name;
    if volume.host_path.is_some() {
        // EKS names a host path by the volume alone.
        return Some(name.clone());
    }
    if let Some(source) = &volume.persistent_volume_claim {
        let claim_name = &source.claim_name;
        let because = match claim(claim_name) {
            Claim::Unknown => return None,
            Claim::Missing => format!("persistentvolumeclaim \"{claim_name}\" not found"),
            Claim::NotBound => format!("PVC {claim_name} not bound"),
            Claim::Bound { driver, .. } if driver.as_deref() == Some(EFS_CSI_DRIVER) => {
                return None;
            }
            Claim::Bound {
                volume,
                driver: None,
            } => format!("PVC {claim_name} bound to invalid PV {volume} with nil CSI spec"),
            Claim::Bound {
                volume,
                driver: Some(driver),
            } => format!("PVC {claim_name} bound to invalid PV {volume} with CSI Driver: {driver}"),
            Claim::VolumeMissing { volume } => {
                format!("persistentvolume \"{volume}\" not found")
            }
        };
        return Some(format!("{name} not supported because: {because}"));
    }
    let supported = volume
        .sources
        .iter()
        .any(|kind| SUPPORTED_VOLUMES.contains(&kind.as_str()));
    (!supported).then(|| format!("{name} is of an unsupported volume Type"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {}, "spec": spec})).unwrap()
    }

    fn unknown(_: &str) -> Claim {
        Claim::Unknown
    }

    #[test]
    fn each_reason_in_eks_words() {
        let cases: Vec<(serde_json::Value, Option<&str>)> = vec![
            (json!({"containers": [{"name": "a"}]}), None),
            (
                json!({"hostNetwork": true, "containers": [{"name": "a", "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
                Some("fields not supported: HostNetwork, port contains HostIP or HostPort"),
            ),
            (
                json!({"hostNetwork": true, "containers": [{"name": "a", "securityContext": {"privileged": true}, "ports": [{"containerPort": 80, "hostPort": 80}]}]}),
                Some(
                    "fields not supported: HostNetwork, invalid SecurityContext fields: Privileged, port contains HostIP or HostPort",
                ),
            ),
            (
                json!({"hostPID": true, "hostIPC": true, "containers": [{"name": "a"}]}),
                Some("fields not supported: HostPID, HostIPC"),
            ),
            (
                json!({"containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": false, "privileged": false}}]}),
                None,
            ),
            (
                json!({"initContainers": [{"name": "i", "ports": [{"containerPort": 1, "hostIP": "10.0.0.1"}]}], "containers": [{"name": "a"}]}),
                Some("port contains HostIP or HostPort"),
            ),
            (
                json!({"containers": [{"name": "a", "ports": [{"containerPort": 1, "hostPort": 0}]}]}),
                None,
            ),
            (
                json!({"containers": [{"name": "a"}], "volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}]}),
                Some("volumes not supported: docker"),
            ),
            (
                json!({"containers": [{"name": "a"}], "volumes": [{"name": "ca", "csi": {"driver": "csi.cert-manager.io"}}, {"name": "n", "nfs": {"server": "x", "path": "/"}}, {"name": "e", "ephemeral": {}}]}),
                Some(
                    "volumes not supported: ca is of an unsupported volume Type, e is of an unsupported volume Type",
                ),
            ),
            // Inline NFS mounts (EFS by its address, say) run.
            (
                json!({"containers": [{"name": "a"}], "volumes": [{"name": "n", "nfs": {"server": "fs-1.efs.us-west-2.amazonaws.com", "path": "/"}}]}),
                None,
            ),
            // Raw block devices, in any container; after the security context, before ports.
            (
                json!({"initContainers": [{"name": "i", "volumeDevices": [{"name": "raw", "devicePath": "/dev/xvda"}]}], "containers": [{"name": "a"}]}),
                Some("volumeDevices not supported"),
            ),
            (
                json!({"containers": [
                    {"name": "a", "securityContext": {"privileged": true}, "ports": [{"containerPort": 1, "hostPort": 1}]},
                    {"name": "b", "volumeDevices": [{"name": "raw", "devicePath": "/dev/xvda"}]}]}),
                Some(
                    "invalid SecurityContext fields: Privileged, volumeDevices not supported, port contains HostIP or HostPort",
                ),
            ),
            (
                json!({"containers": [{"name": "a", "volumeDevices": []}]}),
                None,
            ),
            (
                json!({"containers": [{"name": "a"}], "volumes": [
                    {"name": "e", "emptyDir": {}}, {"name": "c", "configMap": {"name": "x"}},
                    {"name": "s", "secret": {"secretName": "x"}}, {"name": "p", "projected": {"sources": []}},
                    {"name": "d", "downwardAPI": {"items": []}}, {"name": "claim", "persistentVolumeClaim": {"claimName": "x"}}]}),
                None,
            ),
            (
                json!({"containers": [{"name": "a", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}),
                Some("GPU resources not supported: nvidia.com/gpu"),
            ),
        ];
        for (spec, expected) in cases {
            let got = check(&pod(spec.clone()), &unknown);
            assert_eq!(got, expected.map(|e| format!("{PREFIX}{e}")), "spec {spec}");
        }
    }

    /// Added capabilities: the runtime's default set runs, anything else is named as written,
    /// container by container (docs/eks-behaviour.md §5).
    #[test]
    fn capabilities_outside_the_default_set_are_refused_per_container() {
        let one = |context: serde_json::Value| json!({"containers": [{"name": "a", "securityContext": context}]});
        let cases: Vec<(serde_json::Value, Option<&str>)> = vec![
            // The default set runs, also with everything else dropped.
            (
                one(json!({"capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}})),
                None,
            ),
            (
                one(json!({"capabilities": {"add": DEFAULT_CAPABILITIES}})),
                None,
            ),
            (
                one(json!({"capabilities": {"add": ["CHOWN", "DAC_OVERRIDE", "NET_RAW"]}})),
                None,
            ),
            // Named as written: no prefix added, a prefixed name is not the default set's.
            (
                one(json!({"capabilities": {"add": ["NET_ADMIN"]}})),
                Some("Capabilities added: NET_ADMIN"),
            ),
            (
                one(json!({"capabilities": {"add": ["CAP_CHOWN"]}})),
                Some("Capabilities added: CAP_CHOWN"),
            ),
            (
                one(json!({"capabilities": {"add": ["net_bind_service"]}})),
                Some("Capabilities added: net_bind_service"),
            ),
            // Only the refused ones, in the order written, joined by ", ".
            (
                one(json!({"capabilities": {"add": ["SYS_PTRACE", "DAC_OVERRIDE", "NET_ADMIN"]}})),
                Some("Capabilities added: SYS_PTRACE, NET_ADMIN"),
            ),
            // Within a container: capabilities, then AllowPrivilegeEscalation, then Privileged.
            (
                one(
                    json!({"privileged": true, "allowPrivilegeEscalation": true, "capabilities": {"add": ["SYS_ADMIN"]}}),
                ),
                Some("Capabilities added: SYS_ADMIN, AllowPrivilegeEscalation, Privileged"),
            ),
            (
                one(
                    json!({"allowPrivilegeEscalation": true, "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]}}),
                ),
                Some("AllowPrivilegeEscalation"),
            ),
            // Container by container, init containers first, joined by "," alone.
            (
                json!({
                "initContainers": [{"name": "copyutil", "securityContext": {"capabilities": {"add": ["DAC_READ_SEARCH", "DAC_OVERRIDE"]}}}],
                "containers": [
                    {"name": "repo-server", "securityContext": {"capabilities": {"add": ["DAC_READ_SEARCH", "DAC_OVERRIDE"]}}},
                    {"name": "fine", "securityContext": {"capabilities": {"add": ["CHOWN"]}}},
                ]}),
                Some("Capabilities added: DAC_READ_SEARCH,Capabilities added: DAC_READ_SEARCH"),
            ),
            (
                json!({
                    "initContainers": [{"name": "i", "securityContext": {"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}}],
                    "containers": [{"name": "a", "securityContext": {"privileged": true}}]}),
                Some("Capabilities added: NET_ADMIN,Privileged"),
            ),
        ];
        for (spec, expected) in cases {
            let got = check(&pod(spec.clone()), &unknown);
            let expected = expected.map(|e| format!("{PREFIX}invalid SecurityContext fields: {e}"));
            assert_eq!(got, expected, "spec {spec}");
        }
    }

    /// Claims: only one bound to an EFS CSI volume runs (docs/eks-behaviour.md §5).
    #[test]
    fn claims_are_judged_by_what_the_cluster_says() {
        let bound = |driver: Option<&str>| Claim::Bound {
            volume: "pv-1".into(),
            driver: driver.map(Into::into),
        };
        let because = "data not supported because: ";
        let cases: Vec<(Claim, Option<String>)> = vec![
            (Claim::Unknown, None),
            (bound(Some(EFS_CSI_DRIVER)), None),
            (
                Claim::Missing,
                Some(format!(
                    "{because}persistentvolumeclaim \"pvc-data\" not found"
                )),
            ),
            (
                Claim::NotBound,
                Some(format!("{because}PVC pvc-data not bound")),
            ),
            (
                bound(None),
                Some(format!(
                    "{because}PVC pvc-data bound to invalid PV pv-1 with nil CSI spec"
                )),
            ),
            (
                bound(Some("ebs.csi.aws.com")),
                Some(format!(
                    "{because}PVC pvc-data bound to invalid PV pv-1 with CSI Driver: ebs.csi.aws.com"
                )),
            ),
            (
                bound(Some("hostpath.csi.k8s.io")),
                Some(format!(
                    "{because}PVC pvc-data bound to invalid PV pv-1 with CSI Driver: hostpath.csi.k8s.io"
                )),
            ),
            (
                Claim::VolumeMissing {
                    volume: "pv-1".into(),
                },
                Some(format!("{because}persistentvolume \"pv-1\" not found")),
            ),
        ];
        let spec = json!({"containers": [{"name": "a"}], "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "pvc-data"}}]});
        for (claim, expected) in cases {
            let got = check(&pod(spec.clone()), &|_| claim.clone());
            let expected = expected.map(|e| format!("{PREFIX}volumes not supported: {e}"));
            assert_eq!(got, expected, "{claim:?}");
        }
    }

    #[test]
    fn several_claims_share_one_volumes_category() {
        let spec = json!({"containers": [{"name": "a"}], "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "pvc-data"}},
            {"name": "logs", "persistentVolumeClaim": {"claimName": "pvc-logs"}},
            {"name": "efs", "persistentVolumeClaim": {"claimName": "pvc-efs"}}]});
        let claims = |name: &str| match name {
            "pvc-data" => Claim::NotBound,
            "pvc-logs" => Claim::Missing,
            _ => Claim::Bound {
                volume: "pv-2".into(),
                driver: Some(EFS_CSI_DRIVER.into()),
            },
        };
        assert_eq!(
            check(&pod(spec), &claims).unwrap(),
            "Pod not supported on Fargate: volumes not supported: data not supported because: PVC pvc-data not bound, logs not supported because: persistentvolumeclaim \"pvc-logs\" not found"
        );
    }
}
