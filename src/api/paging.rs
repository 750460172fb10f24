//! Opaque `nextToken`s for ListFargateProfiles: the last name returned, authenticated with an HMAC
//! keyed by the cluster, so that a token this server never issued is refused (400) instead of being
//! trusted. Tokens do not expire and survive restarts; a page starts after the name in the token,
//! so profiles deleted meanwhile do not break paging.

use base64::prelude::{BASE64_URL_SAFE_NO_PAD, Engine};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";
const MAC_LEN: usize = 12;

#[derive(Clone)]
pub struct PageTokens {
    key: [u8; 32],
}

impl PageTokens {
    /// `scope` names the cluster (its ARN): tokens of one cluster are not valid for another.
    pub fn new(scope: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"fargate-webhook list-fargate-profiles nextToken\n");
        hasher.update(scope.as_bytes());
        PageTokens {
            key: hasher.finalize().into(),
        }
    }

    fn mac(&self, last: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(VERSION.as_bytes());
        mac.update(b"\n");
        mac.update(last.as_bytes());
        mac
    }

    /// A token that resumes after `last`.
    pub fn issue(&self, last: &str) -> String {
        let tag = self.mac(last).finalize().into_bytes();
        format!(
            "{VERSION}.{}.{}",
            BASE64_URL_SAFE_NO_PAD.encode(last.as_bytes()),
            BASE64_URL_SAFE_NO_PAD.encode(&tag[..MAC_LEN])
        )
    }

    /// The name a token resumes after, or `None` when this server did not issue it.
    pub fn open(&self, token: &str) -> Option<String> {
        let mut parts = token.split('.');
        let (Some(VERSION), Some(name), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return None;
        };
        let name = String::from_utf8(BASE64_URL_SAFE_NO_PAD.decode(name).ok()?).ok()?;
        let tag = BASE64_URL_SAFE_NO_PAD.decode(tag).ok()?;
        if tag.len() != MAC_LEN {
            return None;
        }
        self.mac(&name).verify_truncated_left(&tag).ok()?;
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_forgeries_fail() {
        let tokens = PageTokens::new("arn:aws:eks:us-west-2:012345678910:cluster/fargate");
        let t = tokens.issue("profile-7");
        assert_eq!(tokens.open(&t).as_deref(), Some("profile-7"));
        assert_eq!(tokens.open("garbage"), None);
        assert_eq!(tokens.open(""), None);
        let forged = format!(
            "v1.{}.{}",
            BASE64_URL_SAFE_NO_PAD.encode("profile-8"),
            t.rsplit('.').next().unwrap()
        );
        assert_eq!(tokens.open(&forged), None);
        let other = PageTokens::new("arn:aws:eks:us-west-2:012345678910:cluster/other");
        assert_eq!(other.open(&t), None);
    }
}
