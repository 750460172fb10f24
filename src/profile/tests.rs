use super::*;

fn profile(name: &str) -> FargateProfile {
    FargateProfile {
        fargate_profile_name: name.into(),
        pod_execution_role_arn: "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole".into(),
        selectors: vec![Selector {
            namespace: Some("default".into()),
            labels: BTreeMap::new(),
        }],
        ..Default::default()
    }
}

#[test]
fn names() {
    let long = "a".repeat(100);
    let too_long = "a".repeat(101);
    let cases: &[(&str, Option<&str>)] = &[
        ("default", None),
        ("a", None),
        ("0-fargate_profile", None),
        (&long, None),
        ("", Some("fargateProfileName is required.")),
        (
            &too_long,
            Some("The Fargate profile name parameter should not be greater than 100 characters."),
        ),
        (
            "eks-mine",
            Some("The fargate profile name starts with the reserved prefix: 'eks-'."),
        ),
        ("-leading", Some("is invalid")),
        ("_leading", Some("is invalid")),
        ("has space", Some("is invalid")),
        ("dot.ted", Some("is invalid")),
        ("ünïcode", Some("is invalid")),
    ];
    for (name, want) in cases {
        let got = validate_name(name);
        match want {
            None => assert_eq!(got, Ok(()), "{name:?}"),
            Some(text) => assert!(
                got.as_ref().is_err_and(|e| e.0.contains(text)),
                "{name:?}: {got:?}"
            ),
        }
    }
}

#[test]
fn role_arns() {
    for ok in [
        "arn:aws:iam::012345678910:role/AmazonEKSPodExecutionRole",
        "arn:aws-cn:iam::012345678910:role/path/to/Role",
        "arn:aws-us-gov:iam::123456789012:role/r",
    ] {
        assert_eq!(validate_role_arn(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "arn:aws:iam::01234567891:role/short-account",
        "arn:aws:iam::0123456789101:role/long-account",
        "arn:aws:iam::01234567891x:role/letters",
        "arn:aws:iam::012345678910:user/NotARole",
        "arn:aws:iam::012345678910:role/",
        "arn:aws:s3::012345678910:role/x",
        "arn::iam::012345678910:role/x",
        "arn:aws:iam:us-east-1:012345678910:role/x",
        "role/x",
    ] {
        assert!(validate_role_arn(bad).is_err(), "{bad:?} must be refused");
    }
}

#[test]
fn selectors() {
    let limits = Limits::default();
    let sel = |ns: Option<&str>, labels: usize| Selector {
        namespace: ns.map(str::to_string),
        labels: (0..labels).map(|i| (format!("k{i}"), "v".into())).collect(),
    };
    assert_eq!(validate_selectors(&[sel(Some("a"), 5)], &limits), Ok(()));
    // Identical selectors are not refused (docs/eks-behaviour.md §6).
    assert_eq!(
        validate_selectors(&[sel(Some("a"), 1), sel(Some("a"), 1)], &limits),
        Ok(())
    );
    assert_eq!(
        validate_selectors(&[], &limits).unwrap_err().0,
        "Fargate Profile requires at least one selector."
    );
    assert_eq!(
        validate_selectors(&vec![sel(Some("a"), 0); 6], &limits)
            .unwrap_err()
            .0,
        "Request contains more than 5 Selectors"
    );
    assert_eq!(
        validate_selectors(&[sel(Some("a"), 6)], &limits)
            .unwrap_err()
            .0,
        "Request contains Selector with more than 5 Label pairs"
    );
    for missing in [None, Some("")] {
        assert_eq!(
            validate_selectors(&[sel(Some("a"), 0), sel(missing, 0)], &limits)
                .unwrap_err()
                .0,
            "Fargate Profile must have at least one selector with at least one namespace value."
        );
    }
    let raised = Limits {
        max_selectors: 6,
        max_labels: 7,
        ..limits
    };
    assert_eq!(
        validate_selectors(&vec![sel(Some("a"), 7); 6], &raised),
        Ok(())
    );
}

#[test]
fn tags() {
    let tags = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(validate_tags(&tags(&[])), Ok(()));
    assert_eq!(validate_tags(&tags(&[("team", "")])), Ok(()));
    let key128 = "k".repeat(128);
    let value256 = "v".repeat(256);
    assert_eq!(validate_tags(&tags(&[(&key128, &value256)])), Ok(()));
    assert!(validate_tags(&tags(&[(&"k".repeat(129), "v")])).is_err());
    assert!(validate_tags(&tags(&[("k", &"v".repeat(257))])).is_err());
    assert!(validate_tags(&tags(&[("", "v")])).is_err());
    assert!(validate_tags(&tags(&[("aws:created-by", "me")])).is_err());
    assert!(validate_tags(&tags(&[("AWS:created-by", "me")])).is_err());
    assert_eq!(
        validate_tags(&tags(&[("owner", "Aws:me")])).unwrap_err().0,
        "Tag value for key 'owner' uses the reserved prefix 'aws:'."
    );
    assert_eq!(validate_tags(&tags(&[("owner", "me-aws:")])), Ok(()));
    let fifty: BTreeMap<String, String> = (0..50).map(|i| (format!("k{i}"), "v".into())).collect();
    assert_eq!(validate_tags(&fifty), Ok(()));
    let fifty_one: BTreeMap<String, String> =
        (0..51).map(|i| (format!("k{i}"), "v".into())).collect();
    assert!(validate_tags(&fifty_one).is_err());
}

#[test]
fn status_absent_means_active_and_round_trips() {
    let file = parse_profiles_file(
        br#"{"fargateProfiles":[{"fargateProfileName":"a","podExecutionRoleArn":"arn:aws:iam::012345678910:role/R","selectors":[{"namespace":"x"}]},
            {"fargateProfileName":"b","podExecutionRoleArn":"arn:aws:iam::012345678910:role/R","selectors":[{"namespace":"x"}],"status":"CREATING","createdAt":1574206849.791}]}"#,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(file.fargate_profiles[0].status, ProfileStatus::Active);
    assert_eq!(file.fargate_profiles[1].status, ProfileStatus::Creating);
    let text = serde_json::to_string(&file.fargate_profiles[1]).unwrap();
    assert!(text.contains(r#""createdAt":1574206849.791"#), "{text}");
    assert!(text.contains(r#""status":"CREATING""#), "{text}");
    assert!(text.contains(r#""tags":{}"#), "{text}");
}

#[test]
fn a_bad_file_is_refused_whole() {
    let limits = Limits::default();
    let good = profile("good");
    let mut bad = profile("bad");
    bad.selectors = vec![bad.selectors[0].clone(); 6];
    let file = |profiles: Vec<FargateProfile>| {
        serde_json::to_vec(&ProfileState {
            fargate_profiles: profiles,
            ..Default::default()
        })
        .unwrap()
    };
    assert!(parse_profiles_file(&file(vec![good.clone()]), &limits).is_ok());
    let err = parse_profiles_file(&file(vec![good.clone(), bad]), &limits).unwrap_err();
    assert!(err.to_string().contains("'bad'"), "{err}");
    let err = parse_profiles_file(&file(vec![good.clone(), good]), &limits).unwrap_err();
    assert!(matches!(err, LoadError::Duplicate(_)), "{err}");
    assert!(matches!(
        parse_profiles_file(b"{\"fargateProfiles\": [", &limits),
        Err(LoadError::Json(_))
    ));
    assert!(matches!(
        parse_profiles_file(b"[]", &limits),
        Err(LoadError::NotAnObject)
    ));
    assert!(matches!(
        parse_profiles_file(b"", &limits),
        Err(LoadError::NotAnObject)
    ));
    // A misspelt or missing key is an error, not an empty snapshot.
    for text in [&b"{}"[..], b"{\"fargateProfile\": []}"] {
        assert!(matches!(
            parse_profiles_file(text, &limits),
            Err(LoadError::Json(_))
        ));
    }
    assert!(
        parse_profiles_file(b" {\"fargateProfiles\": []}", &limits)
            .unwrap()
            .fargate_profiles
            .is_empty()
    );
}

#[test]
fn values_that_can_never_be_valid_are_refused() {
    let limits = Limits::default();
    let role = |tail: &str| format!("arn:aws:iam::012345678910:role/{tail}");
    // Role ARNs: IAM's characters and lengths.
    for ok in [role("R"), role("path/to/R"), role("a+b=c,d.e@f_g-h")] {
        assert_eq!(validate_role_arn(&ok), Ok(()), "{ok}");
    }
    let long = role(&"r".repeat(MAX_ROLE_ARN_LEN));
    for bad in [
        role("R\0"),
        role("R\nx"),
        role("R x"),
        role("R\u{7f}"),
        long,
    ] {
        assert!(validate_role_arn(&bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        validate_role_arn(&role(&"r".repeat(MAX_ROLE_ARN_LEN)))
            .unwrap_err()
            .0,
        "Invalid podExecutionRoleArn: longer than 2048 characters."
    );
    let exactly = role(&"r".repeat(MAX_ROLE_ARN_LEN - role("").len()));
    assert_eq!(exactly.len(), MAX_ROLE_ARN_LEN);
    assert_eq!(validate_role_arn(&exactly), Ok(()));

    // Namespaces: a DNS label, with wildcards.
    let selector = |ns: &str| Selector {
        namespace: Some(ns.into()),
        labels: BTreeMap::new(),
    };
    let max = "n".repeat(MAX_NAMESPACE_LEN);
    for ok in [
        "default",
        "team-?",
        "*",
        "batch-*-prod",
        "0-a",
        max.as_str(),
    ] {
        assert_eq!(validate_selectors(&[selector(ok)], &limits), Ok(()), "{ok}");
    }
    let too_long = "n".repeat(MAX_NAMESPACE_LEN + 1);
    for bad in [
        "Default",
        "a b",
        "a\0",
        "a\n",
        "ns_1",
        "ns.x",
        "é",
        too_long.as_str(),
    ] {
        let err = validate_selectors(&[selector(bad)], &limits).unwrap_err().0;
        assert!(
            err.contains("can never match a Kubernetes namespace"),
            "{bad:?}: {err}"
        );
    }

    // Labels: no control characters in keys or values.
    for (key, value) in [("app\0", "x"), ("app", "x\ny"), ("app", "\t")] {
        let with = Selector {
            namespace: Some("default".into()),
            labels: BTreeMap::from([(key.to_owned(), value.to_owned())]),
        };
        let err = validate_selectors(&[with], &limits).unwrap_err().0;
        assert!(
            err.contains("control character"),
            "{key:?}={value:?}: {err}"
        );
    }
}

#[test]
fn label_lengths_at_their_limits_and_values_shown_escaped_and_cut() {
    let limits = Limits::default();
    let with_label = |key: String, value: String| {
        validate_selectors(
            &[Selector {
                namespace: Some("a".into()),
                labels: [(key, value)].into_iter().collect(),
            }],
            &limits,
        )
    };
    assert_eq!(with_label("k".into(), "v".repeat(253)), Ok(()));
    assert!(with_label("k".into(), "v".repeat(254)).is_err());
    assert_eq!(with_label("k".repeat(317), "v".into()), Ok(()));
    assert!(with_label("k".repeat(318), "v".into()).is_err());
    // Shown escaped: a newline is visible, not a line break.
    let message = with_label("app".into(), "a\nb".into()).unwrap_err().0;
    assert_eq!(
        message,
        "Selector label app=a\\nb contains a control character."
    );
    // Shown cut at 64 characters.
    let long = format!("{}\n", "x".repeat(100));
    let message = with_label("app".into(), long).unwrap_err().0;
    assert_eq!(
        message,
        format!(
            "Selector label app={}… contains a control character.",
            "x".repeat(64)
        )
    );
}

#[test]
fn role_paths() {
    assert!(!role_has_path("arn:aws:iam::012345678910:role/PodRole"));
    assert!(role_has_path("arn:aws:iam::012345678910:role/team/PodRole"));
    assert!(role_has_path(
        "arn:aws-cn:iam::012345678910:role/a/b/PodRole"
    ));
    assert!(!role_has_path("not an arn / with slashes"));
}

/// A subnet ID is `subnet-` and lowercase letters or digits, the shape the CRD's
/// `SUBNET_ID_PATTERN` accepts: the function and the pattern agree on every case.
#[test]
fn subnet_ids() {
    let pattern = regex::Regex::new(SUBNET_ID_PATTERN).unwrap();
    let cases = [
        ("subnet-0420a37ee456daf3f", true),
        ("subnet-1", true),
        ("subnet-test", true),
        ("subnet-", false),
        ("subnet", false),
        ("subnet-ABC", false),
        ("subnet-0420_a37e", false),
        ("subnet-a b", false),
        ("subnet-ü", false),
        ("sg-0420a37e", false),
        ("", false),
    ];
    for (id, want) in cases {
        assert_eq!(is_subnet_id(id), want, "{id:?}");
        assert_eq!(pattern.is_match(id), want, "{SUBNET_ID_PATTERN} on {id:?}");
    }
}
