//! The FargateProfile CRD in `crds/`: its schema, and that it matches what the chart grants and
//! installs.

use serde_json::Value;

use super::{
    NS, RELEASE, Rendered, arr, chart_dir, helm, rbac_rules, render, run_helm, str_of, strings,
};

#[test]
fn crd_matches_the_chart() {
    let Some(helm) = helm() else { return };
    let path = chart_dir().join("crds").join("fargateprofiles.yaml");
    let text = std::fs::read_to_string(&path).expect("crds/fargateprofiles.yaml");
    let crd: Value = serde_saphyr::from_str(&text).expect("CRD YAML");
    assert_eq!(crd["kind"], "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"]["name"],
        "fargateprofiles.fargate-webhook.io"
    );
    let spec = &crd["spec"];
    assert_eq!(spec["group"], "fargate-webhook.io");
    assert_eq!(spec["scope"], "Cluster");
    assert_eq!(spec["names"]["kind"], "FargateProfile");
    assert_eq!(spec["names"]["plural"], "fargateprofiles");
    assert_eq!(strings(&spec["names"]["shortNames"]), ["fp"]);
    let versions = arr(&spec["versions"]);
    assert_eq!(versions.len(), 1);
    let v = &versions[0];
    assert_eq!(v["name"], "v1alpha1");
    assert_eq!(v["served"], true);
    assert_eq!(v["storage"], true);
    assert!(v["subresources"]["status"].is_object());
    let columns: Vec<&str> = arr(&v["additionalPrinterColumns"])
        .iter()
        .map(|c| str_of(&c["name"]))
        .collect();
    for want in ["Status", "Selectors", "Age"] {
        assert!(columns.contains(&want), "printer column {want}");
    }

    let schema = &v["schema"]["openAPIV3Schema"];
    let root_rules: Vec<&str> = arr(&schema["x-kubernetes-validations"])
        .iter()
        .map(|r| str_of(&r["rule"]))
        .collect();
    assert!(root_rules.iter().any(|r| r.contains("size() <= 100")));
    assert!(root_rules.iter().any(|r| r.contains("startsWith('eks-')")));
    let fp = &schema["properties"]["spec"];
    assert_eq!(
        strings(&fp["required"]),
        ["podExecutionRoleArn", "selectors"]
    );
    let immutability = &arr(&fp["x-kubernetes-validations"])[0];
    let rule = str_of(&immutability["rule"]);
    assert!(rule.contains("oldSelf.selectors") && rule.contains("oldSelf.podExecutionRoleArn"));
    assert!(!rule.contains("tags"), "tags stay mutable");
    assert_eq!(
        immutability["message"],
        "spec is immutable; create a new FargateProfile and delete the old one"
    );
    let props = &fp["properties"];
    assert_eq!(
        props["podExecutionRoleArn"]["pattern"],
        "^arn:[a-z-]+:iam::[0-9]{12}:role/.+$"
    );
    assert_eq!(props["selectors"]["minItems"], 1);
    assert_eq!(props["selectors"]["maxItems"], 5);
    let selector = &props["selectors"]["items"];
    assert_eq!(strings(&selector["required"]), ["namespace"]);
    assert_eq!(selector["properties"]["namespace"]["minLength"], 1);
    assert_eq!(selector["properties"]["labels"]["maxProperties"], 5);
    assert_eq!(props["tags"]["maxProperties"], 50);
    assert_eq!(props["tags"]["additionalProperties"]["maxLength"], 256);
    assert_eq!(
        strings(&schema["properties"]["status"]["properties"]["status"]["enum"]),
        [
            "CREATING",
            "ACTIVE",
            "DELETING",
            "CREATE_FAILED",
            "DELETE_FAILED"
        ]
    );

    // The ClusterRole grants exactly this CRD's group and plural (and Events, which are about it).
    let r = render(helm, &[]);
    for (group, resource, _) in rbac_rules(&r) {
        if group == "events.k8s.io" {
            continue;
        }
        assert_eq!(group, "fargate-webhook.io");
        assert!(resource.split('/').next() == Some("fargateprofiles"));
    }

    // Helm installs it from crds/ (rendered only with --include-crds).
    let chart = chart_dir().display().to_string();
    let with_crds = run_helm(
        helm,
        &[
            "template",
            RELEASE,
            &chart,
            "--namespace",
            NS,
            "--include-crds",
        ],
    )
    .expect("helm template --include-crds");
    let rendered = Rendered::parse(&with_crds);
    assert_eq!(
        rendered.one(
            "CustomResourceDefinition",
            "fargateprofiles.fargate-webhook.io"
        ),
        &crd
    );
    assert!(
        !text.contains('\t'),
        "the CRD is 2-space indented YAML without tabs"
    );
}

/// The CRD upgrade path the chart README documents ("Upgrading the CRD"): `helm show crds` of the packaged
/// chart, piped to `kubectl apply --server-side`, must be exactly `crds/fargateprofiles.yaml` and nothing
/// else, so what is applied before `helm upgrade` is the CRD that release ships.
#[test]
fn helm_show_crds_of_the_packaged_chart_is_exactly_the_crd_file() {
    let Some(helm) = helm() else { return };
    let out = tempfile::tempdir().unwrap();
    let dest = out.path().display().to_string();
    let chart = chart_dir().display().to_string();
    run_helm(helm, &["package", &chart, "--destination", &dest]).expect("helm package");
    let tgz = std::fs::read_dir(out.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "tgz"))
        .expect("helm package wrote a .tgz");
    let shown = run_helm(helm, &["show", "crds", tgz.to_str().unwrap()]).expect("helm show crds");
    let file = std::fs::read_to_string(chart_dir().join("crds").join("fargateprofiles.yaml"))
        .expect("crds/fargateprofiles.yaml");
    // Helm prints each file of crds/ after a `---` line; there is one file, byte for byte.
    let body = shown
        .strip_prefix("---\n")
        .unwrap_or_else(|| panic!("helm show crds starts a document:\n{shown}"));
    assert_eq!(body.trim_end(), file.trim_end());
    let crds = std::fs::read_dir(chart_dir().join("crds"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(
        crds,
        ["fargateprofiles.yaml"],
        "one CRD file, the one shown"
    );
}
