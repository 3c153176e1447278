//! Globs on certbot lineage names, for `[[peers]] lineages` (which lineages the primary sends to
//! a peer) and a node's own `[[deploy]] lineages` (which actions run). A 20-line matcher
//! instead of a crate: only `*` (any run of characters, dots included) and `?` (one character)
//! are special, the pattern must match the whole name, and a lineage name has no path
//! separators to treat apart, so `globset`'s path semantics, classes and alternations would
//! only add ways to write a list that means something else.

use crate::text::printable;

/// Longest pattern accepted: a lineage name (253 characters and `-NNNN`) and then some.
pub const MAX_PATTERN_LEN: usize = 300;

/// Why a pattern was refused. Carries a printable (escaped, shortened) copy of the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{shown} is not a lineage pattern: expected a lineage name in lower case (a-z 0-9 . -), where * matches any run of characters and ? one, e.g. \"example.com\" or \"*.example.org\"")]
pub struct PatternError {
    /// The offending value, escaped and shortened so it is safe to print on one line.
    pub shown: String,
}

/// A validated glob over lineage names: lower-case letters, digits, `.`, `-`, `*` and `?`.
/// Upper case is refused rather than never matching (certbot's lineage names are lower case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineagePattern(String);

impl LineagePattern {
    /// Validates a pattern.
    pub fn parse(s: &str) -> Result<Self, PatternError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_PATTERN_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-*?".contains(&b));
        if !ok {
            return Err(PatternError {
                shown: printable(s),
            });
        }
        Ok(LineagePattern(s.to_owned()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern matches the whole of `name`.
    pub fn matches(&self, name: &str) -> bool {
        let (p, n) = (self.0.as_bytes(), name.as_bytes());
        // Iterative wildcard match: on a mismatch, go back to the last `*` and let it take one
        // more character. Linear in practice, never exponential.
        let (mut pi, mut ni) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ni < n.len() {
            match p.get(pi) {
                Some(b'*') => {
                    star = Some((pi, ni));
                    pi += 1;
                }
                Some(&c) if c == b'?' || c == n[ni] => {
                    pi += 1;
                    ni += 1;
                }
                _ => match star {
                    Some((sp, sn)) => {
                        pi = sp + 1;
                        ni = sn + 1;
                        star = Some((sp, sn + 1));
                    }
                    None => return false,
                },
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        LineagePattern::parse(p).unwrap().matches(n)
    }

    #[test]
    fn whole_name_matches() {
        assert!(m("example.com", "example.com"));
        assert!(!m("example.com", "www.example.com"));
        assert!(!m("example.com", "example.com-0001"));
        assert!(!m("example.co", "example.com"));
        assert!(!m("example.comm", "example.com"));
    }

    #[test]
    fn star_and_question_mark() {
        assert!(m("*.example.org", "www.example.org"));
        assert!(m("*.example.org", "a.b.example.org"), "* crosses dots");
        assert!(!m("*.example.org", "example.org"));
        assert!(m("example.org*", "example.org-0001"));
        assert!(m("*", "anything.test"));
        assert!(m("**", "x"));
        assert!(m("a*b*c", "axxbyyc"));
        assert!(!m("a*b*c", "axxbyy"));
        assert!(m("*a*a*a", "aaaa"));
        assert!(m("site.te?t", "site.test"));
        assert!(!m("site.te?t", "site.tet"));
        assert!(!m("?", ""));
        assert!(m("example.com-????", "example.com-0001"));
        assert!(!m("example.com-????", "example.com-001"));
    }

    #[test]
    fn star_does_not_backtrack_exponentially() {
        let name = "a".repeat(250);
        let pattern = format!("{}b", "*a".repeat(40));
        let start = std::time::Instant::now();
        assert!(!m(&pattern, &name));
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn bad_patterns_are_refused_with_the_value() {
        for bad in [
            "",
            "a/b",
            "../x",
            "Example.com",
            "[ab].com",
            "{a,b}.com",
            "a b",
            "a\\*",
            "é.com",
            "x\n",
        ] {
            let e = LineagePattern::parse(bad).unwrap_err();
            assert!(!e.to_string().contains('\n'), "{bad:?}: {e}");
            assert_eq!(e.shown, printable(bad), "{bad:?}");
        }
        assert!(LineagePattern::parse(&"a".repeat(MAX_PATTERN_LEN + 1)).is_err());
    }
}
