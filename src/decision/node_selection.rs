//! Whether a Fargate node can satisfy a pod's `nodeSelector` and required node affinity, pure. EKS's
//! fargate-scheduler judges them against the labels its Fargate node will carry (compute type,
//! region, zone, arch, os, host name) and refuses a pod no such node satisfies with
//! `MatchNodeSelector failed: …`; a zone requirement chooses among the profile's subnets
//! (docs/eks-behaviour.md §9, "Node selection").

use super::pod::{NodeSelectorTerm, Pod, Requirement};
use std::collections::BTreeMap;

/// The label and taint every Fargate node carries.
pub const COMPUTE_TYPE: &str = "eks.amazonaws.com/compute-type";
/// Marks the nodes the scheduler made (so it removes only those).
pub const VIRTUAL_NODE_LABEL: &str = "fargate-webhook.io/virtual-node";
/// The label every Fargate node carries with its host name.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// The labels that carry a Fargate node's region, and its zone.
pub const REGION_LABELS: [&str; 2] = [
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/region",
];
pub const ZONE_LABELS: [&str; 2] = [
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];

/// The labels of a Fargate node: those of a real one (docs/eks-behaviour.md §9) and the marker of
/// the nodes made here. The scheduler's virtual nodes carry exactly these, so a pod is judged
/// against what it gets.
pub fn node_labels(region: &str, zone: &str, hostname: &str) -> BTreeMap<String, String> {
    [
        ("beta.kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        (COMPUTE_TYPE, "fargate"),
        (REGION_LABELS[1], region),
        (ZONE_LABELS[1], zone),
        ("kubernetes.io/arch", "amd64"),
        (HOSTNAME_LABEL, hostname),
        ("kubernetes.io/os", "linux"),
        (REGION_LABELS[0], region),
        (ZONE_LABELS[0], zone),
        (VIRTUAL_NODE_LABEL, "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// The zone of a profile's `index`th subnet: `<region>a`, `<region>b`, … ([D]: the project knows
/// subnet IDs, not their zones).
pub fn zone_name(region: &str, index: usize) -> String {
    let letter = (b'a' + (index % 26) as u8) as char;
    format!("{region}{letter}")
}

/// The zones of a profile's subnets, in order (at least one).
pub fn zones(region: &str, subnets: usize) -> Vec<String> {
    (0..subnets.max(1)).map(|i| zone_name(region, i)).collect()
}

/// EKS's event for a pod no Fargate node of its profile satisfies (docs/eks-behaviour.md §9).
pub fn refusal(profile: &str) -> String {
    format!(
        "MatchNodeSelector failed: Fargate profile {profile} cannot satisfy pod's node selector/affinity requirements"
    )
}

/// A label (or field) of the Fargate node the pod would get, as far as it is known before the
/// node exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Label {
    /// The node will not carry it.
    Absent,
    Known(String),
    /// The node's own name or host name: made when the node is, so equal to no value a pod can
    /// name in advance.
    Fresh,
    /// Carried, with a value not known here (the region when the caller does not know it): any
    /// value may match.
    Unknown,
}

/// The Fargate node the pod would get: in `region` (`None`: not known) and `zone` (`None`: not
/// known, or not chosen yet).
#[derive(Clone, Copy, Debug)]
pub struct FargateNode<'a> {
    pub region: Option<&'a str>,
    pub zone: Option<&'a str>,
}

impl FargateNode<'_> {
    /// The node's label `key`: those of [`node_labels`], the host name fresh.
    pub fn label(&self, key: &str) -> Label {
        if REGION_LABELS.contains(&key) {
            return self
                .region
                .map_or(Label::Unknown, |r| Label::Known(r.into()));
        }
        if ZONE_LABELS.contains(&key) {
            return self.zone.map_or(Label::Unknown, |z| Label::Known(z.into()));
        }
        if key == HOSTNAME_LABEL {
            return Label::Fresh;
        }
        node_labels("", "", "")
            .get(key)
            .map_or(Label::Absent, |v| Label::Known(v.clone()))
    }

    /// The node's field `key`: only `metadata.name` exists, and it is fresh.
    pub fn field(&self, key: &str) -> Label {
        if key == "metadata.name" {
            Label::Fresh
        } else {
            Label::Absent
        }
    }

    /// Whether this node satisfies the pod's `nodeSelector` and required node affinity.
    pub fn satisfies(&self, pod: &Pod) -> bool {
        let selector = pod.spec.node_selector.iter().flatten().all(|(key, value)| {
            holds(
                &self.label(key),
                "In",
                std::slice::from_ref(value).iter().map(String::as_str),
            )
        });
        let required = pod
            .spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required.as_ref());
        let affinity = required.is_none_or(|r| {
            r.node_selector_terms
                .iter()
                .any(|term| self.satisfies_term(term))
        });
        selector && affinity
    }

    /// A term holds when it has a requirement and all of them hold (as Kubernetes reads it: an
    /// empty term selects no node).
    fn satisfies_term(&self, term: &NodeSelectorTerm) -> bool {
        let on = |requirements: &[Requirement], of: &dyn Fn(&str) -> Label| {
            requirements.iter().all(|r| {
                holds(
                    &of(&r.key),
                    &r.operator,
                    r.values.iter().map(String::as_str),
                )
            })
        };
        (!term.match_expressions.is_empty() || !term.match_fields.is_empty())
            && on(&term.match_expressions, &|k| self.label(k))
            && on(&term.match_fields, &|k| self.field(k))
    }
}

/// One requirement `operator values` on a label, with Kubernetes' operators. An unknown operator
/// holds for no node.
fn holds<'v>(label: &Label, operator: &str, mut values: impl Iterator<Item = &'v str>) -> bool {
    let number = |v: &str| v.parse::<i64>().ok();
    match (operator, label) {
        ("Exists", label) => *label != Label::Absent,
        ("DoesNotExist", label) => *label == Label::Absent,
        ("In", Label::Known(v)) => values.any(|x| x == v),
        ("In", Label::Unknown) => values.next().is_some(),
        ("In", Label::Absent | Label::Fresh) => false,
        ("NotIn", Label::Known(v)) => values.all(|x| x != v),
        ("NotIn", _) => true,
        ("Gt" | "Lt", Label::Known(v)) => {
            let (Some(have), Some(want), None) =
                (number(v), values.next().and_then(number), values.next())
            else {
                return false;
            };
            if operator == "Gt" {
                have > want
            } else {
                have < want
            }
        }
        ("Gt" | "Lt", Label::Unknown) => true,
        _ => false,
    }
}

/// The zones, of the profile's (`<region>a`, `<region>b`, … one per subnet), whose Fargate node
/// satisfies the pod; empty when none does.
pub fn satisfying_zones(pod: &Pod, region: &str, subnets: usize) -> Vec<String> {
    zones(region, subnets)
        .into_iter()
        .filter(|zone| {
            FargateNode {
                region: Some(region),
                zone: Some(zone),
            }
            .satisfies(pod)
        })
        .collect()
}

/// Whether some Fargate node of a profile with `subnets` subnets satisfies the pod: in one of its
/// zones when the region is known, else with the region and zone left open.
pub fn satisfiable(pod: &Pod, region: Option<&str>, subnets: usize) -> bool {
    match region {
        Some(region) => !satisfying_zones(pod, region, subnets).is_empty(),
        None => FargateNode {
            region: None,
            zone: None,
        }
        .satisfies(pod),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "a"}]);
        serde_json::from_value(json!({"metadata": {}, "spec": spec})).unwrap()
    }

    fn required(expressions: serde_json::Value) -> serde_json::Value {
        json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": expressions}]}}}})
    }

    fn expr(key: &str, operator: &str, values: &[&str]) -> serde_json::Value {
        json!({"key": key, "operator": operator, "values": values})
    }

    /// What a Fargate node in us-west-2, zones `a` and `b` (two subnets), satisfies.
    #[test]
    fn requirements_are_judged_against_the_labels_of_a_fargate_node() {
        let cases: Vec<(&str, serde_json::Value, bool)> = vec![
            ("no requirement", json!({}), true),
            (
                "compute type",
                json!({"nodeSelector": {"eks.amazonaws.com/compute-type": "fargate"}}),
                true,
            ),
            (
                "EC2 only (ebs-csi#496, efs-csi#1068)",
                required(json!([expr(
                    "eks.amazonaws.com/compute-type",
                    "NotIn",
                    &["fargate"]
                )])),
                false,
            ),
            (
                "compute type ec2",
                json!({"nodeSelector": {"eks.amazonaws.com/compute-type": "ec2"}}),
                false,
            ),
            (
                "a label Fargate nodes do not carry",
                json!({"nodeSelector": {"workload-type": "spark-driver"}}),
                false,
            ),
            (
                "a label Fargate nodes do not carry, excluded",
                required(json!([expr("workload-type", "DoesNotExist", &[])])),
                true,
            ),
            (
                "a node group",
                required(json!([expr("eks.amazonaws.com/nodegroup", "Exists", &[])])),
                false,
            ),
            (
                "linux",
                json!({"nodeSelector": {"kubernetes.io/os": "linux"}}),
                true,
            ),
            (
                "windows",
                json!({"nodeSelector": {"kubernetes.io/os": "windows"}}),
                false,
            ),
            (
                "amd64 or arm64 (the CoreDNS add-on's affinity)",
                required(json!([
                    expr("kubernetes.io/os", "In", &["linux"]),
                    expr("kubernetes.io/arch", "In", &["amd64", "arm64"])
                ])),
                true,
            ),
            (
                "arm64 only",
                json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
                false,
            ),
            (
                "beta arch",
                json!({"nodeSelector": {"beta.kubernetes.io/arch": "amd64"}}),
                true,
            ),
            (
                "the region",
                json!({"nodeSelector": {"topology.kubernetes.io/region": "us-west-2"}}),
                true,
            ),
            (
                "another region",
                json!({"nodeSelector": {"failure-domain.beta.kubernetes.io/region": "eu-west-1"}}),
                false,
            ),
            (
                "a zone of the profile (roadmap#1125)",
                json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-west-2b"}}),
                true,
            ),
            (
                "a zone of the profile, beta label",
                json!({"nodeSelector": {"failure-domain.beta.kubernetes.io/zone": "us-west-2a"}}),
                true,
            ),
            (
                "a zone without a subnet of the profile",
                json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-west-2c"}}),
                false,
            ),
            (
                "zone and region disagree",
                json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-west-2a", "topology.kubernetes.io/region": "us-east-1"}}),
                false,
            ),
            (
                "one node is named, the new node is not it",
                required(json!([expr(
                    "kubernetes.io/hostname",
                    "In",
                    &["ip-10-0-0-1.us-west-2.compute.internal"]
                )])),
                false,
            ),
            (
                "a host name excluded",
                required(json!([expr(
                    "kubernetes.io/hostname",
                    "NotIn",
                    &["ip-10-0-0-1.us-west-2.compute.internal"]
                )])),
                true,
            ),
            (
                "a DaemonSet pod's field affinity",
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchFields": [expr("metadata.name", "In", &["ip-10-0-0-1.us-west-2.compute.internal"])]}]}}}}),
                false,
            ),
            (
                "any of the terms",
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [expr("kubernetes.io/arch", "In", &["arm64"])]},
                        {"matchExpressions": [expr("kubernetes.io/arch", "In", &["amd64"])]}]}}}}),
                true,
            ),
            (
                "an empty term selects nothing",
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{}]}}}}),
                false,
            ),
            (
                "both nodeSelector and affinity must hold",
                {
                    let mut spec = required(json!([expr("kubernetes.io/os", "In", &["linux"])]));
                    spec["nodeSelector"] = json!({"kubernetes.io/arch": "arm64"});
                    spec
                },
                false,
            ),
            (
                "a preference is not a requirement",
                json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                    {"weight": 1, "preference": {"matchExpressions": [expr("kubernetes.io/arch", "In", &["arm64"])]}}]}}}),
                true,
            ),
            (
                "Gt on a label that is not a number",
                required(json!([expr("kubernetes.io/os", "Gt", &["1"])])),
                false,
            ),
            (
                "an unknown operator",
                required(json!([expr("kubernetes.io/os", "Like", &["linux"])])),
                false,
            ),
        ];
        for (name, spec, want) in cases {
            let pod = pod(spec);
            assert_eq!(satisfiable(&pod, Some("us-west-2"), 2), want, "{name}");
        }
    }

    #[test]
    fn a_zone_requirement_chooses_among_the_profile_zones() {
        let zone_in = |zones: &[&str]| {
            pod(required(json!([expr(
                "topology.kubernetes.io/zone",
                "In",
                zones
            )])))
        };
        assert_eq!(
            satisfying_zones(&zone_in(&["us-west-2b", "us-west-2c"]), "us-west-2", 3),
            ["us-west-2b", "us-west-2c"]
        );
        assert_eq!(
            satisfying_zones(&zone_in(&["us-west-2c"]), "us-west-2", 2),
            Vec::<String>::new()
        );
        let none_of_a = pod(required(json!([expr(
            "topology.kubernetes.io/zone",
            "NotIn",
            &["us-west-2a"]
        )])));
        assert_eq!(satisfying_zones(&none_of_a, "us-west-2", 2), ["us-west-2b"]);
        assert_eq!(
            satisfying_zones(&pod(json!({})), "eu-west-1", 1),
            ["eu-west-1a"]
        );
    }

    /// Without the region (explain, or a caller that does not pass it), region and zone
    /// requirements are left to the scheduler; every other label is judged.
    #[test]
    fn an_unknown_region_leaves_region_and_zone_open() {
        let cases: Vec<(serde_json::Value, bool)> = vec![
            (
                json!({"nodeSelector": {"topology.kubernetes.io/zone": "us-west-2c"}}),
                true,
            ),
            (
                json!({"nodeSelector": {"topology.kubernetes.io/region": "eu-west-1"}}),
                true,
            ),
            (
                required(json!([expr(
                    "topology.kubernetes.io/zone",
                    "DoesNotExist",
                    &[]
                )])),
                false,
            ),
            (
                json!({"nodeSelector": {"kubernetes.io/arch": "arm64"}}),
                false,
            ),
            (json!({"nodeSelector": {"workload-type": "spark"}}), false),
        ];
        for (spec, want) in cases {
            assert_eq!(satisfiable(&pod(spec.clone()), None, 2), want, "{spec}");
        }
    }

    #[test]
    fn the_refusal_names_the_profile() {
        assert_eq!(
            refusal("apps"),
            "MatchNodeSelector failed: Fargate profile apps cannot satisfy pod's node selector/affinity requirements"
        );
    }

    /// Kubernetes' operators on one label of the node: `Gt` and `Lt` compare integers strictly and
    /// hold for no node when either side is not one or more than one value is given; a label not
    /// known yet may match anything but is never absent. No Fargate label is a number today, so
    /// `Gt` and `Lt` are judged here, on the label alone.
    /// Only `metadata.name` is a field of the node, and it is fresh (a surviving mutant showed the
    /// field lookup untested).
    #[test]
    fn the_node_has_one_field_its_fresh_name() {
        let node = FargateNode {
            region: Some("us-west-2"),
            zone: None,
        };
        assert_eq!(node.field("metadata.name"), Label::Fresh);
        assert_eq!(node.field("spec.unschedulable"), Label::Absent);
        assert_eq!(node.field("metadata.namespace"), Label::Absent);
    }

    #[test]
    fn operators_on_one_label() {
        let known = |v: &str| Label::Known(v.into());
        let cases: Vec<(Label, &str, &[&str], bool)> = vec![
            (known("5"), "Gt", &["4"], true),
            (known("5"), "Gt", &["5"], false),
            (known("5"), "Gt", &["6"], false),
            (known("5"), "Lt", &["6"], true),
            (known("5"), "Lt", &["5"], false),
            (known("5"), "Lt", &["4"], false),
            (known("-1"), "Lt", &["0"], true),
            (known("5"), "Gt", &["x"], false),
            (known("5"), "Gt", &[], false),
            (known("5"), "Gt", &["1", "2"], false),
            (Label::Unknown, "Gt", &["1"], true),
            (Label::Absent, "Gt", &["1"], false),
            (Label::Fresh, "Lt", &["1"], false),
            (known("a"), "In", &["b", "a"], true),
            (known("c"), "In", &["a", "b"], false),
            (Label::Unknown, "In", &["a"], true),
            (Label::Unknown, "In", &[], false),
            (Label::Absent, "In", &["a"], false),
            (Label::Fresh, "In", &["a"], false),
            (known("a"), "NotIn", &["b", "a"], false),
            (known("c"), "NotIn", &["a", "b"], true),
            (Label::Absent, "NotIn", &["a"], true),
            (Label::Fresh, "NotIn", &["a"], true),
            (Label::Fresh, "Exists", &[], true),
            (Label::Unknown, "Exists", &[], true),
            (Label::Absent, "Exists", &[], false),
            (Label::Absent, "DoesNotExist", &[], true),
            (Label::Unknown, "DoesNotExist", &[], false),
            (known("a"), "Like", &["a"], false),
        ];
        for (label, operator, values, want) in cases {
            assert_eq!(
                holds(&label, operator, values.iter().copied()),
                want,
                "{label:?} {operator} {values:?}"
            );
        }
    }
}
