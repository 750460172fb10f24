//! EKS-style errors: HTTP status, `x-amzn-ErrorType` code and a JSON body with `message` (and
//! `clusterName` / `fargateProfileName` where they apply), as botocore reads them.

use http::StatusCode;
use serde::Serialize;
use std::fmt;

/// One error answer. `code` goes into `x-amzn-ErrorType`; botocore reads the code from that
/// header first and the text from the body's `message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub cluster_name: Option<String>,
    pub fargate_profile_name: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ErrorBody<'a> {
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fargate_profile_name: Option<&'a str>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            cluster_name: None,
            fargate_profile_name: None,
        }
    }

    /// 400: any invalid field.
    pub fn invalid_parameter(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidParameterException",
            message,
        )
    }

    /// 400: the cluster is not ACTIVE.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "InvalidRequestException", message)
    }

    /// 400: other client faults.
    pub fn client(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "ClientException", message)
    }

    /// 400: more profiles than the quota.
    pub fn limit_exceeded(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "ResourceLimitExceededException",
            message,
        )
    }

    /// 404: unknown cluster or profile.
    pub fn resource_not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
    }

    /// 409: duplicate name, or another profile CREATING / DELETING.
    pub fn resource_in_use(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "ResourceInUseException", message)
    }

    /// 500: our own faults only (clients retry these).
    pub fn server(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServerException",
            message,
        )
    }

    /// 400 for the tag operations (their model names BadRequestException, not InvalidParameter).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequestException", message)
    }

    /// 404 for the tag operations.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NotFoundException", message)
    }

    /// 403: the signature does not verify (or is malformed or outside the allowed clock skew).
    pub fn invalid_signature(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "InvalidSignatureException", message)
    }

    /// 403: no credentials, or an access key this server does not know.
    pub fn access_denied(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AccessDeniedException", message)
    }

    /// 413: the body is over the limit.
    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ClientException",
            format!("The request body is larger than the limit of {limit} bytes."),
        )
    }

    /// 404: a method and path that is no operation of this API.
    pub fn unknown_operation(method: &http::Method, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "UnknownOperationException",
            format!("No operation matches {method} {path}"),
        )
    }

    pub fn with_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.cluster_name = Some(cluster.into());
        self
    }

    pub fn with_profile(mut self, name: impl Into<String>) -> Self {
        self.fargate_profile_name = Some(name.into());
        self
    }

    /// The members the service model declares for this exception, besides `message`
    /// (docs/eks-api.md "Errors"): (clusterName, fargateProfileName).
    fn declared_members(&self) -> (bool, bool) {
        match self.code {
            "InvalidParameterException" | "ResourceNotFoundException" => (true, true),
            "ClientException"
            | "InvalidRequestException"
            | "ResourceInUseException"
            | "ResourceLimitExceededException"
            | "ServerException" => (true, false),
            _ => (false, false),
        }
    }

    /// The JSON body: `message`, and the members the model declares for the code.
    pub fn body(&self) -> Vec<u8> {
        let (cluster, profile) = self.declared_members();
        serde_json::to_vec(&ErrorBody {
            message: &self.message,
            cluster_name: self.cluster_name.as_deref().filter(|_| cluster),
            fargate_profile_name: self.fargate_profile_name.as_deref().filter(|_| profile),
        })
        .unwrap_or_else(|_| br#"{"message":"error"}"#.to_vec())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_only_the_members_the_model_declares() {
        let body = |e: ApiError| -> serde_json::Value {
            serde_json::from_slice(&e.with_cluster("c").with_profile("p").body()).unwrap()
        };
        let keys = |v: serde_json::Value| -> Vec<String> {
            v.as_object().unwrap().keys().cloned().collect()
        };
        let cases = [
            (
                ApiError::invalid_parameter("m"),
                vec!["clusterName", "fargateProfileName", "message"],
            ),
            (
                ApiError::resource_not_found("m"),
                vec!["clusterName", "fargateProfileName", "message"],
            ),
            (
                ApiError::invalid_request("m"),
                vec!["clusterName", "message"],
            ),
            (
                ApiError::resource_in_use("m"),
                vec!["clusterName", "message"],
            ),
            (
                ApiError::limit_exceeded("m"),
                vec!["clusterName", "message"],
            ),
            (ApiError::client("m"), vec!["clusterName", "message"]),
            (ApiError::server("m"), vec!["clusterName", "message"]),
            (ApiError::bad_request("m"), vec!["message"]),
            (ApiError::not_found("m"), vec!["message"]),
            (ApiError::access_denied("m"), vec!["message"]),
        ];
        for (error, expected) in cases {
            let code = error.code;
            assert_eq!(keys(body(error)), expected, "{code}");
        }
    }
}
