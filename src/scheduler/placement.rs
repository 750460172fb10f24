//! Where a placed pod goes, pure: a virtual node of its own shaped like EKS's Fargate nodes, or
//! the least-loaded node of a pool that has room (docs/eks-behaviour.md §9).

use super::sizing::Size;
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeSpec, NodeStatus, NodeSystemInfo, Pod, Taint,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The label and taint every Fargate node carries, the marker of the nodes this scheduler made
/// (so it removes only those), and the rest of a Fargate node's labels: one list, which node
/// selection reads too.
pub use crate::decision::node_selection::{
    COMPUTE_TYPE, HOSTNAME_LABEL, REGION_LABELS, VIRTUAL_NODE_LABEL, ZONE_LABELS, node_labels,
    zone_name, zones,
};
/// The pod a virtual node was made for: `namespace/name` and its UID.
pub const POD_ANNOTATION: &str = "fargate-webhook.io/pod";
pub const POD_UID_ANNOTATION: &str = "fargate-webhook.io/pod-uid";

/// EC2's private DNS suffix: `ec2.internal` in us-east-1, `<region>.compute.internal` elsewhere.
pub fn dns_suffix(region: &str) -> String {
    if region == "us-east-1" {
        "ec2.internal".into()
    } else {
        format!("{region}.compute.internal")
    }
}

/// How every Fargate node's name starts.
pub const NODE_NAME_PREFIX: &str = "fargate-";

/// `fargate-ip-10-0-1-2.us-west-2.compute.internal`, as EKS names a Fargate node.
pub fn node_name(ip: Ipv4Addr, region: &str) -> String {
    format!("{NODE_NAME_PREFIX}{}", hostname(ip, region))
}

/// `ip-10-0-1-2.us-west-2.compute.internal`: the node's `kubernetes.io/hostname`.
pub fn hostname(ip: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = ip.octets();
    format!("ip-{a}-{b}-{c}-{d}.{}", dns_suffix(region))
}

/// A private address for the pod's micro-VM, derived from its UID and an attempt number (the
/// next attempt after a name clash): 10.x.y.z, never .0 or .255 in the last octet.
pub fn address(pod_uid: &str, attempt: u32) -> Ipv4Addr {
    // FNV-1a: stable across processes and versions, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in pod_uid.bytes().chain(attempt.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let [b, c, d, ..] = hash.to_le_bytes();
    Ipv4Addr::new(10, b, c, d.clamp(1, 254))
}

/// The zone of the subnet a pod lands in: subnets in the profile's order map to `<region>a`,
/// `<region>b`, … ([D]: the project knows subnet IDs, not their zones).
pub fn zone(region: &str, pod_uid: &str, subnets: usize) -> String {
    let index = pod_uid.bytes().map(usize::from).sum::<usize>() % subnets.max(1);
    zone_name(region, index)
}

/// The zone for `pod` among those of its profile whose Fargate node satisfies the pod's node
/// selector and affinity, picked by its UID as [`zone`] picks among all (so the same zone when the
/// pod asks for none); `None` when no zone does (docs/eks-behaviour.md §9, "Node selection").
pub fn zone_for(
    region: &str,
    pod_uid: &str,
    subnets: usize,
    pod: &crate::decision::Pod,
) -> Option<String> {
    let allowed = crate::decision::node_selection::satisfying_zones(pod, region, subnets);
    if allowed.is_empty() {
        return None;
    }
    let index = pod_uid.bytes().map(usize::from).sum::<usize>() % allowed.len();
    allowed.into_iter().nth(index)
}

/// What a virtual node is made from.
pub struct VirtualNode<'a> {
    pub ip: Ipv4Addr,
    pub region: &'a str,
    pub zone: &'a str,
    pub size: Size,
    /// Ephemeral storage provisioned, GiB ([`super::sizing::storage_gib`]).
    pub storage_gib: u64,
    pub pod_namespace: &'a str,
    pub pod_name: &'a str,
    pub pod_uid: &'a str,
}

/// What a Fargate node's kubelet reports of itself (docs/eks-behaviour.md §9, item 5).
pub struct NodeInfo<'a> {
    pub kubelet_version: &'a str,
    pub os_image: &'a str,
    pub kernel_version: &'a str,
    pub container_runtime_version: &'a str,
}

/// [D] One real Fargate node's `System Info`, whole (docs/eks-behaviour.md §9, item 5): the control
/// plane's own version is not known here, so the kubelet's is the capture's.
pub const CAPTURED_NODE_INFO: NodeInfo<'static> = NodeInfo {
    kubelet_version: "v1.18.8-eks-7c9bda",
    os_image: "Amazon Linux 2",
    kernel_version: "4.14.209-160.335.amzn2.x86_64",
    container_runtime_version: "containerd://1.3.2",
};

/// The kubelet version a Fargate node of a control plane at `git_version` reports: EKS's shape,
/// `v<major.minor.patch>-eks-<build>` ([D]: the control plane's version, the capture's build suffix;
/// a version that does not parse gives the capture's whole) (docs/eks-behaviour.md §9, item 5).
pub fn kubelet_version(git_version: &str) -> String {
    let core = git_version.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = core.trim_start_matches('v').split('.').collect();
    let numeric = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !core.starts_with('v') || !numeric {
        return CAPTURED_NODE_INFO.kubelet_version.to_string();
    }
    let build = CAPTURED_NODE_INFO
        .kubelet_version
        .rsplit_once("-eks-")
        .map_or("", |(_, b)| b);
    format!("{core}-eks-{build}")
}

/// The size a Fargate node reports, unrelated to its pod's but never smaller ([D], the smallest
/// captured VM: 2 vCPU, 4037540Ki), and what it leaves allocatable (the capture's 100Mi of memory
/// less); ephemeral storage as captured for the default 20 GiB, and [D] that disk grown by what is
/// provisioned above 20 GiB, a tenth of it not allocatable, as in the capture (docs/eks-behaviour.md
/// §9, item 5).
pub fn node_capacity(
    size: Size,
    storage_gib: u64,
) -> (BTreeMap<String, Quantity>, BTreeMap<String, Quantity>) {
    const MEMORY_KI: u64 = 4_037_540;
    const RESERVED_KI: u64 = 100 * 1024;
    const STORAGE_KI: u64 = 30_832_548;
    const STORAGE_ALLOCATABLE: u64 = 28_415_276_190;
    let extra_gib = storage_gib.saturating_sub(super::sizing::STORAGE_DEFAULT_GIB);
    let (storage, storage_allocatable) = if extra_gib == 0 {
        (format!("{STORAGE_KI}Ki"), STORAGE_ALLOCATABLE.to_string())
    } else {
        let ki = STORAGE_KI + extra_gib * 1024 * 1024;
        (format!("{ki}Ki"), (ki * 1024 / 10 * 9).to_string())
    };
    let millicpu = size.millicpu.max(2000);
    let cpu = if millicpu.is_multiple_of(1000) {
        (millicpu / 1000).to_string()
    } else {
        format!("{millicpu}m")
    };
    let memory_ki = (size.memory_mib * 1024).max(MEMORY_KI);
    let make = |memory_ki: u64, ephemeral: &str| -> BTreeMap<String, Quantity> {
        [
            ("cpu", cpu.clone()),
            ("memory", format!("{memory_ki}Ki")),
            ("pods", "1".to_string()),
            ("ephemeral-storage", ephemeral.to_string()),
            ("hugepages-1Gi", "0".to_string()),
            ("hugepages-2Mi", "0".to_string()),
        ]
        .into_iter()
        .map(|(k, q)| (k.to_string(), Quantity(q)))
        .collect()
    };
    (
        make(memory_ki, &storage),
        make(memory_ki - RESERVED_KI, &storage_allocatable),
    )
}

/// `aws:///<zone>/<10 hex>-<32 hex>/<node name>`, the shape of a Fargate node's providerID
/// (docs/eks-behaviour.md §9, item 5). [D] The first part is derived from the region (one value per
/// cluster in the captures), the second from the pod's UID (stable across restarts).
pub fn provider_id(zone: &str, region: &str, pod_uid: &str, node_name: &str) -> String {
    let prefix = format!("{:016x}", fnv(region.as_bytes(), 0));
    let task = format!(
        "{:016x}{:016x}",
        fnv(pod_uid.as_bytes(), 1),
        fnv(pod_uid.as_bytes(), 2)
    );
    format!("aws:///{zone}/{}-{task}/{node_name}", &prefix[..10])
}

/// FNV-1a of `bytes` and a salt: stable across processes and versions, unlike std's hasher.
fn fnv(bytes: &[u8], salt: u32) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes.iter().copied().chain(salt.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// The Node object: EKS's labels, annotations and taint, the capacity a Fargate node reports, one
/// pod, a Fargate providerID and the captured `System Info` ([`virtual_node_with`]).
pub fn virtual_node(v: &VirtualNode<'_>) -> Node {
    virtual_node_with(v, &CAPTURED_NODE_INFO)
}

/// [`virtual_node`] with the kubelet's `info` given (the control plane's version, say).
pub fn virtual_node_with(v: &VirtualNode<'_>, info: &NodeInfo<'_>) -> Node {
    let host = hostname(v.ip, v.region);
    let name = node_name(v.ip, v.region);
    let labels = node_labels(v.region, v.zone, &host);
    let annotations: BTreeMap<String, String> = [
        (
            POD_ANNOTATION,
            format!("{}/{}", v.pod_namespace, v.pod_name),
        ),
        (POD_UID_ANNOTATION, v.pod_uid.to_string()),
        // What a real Fargate node carries (the kubelet's and the TTL controller's).
        ("node.alpha.kubernetes.io/ttl", "0".to_string()),
        (
            "volumes.kubernetes.io/controller-managed-attach-detach",
            "true".to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (capacity, allocatable) = node_capacity(v.size, v.storage_gib);
    // A UUID's 8-4-4-4-12 groups of 32 hex digits derived from the pod's UID.
    let uuid = |seed: u32| {
        let hex = format!(
            "{:016x}{:016x}",
            fnv(v.pod_uid.as_bytes(), seed),
            fnv(v.pod_uid.as_bytes(), seed + 1)
        );
        let groups = [
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32],
        ];
        groups.join("-")
    };
    // EC2's system UUID: upper case, its first three digits `EC2`.
    let system_uuid = format!("EC2{}", &uuid(3).to_uppercase()[3..]);
    let boot_id = uuid(5);
    Node {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            taints: Some(vec![Taint {
                key: COMPUTE_TYPE.into(),
                value: Some("fargate".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }]),
            provider_id: Some(provider_id(v.zone, v.region, v.pod_uid, &name)),
            ..Default::default()
        }),
        status: Some(NodeStatus {
            addresses: Some(vec![
                NodeAddress {
                    type_: "InternalIP".into(),
                    address: v.ip.to_string(),
                },
                NodeAddress {
                    type_: "InternalDNS".into(),
                    address: host.clone(),
                },
                NodeAddress {
                    type_: "Hostname".into(),
                    address: host,
                },
            ]),
            allocatable: Some(allocatable),
            capacity: Some(capacity),
            node_info: Some(NodeSystemInfo {
                architecture: "amd64".into(),
                operating_system: "linux".into(),
                os_image: info.os_image.into(),
                kernel_version: info.kernel_version.into(),
                container_runtime_version: info.container_runtime_version.into(),
                kubelet_version: info.kubelet_version.into(),
                kube_proxy_version: info.kubelet_version.into(),
                machine_id: String::new(),
                system_uuid,
                boot_id,
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// A node of the pool, with what it can hold and what its pods already ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolNode {
    pub name: String,
    pub allocatable: Size,
    pub used: Size,
    /// Ready and not cordoned.
    pub schedulable: bool,
}

/// The schedulable node with the most room left after the pod (CPU first, then memory) that can
/// hold `size`; ties go to the first name, so spreading is deterministic.
pub fn choose_pool_node(nodes: &[PoolNode], size: Size) -> Option<&PoolNode> {
    nodes
        .iter()
        .filter(|n| n.schedulable)
        .filter(|n| {
            n.used.millicpu.saturating_add(size.millicpu) <= n.allocatable.millicpu
                && n.used.memory_mib.saturating_add(size.memory_mib) <= n.allocatable.memory_mib
        })
        .max_by(|a, b| {
            let room = |n: &PoolNode| {
                (
                    n.allocatable.millicpu - n.used.millicpu,
                    n.allocatable.memory_mib - n.used.memory_mib,
                )
            };
            room(a).cmp(&room(b)).then_with(|| b.name.cmp(&a.name))
        })
}

/// Whether the virtual node `node` is still needed, given the pod its annotations name (`None`: that
/// pod is gone): the same pod (by UID), bound to this node or not bound yet. A finished pod keeps its
/// node (and its address) until the pod object is deleted, as on EKS (docs/eks-behaviour.md §9).
pub fn virtual_node_needed(node: &Node, pod: Option<&Pod>) -> bool {
    let Some(pod) = pod else { return false };
    let name = node.metadata.name.as_deref().unwrap_or_default();
    let owner_uid = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(POD_UID_ANNOTATION));
    let same = owner_uid.is_some() && pod.metadata.uid.as_ref() == owner_uid;
    let bound_here_or_not_yet = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_none_or(|n| n.is_empty() || n == name);
    same && bound_here_or_not_yet
}

/// What the Fargate node's kubelet answers a pod bound to it: `None` when it runs it, else its
/// refusal. It runs only pods of `fargate-scheduler`, and no DaemonSet's, whatever they tolerate:
/// a pod the default scheduler put on a Fargate node (a DaemonSet pod tolerating every taint, on a
/// node whose own pod has finished) fails there (docs/eks-behaviour.md §5, DaemonSets).
pub fn kubelet_refusal(pod: &crate::decision::Pod) -> Option<String> {
    let mut reasons = Vec::new();
    if pod.spec.scheduler_name.as_deref() != Some(super::SCHEDULER_NAME) {
        reasons.push(format!("SchedulerName is not {}", super::SCHEDULER_NAME));
    }
    if pod
        .metadata
        .owner_references
        .iter()
        .any(|o| o.kind == "DaemonSet")
    {
        reasons.push("DaemonSet not supported".to_string());
    }
    (!reasons.is_empty()).then(|| format!("Pod not supported: {}", reasons.join(", ")))
}

/// Succeeded or Failed: the pod takes no room on a pool node (its virtual node stays, see
/// [`virtual_node_needed`]).
pub fn finished(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|phase| phase == "Succeeded" || phase == "Failed")
}

/// The `namespace/name` a virtual node was made for.
pub fn virtual_node_owner(node: &Node) -> Option<&str> {
    node.metadata
        .annotations
        .as_ref()?
        .get(POD_ANNOTATION)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_kubelet_version_is_the_control_planes_in_eks_shape() {
        let cases = [
            ("v1.35.4", "v1.35.4-eks-7c9bda"),
            ("v1.31.2-eks-7f9249a", "v1.31.2-eks-7c9bda"),
            ("v1.30.0+k3s1", "v1.30.0-eks-7c9bda"),
            ("v1.29.1-rc.1", "v1.29.1-eks-7c9bda"),
            ("", "v1.18.8-eks-7c9bda"),
            ("1.35.4", "v1.18.8-eks-7c9bda"),
            ("v1.35", "v1.18.8-eks-7c9bda"),
            ("vX.Y.Z", "v1.18.8-eks-7c9bda"),
        ];
        for (git_version, want) in cases {
            assert_eq!(kubelet_version(git_version), want, "{git_version:?}");
        }
    }

    #[test]
    fn a_virtual_node_is_needed_while_its_own_pod_exists_on_it() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1", "annotations": {
            POD_ANNOTATION: "apps/web", POD_UID_ANNOTATION: "u1"}}}))
        .unwrap();
        let pod = |uid: &str, node_name: Option<&str>, phase: Option<&str>| -> Pod {
            serde_json::from_value(
                json!({"metadata": {"name": "web", "namespace": "apps", "uid": uid},
                "spec": {"containers": [], "nodeName": node_name}, "status": {"phase": phase}}),
            )
            .unwrap()
        };
        let cases: &[(&str, Option<Pod>, bool)] = &[
            ("its pod is gone", None, false),
            (
                "not bound yet",
                Some(pod("u1", None, Some("Pending"))),
                true,
            ),
            (
                "bound here",
                Some(pod("u1", Some("n1"), Some("Running"))),
                true,
            ),
            (
                "bound here, empty node name",
                Some(pod("u1", Some(""), None)),
                true,
            ),
            (
                "bound elsewhere",
                Some(pod("u1", Some("n2"), Some("Running"))),
                false,
            ),
            (
                "a new pod of the same name",
                Some(pod("u2", Some("n1"), None)),
                false,
            ),
            // Finished pods keep their node until the pod object is deleted, as on EKS.
            (
                "succeeded",
                Some(pod("u1", Some("n1"), Some("Succeeded"))),
                true,
            ),
            ("failed", Some(pod("u1", Some("n1"), Some("Failed"))), true),
            (
                "finished, of another UID",
                Some(pod("u2", Some("n1"), Some("Succeeded"))),
                false,
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(virtual_node_needed(&node, pod.as_ref()), *want, "{name}");
        }
        let unowned: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap();
        assert!(
            !virtual_node_needed(&unowned, Some(&pod("u1", Some("n1"), None))),
            "no owner UID"
        );
        assert_eq!(virtual_node_owner(&node), Some("apps/web"));
        assert_eq!(virtual_node_owner(&unowned), None);
    }

    /// The Fargate kubelet runs only fargate-scheduler's pods, and no DaemonSet's.
    #[test]
    fn the_fargate_kubelet_refuses_pods_it_was_not_made_for() {
        let pod = |scheduler: Option<&str>, owner: Option<&str>| -> crate::decision::Pod {
            let owners: Vec<_> = owner.into_iter().map(|k| json!({"kind": k})).collect();
            serde_json::from_value(json!({
                "metadata": {"ownerReferences": owners},
                "spec": {"schedulerName": scheduler, "containers": [{"name": "a"}],
                    "tolerations": [{"operator": "Exists"}]}}))
            .unwrap()
        };
        let cases = [
            (Some("fargate-scheduler"), Some("ReplicaSet"), None),
            (Some("fargate-scheduler"), None, None),
            (
                Some("default-scheduler"),
                Some("DaemonSet"),
                Some(
                    "Pod not supported: SchedulerName is not fargate-scheduler, DaemonSet not supported",
                ),
            ),
            (
                None,
                Some("Job"),
                Some("Pod not supported: SchedulerName is not fargate-scheduler"),
            ),
            (
                Some("fargate-scheduler"),
                Some("DaemonSet"),
                Some("Pod not supported: DaemonSet not supported"),
            ),
        ];
        for (scheduler, owner, want) in cases {
            assert_eq!(
                kubelet_refusal(&pod(scheduler, owner)).as_deref(),
                want,
                "{scheduler:?} {owner:?}"
            );
        }
    }

    #[test]
    fn the_zone_follows_the_pods_zone_requirement() {
        let pod = |spec: serde_json::Value| -> crate::decision::Pod {
            serde_json::from_value(json!({"metadata": {}, "spec": spec})).unwrap()
        };
        let free = pod(json!({"containers": [{"name": "a"}]}));
        for uid in ["u-1", "u-2", "u-3", "abc"] {
            // No requirement: the zone `zone` picks.
            assert_eq!(
                zone_for("us-west-2", uid, 3, &free).as_deref(),
                Some(zone("us-west-2", uid, 3).as_str())
            );
            let in_c = pod(json!({"containers": [{"name": "a"}],
                "nodeSelector": {"topology.kubernetes.io/zone": "us-west-2c"}}));
            assert_eq!(
                zone_for("us-west-2", uid, 3, &in_c).as_deref(),
                Some("us-west-2c")
            );
            assert_eq!(zone_for("us-west-2", uid, 2, &in_c), None, "no subnet in c");
        }
        assert_eq!(zones("eu-west-1", 0), ["eu-west-1a"]);
        assert_eq!(zones("eu-west-1", 2), ["eu-west-1a", "eu-west-1b"]);
    }

    fn size(millicpu: u64, memory_mib: u64) -> Size {
        Size {
            millicpu,
            memory_mib,
        }
    }

    #[test]
    fn names_follow_eks() {
        let ip = Ipv4Addr::new(10, 0, 1, 2);
        assert_eq!(
            node_name(ip, "us-west-2"),
            "fargate-ip-10-0-1-2.us-west-2.compute.internal"
        );
        assert_eq!(
            node_name(ip, "us-east-1"),
            "fargate-ip-10-0-1-2.ec2.internal"
        );
        assert_eq!(
            hostname(ip, "eu-west-1"),
            "ip-10-0-1-2.eu-west-1.compute.internal"
        );
    }

    #[test]
    fn addresses_are_stable_private_and_differ_by_attempt() {
        let a = address("uid-1", 0);
        assert_eq!(a, address("uid-1", 0));
        assert_ne!(a, address("uid-1", 1));
        assert_ne!(a, address("uid-2", 0));
        for attempt in 0..200 {
            let ip = address("some-uid", attempt);
            assert_eq!(ip.octets()[0], 10);
            assert!((1..=254).contains(&ip.octets()[3]));
        }
        assert_eq!(zone("us-west-2", "ab", 1), "us-west-2a");
        assert!(["us-west-2a", "us-west-2b"].contains(&zone("us-west-2", "uid", 2).as_str()));
    }

    #[test]
    fn the_virtual_node_has_eks_labels_annotations_taint_and_node_info() {
        let node = virtual_node(&VirtualNode {
            ip: Ipv4Addr::new(10, 1, 2, 3),
            region: "us-west-2",
            zone: "us-west-2b",
            size: size(250, 512),
            storage_gib: 20,
            pod_namespace: "apps",
            pod_name: "web-1",
            pod_uid: "u-1",
        });
        assert_eq!(
            node.metadata.name.as_deref(),
            Some("fargate-ip-10-1-2-3.us-west-2.compute.internal")
        );
        let labels = node.metadata.labels.unwrap();
        assert_eq!(labels[COMPUTE_TYPE], "fargate");
        assert_eq!(
            labels["kubernetes.io/hostname"],
            "ip-10-1-2-3.us-west-2.compute.internal"
        );
        assert_eq!(labels["topology.kubernetes.io/zone"], "us-west-2b");
        assert_eq!(
            labels["failure-domain.beta.kubernetes.io/zone"],
            "us-west-2b"
        );
        assert_eq!(labels["topology.kubernetes.io/region"], "us-west-2");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        let taint = &node.spec.unwrap().taints.unwrap()[0];
        assert_eq!(
            (
                taint.key.as_str(),
                taint.value.as_deref(),
                taint.effect.as_str()
            ),
            (COMPUTE_TYPE, Some("fargate"), "NoSchedule")
        );
        let annotations = node.metadata.annotations.unwrap();
        assert_eq!(annotations[POD_ANNOTATION], "apps/web-1");
        assert_eq!(annotations["node.alpha.kubernetes.io/ttl"], "0");
        assert_eq!(
            annotations["volumes.kubernetes.io/controller-managed-attach-detach"],
            "true"
        );
        let status = node.status.unwrap();
        // A 0.25 vCPU pod on a node that says 2 vCPU: EKS's reported size is not the pod's.
        let capacity = status.capacity.unwrap();
        assert_eq!(capacity["cpu"].0, "2");
        assert_eq!(capacity["memory"].0, "4037540Ki");
        assert_eq!(capacity["pods"].0, "1");
        assert_eq!(capacity["ephemeral-storage"].0, "30832548Ki");
        // What node_capacity leaves allocatable is what the node reports.
        assert_eq!(
            status.allocatable,
            Some(node_capacity(size(250, 512), 20).1),
            "allocatable"
        );
        let info = status.node_info.unwrap();
        assert_eq!(info.kubelet_version, "v1.18.8-eks-7c9bda");
        assert_eq!(info.kube_proxy_version, info.kubelet_version);
        assert_eq!(info.os_image, "Amazon Linux 2");
        assert_eq!(info.kernel_version, "4.14.209-160.335.amzn2.x86_64");
        assert_eq!(info.container_runtime_version, "containerd://1.3.2");
        assert_eq!(
            (info.architecture.as_str(), info.operating_system.as_str()),
            ("amd64", "linux")
        );
        // EC2's shapes: a system UUID in upper case starting EC2, a boot ID in lower case; 8-4-4-4-12.
        let shape = |id: &str| id.split('-').map(str::len).collect::<Vec<_>>();
        assert!(info.system_uuid.starts_with("EC2"), "{}", info.system_uuid);
        assert_eq!(
            shape(&info.system_uuid),
            [8, 4, 4, 4, 12],
            "{}",
            info.system_uuid
        );
        assert_eq!(info.system_uuid, info.system_uuid.to_uppercase());
        assert_eq!(shape(&info.boot_id), [8, 4, 4, 4, 12], "{}", info.boot_id);
        assert_eq!(info.boot_id, info.boot_id.to_lowercase());
        assert_ne!(info.boot_id[9..], info.system_uuid[9..].to_lowercase());
        let addresses: Vec<_> = status
            .addresses
            .unwrap()
            .into_iter()
            .map(|a| (a.type_, a.address))
            .collect();
        let host = "ip-10-1-2-3.us-west-2.compute.internal".to_string();
        assert_eq!(
            addresses,
            [
                ("InternalIP".into(), "10.1.2.3".into()),
                ("InternalDNS".into(), host.clone()),
                ("Hostname".into(), host),
            ]
        );
    }

    /// The providerID has a real Fargate node's shape, and the tools that read one find in it what
    /// they find in EKS's (their parsing, copied: docs/eks-behaviour.md §9, item 5).
    #[test]
    fn the_provider_id_reads_like_a_fargate_nodes() {
        let node = virtual_node(&VirtualNode {
            ip: Ipv4Addr::new(10, 1, 2, 3),
            region: "us-west-2",
            zone: "us-west-2b",
            size: size(250, 512),
            storage_gib: 20,
            pod_namespace: "apps",
            pod_name: "web-1",
            pod_uid: "0b9c1f0e-6a4f-4a55-9d1e-2f6c1b7a9e10",
        });
        let id = node.spec.unwrap().provider_id.unwrap();
        let shape = regex::Regex::new(
            r"^aws:///us-west-2b/[0-9a-f]{10}-[0-9a-f]{32}/fargate-ip-10-1-2-3\.us-west-2\.compute\.internal$",
        )
        .unwrap();
        assert!(shape.is_match(&id), "{id}");
        // A capture of EKS's, which the same shape matches.
        assert!(regex::Regex::new(r"^aws:///[a-z0-9-]+/[0-9a-f]{10}-[0-9a-f]{32}/fargate-ip-")
            .unwrap()
            .is_match("aws:///eu-central-1b/7b1974769e-0d7cb3f0582c4079908372a2c1d80b16/fargate-ip-192-168-105-82.eu-central-1.compute.internal"));
        // cluster-autoscaler's AWS provider (`validAwsRefIdRegex`, `AwsRefFromProviderId`).
        let autoscaler = regex::Regex::new(
            r"^aws\:\/\/\/[-0-9a-z]*\/[-0-9a-z]*(\/[-0-9a-z\.]*)?$|aws\:\/\/\/[-0-9a-z]*\/i-placeholder-.*$",
        )
        .unwrap();
        assert!(autoscaler.is_match(&id), "cluster-autoscaler refuses {id}");
        // The EFS CSI driver (`pkg/cloud/k8s_metadata.go`): the 32-character task ID, not the IP.
        let efs = regex::Regex::new("i-[a-z0-9]+$|[a-z0-9]{32}").unwrap();
        let found = efs.find(&id).map(|m| m.as_str()).unwrap_or_default();
        assert_eq!(found.len(), 32, "{id}");
        assert!(id.contains(&format!("-{found}/")), "{id}");
        // Stable for one pod, different for another.
        let again = provider_id(
            "us-west-2b",
            "us-west-2",
            "0b9c1f0e-6a4f-4a55-9d1e-2f6c1b7a9e10",
            "n",
        );
        assert_eq!(
            again.rsplit_once('/').unwrap().0,
            id.rsplit_once('/').unwrap().0
        );
        let other = provider_id("us-west-2b", "us-west-2", "another", "n");
        assert_ne!(
            other.rsplit_once('/').unwrap().0,
            id.rsplit_once('/').unwrap().0
        );
    }

    #[test]
    fn the_reported_size_is_a_vm_never_smaller_than_the_pod() {
        // (pod's provisioned size, capacity cpu, capacity memory, allocatable memory)
        let cases = [
            (size(250, 512), "2", "4037540Ki", "3935140Ki"),
            (size(1000, 3072), "2", "4037540Ki", "3935140Ki"),
            (size(2000, 4096), "2", "4194304Ki", "4091904Ki"),
            (size(4000, 30 * 1024), "4", "31457280Ki", "31354880Ki"),
            (size(16000, 120 * 1024), "16", "125829120Ki", "125726720Ki"),
            (size(2500, 8192), "2500m", "8388608Ki", "8286208Ki"),
        ];
        for (pod, cpu, memory, allocatable_memory) in cases {
            let (capacity, allocatable) = node_capacity(pod, 20);
            assert_eq!(capacity["cpu"].0, cpu, "{pod}");
            assert_eq!(capacity["memory"].0, memory, "{pod}");
            assert_eq!(allocatable["cpu"].0, cpu, "{pod}");
            assert_eq!(allocatable["memory"].0, allocatable_memory, "{pod}");
            assert_eq!(capacity["pods"].0, "1");
            assert_eq!(capacity["ephemeral-storage"].0, "30832548Ki");
            assert_eq!(allocatable["ephemeral-storage"].0, "28415276190");
        }
    }

    #[test]
    fn the_reported_disk_grows_with_the_storage_provisioned_above_the_default() {
        // (GiB provisioned, capacity, allocatable: nine tenths of it)
        let cases = [
            (20, "30832548Ki", "28415276190"),
            (21, "31881124Ki", "29381643873"),
            (115, "130447268Ki", "120220202187"),
            (198, "217479076Ki", "200428716438"),
        ];
        for (gib, capacity, allocatable) in cases {
            let (c, a) = node_capacity(size(250, 512), gib);
            assert_eq!(c["ephemeral-storage"].0, capacity, "{gib} GiB");
            assert_eq!(a["ephemeral-storage"].0, allocatable, "{gib} GiB");
        }
    }

    #[test]
    fn the_pool_node_with_most_room_that_fits() {
        let node = |name: &str, cpu, used_cpu, schedulable| PoolNode {
            name: name.into(),
            allocatable: size(cpu, 8192),
            used: size(used_cpu, 0),
            schedulable,
        };
        let nodes = vec![
            node("a", 2000, 1500, true),
            node("b", 2000, 500, true),
            node("c", 4000, 0, false),
            node("d", 2000, 500, true),
        ];
        assert_eq!(choose_pool_node(&nodes, size(250, 512)).unwrap().name, "b");
        assert_eq!(choose_pool_node(&nodes, size(1500, 512)).unwrap().name, "b");
        assert!(
            choose_pool_node(&nodes, size(1600, 512)).is_none(),
            "c is cordoned"
        );
        assert!(choose_pool_node(&nodes, size(250, 9000)).is_none());
    }

    /// A pod that has run to completion, Succeeded or Failed, takes no room on a pool node; one
    /// that is pending, running or of unknown phase does.
    #[test]
    fn finished_means_succeeded_or_failed() {
        let pod = |status: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
        };
        let cases = [
            (json!({"phase": "Succeeded"}), true),
            (json!({"phase": "Failed"}), true),
            (json!({"phase": "Running"}), false),
            (json!({"phase": "Pending"}), false),
            (json!({"phase": "Unknown"}), false),
            (json!({}), false),
            (json!(null), false),
        ];
        for (status, want) in cases {
            assert_eq!(finished(&pod(status.clone())), want, "{status}");
        }
    }
}
