//! A profiles snapshot compiled for matching. Exact namespaces sit in a hash map and wildcard
//! namespaces in a short list, so a decision only looks at the selectors that can possibly apply:
//! its cost does not grow with the profiles of other namespaces.

use super::wildcard::Pattern;
use crate::profile::{FargateProfile, ProfileStatus};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

#[derive(Debug)]
pub struct CompiledSelector {
    pub namespace: Pattern,
    pub labels: Vec<(Pattern, Pattern)>,
}

#[derive(Debug)]
pub struct CompiledProfile {
    pub profile: FargateProfile,
    pub selectors: Vec<CompiledSelector>,
}

impl CompiledProfile {
    pub fn name(&self) -> &str {
        &self.profile.fargate_profile_name
    }

    pub fn status(&self) -> ProfileStatus {
        self.profile.status
    }
}

/// Where a selector lives: indexes into the name-sorted profile list.
#[derive(Clone, Copy, Debug)]
struct SelectorRef {
    profile: u32,
    selector: u32,
}

/// Why one selector does not match a pod. Borrowed, so the hot path allocates nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Mismatch<'a> {
    Namespace(&'a Pattern),
    MissingLabel(&'a Pattern),
    LabelValue {
        key: &'a Pattern,
        want: &'a Pattern,
        got: &'a str,
    },
}

/// A selector that can never choose its profile: an ACTIVE profile earlier by name has a selector
/// that matches every pod this one matches, so the tie-break always goes to the other profile
/// (unless a pod pins this one).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Shadowing {
    pub profile: String,
    /// 1-based, as `explain` numbers selectors.
    pub selector: usize,
    pub by: String,
}

/// Namespaces with more selectors than this are not checked for shadowing (the check is quadratic).
const SHADOWING_CHECK_LIMIT: usize = 1_000;

/// An immutable snapshot of all profiles, published through `arc-swap`.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// All profiles, whatever their status, sorted by name (byte-wise ascending: the EKS tie-break).
    profiles: Vec<CompiledProfile>,
    by_name: HashMap<Box<str>, u32>,
    /// ACTIVE profiles' selectors with an exact namespace, each list in ascending profile order.
    exact_namespaces: HashMap<Box<str>, Vec<SelectorRef>>,
    /// ACTIVE profiles' selectors with a wildcard namespace, in ascending profile order.
    wildcard_namespaces: Vec<SelectorRef>,
    shadowed: Vec<Shadowing>,
    catch_all: Vec<super::catch_all::CatchAll>,
}

pub type SharedSnapshot = Arc<arc_swap::ArcSwap<Snapshot>>;

impl Snapshot {
    pub fn new(mut profiles: Vec<FargateProfile>) -> Self {
        profiles.sort_by(|a, b| {
            a.fargate_profile_name
                .as_bytes()
                .cmp(b.fargate_profile_name.as_bytes())
        });
        let mut snapshot = Snapshot::default();
        for (pi, profile) in profiles.into_iter().enumerate() {
            let selectors: Vec<CompiledSelector> = profile
                .selectors
                .iter()
                .map(|s| CompiledSelector {
                    namespace: Pattern::new(s.namespace.as_deref().unwrap_or("")),
                    labels: s
                        .labels
                        .iter()
                        .map(|(k, v)| (Pattern::new(k), Pattern::new(v)))
                        .collect(),
                })
                .collect();
            if profile.status == ProfileStatus::Active {
                for (si, selector) in selectors.iter().enumerate() {
                    let at = SelectorRef {
                        profile: pi as u32,
                        selector: si as u32,
                    };
                    match &selector.namespace {
                        Pattern::Exact(ns) => snapshot
                            .exact_namespaces
                            .entry(ns.clone())
                            .or_default()
                            .push(at),
                        Pattern::Glob(_) => snapshot.wildcard_namespaces.push(at),
                    }
                }
            }
            snapshot
                .by_name
                .insert(profile.fargate_profile_name.as_str().into(), pi as u32);
            snapshot
                .profiles
                .push(CompiledProfile { profile, selectors });
        }
        snapshot.shadowed = snapshot.find_shadowing();
        snapshot.catch_all = super::catch_all::find(&snapshot.profiles);
        snapshot
    }

    /// Selectors of ACTIVE profiles that an earlier ACTIVE profile always wins over. Claimed only
    /// when certain: the shadowed selector has an exact namespace and exact labels, the earlier one
    /// matches that namespace and all its labels are among them.
    fn find_shadowing(&self) -> Vec<Shadowing> {
        let mut found: Vec<Shadowing> = Vec::new();
        for (namespace, refs) in &self.exact_namespaces {
            if refs.len() + self.wildcard_namespaces.len() > SHADOWING_CHECK_LIMIT {
                continue;
            }
            for later in refs {
                let target = self.selector(later);
                if !target
                    .labels
                    .iter()
                    .all(|(k, v)| k.is_exact() && v.is_exact())
                {
                    continue;
                }
                let by = refs
                    .iter()
                    .chain(&self.wildcard_namespaces)
                    .filter(|earlier| earlier.profile < later.profile)
                    .filter(|earlier| {
                        let by = self.selector(earlier);
                        by.namespace.matches(namespace)
                            && by.labels.iter().all(|(k, v)| {
                                target.labels.iter().any(|(tk, tv)| {
                                    k.matches(tk.as_str()) && v.matches(tv.as_str())
                                })
                            })
                    })
                    .map(|earlier| earlier.profile)
                    .min();
                if let Some(by) = by {
                    found.push(Shadowing {
                        profile: self.profiles[later.profile as usize].name().to_string(),
                        selector: later.selector as usize + 1,
                        by: self.profiles[by as usize].name().to_string(),
                    });
                }
            }
        }
        found.sort_by(|a, b| {
            (a.profile.as_str(), a.selector).cmp(&(b.profile.as_str(), b.selector))
        });
        found
    }

    fn selector(&self, at: &SelectorRef) -> &CompiledSelector {
        &self.profiles[at.profile as usize].selectors[at.selector as usize]
    }

    /// See [`Shadowing`]: logged and counted on every reload, and shown by `explain`.
    pub fn shadowed(&self) -> &[Shadowing] {
        &self.shadowed
    }

    /// See [`super::catch_all`]: logged and counted on every reload, and shown by `explain`.
    pub fn catch_all(&self) -> &[super::catch_all::CatchAll] {
        &self.catch_all
    }

    pub fn profiles(&self) -> &[CompiledProfile] {
        &self.profiles
    }

    pub fn get(&self, name: &str) -> Option<&CompiledProfile> {
        self.by_name.get(name).map(|&i| &self.profiles[i as usize])
    }

    pub fn count_by_status(&self) -> BTreeMap<ProfileStatus, usize> {
        let mut counts: BTreeMap<ProfileStatus, usize> =
            ProfileStatus::ALL.iter().map(|s| (*s, 0)).collect();
        for p in &self.profiles {
            *counts.entry(p.status()).or_default() += 1;
        }
        counts
    }

    /// The ACTIVE profile a pod gets: the first by name among those with a matching selector.
    pub fn find_match(
        &self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<&CompiledProfile> {
        let mut best: Option<u32> = None;
        if let Some(refs) = self.exact_namespaces.get(namespace) {
            best = self.first_matching(refs, None, namespace, labels);
        }
        if let Some(found) = self.first_matching(&self.wildcard_namespaces, best, namespace, labels)
        {
            best = Some(found);
        }
        best.map(|i| &self.profiles[i as usize])
    }

    /// First selector in `refs` (ascending profile order) that matches, if it beats `bound`.
    fn first_matching(
        &self,
        refs: &[SelectorRef],
        bound: Option<u32>,
        namespace: &str,
        labels: &BTreeMap<String, String>,
    ) -> Option<u32> {
        for r in refs {
            if bound.is_some_and(|b| r.profile >= b) {
                return None;
            }
            if selector_mismatch(self.selector(r), namespace, labels).is_none() {
                return Some(r.profile);
            }
        }
        None
    }
}

/// `None` when the selector matches: the namespace matches and every selector label is on the pod.
pub fn selector_mismatch<'a>(
    selector: &'a CompiledSelector,
    namespace: &str,
    labels: &'a BTreeMap<String, String>,
) -> Option<Mismatch<'a>> {
    if !selector.namespace.matches(namespace) {
        return Some(Mismatch::Namespace(&selector.namespace));
    }
    for (key, want) in &selector.labels {
        match key {
            Pattern::Exact(k) => match labels.get(&**k) {
                None => return Some(Mismatch::MissingLabel(key)),
                Some(got) if !want.matches(got) => {
                    return Some(Mismatch::LabelValue { key, want, got });
                }
                Some(_) => {}
            },
            Pattern::Glob(_) => {
                // Satisfied when some pod label's key matches the key pattern and its value the value pattern.
                let mut first_value = None;
                let satisfied = labels.iter().any(|(k, v)| {
                    let key_ok = key.matches(k);
                    if key_ok && first_value.is_none() {
                        first_value = Some(v.as_str());
                    }
                    key_ok && want.matches(v)
                });
                if !satisfied {
                    return Some(match first_value {
                        None => Mismatch::MissingLabel(key),
                        Some(got) => Mismatch::LabelValue { key, want, got },
                    });
                }
            }
        }
    }
    None
}

/// Does any selector of this profile match? (Used for pins and explanations.)
pub fn profile_matches(
    profile: &CompiledProfile,
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    profile
        .selectors
        .iter()
        .any(|s| selector_mismatch(s, namespace, labels).is_none())
}
