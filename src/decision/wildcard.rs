//! EKS selector wildcards: `*` is zero or more characters, `?` exactly one; everything else is
//! literal and case-sensitive. No regex, so a hand-written matcher is both simpler and faster than
//! pulling in a glob crate with a richer (and therefore different) syntax.

/// A compiled namespace, label key or label value pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pattern {
    /// No wildcard: plain string equality.
    Exact(Box<str>),
    Glob(Box<str>),
}

impl Pattern {
    pub fn new(text: &str) -> Self {
        if text.contains(['*', '?']) {
            Pattern::Glob(text.into())
        } else {
            Pattern::Exact(text.into())
        }
    }

    pub fn is_exact(&self) -> bool {
        matches!(self, Pattern::Exact(_))
    }

    pub fn as_str(&self) -> &str {
        match self {
            Pattern::Exact(s) | Pattern::Glob(s) => s,
        }
    }

    #[inline]
    pub fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Exact(s) => &**s == text,
            Pattern::Glob(p) => glob_match(p, text),
        }
    }
}

/// Greedy matcher with one backtrack point (the last `*`): linear in practice, never exponential.
/// `?` consumes one character (not one byte), so it is right for non-ASCII label values too.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: &[u8] = pattern.as_bytes();
    let t: &[u8] = text.as_bytes();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'?' {
            pi += 1;
            ti += utf8_len(t[ti]);
        } else if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            star = Some((pi, ti));
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((star_p, star_t)) = star {
            // Let the last `*` swallow one more character and retry from there.
            let next_t = star_t + utf8_len(t[star_t]);
            star = Some((star_p, next_t));
            pi = star_p;
            ti = next_t;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

#[inline]
fn utf8_len(first: u8) -> usize {
    match first {
        0x00..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xFF => 4,
        // A continuation byte cannot start a character in valid UTF-8 (we only see &str).
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("default", "default", true),
            ("default", "defaults", false),
            ("Default", "default", false),
            ("prod*", "prod", true),
            ("prod*", "production", true),
            ("prod*", "pro", false),
            ("*-dev", "team-dev", true),
            ("*-dev", "team-dev2", false),
            ("*-dev", "-dev", true),
            ("team-?", "team-a", true),
            ("team-?", "team-", false),
            ("team-?", "team-ab", false),
            ("?", "é", true),
            ("??", "é", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("*", "", true),
            ("**", "anything", true),
            ("*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false),
            ("p?o*d", "prod", true),
            ("p?o*d", "pod", false),
            ("", "", true),
            ("", "x", false),
            ("a.b", "aXb", false),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(
                Pattern::new(pattern).matches(text),
                *want,
                "pattern {pattern:?} on {text:?}"
            );
        }
    }

    #[test]
    fn exact_patterns_are_recognised() {
        assert!(Pattern::new("kube-system").is_exact());
        assert!(!Pattern::new("kube-*").is_exact());
        assert!(!Pattern::new("team-?").is_exact());
    }
}
