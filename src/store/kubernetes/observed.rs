//! What the watch and our own writes taught us about the resources: newer versions win,
//! tombstones hold, a relist replaces all but newer writes.

use crate::profile::TokenRecord;
use crate::store::crd::FargateProfile as ProfileResource;
use ::kube::ResourceExt;
use ::kube::core::DeserializeGuard;
use ::kube::core::error_boundary::InvalidObject;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

/// What the watch and our own writes taught us about the resources.
/// A list of resources: the ones that decode, and the ones that do not.
#[derive(Default)]
pub(super) struct Listed {
    pub(super) objects: BTreeMap<String, ProfileResource>,
    pub(super) broken: BTreeMap<String, InvalidObject>,
}

impl Listed {
    pub(super) fn add(&mut self, guard: DeserializeGuard<ProfileResource>) {
        match guard.0 {
            Ok(obj) => {
                self.objects.insert(obj.name_any(), obj);
            }
            Err(invalid) => {
                let name = invalid.metadata.name.clone().unwrap_or_default();
                self.broken.insert(name, invalid);
            }
        }
    }

    /// Every name taken by a resource, decodable or not.
    pub(super) fn names(&self) -> BTreeSet<String> {
        self.objects
            .keys()
            .chain(self.broken.keys())
            .cloned()
            .collect()
    }
}

pub(super) fn broken_version(invalid: &InvalidObject) -> Option<u64> {
    invalid.metadata.resource_version.as_deref()?.parse().ok()
}

#[derive(Default)]
pub(super) struct Observed {
    pub(super) objects: BTreeMap<String, ProfileResource>,
    /// Names we removed ourselves, with the last resourceVersion seen: older events are ignored.
    pub(super) tombstones: BTreeMap<String, u64>,
    /// Resources that do not even decode (a newer CRD, a hand-made object), by name.
    pub(super) broken: BTreeMap<String, InvalidObject>,
    /// Objects of a list in progress (watcher `Init` … `InitDone`).
    pub(super) init: Option<Listed>,
    pub(super) tokens: BTreeMap<String, TokenRecord>,
    /// Invalid resource versions already logged, so each is logged once.
    pub(super) reported: HashSet<(String, String)>,
    /// Resource versions whose housekeeping was started.
    pub(super) housekept: HashSet<(String, String)>,
    /// Failed housekeeping writes in a row, by resource version: they are tried again later.
    pub(super) housekeep_failures: HashMap<(String, String), u32>,
    /// Catch-all selectors already reported with an Event: (uid, selector).
    pub(super) warned: HashSet<(String, usize)>,
}

pub(super) fn version_of(obj: &ProfileResource) -> Option<u64> {
    obj.metadata.resource_version.as_deref()?.parse().ok()
}

impl Observed {
    /// Past a bound, forget what was logged, housekept or warned for versions (and objects) no
    /// longer read. Those sets are kept per resourceVersion for the life of the process, and a
    /// resource edited without end would grow them without end. Below the bound nothing goes: a
    /// version read now is never logged or housekept twice.
    pub(super) fn prune(&mut self) {
        let read = self.objects.len();
        if self.reported.len() > 4 * (read + self.broken.len()) + 64 {
            let live = self.live_keys(true);
            self.reported.retain(|k| live.contains(k));
        }
        if self.housekept.len() + self.housekeep_failures.len() > 4 * read + 64 {
            let live = self.live_keys(false);
            self.housekept.retain(|k| live.contains(k));
            self.housekeep_failures.retain(|k, _| live.contains(k));
        }
        if self.warned.len() > 4 * read + 64 {
            let uids: HashSet<&str> = self
                .objects
                .values()
                .filter_map(|o| o.metadata.uid.as_deref())
                .collect();
            self.warned.retain(|(uid, _)| uids.contains(uid.as_str()));
        }
    }

    /// The (name, resourceVersion) of every object read now, and of the broken ones with `broken`.
    fn live_keys(&self, broken: bool) -> HashSet<(String, String)> {
        let objects = self
            .objects
            .values()
            .map(|o| super::resource::version_key(&o.name_any(), &o.metadata));
        let unreadable = self
            .broken
            .iter()
            .filter(|_| broken)
            .map(|(name, invalid)| super::resource::version_key(name, &invalid.metadata));
        objects.chain(unreadable).collect()
    }

    pub(super) fn upsert(&mut self, obj: ProfileResource) {
        let name = obj.name_any();
        if let Some(&buried) = self.tombstones.get(&name) {
            match version_of(&obj) {
                Some(v) if v <= buried => return,
                _ => {
                    self.tombstones.remove(&name);
                }
            }
        }
        if let Some(existing) = self.objects.get(&name)
            && let (Some(new), Some(old)) = (version_of(&obj), version_of(existing))
            && new < old
        {
            return;
        }
        self.objects.insert(name, obj);
    }

    pub(super) fn apply(&mut self, guard: DeserializeGuard<ProfileResource>) {
        match guard.0 {
            Ok(obj) => {
                self.broken.remove(&obj.name_any());
                self.upsert(obj);
            }
            Err(invalid) => {
                let name = invalid.metadata.name.clone().unwrap_or_default();
                let newer = match (broken_version(&invalid), self.objects.get(&name)) {
                    (Some(v), Some(existing)) => version_of(existing).is_none_or(|e| v >= e),
                    _ => true,
                };
                if newer {
                    self.objects.remove(&name);
                    self.broken.insert(name, invalid);
                }
            }
        }
    }

    pub(super) fn delete(&mut self, guard: &DeserializeGuard<ProfileResource>) {
        match &guard.0 {
            Ok(obj) => {
                self.broken.remove(&obj.name_any());
                self.remove(obj);
            }
            Err(invalid) => {
                let name = invalid.metadata.name.clone().unwrap_or_default();
                self.broken.remove(&name);
                if self
                    .objects
                    .get(&name)
                    .is_some_and(|o| o.metadata.uid == invalid.metadata.uid)
                {
                    self.objects.remove(&name);
                }
            }
        }
    }

    pub(super) fn remove(&mut self, obj: &ProfileResource) {
        let name = obj.name_any();
        if let Some(existing) = self.objects.get(&name) {
            let same = existing.metadata.uid == obj.metadata.uid;
            let older =
                matches!((version_of(existing), version_of(obj)), (Some(e), Some(d)) if e <= d);
            if same || older {
                self.objects.remove(&name);
            }
        }
    }

    pub(super) fn bury(&mut self, name: &str, last: Option<&ProfileResource>) {
        self.objects.remove(name);
        if let Some(version) = last.and_then(version_of) {
            let buried = self.tombstones.entry(name.to_owned()).or_insert(version);
            *buried = (*buried).max(version);
        }
    }

    /// A complete list replaces what we knew, except versions newer than anything it holds
    /// (written by us while it was being read). Returns whether an object the list does not hold
    /// was kept: it may also have been deleted before the list was read (a deletion the watch
    /// missed), which only a list with its own resourceVersion can tell ([`Self::absorb_list`]).
    pub(super) fn replace_all(&mut self, listed: Listed) -> bool {
        let Listed {
            objects: listed,
            broken,
        } = listed;
        self.broken = broken;
        let newest = listed.values().filter_map(version_of).max();
        let newer_than_list = |obj: &ProfileResource| match (version_of(obj), newest) {
            (Some(v), Some(n)) => v > n,
            _ => false,
        };
        let mut objects = listed;
        let mut kept_unlisted = false;
        for (name, obj) in std::mem::take(&mut self.objects) {
            if newer_than_list(&obj) {
                let listed = objects.get(&name);
                kept_unlisted |= listed.is_none();
                if listed.is_none_or(|listed| version_of(listed) < version_of(&obj)) {
                    objects.insert(name, obj);
                }
            }
        }
        self.tombstones
            .retain(|_, v| newest.is_some_and(|newest| *v > newest));
        for name in self.tombstones.keys() {
            objects.remove(name);
        }
        self.objects = objects;
        kept_unlisted
    }

    /// A consistent list at `list_version`: upsert its objects, forget those it no longer holds.
    pub(super) fn absorb_list(
        &mut self,
        listed: &BTreeMap<String, ProfileResource>,
        list_version: Option<u64>,
    ) {
        for obj in listed.values() {
            self.upsert(obj.clone());
        }
        if let Some(at) = list_version {
            self.objects.retain(|name, obj| {
                listed.contains_key(name) || version_of(obj).is_none_or(|v| v > at)
            });
        }
    }
}
