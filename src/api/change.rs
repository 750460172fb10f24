//! How the API writes: a change runs inside the store (so the cluster-wide rules hold under
//! concurrency) and its refusal comes back as a value; store failures map to EKS errors.

use super::Api;
use super::error::ApiError;
use super::rules::Refusal;
use crate::profile::ProfileState;
use crate::store::{UpdateError, Violation};

/// Map a store failure to EKS: a broken store rule to the parameter or in-use error it is, a
/// store that has not loaded its state to the EKS "cluster not ACTIVE" client error (no retry
/// storm), storage trouble to 500.
pub(crate) fn store_error(error: UpdateError, cluster: &str) -> ApiError {
    match error {
        UpdateError::Violation(violation) => match violation {
            Violation::DuplicateName | Violation::NameStillDeleting => {
                ApiError::resource_in_use(violation.to_string())
            }
            Violation::Invalid(_) | Violation::Immutable(_) => {
                ApiError::invalid_parameter(violation.to_string())
            }
        },
        UpdateError::NotLoaded(reason) => {
            tracing::warn!(%reason, "write refused: the profile store has not loaded its state");
            ApiError::invalid_request(format!("Cluster '{cluster}' is not in ACTIVE status"))
        }
        error @ UpdateError::Storage { .. } => {
            tracing::error!(error = %crate::store::report(&error), "profile store write failed");
            ApiError::server("The Fargate profile could not be stored; retry the request.")
        }
    }
}

impl Api {
    /// Run a change through the store. A refusal the change returns aborts the write and comes
    /// back as a value; a store failure comes back as the EKS error it maps to.
    pub(super) async fn run<F>(
        &self,
        change: F,
    ) -> Result<Result<std::sync::Arc<ProfileState>, Refusal>, ApiError>
    where
        F: FnMut(&mut ProfileState) -> Result<(), Refusal> + Send,
    {
        match crate::store::update_or_refuse(&*self.inner.store, change).await {
            Ok(result) => Ok(result.map_err(|refusal| refusal.unwrap_or(Refusal::NoChange))),
            Err(error) => Err(store_error(error, &self.inner.cluster.name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_eks_codes() {
        let cases = [
            (
                UpdateError::Violation(Violation::DuplicateName),
                "ResourceInUseException",
                "A Fargate Profile already exists with this name in this cluster.",
            ),
            (
                UpdateError::Violation(Violation::NameStillDeleting),
                "ResourceInUseException",
                "A Fargate Profile with this name is still being deleted; try again later.",
            ),
            (
                UpdateError::Violation(Violation::Invalid("bad name".into())),
                "InvalidParameterException",
                "bad name",
            ),
            (
                UpdateError::Violation(Violation::Immutable("web".into())),
                "InvalidParameterException",
                "Fargate profile web is immutable except for its tags.",
            ),
            (
                UpdateError::NotLoaded("corrupt".into()),
                "InvalidRequestException",
                "Cluster 'fargate' is not in ACTIVE status",
            ),
            (
                UpdateError::storage("writing x", std::io::Error::other("disk full")),
                "ServerException",
                "The Fargate profile could not be stored; retry the request.",
            ),
        ];
        for (error, code, message) in cases {
            let api = store_error(error, "fargate");
            assert_eq!((api.code, api.message.as_str()), (code, message));
        }
    }
}
