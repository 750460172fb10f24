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

/// Length of the UTF-8 character that starts with `first` (ASCII, and a continuation byte, which
/// never starts a character of a `&str`, count one).
#[inline]
fn utf8_len(first: u8) -> usize {
    match first {
        0xF0.. => 4,
        0xE0.. => 3,
        0xC0.. => 2,
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_cases_with_every_character_width() {
        // (pattern, text, matches): `?` is one character of 1, 2, 3 or 4 bytes; `*` backtracks
        // over characters of every width, also from a position past the start.
        let cases = [
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("a?c", "aéc", true),
            ("a?c", "a€c", true),
            ("a?c", "a😀c", true),
            ("a??c", "a€c", false),
            ("x*z", "xabz", true),
            ("x*z", "xéz", true),
            ("x*z", "x€€z", true),
            ("x*z", "x😀😀z", true),
            ("x*z", "x€€y", false),
            ("*€", "ab€", true),
            ("a*b*c", "a€€b😀c", true),
            ("a*b*c", "a€€b😀", false),
            ("?", "", false),
            ("*", "", true),
            ("", "a", false),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(
                glob_match(pattern, text),
                expected,
                "{pattern:?} vs {text:?}"
            );
        }
        assert_eq!(
            ["a", "é", "€", "😀"].map(|c| utf8_len(c.as_bytes()[0])),
            [1, 2, 3, 4]
        );
    }

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
