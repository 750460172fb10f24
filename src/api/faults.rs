//! Failure injection (docs/eks-api.md "Failure injection"): make chosen profiles end CREATE_FAILED
//! or DELETE_FAILED with a `health.issues` entry, take a chosen time to become ACTIVE or to go
//! away, and answer 409 "currently has an update in progress" for a window — so that unchanged
//! Terraform, CDK, eksctl or boto3 code can be tested against EKS's failures. Off unless the server
//! runs with `--fault-injection`; set by `PUT /fault-injection` on the API port.

use super::error::ApiError;
use crate::profile::{Health, HealthIssue, ProfileStatus};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The issue codes of the service model's `FargateProfileIssueCode`.
pub const ISSUE_CODES: [&str; 4] = [
    "PodExecutionRoleAlreadyInUse",
    "AccessDenied",
    "ClusterUnreachable",
    "InternalFailure",
];

/// A failure: the issue EKS would list in `health.issues`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Failure {
    pub code: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// What happens to the profiles a rule names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// A profile name, or `*` for every profile.
    pub profile: String,
    /// End CREATE_FAILED with this issue instead of ACTIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_failure: Option<Failure>,
    /// End DELETE_FAILED with this issue instead of going away.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_failure: Option<Failure>,
    /// Time spent CREATING (e.g. `"90s"`, EKS takes minutes), instead of `--create-delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_delay: Option<String>,
    /// Time spent DELETING, instead of `--delete-delay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_delay: Option<String>,
}

/// The body of `PUT /fault-injection` (and of its GET answer).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// For this long from the PUT, creates and deletes answer 409 "the cluster currently has an
    /// update in progress".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_in_progress_for: Option<String>,
}

fn duration(text: &str, field: &str) -> Result<Duration, ApiError> {
    crate::units::parse_duration(text).map_err(|e| ApiError::bad_request(format!("{field}: {e}")))
}

impl Faults {
    /// Parse and check a PUT body: known issue codes, durations that parse.
    pub fn parse(body: &[u8]) -> Result<Faults, ApiError> {
        let faults: Faults = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("The fault-injection body is not valid: {e}"))
        })?;
        for rule in &faults.rules {
            if rule.profile.is_empty() {
                return Err(ApiError::bad_request("Each rule names a profile (or `*`)."));
            }
            for failure in [&rule.create_failure, &rule.delete_failure]
                .into_iter()
                .flatten()
            {
                if !ISSUE_CODES.contains(&failure.code.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "Unknown issue code '{}': use one of {}.",
                        failure.code,
                        ISSUE_CODES.join(", ")
                    )));
                }
            }
            for (text, field) in [
                (&rule.create_delay, "createDelay"),
                (&rule.delete_delay, "deleteDelay"),
            ] {
                if let Some(text) = text {
                    duration(text, field)?;
                }
            }
        }
        if let Some(window) = &faults.update_in_progress_for {
            duration(window, "updateInProgressFor")?;
        }
        Ok(faults)
    }

    /// The last rule naming `profile` (exactly, or `*`).
    pub fn rule_for(&self, profile: &str) -> Option<&Rule> {
        self.rules
            .iter()
            .rev()
            .find(|r| r.profile == profile || r.profile == "*")
    }

    /// The time `profile` spends CREATING (`creating`) or DELETING, if a rule sets it.
    pub fn delay(&self, profile: &str, creating: bool) -> Option<Duration> {
        let rule = self.rule_for(profile)?;
        let text = if creating {
            rule.create_delay.as_ref()
        } else {
            rule.delete_delay.as_ref()
        }?;
        duration(text, "delay").ok()
    }

    /// The status and health a lifecycle step ends in for `profile`: `None` when it succeeds.
    pub fn failure(&self, profile: &str, creating: bool) -> Option<(ProfileStatus, Health)> {
        let rule = self.rule_for(profile)?;
        let (failure, status) = if creating {
            (rule.create_failure.as_ref()?, ProfileStatus::CreateFailed)
        } else {
            (rule.delete_failure.as_ref()?, ProfileStatus::DeleteFailed)
        };
        let message = failure
            .message
            .clone()
            .unwrap_or_else(|| default_message(&failure.code).to_string());
        Some((
            status,
            Health {
                issues: vec![HealthIssue {
                    code: Some(failure.code.clone()),
                    message: Some(message),
                    resource_ids: Vec::new(),
                }],
            },
        ))
    }
}

/// A message for an issue code when the rule gives none ([D]: EKS's own texts were not found).
fn default_message(code: &str) -> &'static str {
    match code {
        "PodExecutionRoleAlreadyInUse" => {
            "The pod execution role is already in use by another cluster's Fargate profile."
        }
        "AccessDenied" => "The pod execution role does not allow EKS to launch Fargate pods.",
        "ClusterUnreachable" => "The Fargate infrastructure could not reach the cluster.",
        _ => "An internal failure occurred.",
    }
}

/// The faults in force and when the update window ends.
#[derive(Debug, Default)]
pub struct State {
    pub faults: Faults,
    pub update_until: Option<Instant>,
}

impl State {
    pub fn set(&mut self, faults: Faults, now: Instant) {
        self.update_until = faults
            .update_in_progress_for
            .as_deref()
            .and_then(|t| crate::units::parse_duration(t).ok())
            .map(|d| now + d);
        self.faults = faults;
    }

    /// The 409 a create or delete gets while the update window lasts.
    pub fn update_in_progress(
        &self,
        now: Instant,
        verb: &str,
        profile: &str,
        cluster: &str,
    ) -> Option<ApiError> {
        let until = self.update_until?;
        (now < until).then(|| {
            ApiError::resource_in_use(format!(
                "Cannot {verb} Fargate Profile {profile} because cluster {cluster} currently has an update in progress"
            ))
            .with_cluster(cluster)
            .with_profile(profile)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_check_and_apply() {
        let faults = Faults::parse(
            br#"{"rules": [
                {"profile": "*", "createDelay": "30s"},
                {"profile": "bad", "createFailure": {"code": "AccessDenied"},
                 "deleteFailure": {"code": "InternalFailure", "message": "boom"}, "deleteDelay": "1m"}],
                "updateInProgressFor": "20s"}"#,
        )
        .unwrap();
        assert_eq!(faults.delay("any", true), Some(Duration::from_secs(30)));
        assert_eq!(faults.delay("any", false), None);
        assert_eq!(faults.delay("bad", false), Some(Duration::from_secs(60)));
        assert_eq!(faults.failure("any", true), None);
        let (status, health) = faults.failure("bad", true).unwrap();
        assert_eq!(status, ProfileStatus::CreateFailed);
        assert_eq!(health.issues[0].code.as_deref(), Some("AccessDenied"));
        assert_eq!(
            health.issues[0].message.as_deref(),
            Some("The pod execution role does not allow EKS to launch Fargate pods.")
        );
        let (status, health) = faults.failure("bad", false).unwrap();
        assert_eq!(status, ProfileStatus::DeleteFailed);
        assert_eq!(health.issues[0].message.as_deref(), Some("boom"));

        for bad in [
            r#"{"rules": [{"profile": "p", "createFailure": {"code": "Nope"}}]}"#,
            r#"{"rules": [{"profile": "p", "createDelay": "soon"}]}"#,
            r#"{"rules": [{"profile": ""}]}"#,
            r#"{"rules": [{"profile": "p", "typo": 1}]}"#,
            r#"{"updateInProgressFor": "x"}"#,
        ] {
            let error = Faults::parse(bad.as_bytes()).unwrap_err();
            assert_eq!(error.code, "BadRequestException", "{bad}");
        }

        let mut state = State::default();
        let now = Instant::now();
        state.set(faults, now);
        let e = state
            .update_in_progress(now + Duration::from_secs(19), "Delete", "p", "fargate")
            .unwrap();
        assert_eq!(
            (e.status.as_u16(), e.code, e.message.as_str()),
            (
                409,
                "ResourceInUseException",
                "Cannot Delete Fargate Profile p because cluster fargate currently has an update in progress"
            )
        );
        assert!(
            state
                .update_in_progress(now + Duration::from_secs(20), "create", "p", "fargate")
                .is_none()
        );
    }
}
