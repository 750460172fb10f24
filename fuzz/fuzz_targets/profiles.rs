//! libFuzzer target: arbitrary bytes as `profiles.json` through `profile::parse_profiles_file`.
//! No panic; whatever is accepted follows the validation rules and compiles into a snapshot.
#![no_main]

use fargate_webhook::decision::Snapshot;
use fargate_webhook::profile::{self, Limits};
use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;

fuzz_target!(|bytes: &[u8]| {
    let limits = Limits::default();
    let Ok(file) = profile::parse_profiles_file(bytes, &limits) else {
        return;
    };
    for p in &file.fargate_profiles {
        profile::validate(p, &limits).expect("an accepted profile follows the rules");
    }
    let snapshot = Snapshot::new(file.fargate_profiles);
    let labels = BTreeMap::from([("infrastructure".to_string(), "fargate".to_string())]);
    for namespace in ["default", "kube-system", "batch-1", ""] {
        if let Some(found) = snapshot.find_match(namespace, &labels) {
            assert!(snapshot.get(found.name()).is_some());
        }
    }
});
