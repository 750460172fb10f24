//! Which pods reach the webhook: the CEL `matchConditions` expression that lets through exactly the
//! pods [`super::decide`] would mutate or warn, given the profiles (README, "Which pods reach the
//! webhook"). Pure: the claim holder writes the expression into the MutatingWebhookConfiguration
//! (the `match_conditions` module), `explain` reports it.
//!
//! The expression is true for a pod that none of the skip rules leaves alone (docs/eks-behaviour.md
//! §5) and that either pins a profile (it may need a warning) or is selected by a selector of a
//! CREATING or ACTIVE profile. CREATING profiles are let through before they match anything, so
//! that a profile turns ACTIVE with its pods already reaching the webhook. What cannot be written
//! (a character outside the selector alphabet, an expression past [`MAX_EXPRESSION_LEN`]) makes the
//! expression `true`: every pod is sent, as without generation, and [`Reach::fallback`] says why.
//!
//! The kube-apiserver evaluates `matchConditions` with `request.namespace` and the pod as sent
//! (`object`), after the rules and the namespace and object selectors; a condition that fails to
//! evaluate follows the webhook's `failurePolicy`. Every field read here is guarded with `has()` or
//! `in`, so no pod makes it fail.

use super::index::selector_mismatch;
use super::{
    COMPUTE_TYPE_ANNOTATION, DEFAULT_SCHEDULER, MIRROR_POD_ANNOTATION, Request, Snapshot,
    pod_labels, skip_reason,
};
use crate::profile::{FargateProfile, PROFILE_LABEL, ProfileStatus};
use std::collections::BTreeSet;

/// The name of the generated condition in the webhook's `matchConditions`.
pub const CONDITION_NAME: &str = "fargate-webhook.io/selected-by-a-profile";

/// [D] The longest expression written; past it every pod is sent. The apiserver's own limit is the
/// CEL cost budget, which a longer expression of `matches()` calls comes close to.
pub const MAX_EXPRESSION_LEN: usize = 24_000;

/// The name prefix of the second webhook the writer adds when [`Reach::namespaces`] narrows the
/// first: it takes the pins of the other namespaces.
pub const PIN_WEBHOOK_PREFIX: &str = "pins.";

/// The expression and the profiles it lets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    pub expression: String,
    /// `Some` when every selector's namespace is exact: the webhook's `namespaceSelector` can then
    /// take only these namespaces (`kubernetes.io/metadata.name In`), so that the apiserver skips a
    /// pod of another namespace before it evaluates any CEL (which converts every pod it looks at);
    /// the pins of other namespaces go to a second webhook ([`PIN_WEBHOOK_PREFIX`], an
    /// `objectSelector` on the pin label, [`not_skipped`] as its condition). `None`: a wildcard
    /// namespace, every namespace goes to the expression.
    pub namespaces: Option<BTreeSet<String>>,
    /// False when the namespaces are narrowed and no selector has labels: the namespace selector
    /// then says all a condition would, but for the skip rules, and the writer leaves the condition
    /// out. An evaluated condition costs the apiserver a conversion of the whole pod, twice for a
    /// pod the webhook mutates (its reinvocation pass looks again): more than the call it could save
    /// for a DaemonSet pod or an opted-out pod of a profile's namespace.
    pub condition_needed: bool,
    /// The CREATING and ACTIVE profiles whose pods the expression lets through (every one of them
    /// when it falls back).
    pub covered: BTreeSet<String>,
    /// Why every pod is sent, when the profiles could not be expressed.
    pub fallback: Option<String>,
}

/// Whether the generated condition lets a pod through, and why (what `explain` says).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Reaches {
    pub reaches: bool,
    pub why: String,
}

/// What the generated condition decides for this pod, said in words; the same rules as the
/// expression [`reach`] writes (a test evaluates both on the same pods).
pub fn reaches(req: &Request<'_>, snapshot: &Snapshot) -> Reaches {
    let answer = |reaches: bool, why: String| Reaches { reaches, why };
    if let Some(reason) = skip_reason(req) {
        return answer(
            false,
            format!("left alone before the call: {}", reason.describe()),
        );
    }
    if let Some(pin) = req.pod.label(PROFILE_LABEL) {
        return answer(true, format!("it pins profile '{pin}' ({PROFILE_LABEL})"));
    }
    let labels = pod_labels(req.pod);
    for profile in snapshot.profiles() {
        if !matches!(
            profile.status(),
            ProfileStatus::Creating | ProfileStatus::Active
        ) {
            continue;
        }
        for (i, selector) in profile.selectors.iter().enumerate() {
            if selector_mismatch(selector, req.namespace, labels).is_none() {
                return answer(
                    true,
                    format!(
                        "selector {} of profile '{}' ({}) selects it",
                        i + 1,
                        profile.name(),
                        profile.status()
                    ),
                );
            }
        }
    }
    answer(
        false,
        "no selector of a CREATING or ACTIVE profile selects it".into(),
    )
}

/// The pods the webhook leaves alone whatever the profiles: `decide`'s skip rules, as CEL.
const NOT_SKIPPED: [&str; 5] = [
    // Opt-out annotation.
    "!(has(object.metadata.annotations) && '@CT' in object.metadata.annotations && object.metadata.annotations['@CT'] == 'ec2')",
    // DaemonSet pods.
    "!(has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(r, r.kind == 'DaemonSet'))",
    // Mirror pods.
    "!(has(object.metadata.annotations) && '@MIRROR' in object.metadata.annotations)",
    // nodeName already set.
    "!(has(object.spec.nodeName) && object.spec.nodeName != '')",
    // Another scheduler asked for.
    "!(has(object.spec.schedulerName) && object.spec.schedulerName != '' && object.spec.schedulerName != '@DEFAULT')",
];

/// The CEL expression for these profiles.
pub fn reach(profiles: &[FargateProfile]) -> Reach {
    let live: Vec<&FargateProfile> = profiles
        .iter()
        .filter(|p| matches!(p.status, ProfileStatus::Creating | ProfileStatus::Active))
        .collect();
    let covered: BTreeSet<String> = live
        .iter()
        .map(|p| p.fargate_profile_name.clone())
        .collect();
    let everyone = |why: String| Reach {
        expression: "true".into(),
        namespaces: None,
        condition_needed: true,
        covered: covered.clone(),
        fallback: Some(why),
    };
    let mut exact_namespaces = BTreeSet::new();
    let mut all_exact = true;
    let mut terms = BTreeSet::new();
    for profile in &live {
        for selector in &profile.selectors {
            let namespace = selector.namespace.as_deref().unwrap_or("");
            if let Some(bad) = namespace
                .chars()
                .chain(
                    selector
                        .labels
                        .iter()
                        .flat_map(|(k, v)| k.chars().chain(v.chars())),
                )
                .find(|c| !expressible(*c))
            {
                return everyone(format!(
                    "profile '{}' has a selector with the character {bad:?}, which the generated condition does not write",
                    profile.fargate_profile_name
                ));
            }
            let is_glob = |s: &str| s.contains(['*', '?']);
            all_exact &= !is_glob(namespace);
            if selector.labels.is_empty() && !is_glob(namespace) {
                exact_namespaces.insert(namespace.to_owned());
                continue;
            }
            let mut parts = Vec::new();
            match namespace {
                "*" => {}
                ns if is_glob(ns) => {
                    parts.push(format!("request.namespace.matches('{}')", regex(ns)))
                }
                ns => parts.push(format!("request.namespace == '{ns}'")),
            }
            if !selector.labels.is_empty() {
                parts.push("has(object.metadata.labels)".into());
            }
            for (key, value) in &selector.labels {
                parts.push(label_term(key, value));
            }
            terms.insert(if parts.is_empty() {
                "true".to_owned()
            } else {
                parts.join(" && ")
            });
        }
    }
    let mut selected = vec![format!(
        "(has(object.metadata.labels) && '{PROFILE_LABEL}' in object.metadata.labels)"
    )];
    match exact_namespaces.len() {
        0 => {}
        1 => selected.push(format!(
            "request.namespace == '{}'",
            exact_namespaces.first().expect("one")
        )),
        _ => selected.push(format!(
            "request.namespace in [{}]",
            exact_namespaces
                .iter()
                .map(|ns| format!("'{ns}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    selected.extend(terms.into_iter().map(|t| format!("({t})")));
    let expression = format!("{} && ({})", not_skipped(), selected.join(" || "));
    if expression.len() > MAX_EXPRESSION_LEN {
        return everyone(format!(
            "the profiles' selectors need a condition of {} characters, more than the {MAX_EXPRESSION_LEN} written",
            expression.len()
        ));
    }
    let namespaces = all_exact.then(|| {
        live.iter()
            .flat_map(|p| &p.selectors)
            .map(|s| s.namespace.clone().unwrap_or_default())
            .collect()
    });
    let labelled = live
        .iter()
        .flat_map(|p| &p.selectors)
        .any(|s| !s.labels.is_empty());
    Reach {
        expression,
        condition_needed: namespaces.is_none() || labelled,
        namespaces,
        covered,
        fallback: None,
    }
}

/// The skip rules alone, as CEL: the condition of the pin webhook.
pub fn not_skipped() -> String {
    NOT_SKIPPED
        .map(|s| {
            s.replace("@CT", COMPUTE_TYPE_ANNOTATION)
                .replace("@MIRROR", MIRROR_POD_ANNOTATION)
                .replace("@DEFAULT", DEFAULT_SCHEDULER)
        })
        .join(" && ")
}

/// The characters a selector may hold that the expression writes without escaping: those of
/// namespaces, label keys and label values, and the two wildcards.
fn expressible(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | '*' | '?')
}

/// An anchored RE2 pattern for an EKS wildcard pattern: `*` any run of characters, `?` one
/// character, `.` literal (the only regex metacharacter of the alphabet).
fn regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    out.push('^');
    for c in pattern.chars() {
        match c {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '.' => out.push_str("[.]"),
            c => out.push(c),
        }
    }
    out.push('$');
    out
}

/// One label requirement of a selector (`object.metadata.labels` is known to exist).
fn label_term(key: &str, value: &str) -> String {
    let value_test = |subject: &str| match value {
        "*" => None,
        v if v.contains(['*', '?']) => Some(format!("{subject}.matches('{}')", regex(v))),
        v => Some(format!("{subject} == '{v}'")),
    };
    if key.contains(['*', '?']) {
        let mut test = format!("k.matches('{}')", regex(key));
        if let Some(v) = value_test("object.metadata.labels[k]") {
            test = format!("{test} && {v}");
        }
        format!("object.metadata.labels.exists(k, {test})")
    } else {
        let subject = format!("object.metadata.labels['{key}']");
        match value_test(&subject) {
            None => format!("'{key}' in object.metadata.labels"),
            Some(v) => format!("'{key}' in object.metadata.labels && {v}"),
        }
    }
}
