//! What the cluster says of a claim a pod mounts, pure: the scheduler reads the claim, then the
//! volume it is bound to, and hands both here (docs/eks-behaviour.md §5). The reads are in
//! [`super::bind`].

use crate::decision::unsupported::Claim;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};

/// After reading the claim: the answer, or the volume to read next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    Known(Claim),
    ReadVolume(String),
}

/// The claim as read (`None`: it does not exist).
pub fn of_claim(claim: Option<&PersistentVolumeClaim>) -> Next {
    let Some(claim) = claim else {
        return Next::Known(Claim::Missing);
    };
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .filter(|v| !v.is_empty());
    match (bound, volume) {
        (true, Some(volume)) => Next::ReadVolume(volume),
        _ => Next::Known(Claim::NotBound),
    }
}

/// The volume `name` a bound claim names, as read (`None`: it does not exist).
pub fn of_volume(name: String, volume: Option<&PersistentVolume>) -> Claim {
    match volume {
        None => Claim::VolumeMissing { volume: name },
        Some(pv) => Claim::Bound {
            volume: name,
            driver: pv
                .spec
                .as_ref()
                .and_then(|s| s.csi.as_ref())
                .map(|c| c.driver.clone()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pvc(value: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(value).unwrap()
    }

    fn pv(spec: serde_json::Value) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": "pv-1"}, "spec": spec})).unwrap()
    }

    #[test]
    fn a_claim_is_read_first() {
        let meta = json!({"name": "data"});
        let cases: Vec<(Option<serde_json::Value>, Next)> = vec![
            (None, Next::Known(Claim::Missing)),
            (
                Some(json!({"metadata": meta, "spec": {}, "status": {"phase": "Pending"}})),
                Next::Known(Claim::NotBound),
            ),
            (
                Some(
                    json!({"metadata": meta, "spec": {"volumeName": "pv-1"}, "status": {"phase": "Lost"}}),
                ),
                Next::Known(Claim::NotBound),
            ),
            (
                Some(json!({"metadata": meta, "spec": {}, "status": {"phase": "Bound"}})),
                Next::Known(Claim::NotBound),
            ),
            (
                Some(
                    json!({"metadata": meta, "spec": {"volumeName": "pv-1"}, "status": {"phase": "Bound"}}),
                ),
                Next::ReadVolume("pv-1".into()),
            ),
        ];
        for (claim, expected) in cases {
            let claim = claim.map(pvc);
            assert_eq!(of_claim(claim.as_ref()), expected, "{claim:?}");
        }
    }

    #[test]
    fn then_its_volume_names_the_driver() {
        let bound = |driver: Option<&str>| Claim::Bound {
            volume: "pv-1".into(),
            driver: driver.map(Into::into),
        };
        let cases: Vec<(Option<serde_json::Value>, Claim)> = vec![
            (
                None,
                Claim::VolumeMissing {
                    volume: "pv-1".into(),
                },
            ),
            (
                Some(json!({"csi": {"driver": "efs.csi.aws.com", "volumeHandle": "fs-1"}})),
                bound(Some("efs.csi.aws.com")),
            ),
            (
                Some(json!({"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}})),
                bound(Some("ebs.csi.aws.com")),
            ),
            // kind's default class (local-path) makes hostPath volumes: no CSI spec.
            (
                Some(json!({"hostPath": {"path": "/var/local-path-provisioner/pvc-1"}})),
                bound(None),
            ),
            (
                Some(json!({"awsElasticBlockStore": {"volumeID": "vol-1"}})),
                bound(None),
            ),
            (
                Some(json!({"nfs": {"server": "nfs", "path": "/"}})),
                bound(None),
            ),
        ];
        for (spec, expected) in cases {
            let volume = spec.map(pv);
            assert_eq!(
                of_volume("pv-1".into(), volume.as_ref()),
                expected,
                "{volume:?}"
            );
        }
    }
}
