//! Release packaging: `scripts/package-chart.sh` pins the released image by digest.

use std::process::Command;

use serde_json::Value;

use super::{NS, RELEASE, Rendered, helm, repo_root, run_helm, strings};

/// `scripts/package-chart.sh`, as `scripts/release.sh` runs it: the packaged chart pulls the released
/// image by digest (the webhook and its test hook) and names its source; bad arguments are refused.
#[test]
fn the_release_package_pulls_the_released_image_by_digest_and_names_its_source() {
    let Some(helm) = helm() else { return };
    let out = tempfile::tempdir().unwrap();
    let digest = format!("sha256:{}", "0123456789abcdef".repeat(4));
    let package = |args: [&str; 4]| {
        Command::new("bash")
            .arg(repo_root().join("scripts/package-chart.sh"))
            .args(args)
            .arg(out.path())
            .env("HELM", helm)
            .output()
            .unwrap()
    };
    let source = "https://github.com/example/fargate-webhook";
    let done = package([
        "registry.example/team/fargate-webhook",
        &digest,
        source,
        "1.2.3",
    ]);
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "package-chart.sh failed: {stderr}");
    let tgz = String::from_utf8_lossy(&done.stdout).trim().to_string();
    assert_eq!(
        tgz,
        out.path()
            .join("fargate-webhook-1.2.3.tgz")
            .display()
            .to_string()
    );

    let chart: Value =
        serde_saphyr::from_str(&run_helm(helm, &["show", "chart", &tgz]).unwrap()).unwrap();
    assert_eq!(chart["version"], "1.2.3");
    assert_eq!(chart["appVersion"], "1.2.3");
    assert_eq!(chart["home"], source);
    assert_eq!(strings(&chart["sources"]), [source]);

    let args = [
        "template",
        RELEASE,
        &tgz,
        "--namespace",
        NS,
        "--set",
        "tests.enabled=true",
    ];
    let r = Rendered::parse(&run_helm(helm, &args).unwrap());
    let image = format!("registry.example/team/fargate-webhook@{digest}");
    assert_eq!(r.container()["image"], image.as_str());
    let pods: Vec<&Value> = r.all("Pod");
    assert!(!pods.is_empty(), "the helm test hook pod must render");
    for pod in pods {
        assert_eq!(pod["spec"]["containers"][0]["image"], image.as_str());
    }
    assert!(run_helm(helm, &["lint", "--strict", &tgz]).is_ok());

    for (bad, says) in [
        (
            [
                "registry.example/fargate-webhook",
                "sha256:abc",
                source,
                "1.2.3",
            ],
            "IMAGE_DIGEST",
        ),
        (
            [
                "registry.example/fargate-webhook",
                "latest",
                source,
                "1.2.3",
            ],
            "IMAGE_DIGEST",
        ),
        (["Bad Name", &digest, source, "1.2.3"], "IMAGE_REPOSITORY"),
        (
            [
                "registry.example/fargate-webhook",
                &digest,
                "git@github.com:a/b.git",
                "1.2.3",
            ],
            "SOURCE_URL",
        ),
        (
            [
                "registry.example/fargate-webhook",
                &digest,
                "unknown",
                "1.2.3",
            ],
            "SOURCE_URL",
        ),
    ] {
        let refused = package(bad);
        assert_eq!(refused.status.code(), Some(2), "{bad:?} must be refused");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(says), "{bad:?}: {stderr}");
    }
}
