//! The pod templates in what users keep in their repositories: Pods, and the workloads that make pods
//! (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob), in multi-document YAML or JSON,
//! `kind: List` included. Pure: text in, templates out.

use crate::decision::Pod;
use serde_json::Value;

/// One pod template and where it came from.
#[derive(Debug)]
pub struct Template {
    /// `Deployment/web`, `Pod/debug`.
    pub object: String,
    /// The file (or `-`) it was read from.
    pub source: String,
    /// Namespace of the object, if it names one.
    pub namespace: Option<String>,
    pub pod: Pod,
    /// The pod would belong to a DaemonSet (never on Fargate).
    pub daemonset: bool,
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// `reason` says where (line and column) the text stops being YAML.
    #[error("{source_name}: not YAML or JSON: {reason}")]
    Syntax { source_name: String, reason: String },
    #[error("{source_name}: {object}: the pod template does not decode: {reason}")]
    Template {
        source_name: String,
        object: String,
        reason: String,
    },
}

/// Where a workload keeps its pod template.
fn template_of(kind: &str, object: &Value) -> Option<Value> {
    let spec = object.get("spec")?;
    match kind {
        "Pod" => Some(object.clone()),
        "Deployment"
        | "ReplicaSet"
        | "StatefulSet"
        | "DaemonSet"
        | "Job"
        | "ReplicationController" => spec.get("template").cloned(),
        "CronJob" => spec.pointer("/jobTemplate/spec/template").cloned(),
        _ => None,
    }
}

/// The templates of every document of `text` (other kinds are skipped).
pub fn templates(source_name: &str, text: &str) -> Result<Vec<Template>, ManifestError> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ManifestError::Syntax {
            source_name: source_name.into(),
            reason: e.to_string(),
        })?;
    let mut out = Vec::new();
    for value in &documents {
        collect(source_name, value, &mut out)?;
    }
    Ok(out)
}

fn collect(source_name: &str, value: &Value, out: &mut Vec<Template>) -> Result<(), ManifestError> {
    let Some(kind) = value.get("kind").and_then(Value::as_str) else {
        return Ok(());
    };
    if kind == "List" || kind.ends_with("List") {
        for item in value
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            collect(source_name, item, out)?;
        }
        return Ok(());
    }
    let Some(mut template) = template_of(kind, value) else {
        return Ok(());
    };
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let object = format!("{kind}/{name}");
    let namespace = value
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    let daemonset = kind == "DaemonSet";
    if daemonset {
        // What the DaemonSet controller writes on its pods: the webhook leaves them alone.
        template["metadata"]["ownerReferences"] = serde_json::json!([{
            "apiVersion": "apps/v1", "kind": "DaemonSet", "name": name, "controller": true
        }]);
    }
    if kind != "Pod" && template.pointer("/metadata/name").is_none() {
        template["metadata"]["generateName"] = Value::String(format!("{name}-"));
    }
    let pod: Pod = serde_json::from_value(template).map_err(|e| ManifestError::Template {
        source_name: source_name.into(),
        object: object.clone(),
        reason: e.to_string(),
    })?;
    out.push(Template {
        object,
        source: source_name.into(),
        namespace,
        pod,
        daemonset,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_that_makes_pods_one_template_each() {
        let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: apps}
spec:
  template:
    metadata: {labels: {app: web}}
    spec:
      initContainers: [{name: migrate, image: m}]
      containers: [{name: web, image: w, resources: {requests: {cpu: 1}}}]
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 0 * * *"
  jobTemplate:
    spec:
      template:
        spec: {containers: [{name: job, image: j}], restartPolicy: OnFailure}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  template:
    spec: {containers: [{name: agent, image: a}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec: {ports: [{port: 80}]}
---
{"apiVersion": "v1", "kind": "List", "items": [
  {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "debug"}, "spec": {"containers": [{"name": "d", "image": "d"}]}},
  {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db"}, "spec": {"template": {"spec": {"containers": [{"name": "db", "image": "p"}]}}}}
]}
"#;
        let found = templates("all.yaml", text).unwrap();
        let objects: Vec<&str> = found.iter().map(|t| t.object.as_str()).collect();
        assert_eq!(
            objects,
            [
                "Deployment/web",
                "CronJob/nightly",
                "DaemonSet/agent",
                "Pod/debug",
                "StatefulSet/db"
            ]
        );
        assert_eq!(found[0].namespace.as_deref(), Some("apps"));
        assert_eq!(found[0].pod.spec.init_containers.len(), 1);
        assert_eq!(found[0].pod.metadata.generate_name.as_deref(), Some("web-"));
        assert_eq!(found[0].pod.label("app"), Some("web"));
        assert!(found[2].daemonset);
        assert_eq!(found[2].pod.metadata.owner_references[0].kind, "DaemonSet");
        assert_eq!(found[3].pod.metadata.name.as_deref(), Some("debug"));
    }

    #[test]
    fn bad_documents_are_named() {
        let e = templates("x.yaml", "kind: Pod\nspec: [1, 2\n").unwrap_err();
        assert!(e.to_string().starts_with("x.yaml: not YAML or JSON"), "{e}");
        let e = templates(
            "y.yaml",
            "kind: Pod\nmetadata: {name: p}\nspec: {containers: 3}\n",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("y.yaml: Pod/p: the pod template does not decode"),
            "{e}"
        );
    }
}
