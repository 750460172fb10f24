//! The lean view of a pod: only the fields that decide the outcome or feed a warning. Everything
//! else in the (often 8 KB+) object is skipped by serde without being built into a JSON tree.

use serde::Deserialize;
use serde::de::IgnoredAny;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Pod {
    #[serde(deserialize_with = "object_only")]
    pub metadata: ObjectMeta,
    #[serde(deserialize_with = "object_only")]
    pub spec: PodSpec,
}

/// `metadata` and `spec` must be JSON objects (serde would also read an array as the fields in order).
fn object_only<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    ObjectOnly::<T>::deserialize(deserializer).map(|o| o.0)
}

/// A struct that must come as a JSON object: serde's derive would also read a JSON array as the
/// fields in declaration order, which no Kubernetes client sends and which must not be answered.
#[derive(Default)]
pub(crate) struct ObjectOnly<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Visit(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: Option<String>,
    pub generate_name: Option<String>,
    pub namespace: Option<String>,
    /// `None` when the pod has no `labels` map at all: the patch must then add the whole map.
    pub labels: Option<BTreeMap<String, String>>,
    pub annotations: Option<BTreeMap<String, String>>,
    pub owner_references: Vec<OwnerReference>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct OwnerReference {
    /// Only the kind is read (a DaemonSet's pods are left alone); serde skips the rest.
    pub kind: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    pub scheduler_name: Option<String>,
    pub node_name: Option<String>,
    pub priority_class_name: Option<String>,
    pub priority: Option<i32>,
    pub preemption_policy: Option<String>,
    pub host_network: Option<bool>,
    #[serde(rename = "hostPID")]
    pub host_pid: Option<bool>,
    #[serde(rename = "hostIPC")]
    pub host_ipc: Option<bool>,
    pub containers: Vec<Container>,
    pub init_containers: Vec<Container>,
    pub ephemeral_containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    /// The labels the pod's node must carry (docs/eks-behaviour.md §9, node selection).
    pub node_selector: Option<BTreeMap<String, String>>,
    pub affinity: Option<Affinity>,
}

/// Only the node affinity is read: pod (anti-)affinity plays no part on Fargate.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Affinity {
    pub node_affinity: Option<NodeAffinity>,
}

/// Only the required part: a preference never stops a pod from being placed.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct NodeAffinity {
    #[serde(rename = "requiredDuringSchedulingIgnoredDuringExecution")]
    pub required: Option<NodeSelector>,
}

/// Satisfied when any of its terms is.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeSelector {
    pub node_selector_terms: Vec<NodeSelectorTerm>,
}

/// Satisfied when all of its requirements are (and it has one at least).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct NodeSelectorTerm {
    /// On the node's labels.
    pub match_expressions: Vec<Requirement>,
    /// On the node's fields (`metadata.name`).
    pub match_fields: Vec<Requirement>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Requirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists`, `DoesNotExist`, `Gt`, `Lt`.
    pub operator: String,
    pub values: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Container {
    pub name: String,
    pub ports: Vec<ContainerPort>,
    pub security_context: Option<SecurityContext>,
    pub resources: Resources,
    /// `Always` on an init container makes it a sidecar that runs as long as the pod.
    pub restart_policy: Option<String>,
    /// Raw block devices: only how many matters (Fargate refuses them).
    pub volume_devices: Vec<IgnoredAny>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub requests: ResourceList,
    pub limits: ResourceList,
}

/// A container's `requests` or `limits` as far as Fargate reads them: the CPU, memory and
/// ephemeral-storage quantities (sizing) and the names of the other resources (a GPU is refused). Not a map: no key is copied
/// unless it is unusual, which keeps the review path's allocations down.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceList {
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
    /// `ephemeral-storage` (Fargate provisions storage from it, docs/eks-behaviour.md §9).
    pub ephemeral_storage: Option<Quantity>,
    /// The other resource names, as written (`nvidia.com/gpu`, `ephemeral-storage`, …).
    pub others: Vec<String>,
}

impl ResourceList {
    pub fn get(&self, name: &str) -> Option<&Quantity> {
        match name {
            "cpu" => self.cpu.as_ref(),
            "memory" => self.memory.as_ref(),
            "ephemeral-storage" => self.ephemeral_storage.as_ref(),
            _ => None,
        }
    }

    /// Every resource named, CPU, memory and ephemeral storage first.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        let cpu = self.cpu.as_ref().map(|_| "cpu");
        let memory = self.memory.as_ref().map(|_| "memory");
        let storage = self.ephemeral_storage.as_ref().map(|_| "ephemeral-storage");
        cpu.into_iter()
            .chain(memory)
            .chain(storage)
            .chain(self.others.iter().map(String::as_str))
    }
}

impl<'de> Deserialize<'de> for ResourceList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = ResourceList;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of resource quantities")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ResourceList, A::Error> {
                let mut list = ResourceList::default();
                while let Some(key) = map.next_key::<Key>()? {
                    let quantity: Quantity = map.next_value()?;
                    match key.0.as_ref() {
                        // A repeated key: the last one wins, as in a map.
                        "cpu" => list.cpu = Some(quantity),
                        "memory" => list.memory = Some(quantity),
                        "ephemeral-storage" => list.ephemeral_storage = Some(quantity),
                        _ => list.others.push(key.0.into_owned()),
                    }
                }
                Ok(list)
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// A Kubernetes quantity as written: the apiserver stores strings, a YAML manifest may hold a
/// bare number (`cpu: 1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    // A visitor rather than an untagged enum: untagged buffers every value into serde's `Content`
    // first, which doubled the cost of reading resources on the review path.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Quantity;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a quantity (a string or a number)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_owned()))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Quantity, E> {
                Ok(Quantity(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visit)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerPort {
    pub host_port: Option<i32>,
    #[serde(rename = "hostIP")]
    pub host_ip: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SecurityContext {
    pub privileged: Option<bool>,
    pub allow_privilege_escalation: Option<bool>,
    pub capabilities: Option<Capabilities>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Capabilities {
    pub add: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Volume {
    pub name: String,
    pub host_path: Option<IgnoredAny>,
    pub persistent_volume_claim: Option<ClaimSource>,
    /// The volume's source kinds (`emptyDir`, `nfs`, …): every other key of the object.
    pub sources: Vec<String>,
}

impl<'de> Deserialize<'de> for Volume {
    // By hand rather than with `#[serde(flatten)]`, which buffers the whole object into serde's
    // `Content` and a map before reading a field; this reads each key once and skips the values.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Volume;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a volume object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Volume, A::Error> {
                let mut volume = Volume::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key.0.as_ref() {
                        "name" => {
                            volume.name = map.next_value::<Option<String>>()?.unwrap_or_default()
                        }
                        "hostPath" => volume.host_path = map.next_value()?,
                        "persistentVolumeClaim" => {
                            volume.persistent_volume_claim = map.next_value()?
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            volume.sources.push(key.0.into_owned());
                        }
                    }
                }
                Ok(volume)
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// A map key, borrowed from the input when the format allows it.
struct Key<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(std::borrow::Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ClaimSource {
    pub claim_name: String,
}

impl Pod {
    /// The lean view of a pod object held in another type that serializes as the API's JSON (the
    /// scheduler's and `explain --cluster`'s k8s-openapi pods): written out, then read the same way
    /// as an AdmissionReview's pod.
    pub fn from_api<T: serde::Serialize>(pod: &T) -> serde_json::Result<Pod> {
        serde_json::to_value(pod).and_then(serde_json::from_value)
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.metadata.labels.as_ref()?.get(key).map(String::as_str)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }

    /// A readable name for logs: the name, or the generateName prefix of a controller's pod.
    pub fn display_name(&self) -> &str {
        self.metadata
            .name
            .as_deref()
            .filter(|n| !n.is_empty())
            .or(self.metadata.generate_name.as_deref())
            .unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A quantity written as a JSON number keeps its digits: a float (a surviving mutant showed the
    /// float path untested) or a negative integer (sizing then refuses it, never a silent zero).
    #[test]
    fn a_number_quantity_reads_as_its_digits() {
        for (json, cpu, memory) in [
            (r#"{"cpu": 0.5, "memory": 1.5e9}"#, "0.5", "1500000000"),
            (r#"{"cpu": -1, "memory": 2.5}"#, "-1", "2.5"),
        ] {
            let requests: ResourceList = serde_json::from_str(json).unwrap();
            assert_eq!(requests.get("cpu"), Some(&Quantity(cpu.into())), "{json}");
            assert_eq!(
                requests.get("memory"),
                Some(&Quantity(memory.into())),
                "{json}"
            );
        }
    }

    #[test]
    fn quantities_read_as_written() {
        let c: Container = serde_json::from_str(
            r#"{"resources": {"requests": {"x/y": 0.5, "ephemeral-storage": "30Gi", "cpu": 1, "memory": "1Gi", "big": 18446744073709551615}}}"#,
        )
        .unwrap();
        let requests = &c.resources.requests;
        assert_eq!(requests.get("cpu"), Some(&Quantity("1".into())));
        assert_eq!(requests.get("memory"), Some(&Quantity("1Gi".into())));
        assert_eq!(
            requests.get("ephemeral-storage"),
            Some(&Quantity("30Gi".into()))
        );
        assert_eq!(
            requests.get("x/y"),
            None,
            "only CPU, memory and storage are kept"
        );
        assert_eq!(requests.others, ["x/y", "big"]);
        assert_eq!(
            requests.names().collect::<Vec<_>>(),
            ["cpu", "memory", "ephemeral-storage", "x/y", "big"]
        );
        // Quantities of other resources must still be quantities; a repeated key: the last wins.
        let c: Container = serde_json::from_str(
            r#"{"resources": {"limits": {"cpu": "1", "nvidia.com/gpu": 1, "cpu": "2"}}}"#,
        )
        .unwrap();
        assert_eq!(c.resources.limits.get("cpu"), Some(&Quantity("2".into())));
        assert_eq!(c.resources.limits.others, ["nvidia.com/gpu"]);
        assert_eq!(c.resources.requests, ResourceList::default());
        for bad in [
            r#"{"cpu": true}"#,
            r#"{"cpu": null}"#,
            r#"{"cpu": []}"#,
            r#"{"x/y": {}}"#,
            r#"[]"#,
        ] {
            let text = format!(r#"{{"resources": {{"limits": {bad}}}}}"#);
            assert!(serde_json::from_str::<Container>(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn volumes_name_their_sources() {
        let spec: PodSpec = serde_json::from_str(
            r#"{"volumes": [
                {"name": "a", "configMap": {"name": "c"}},
                {"name": "b", "hostPath": {"path": "/"}},
                {"persistentVolumeClaim": {"claimName": "data"}, "name": "c"},
                {"name": "d", "n\u0066s": {"server": "s"}, "emptyDir": {}}
            ]}"#,
        )
        .unwrap();
        let v = &spec.volumes;
        assert_eq!(
            (v[0].name.as_str(), v[0].sources.as_slice()),
            ("a", &["configMap".to_string()][..])
        );
        assert!(v[1].host_path.is_some() && v[1].sources.is_empty());
        assert_eq!(v[2].name, "c");
        assert_eq!(
            v[2].persistent_volume_claim.as_ref().unwrap().claim_name,
            "data"
        );
        // An escaped key is read like any other.
        assert_eq!(v[3].sources, ["nfs", "emptyDir"]);
        for bad in [
            r#"[["a"]]"#,
            r#"[{"name": 1}]"#,
            r#"[{"persistentVolumeClaim": 1}]"#,
            r#"["a"]"#,
        ] {
            let text = format!(r#"{{"volumes": {bad}}}"#);
            assert!(serde_json::from_str::<PodSpec>(&text).is_err(), "{bad}");
        }
    }

    /// A value of the wrong shape is refused with what was expected in the error: the text the
    /// webhook logs for an unreadable pod and `explain` prints for a bad manifest.
    #[test]
    fn wrong_shapes_say_what_was_expected() {
        let json_cases = [
            (
                r#"{"containers": [{"resources": {"requests": ["1"]}}]}"#,
                "expected a map of resource quantities",
            ),
            (
                r#"{"containers": [{"resources": {"limits": {"cpu": true}}}]}"#,
                "expected a quantity (a string or a number)",
            ),
            (r#"{"volumes": [["a"]]}"#, "expected a volume object"),
        ];
        for (text, want) in json_cases {
            let err = serde_json::from_str::<PodSpec>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let err = serde_json::from_str::<Pod>(r#"{"metadata": []}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a JSON object"), "{err}");
    }

    /// A pod held as k8s-openapi's type reads as the same pod in its API JSON would.
    #[test]
    fn a_typed_pod_reads_as_its_json() {
        let json = serde_json::json!({
            "metadata": {"name": "web", "namespace": "apps", "labels": {"app": "web"}},
            "spec": {
                "schedulerName": "fargate-scheduler",
                "containers": [{"name": "app", "image": "nginx",
                                "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}}}],
            },
        });
        let typed: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json.clone()).unwrap();
        let lean = Pod::from_api(&typed).unwrap();
        let direct: Pod = serde_json::from_value(json).unwrap();
        assert_eq!(lean.label("app"), Some("web"));
        assert_eq!(
            lean.spec.scheduler_name.as_deref(),
            Some("fargate-scheduler")
        );
        assert_eq!(format!("{lean:?}"), format!("{direct:?}"));
    }
}
