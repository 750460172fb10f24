//! The cluster the API serves and the ARNs of its profiles.

use super::error::ApiError;
use super::{Api, Cluster};
use crate::profile::FargateProfile;
use sha2::{Digest, Sha256};

impl Api {
    pub(super) fn cluster(&self) -> &Cluster {
        &self.inner.cluster
    }

    pub(super) fn check_cluster(&self, cluster: &str) -> Result<(), ApiError> {
        if cluster == self.cluster().name {
            Ok(())
        } else {
            Err(
                ApiError::resource_not_found(format!("No cluster found for name: {cluster}."))
                    .with_cluster(cluster),
            )
        }
    }

    /// A stable ARN for a profile that has none (hand-written): the uuid part derives from the name.
    pub(super) fn derived_arn(&self, name: &str) -> String {
        let digest = Sha256::digest(format!("{}/{name}", self.cluster().arn()).as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        self.profile_arn(name, &uuid::Uuid::from_bytes(bytes).to_string())
    }

    pub(super) fn profile_arn(&self, name: &str, suffix: &str) -> String {
        let c = self.cluster();
        format!(
            "arn:aws:eks:{}:{}:fargateprofile/{}/{name}/{suffix}",
            c.region, c.account_id, c.name
        )
    }

    pub(super) fn arn_of(&self, profile: &FargateProfile) -> String {
        profile
            .fargate_profile_arn
            .clone()
            .unwrap_or_else(|| self.derived_arn(&profile.fargate_profile_name))
    }

    pub(super) fn profile_not_found(&self, name: &str) -> ApiError {
        super::rules::profile_not_found(&self.cluster().name, name)
    }
}
