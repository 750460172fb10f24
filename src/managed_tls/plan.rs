//! What the claim holder does to the managed Secret next (README, "TLS: the managed mode"). Pure: it
//! sees the Secret as [`Stored`] (validity windows and names, no keys) and the time, and answers one
//! [`Plan`]; [`super::pki`] makes the certificates and [`super`] does the I/O.
//!
//! The rules, in order:
//! 1. no Secret: make a CA and a serving certificate signed by it;
//! 2. a Secret without our annotation: leave it alone (it is someone else's);
//! 3. the newest CA is missing, its key is not the one kept, or it is in the last third of its life:
//!    put a new CA first in the bundle, keep the older ones until they expire (the serving certificate
//!    in service is signed by one of them), and keep the serving certificate unless it cannot serve;
//! 4. the serving certificate cannot serve (missing, not matching its key, outside its validity, not
//!    signed by a CA of the bundle): issue one now;
//! 5. it is in the last third of its life, names other names than wanted, or is signed by an older
//!    CA: issue one, but only once the webhook configuration trusts the newest CA. The caBundle is
//!    patched after the Secret is written, so a certificate from a new CA is issued at the earliest one
//!    sync later, and the apiserver never meets a certificate from a CA it was not yet given;
//! 6. a CA of the bundle has expired: drop it;
//! 7. otherwise nothing.

use std::collections::BTreeSet;

/// How long the certificates live, and the names the serving certificate must carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Seconds a CA is valid.
    pub ca_validity: i64,
    /// Seconds a serving certificate is valid (at most until its CA expires).
    pub cert_validity: i64,
    /// DNS names and IP addresses (as text) of the serving certificate.
    pub names: BTreeSet<String>,
}

impl Policy {
    /// A CA or a serving certificate is renewed in the last third of its life (cert-manager's
    /// default `renewBefore`).
    fn renew_at(not_after: i64, validity: i64) -> i64 {
        not_after - validity / 3
    }
}

/// A CA of the bundle (`ca.crt`), newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaView {
    /// The DER of its subject: serving certificates name it as their issuer.
    pub subject: Vec<u8>,
    pub not_after: i64,
}

/// The serving certificate (`tls.crt`, `tls.key`), when it parses and matches its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeafView {
    /// The DER of its issuer's subject.
    pub issuer: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    pub names: BTreeSet<String>,
}

/// The managed Secret as the plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    /// It carries the annotation the managed mode writes.
    pub ours: bool,
    /// The CAs of the bundle that parse, newest first.
    pub cas: Vec<CaView>,
    /// `ca.key` is the key of `cas[0]`.
    pub signing_key: bool,
    pub leaf: Option<LeafView>,
}

/// Why a serving certificate is issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeafReason {
    /// There is none that can serve.
    Unservable,
    /// The last third of its life.
    Renewal,
    /// It names other names than wanted.
    Names,
    /// It is signed by an older CA than the newest.
    NewCa,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to write.
    Keep,
    /// The serving certificate is due (`LeafReason`) but the webhook configuration does not trust
    /// the newest CA yet: the caBundle comes first.
    AwaitTrust(LeafReason),
    /// No Secret: a CA and a serving certificate.
    Create,
    /// The Secret is not ours: write nothing.
    Refuse,
    /// A new CA first in the bundle; with `leaf`, a serving certificate signed by it too (the one
    /// stored cannot serve).
    RotateCa { leaf: bool },
    /// A serving certificate signed by the newest CA.
    IssueLeaf(LeafReason),
    /// Drop the expired CAs from the bundle.
    Prune,
}

/// The certificate `leaf` can be served at `now`: valid, and signed by a CA of the bundle.
fn servable(stored: &Stored, now: i64) -> bool {
    stored.leaf.as_ref().is_some_and(|leaf| {
        leaf.not_before <= now
            && now < leaf.not_after
            && stored.cas.iter().any(|ca| ca.subject == leaf.issuer)
    })
}

/// The next step for the Secret `stored` (None: absent) at `now`; `trusted`: every webhook of the
/// configuration has the newest CA of the bundle in its caBundle.
pub fn plan(stored: Option<&Stored>, policy: &Policy, trusted: bool, now: i64) -> Plan {
    let Some(stored) = stored else {
        return Plan::Create;
    };
    if !stored.ours {
        return Plan::Refuse;
    }
    let can_serve = servable(stored, now);
    let ca_usable = stored.signing_key
        && stored
            .cas
            .first()
            .is_some_and(|ca| now < Policy::renew_at(ca.not_after, policy.ca_validity));
    if !ca_usable {
        return Plan::RotateCa { leaf: !can_serve };
    }
    if !can_serve {
        return Plan::IssueLeaf(LeafReason::Unservable);
    }
    let newest = &stored.cas[0];
    if let Some(leaf) = &stored.leaf {
        let due = if now >= Policy::renew_at(leaf.not_after, policy.cert_validity) {
            Some(LeafReason::Renewal)
        } else if leaf.names != policy.names {
            Some(LeafReason::Names)
        } else if leaf.issuer != newest.subject {
            Some(LeafReason::NewCa)
        } else {
            None
        };
        if let Some(reason) = due {
            return if trusted {
                Plan::IssueLeaf(reason)
            } else {
                Plan::AwaitTrust(reason)
            };
        }
    }
    if stored.cas[1..].iter().any(|ca| ca.not_after <= now) {
        return Plan::Prune;
    }
    Plan::Keep
}

/// Check the validities against each other and the sync interval (seconds): a serving certificate
/// must be renewed long before its CA is, and more than one sync before it expires.
pub fn check_policy(policy: &Policy, sync_interval: i64) -> Result<(), String> {
    if policy.names.is_empty() {
        return Err(
            "the managed certificate needs at least one name (--tls-dns or --tls-ip)".into(),
        );
    }
    if policy.cert_validity * 2 > policy.ca_validity {
        return Err(format!(
            "--tls-cert-validity ({}s) must be at most half of --tls-ca-validity ({}s): a CA is replaced in the last third of its life, and the certificates it signed must end before it",
            policy.cert_validity, policy.ca_validity
        ));
    }
    if policy.cert_validity < 6 * sync_interval.max(1) {
        return Err(format!(
            "--tls-cert-validity ({}s) must be at least 6 times --tls-sync-interval ({}s): a certificate is renewed in the last third of its life, which must span several syncs",
            policy.cert_validity, sync_interval
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const NOW: i64 = 1_800_000_000;

    fn policy() -> Policy {
        Policy {
            ca_validity: 365 * DAY,
            cert_validity: 90 * DAY,
            names: names(&["svc.ns.svc"]),
        }
    }

    fn names(list: &[&str]) -> BTreeSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn ca(id: u8, not_after: i64) -> CaView {
        CaView {
            subject: vec![id],
            not_after,
        }
    }

    fn leaf(issuer: u8, not_before: i64, not_after: i64) -> LeafView {
        LeafView {
            issuer: vec![issuer],
            not_before,
            not_after,
            names: names(&["svc.ns.svc"]),
        }
    }

    /// A healthy Secret: CA 1 with 300 days left, a serving certificate from it with 80 days left.
    fn healthy() -> Stored {
        Stored {
            ours: true,
            cas: vec![ca(1, NOW + 300 * DAY)],
            signing_key: true,
            leaf: Some(leaf(1, NOW - 10 * DAY, NOW + 80 * DAY)),
        }
    }

    #[test]
    fn the_rules_in_order() {
        type Change = fn(&mut Stored);
        let cases: Vec<(&str, Change, bool, Plan)> = vec![
            ("healthy", |_| {}, true, Plan::Keep),
            (
                "healthy, caBundle not patched yet",
                |_| {},
                false,
                Plan::Keep,
            ),
            ("not ours", |s| s.ours = false, true, Plan::Refuse),
            (
                "not ours, even when broken",
                |s| {
                    s.ours = false;
                    s.cas.clear();
                    s.leaf = None;
                },
                true,
                Plan::Refuse,
            ),
            // Rule 3: the CA.
            (
                "CA in its last third",
                |s| s.cas[0].not_after = NOW + 100 * DAY,
                true,
                Plan::RotateCa { leaf: false },
            ),
            (
                "CA just before its last third",
                |s| s.cas[0].not_after = NOW + 365 * DAY / 3 + 1,
                true,
                Plan::Keep,
            ),
            (
                "CA key lost",
                |s| s.signing_key = false,
                true,
                Plan::RotateCa { leaf: false },
            ),
            (
                "no CA that parses",
                |s| s.cas.clear(),
                true,
                Plan::RotateCa { leaf: true },
            ),
            (
                "CA due and no serving certificate",
                |s| {
                    s.cas[0].not_after = NOW + DAY;
                    s.leaf = None;
                },
                true,
                Plan::RotateCa { leaf: true },
            ),
            // Rule 4: a serving certificate that cannot serve is replaced at once, trusted or not.
            (
                "no serving certificate",
                |s| s.leaf = None,
                false,
                Plan::IssueLeaf(LeafReason::Unservable),
            ),
            (
                "expired serving certificate",
                |s| s.leaf.as_mut().unwrap().not_after = NOW,
                false,
                Plan::IssueLeaf(LeafReason::Unservable),
            ),
            (
                "serving certificate not yet valid",
                |s| s.leaf.as_mut().unwrap().not_before = NOW + 1,
                false,
                Plan::IssueLeaf(LeafReason::Unservable),
            ),
            (
                "serving certificate from a CA not in the bundle",
                |s| s.leaf.as_mut().unwrap().issuer = vec![9],
                false,
                Plan::IssueLeaf(LeafReason::Unservable),
            ),
            // Rule 5: due, and waits for the caBundle.
            (
                "serving certificate in its last third",
                |s| s.leaf.as_mut().unwrap().not_after = NOW + 30 * DAY - 1,
                true,
                Plan::IssueLeaf(LeafReason::Renewal),
            ),
            (
                "serving certificate just before its last third",
                |s| s.leaf.as_mut().unwrap().not_after = NOW + 30 * DAY + 1,
                true,
                Plan::Keep,
            ),
            (
                "serving certificate in its last third, CA not trusted yet",
                |s| s.leaf.as_mut().unwrap().not_after = NOW + DAY,
                false,
                Plan::AwaitTrust(LeafReason::Renewal),
            ),
            (
                "other names",
                |s| s.leaf.as_mut().unwrap().names = names(&["old.ns.svc"]),
                true,
                Plan::IssueLeaf(LeafReason::Names),
            ),
            (
                "signed by the older CA after a rotation",
                |s| s.cas.insert(0, ca(2, NOW + 365 * DAY)),
                true,
                Plan::IssueLeaf(LeafReason::NewCa),
            ),
            (
                "signed by the older CA, new CA not in the caBundle yet",
                |s| s.cas.insert(0, ca(2, NOW + 365 * DAY)),
                false,
                Plan::AwaitTrust(LeafReason::NewCa),
            ),
            // Rule 6: expired CAs leave the bundle; unexpired older ones stay.
            (
                "an expired older CA",
                |s| s.cas.push(ca(0, NOW)),
                true,
                Plan::Prune,
            ),
            (
                "an older CA not expired yet",
                |s| s.cas.push(ca(0, NOW + 1)),
                true,
                Plan::Keep,
            ),
        ];
        for (name, change, trusted, want) in cases {
            let mut stored = healthy();
            change(&mut stored);
            assert_eq!(plan(Some(&stored), &policy(), trusted, NOW), want, "{name}");
        }
        assert_eq!(plan(None, &policy(), false, NOW), Plan::Create, "no Secret");
    }

    /// A CA and serving certificates issued as the plan asks, followed over two CA lifetimes: the
    /// serving certificate in the Secret is always servable and signed by a CA of the bundle, a
    /// serving certificate from a new CA only ever follows a sync that found it untrusted, and the
    /// bundle never grows past two CAs.
    #[test]
    fn two_ca_lifetimes_keep_a_servable_certificate() {
        let policy = Policy {
            ca_validity: 60,
            cert_validity: 30,
            names: names(&["svc.ns.svc"]),
        };
        let mut next_id = 0u8;
        let mut stored: Option<Stored> = None;
        // What the webhook configuration trusts: the bundle as of the last sync's patch.
        let mut trusted_bundle: Vec<Vec<u8>> = Vec::new();
        let mut ca_rotations = 0;
        for now in NOW..NOW + 200 {
            let first = stored.is_none();
            let trusted = stored
                .as_ref()
                .is_some_and(|s| trusted_bundle.contains(&s.cas[0].subject));
            let issue = |stored: &mut Stored, now: i64| {
                let ca = &stored.cas[0];
                stored.leaf = Some(LeafView {
                    issuer: ca.subject.clone(),
                    not_before: now - 3600,
                    not_after: (now + policy.cert_validity).min(ca.not_after),
                    names: policy.names.clone(),
                });
            };
            match plan(stored.as_ref(), &policy, trusted, now) {
                Plan::Keep | Plan::AwaitTrust(_) => {}
                Plan::Refuse => panic!("ours"),
                Plan::Create => {
                    next_id += 1;
                    let mut s = Stored {
                        ours: true,
                        cas: vec![ca(next_id, now + policy.ca_validity)],
                        signing_key: true,
                        leaf: None,
                    };
                    issue(&mut s, now);
                    stored = Some(s);
                }
                Plan::RotateCa { leaf } => {
                    ca_rotations += 1;
                    next_id += 1;
                    let s = stored.as_mut().unwrap();
                    s.cas.insert(0, ca(next_id, now + policy.ca_validity));
                    if leaf {
                        issue(s, now);
                    }
                }
                Plan::IssueLeaf(reason) => {
                    assert_ne!(reason, LeafReason::Unservable, "at {now}");
                    assert!(trusted, "a certificate from an untrusted CA at {now}");
                    issue(stored.as_mut().unwrap(), now);
                }
                Plan::Prune => {
                    let s = stored.as_mut().unwrap();
                    s.cas.retain(|ca| ca.not_after > now);
                }
            }
            let s = stored.as_ref().unwrap();
            assert!(servable(s, now), "nothing to serve at {now}: {s:?}");
            // A replica may serve what the Secret holds now, before this sync's patch reaches the
            // apiserver: its CA must already have been in the caBundle.
            let issuer = &s.leaf.as_ref().unwrap().issuer;
            assert!(
                first || trusted_bundle.contains(issuer),
                "a certificate from a CA the apiserver does not know yet at {now}"
            );
            assert!(s.cas.len() <= 2, "bundle grew at {now}: {s:?}");
            // The holder patches the caBundle after writing the Secret.
            trusted_bundle = s.cas.iter().map(|ca| ca.subject.clone()).collect();
        }
        assert!(ca_rotations >= 4, "the CA rotated {ca_rotations} times");
    }

    #[test]
    fn policies_that_cannot_work_are_refused() {
        let ok = policy();
        assert!(check_policy(&ok, 10).is_ok());
        let no_names = Policy {
            names: BTreeSet::new(),
            ..ok.clone()
        };
        assert!(
            check_policy(&no_names, 10)
                .unwrap_err()
                .contains("--tls-dns")
        );
        let long_leaf = Policy {
            cert_validity: 200 * DAY,
            ..ok.clone()
        };
        assert!(check_policy(&long_leaf, 10).unwrap_err().contains("half"));
        let short = Policy {
            ca_validity: 120,
            cert_validity: 59,
            ..ok
        };
        assert!(check_policy(&short, 10).unwrap_err().contains("6 times"));
        assert!(check_policy(&short, 9).is_ok());
    }
}
