//! The EKS `FargateProfile` object and the rules every profile must follow
//! (`docs/eks-behaviour.md` §6).
//!
//! One place for the rules: the API, the file loader and the Kubernetes store all call [`validate`].

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Label (and annotation) that EKS writes on a Fargate pod and that a pod may set to pin a profile.
pub const PROFILE_LABEL: &str = "eks.amazonaws.com/fargate-profile";

/// Lifecycle status of a profile, spelled as on the EKS wire.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProfileStatus {
    Creating,
    /// A hand-written profile without `status` is ACTIVE.
    #[default]
    Active,
    Deleting,
    CreateFailed,
    DeleteFailed,
}

impl ProfileStatus {
    pub const ALL: [ProfileStatus; 5] = [
        Self::Creating,
        Self::Active,
        Self::Deleting,
        Self::CreateFailed,
        Self::DeleteFailed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "CREATING",
            Self::Active => "ACTIVE",
            Self::Deleting => "DELETING",
            Self::CreateFailed => "CREATE_FAILED",
            Self::DeleteFailed => "DELETE_FAILED",
        }
    }

    /// CREATING or DELETING: a lifecycle step is still to come, and EKS allows one such profile
    /// per cluster at a time.
    pub fn in_transition(self) -> bool {
        matches!(self, Self::Creating | Self::Deleting)
    }
}

impl fmt::Display for ProfileStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One selector: a namespace pattern and labels that must all be on the pod.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthIssue {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resource_ids: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Health {
    #[serde(default)]
    pub issues: Vec<HealthIssue>,
}

/// The EKS `FargateProfile` object, member for member.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FargateProfile {
    pub fargate_profile_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fargate_profile_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_name: Option<String>,
    /// Epoch seconds with a fraction, as EKS sends it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<f64>,
    #[serde(default)]
    pub pod_execution_role_arn: String,
    #[serde(default)]
    pub subnets: Vec<String>,
    #[serde(default)]
    pub selectors: Vec<Selector>,
    #[serde(default)]
    pub status: ProfileStatus,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
}

/// The profiles of the cluster and the idempotency tokens that created them: what every store
/// holds, and the shape of the file store's `profiles.json` (`{"fargateProfiles": [...]}`). Tokens
/// ride along so that a profile and the token that created it are committed in one atomic write.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProfileState {
    /// Required: a misspelt key must not read as "no profiles" and wipe the snapshot.
    pub fargate_profiles: Vec<FargateProfile>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub client_request_tokens: BTreeMap<String, TokenRecord>,
}

/// What a `clientRequestToken` was used for: the profile it created and a digest of the request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub fargate_profile_name: String,
    pub fargate_profile_arn: String,
    pub request_digest: String,
}

/// Quotas. EKS defaults; adjustable like the real service quotas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_profiles: usize,
    pub max_selectors: usize,
    pub max_labels: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_profiles: 10,
            max_selectors: 5,
            max_labels: 5,
        }
    }
}

pub const MAX_NAME_LEN: usize = 100;
pub const MAX_TAGS: usize = 50;
pub const MAX_TAG_KEY_LEN: usize = 128;
pub const MAX_TAG_VALUE_LEN: usize = 256;

/// A broken rule, with the text real EKS answers where one is known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleViolation(pub String);

fn violation(msg: impl Into<String>) -> RuleViolation {
    RuleViolation(msg.into())
}

/// Name rules: 1..100 characters, `^[0-9A-Za-z][A-Za-z0-9_-]*$`, no `eks-` prefix.
pub fn validate_name(name: &str) -> Result<(), RuleViolation> {
    if name.is_empty() {
        return Err(violation("fargateProfileName is required."));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(violation(
            "The Fargate profile name parameter should not be greater than 100 characters.",
        ));
    }
    if name.starts_with("eks-") {
        return Err(violation(
            "The fargate profile name starts with the reserved prefix: 'eks-'.",
        ));
    }
    let bytes = name.as_bytes();
    let first_ok = bytes[0].is_ascii_alphanumeric();
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_');
    if !first_ok || !rest_ok {
        return Err(violation(format!(
            "The Fargate profile name '{name}' is invalid: it must start with a letter or digit and contain only letters, digits, '-' and '_'."
        )));
    }
    Ok(())
}

/// `arn:<partition>:iam::<12 digits>:role/<name>`.
pub fn validate_role_arn(arn: &str) -> Result<(), RuleViolation> {
    if arn.is_empty() {
        return Err(violation("podExecutionRoleArn is required."));
    }
    if arn.len() > MAX_ROLE_ARN_LEN {
        return Err(violation(format!(
            "Invalid podExecutionRoleArn: longer than {MAX_ROLE_ARN_LEN} characters."
        )));
    }
    let bad = || {
        violation(format!(
            "Invalid podExecutionRoleArn: {}",
            arn.escape_debug()
        ))
    };
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    // Characters IAM allows in a role name and its path: a control character or a space can
    // never name a role.
    let role_chars_ok = resource.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'+' | b'=' | b',' | b'.' | b'@' | b'_' | b'-' | b'/')
    });
    if !role_chars_ok {
        return Err(bad());
    }
    let partition_ok = !partition.is_empty()
        && partition
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'-');
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let role_ok = resource
        .strip_prefix("role/")
        .is_some_and(|name| !name.is_empty() && !name.ends_with('/'));
    if partition_ok && account_ok && role_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The role ARN carries an IAM path (`role/team/Name`). EKS accepts such a profile, but the role
/// cannot be mapped into the cluster's auth config, so its pods are refused at scheduling
/// (docs/eks-behaviour.md §6).
pub fn role_has_path(arn: &str) -> bool {
    arn.split_once(":role/")
        .is_some_and(|(_, name)| name.contains('/'))
}

/// A value as an error message shows it: control characters escaped, at most 64 characters.
fn shown(value: &str) -> String {
    let escaped: String = value.escape_debug().collect();
    match escaped.char_indices().nth(64) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

/// The shape of a subnet ID the FargateProfile CRD accepts (`SUBNET_ID_PATTERN`): `subnet-` and
/// lowercase letters or digits. EC2's IDs are `subnet-` and 8 or 17 hexadecimal digits; the looser
/// shape lets test clusters name theirs.
pub fn is_subnet_id(subnet: &str) -> bool {
    subnet.strip_prefix("subnet-").is_some_and(|id| {
        !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    })
}

/// [`is_subnet_id`] as a regular expression, for the CRD's schema.
pub const SUBNET_ID_PATTERN: &str = "^subnet-[a-z0-9]+$";

/// A namespace or namespace pattern that can match a Kubernetes namespace, as a regular expression
/// for the CRD's schema (the length is a separate limit): see `is_namespace_pattern`.
pub const NAMESPACE_PATTERN: &str = "^[a-z0-9*?-]+$";

/// Longest IAM ARN.
pub const MAX_ROLE_ARN_LEN: usize = 2048;
/// Longest Kubernetes namespace name (a DNS label).
pub const MAX_NAMESPACE_LEN: usize = 63;

/// A namespace or namespace pattern that can match a Kubernetes namespace: a DNS label (lowercase
/// letters, digits, `-`, at most 63 characters) where `*` and `?` may stand for characters.
fn is_namespace_pattern(namespace: &str) -> bool {
    namespace.chars().count() <= MAX_NAMESPACE_LEN
        && namespace.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'*' | b'?')
        })
}

/// Selector rules: 1..max selectors, each with a namespace pattern that can match a Kubernetes
/// namespace, at most max labels, no control characters in labels.
pub fn validate_selectors(selectors: &[Selector], limits: &Limits) -> Result<(), RuleViolation> {
    if selectors.is_empty() {
        return Err(violation("Fargate Profile requires at least one selector."));
    }
    if selectors.len() > limits.max_selectors {
        return Err(violation(format!(
            "Request contains more than {} Selectors",
            limits.max_selectors
        )));
    }
    for selector in selectors {
        let namespace = selector.namespace.as_deref().unwrap_or("");
        if namespace.is_empty() {
            return Err(violation(
                "Fargate Profile must have at least one selector with at least one namespace value.",
            ));
        }
        if !is_namespace_pattern(namespace) {
            return Err(violation(format!(
                "Selector namespace '{}' can never match a Kubernetes namespace (at most {MAX_NAMESPACE_LEN} lowercase letters, digits and '-', with the wildcards '*' and '?').",
                shown(namespace)
            )));
        }
        if selector.labels.len() > limits.max_labels {
            return Err(violation(format!(
                "Request contains Selector with more than {} Label pairs",
                limits.max_labels
            )));
        }
        for (key, value) in &selector.labels {
            if key.is_empty() {
                return Err(violation("Selector label keys must not be empty."));
            }
            if key.chars().chain(value.chars()).any(char::is_control) {
                return Err(violation(format!(
                    "Selector label {}={} contains a control character.",
                    shown(key),
                    shown(value)
                )));
            }
            // A label value is at most 63 characters in Kubernetes; a longer one can never match.
            if value.len() > 253 || key.len() > 317 {
                return Err(violation(format!(
                    "Selector label {key}={value} is longer than a Kubernetes label allows."
                )));
            }
        }
    }
    Ok(())
}

/// Tag rules: 1..50 entries when present, key 1..128, value 0..256, `aws:` prefix reserved.
pub fn validate_tags(tags: &BTreeMap<String, String>) -> Result<(), RuleViolation> {
    if tags.len() > MAX_TAGS {
        return Err(violation(format!(
            "Tags may contain at most {MAX_TAGS} entries."
        )));
    }
    for (key, value) in tags {
        if key.is_empty() || key.chars().count() > MAX_TAG_KEY_LEN {
            return Err(violation(format!(
                "Tag key '{key}' must be 1 to {MAX_TAG_KEY_LEN} characters."
            )));
        }
        if value.chars().count() > MAX_TAG_VALUE_LEN {
            return Err(violation(format!(
                "Tag value for key '{key}' must be at most {MAX_TAG_VALUE_LEN} characters."
            )));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(violation(format!(
                "Tag key '{key}' uses the reserved prefix 'aws:'."
            )));
        }
        // Reserved in values too: "Don't use aws:, AWS:, or any upper or lowercase combination of
        // such as a prefix for either keys or values" (docs/eks-behaviour.md §6).
        if value.to_ascii_lowercase().starts_with("aws:") {
            return Err(violation(format!(
                "Tag value for key '{key}' uses the reserved prefix 'aws:'."
            )));
        }
    }
    Ok(())
}

/// Every per-profile rule (the ones a file load checks too). Subnet membership and the quota on the
/// number of profiles are the API's business.
pub fn validate(profile: &FargateProfile, limits: &Limits) -> Result<(), RuleViolation> {
    validate_name(&profile.fargate_profile_name)?;
    validate_role_arn(&profile.pod_execution_role_arn)?;
    validate_selectors(&profile.selectors, limits)?;
    validate_tags(&profile.tags)?;
    Ok(())
}

/// Parse and validate a profiles file. Any error rejects the whole file: a half-valid file must not
/// replace the last good snapshot.
pub fn parse_profiles_file(bytes: &[u8], limits: &Limits) -> Result<ProfileState, LoadError> {
    // serde accepts a JSON array for a struct; only the documented object form is a profiles file.
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(LoadError::NotAnObject);
    }
    let file: ProfileState = serde_json::from_slice(bytes).map_err(LoadError::Json)?;
    let mut seen = std::collections::HashSet::new();
    for profile in &file.fargate_profiles {
        validate(profile, limits).map_err(|rule| LoadError::Invalid {
            name: profile.fargate_profile_name.clone(),
            rule,
        })?;
        if !seen.insert(profile.fargate_profile_name.as_str()) {
            return Err(LoadError::Duplicate(profile.fargate_profile_name.clone()));
        }
    }
    Ok(file)
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("profiles file is not valid JSON of the form {{\"fargateProfiles\": [...]}}: {0}")]
    Json(serde_json::Error),
    #[error("profile '{name}' is invalid: {rule}")]
    Invalid { name: String, rule: RuleViolation },
    #[error("profiles file must be a JSON object {{\"fargateProfiles\": [...]}}")]
    NotAnObject,
    #[error("profile '{0}' appears more than once")]
    Duplicate(String),
}

/// Test fixture shared by the layers above: an ACTIVE-or-not profile selecting one namespace.
#[cfg(test)]
impl FargateProfile {
    pub(crate) fn fixture(name: &str, namespace: &str, status: ProfileStatus) -> Self {
        FargateProfile {
            fargate_profile_name: name.into(),
            selectors: vec![Selector {
                namespace: Some(namespace.into()),
                labels: Default::default(),
            }],
            status,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests;
