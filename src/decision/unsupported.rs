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
];

/// The CSI driver of EBS volumes, which Fargate cannot attach.
pub const EBS_CSI_DRIVER: &str = "ebs.csi.aws.com";

/// What is known of a claim a volume names. The webhook knows nothing (no refusal then); the
/// scheduler reads the claim and its volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    Unknown,
    NotBound,
    /// Bound to `volume`; `ebs` names how it is backed by EBS (a CSI driver or in-tree type).
    Bound {
        volume: String,
        ebs: Option<String>,
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
    let mut security: Vec<String> = Vec::new();
    let contexts = || running().filter_map(|c| c.security_context.as_ref());
    if contexts().any(|s| s.privileged == Some(true)) {
        security.push("Privileged".into());
    }
    if contexts().any(|s| s.allow_privilege_escalation == Some(true)) {
        security.push("AllowPrivilegeEscalation".into());
    }
    let mut added: Vec<String> = contexts()
        .filter_map(|s| s.capabilities.as_ref())
        .flat_map(|c| &c.add)
        .map(|cap| {
            if cap.starts_with("CAP_") {
                cap.clone()
            } else {
                format!("CAP_{cap}")
            }
        })
        .collect();
    added.sort();
    added.dedup();
    if !added.is_empty() {
        security.push(format!("Capabilities added: {}", added.join(", ")));
    }
    if !security.is_empty() {
        parts.push(format!(
            "invalid SecurityContext fields: {}",
            security.join(", ")
        ));
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

fn volume_refusal(volume: &super::pod::Volume, claim: &dyn Fn(&str) -> Claim) -> Option<String> {
    let name = &volume.name;
    if volume.host_path.is_some() {
        // EKS names a host path by the volume alone.
        return Some(name.clone());
    }
    if let Some(source) = &volume.persistent_volume_claim {
        let claim_name = &source.claim_name;
        return match claim(claim_name) {
            Claim::Unknown => None,
            Claim::NotBound => Some(format!(
                "{name} not supported because: PVC {claim_name} not bound"
            )),
            Claim::Bound { ebs: None, .. } => None,
            Claim::Bound {
                volume,
                ebs: Some(how),
            } => Some(format!(
                "{name} not supported because: PVC {claim_name} bound to invalid PV {volume} with {how}"
            )),
        };
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
                json!({"containers": [{"name": "a", "securityContext": {"capabilities": {"add": ["CHOWN"]}}}]}),
                Some("invalid SecurityContext fields: Capabilities added: CAP_CHOWN"),
            ),
            (
                json!({"containers": [{"name": "a", "securityContext": {"allowPrivilegeEscalation": true, "capabilities": {"add": ["CAP_SYS_PTRACE", "NET_RAW"]}}}]}),
                Some(
                    "invalid SecurityContext fields: AllowPrivilegeEscalation, Capabilities added: CAP_NET_RAW, CAP_SYS_PTRACE",
                ),
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
                json!({"containers": [{"name": "a"}], "volumes": [{"name": "ca", "csi": {"driver": "csi.cert-manager.io"}}, {"name": "n", "nfs": {"server": "x", "path": "/"}}]}),
                Some(
                    "volumes not supported: ca is of an unsupported volume Type, n is of an unsupported volume Type",
                ),
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

    #[test]
    fn claims_are_judged_by_what_the_cluster_says() {
        let spec = json!({"containers": [{"name": "a"}], "volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "pvc-data"}},
            {"name": "logs", "persistentVolumeClaim": {"claimName": "pvc-logs"}},
            {"name": "efs", "persistentVolumeClaim": {"claimName": "pvc-efs"}}]});
        let claims = |name: &str| match name {
            "pvc-data" => Claim::NotBound,
            "pvc-logs" => Claim::Bound {
                volume: "pv-1".into(),
                ebs: Some(format!("CSI Driver: {EBS_CSI_DRIVER}")),
            },
            _ => Claim::Bound {
                volume: "pv-2".into(),
                ebs: None,
            },
        };
        assert_eq!(
            check(&pod(spec), &claims).unwrap(),
            "Pod not supported on Fargate: volumes not supported: data not supported because: PVC pvc-data not bound, logs not supported because: PVC pvc-logs bound to invalid PV pv-1 with CSI Driver: ebs.csi.aws.com"
        );
    }
}
