//! Test data: the profile builder, profiles files and the paths of the fixture files.

use fargate_webhook::profile::{FargateProfile, ProfileStatus, Selector};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The pod execution role the builder uses unless told otherwise (the account of the EKS API).
pub const ROLE: &str = "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole";
/// The cluster's private subnets (the EKS API's default subnets).
pub const SUBNET_A: &str = "subnet-0420a37ee456daf3f";
pub const SUBNET_B: &str = "subnet-09a8afb8db4f02d21";

/// The profile [`default_profiles`] holds: namespace `default`, label `infrastructure=fargate`.
pub const DEFAULT_PROFILE: &str = "fp-default";

/// `tests/fixtures`.
pub fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

// ------------------------------------------------------------------------------------------------
// Profiles

/// A valid FargateProfile, as a [`FargateProfile`] ([`build`](Self::build)), as its EKS JSON
/// ([`json`](Self::json): the create request, or an entry of a profiles file) or as a Kubernetes
/// `FargateProfile` resource ([`resource`](Self::resource)).
///
/// The JSON holds exactly the members that were set (plus the name, the role and the selectors),
/// so a builder without [`subnets`](Self::subnets) or [`status`](Self::status) makes the request a
/// client sends without them.
///
/// ```ignore
/// let profile = ProfileBuilder::new("web").namespace("default").label("app", "web");
/// let request: Value = profile.json();
/// let expected: FargateProfile = profile.status(ProfileStatus::Creating).build();
/// ```
#[derive(Clone, Debug)]
pub struct ProfileBuilder {
    name: String,
    role: String,
    arn: Option<String>,
    cluster: Option<String>,
    created_at: Option<f64>,
    subnets: Option<Vec<String>>,
    selectors: Vec<Selector>,
    status: Option<ProfileStatus>,
    tags: Option<BTreeMap<String, String>>,
    client_request_token: Option<String>,
}

impl ProfileBuilder {
    /// A profile named `name` with the role [`ROLE`] and no selector yet.
    pub fn new(name: &str) -> Self {
        ProfileBuilder {
            name: name.to_owned(),
            role: ROLE.to_owned(),
            arn: None,
            cluster: None,
            created_at: None,
            subnets: None,
            selectors: Vec::new(),
            status: None,
            tags: None,
            client_request_token: None,
        }
    }

    pub fn role(mut self, arn: &str) -> Self {
        self.role = arn.to_owned();
        self
    }

    /// A new selector for `namespace` (call again for another selector).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.selectors.push(Selector {
            namespace: Some(namespace.to_owned()),
            labels: BTreeMap::new(),
        });
        self
    }

    /// A label of the last selector (of a new selector without a namespace if there is none).
    pub fn label(mut self, key: &str, value: &str) -> Self {
        if self.selectors.is_empty() {
            self.selectors.push(Selector::default());
        }
        let last = self.selectors.last_mut().expect("a selector");
        last.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// Labels of the last selector.
    pub fn labels(self, labels: &[(&str, &str)]) -> Self {
        labels.iter().fold(self, |b, (k, v)| b.label(k, v))
    }

    pub fn subnets(mut self, subnets: &[&str]) -> Self {
        self.subnets = Some(subnets.iter().map(|s| s.to_string()).collect());
        self
    }

    pub fn status(mut self, status: ProfileStatus) -> Self {
        self.status = Some(status);
        self
    }

    pub fn tag(mut self, key: &str, value: &str) -> Self {
        self.tags
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value.to_owned());
        self
    }

    pub fn arn(mut self, arn: &str) -> Self {
        self.arn = Some(arn.to_owned());
        self
    }

    pub fn cluster(mut self, cluster: &str) -> Self {
        self.cluster = Some(cluster.to_owned());
        self
    }

    /// `createdAt`, epoch seconds (what marks an entry the API wrote).
    pub fn created_at(mut self, seconds: f64) -> Self {
        self.created_at = Some(seconds);
        self
    }

    /// `clientRequestToken`: a member of the create request only ([`json`](Self::json)).
    pub fn client_request_token(mut self, token: &str) -> Self {
        self.client_request_token = Some(token.to_owned());
        self
    }

    /// The profile as the crate holds it (unset members take their defaults: no subnets, ACTIVE).
    pub fn build(&self) -> FargateProfile {
        FargateProfile {
            fargate_profile_name: self.name.clone(),
            fargate_profile_arn: self.arn.clone(),
            cluster_name: self.cluster.clone(),
            created_at: self.created_at,
            pod_execution_role_arn: self.role.clone(),
            subnets: self.subnets.clone().unwrap_or_default(),
            selectors: self.selectors.clone(),
            status: self.status.unwrap_or_default(),
            tags: self.tags.clone().unwrap_or_default(),
            health: None,
        }
    }

    /// The EKS JSON: `fargateProfileName`, `podExecutionRoleArn`, `selectors` and each member
    /// that was set.
    pub fn json(&self) -> Value {
        let mut object = Map::new();
        object.insert("fargateProfileName".into(), json!(self.name));
        if let Some(arn) = &self.arn {
            object.insert("fargateProfileArn".into(), json!(arn));
        }
        if let Some(cluster) = &self.cluster {
            object.insert("clusterName".into(), json!(cluster));
        }
        if let Some(created_at) = self.created_at {
            object.insert("createdAt".into(), json!(created_at));
        }
        self.insert_spec(&mut object);
        if let Some(status) = self.status {
            object.insert("status".into(), json!(status.as_str()));
        }
        if let Some(token) = &self.client_request_token {
            object.insert("clientRequestToken".into(), json!(token));
        }
        Value::Object(object)
    }

    /// The Kubernetes resource `kubectl apply` sends: the name, the spec (role, subnets,
    /// selectors, tags) and, when a status was set, `status.status` only.
    pub fn resource(&self) -> Value {
        let mut spec = Map::new();
        self.insert_spec(&mut spec);
        let mut object = json!({
            "apiVersion": "fargate-webhook.io/v1alpha1",
            "kind": "FargateProfile",
            "metadata": {"name": self.name},
            "spec": spec,
        });
        if let Some(status) = self.status {
            object["status"] = json!({"status": status.as_str()});
        }
        object
    }

    /// The members the EKS JSON and the resource's spec share.
    fn insert_spec(&self, object: &mut Map<String, Value>) {
        object.insert("podExecutionRoleArn".into(), json!(self.role));
        if let Some(subnets) = &self.subnets {
            object.insert("subnets".into(), json!(subnets));
        }
        object.insert(
            "selectors".into(),
            serde_json::to_value(&self.selectors).expect("selectors serialize"),
        );
        if let Some(tags) = &self.tags {
            object.insert("tags".into(), json!(tags));
        }
    }
}

/// `{"fargateProfiles": [...]}`.
pub fn profiles_file(profiles: Vec<Value>) -> Value {
    json!({ "fargateProfiles": profiles })
}

/// [`DEFAULT_PROFILE`]: namespace `default`, label `infrastructure=fargate` (the fixture pod).
pub fn default_profile() -> ProfileBuilder {
    ProfileBuilder::new(DEFAULT_PROFILE)
        .namespace("default")
        .label("infrastructure", "fargate")
}

/// A profiles file with [`default_profile`] alone.
pub fn default_profiles() -> Value {
    profiles_file(vec![default_profile().json()])
}
