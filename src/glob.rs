//! Globs on lineage names, as a node's own config writes them (`lineages = ["example.com",
//! "*.example.org"]`): `*` stands for any run of characters, dots included, every other
//! character matches itself. Lineage names are lower-case domains with an optional `-NNNN`
//! suffix, so a glob may only hold those characters and `*`; anything else (upper case, `?`,
//! `[`, a slash) is refused when the config is loaded rather than silently never matching.

use crate::names::LineageName;

/// A validated glob on lineage names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineageGlob(String);

/// Why a glob was refused; names the value and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} is not a lineage glob: expected a lineage name in lower case, `*` for any characters \
     (e.g. \"example.com\", \"*.example.org\", \"*\")",
    crate::text::printable(.0)
)]
pub struct GlobError(pub String);

/// Longest glob accepted (a domain name's limit plus a `-NNNN` suffix and a margin).
const MAX_LEN: usize = 300;

impl LineageGlob {
    /// Validates a glob.
    pub fn parse(s: &str) -> Result<Self, GlobError> {
        let ok = !s.is_empty()
            && s.len() <= MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-*".contains(&b));
        if ok {
            Ok(LineageGlob(s.to_owned()))
        } else {
            Err(GlobError(s.to_owned()))
        }
    }

    /// The glob as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the whole lineage name matches.
    pub fn matches(&self, lineage: &LineageName) -> bool {
        matches(self.0.as_bytes(), lineage.as_str().as_bytes())
    }
}

/// Iterative wildcard match with one backtrack point (linear in practice, never exponential):
/// on a mismatch after a `*`, that `*` takes one more character.
fn matches(glob: &[u8], name: &[u8]) -> bool {
    let (mut g, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if g < glob.len() && glob[g] == b'*' {
            star = Some((g, n));
            g += 1;
        } else if g < glob.len() && glob[g] == name[n] {
            g += 1;
            n += 1;
        } else if let Some((sg, sn)) = star {
            g = sg + 1;
            n = sn + 1;
            star = Some((sg, sn + 1));
        } else {
            return false;
        }
    }
    glob[g..].iter().all(|&b| b == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(glob: &str, name: &str) -> bool {
        LineageGlob::parse(glob)
            .unwrap()
            .matches(&LineageName::parse(name).unwrap())
    }

    #[test]
    fn globs_match_whole_names() {
        assert!(m("example.com", "example.com"));
        assert!(!m("example.com", "example.com-0001"));
        assert!(!m("example.com", "www.example.com"));
        assert!(m("*.example.org", "www.example.org"));
        assert!(m("*.example.org", "a.b.example.org"));
        assert!(!m("*.example.org", "example.org"));
        assert!(!m("*.example.org", "example.org.evil.test"));
        assert!(m("example.com*", "example.com-0001"));
        assert!(m("*", "anything.test"));
        assert!(m("a*b*c.test", "aXbYc.test".to_ascii_lowercase().as_str()));
        assert!(!m("a*b*c.test", "ac.test"));
    }

    #[test]
    fn bad_globs_are_refused_naming_the_value() {
        for bad in [
            "",
            "Example.com",
            "a/b",
            "ex?mple.com",
            "[a].com",
            "a b",
            "x\n",
        ] {
            let e = LineageGlob::parse(bad).unwrap_err().to_string();
            assert!(e.contains("not a lineage glob"), "{bad:?}: {e}");
        }
    }
}
