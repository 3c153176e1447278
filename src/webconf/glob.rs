//! Shell-style globs in `include` paths, as nginx (`glob(3)`) and Apache (`apr_fnmatch`) expand
//! them: `*`, `?` and `[…]` classes (`[!…]` or `[^…]` negated, `a-z` ranges) in any component,
//! never matching a leading `.`, results in name order. [`crate::pattern`] is for lineage names
//! (lower case, no classes), so this has its own small matcher.

use std::path::{Component, Path, PathBuf};

/// Whether a path (or one component) has a glob character.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// One element of a pattern.
#[derive(Debug)]
enum Item {
    Star,
    Any,
    Char(char),
    /// Negated?, then (from, to) ranges.
    Class(bool, Vec<(char, char)>),
}

fn compile(pattern: &str) -> Vec<Item> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push(Item::Star),
            '?' => out.push(Item::Any),
            '[' => {
                // A class runs to the next `]` that is not its first member; without one the
                // `[` is an ordinary character (as in fnmatch).
                let mut j = i + 1;
                let negated = matches!(chars.get(j), Some('!' | '^'));
                if negated {
                    j += 1;
                }
                let start = j;
                let mut ranges = Vec::new();
                while j < chars.len() && (chars[j] != ']' || j == start) {
                    if chars.get(j + 1) == Some(&'-') && chars.get(j + 2).is_some_and(|&c| c != ']')
                    {
                        ranges.push((chars[j], chars[j + 2]));
                        j += 3;
                    } else {
                        ranges.push((chars[j], chars[j]));
                        j += 1;
                    }
                }
                if j < chars.len() {
                    out.push(Item::Class(negated, ranges));
                    i = j;
                } else {
                    out.push(Item::Char('['));
                }
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                out.push(Item::Char(chars[i]));
            }
            c => out.push(Item::Char(c)),
        }
        i += 1;
    }
    out
}

/// Whether the glob `pattern` matches all of the file name `name` (a leading `.` only by a
/// literal `.`).
pub fn matches(pattern: &str, name: &str) -> bool {
    let p = compile(pattern);
    let n: Vec<char> = name.chars().collect();
    if n.first() == Some(&'.') && !matches!(p.first(), Some(Item::Char('.'))) {
        return false;
    }
    let one = |item: &Item, c: char| match item {
        Item::Any => true,
        Item::Char(x) => *x == c,
        Item::Class(neg, ranges) => ranges.iter().any(|&(a, b)| a <= c && c <= b) != *neg,
        Item::Star => false,
    };
    // Iterative wildcard match: on a mismatch, go back to the last `*` and let it take one more
    // character. Linear in practice, never exponential.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some(Item::Star) => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(item) if one(item, n[ni]) => {
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
    p[pi..].iter().all(|i| matches!(i, Item::Star))
}

/// What a glob expanded to.
#[derive(Debug, Default)]
pub struct Expansion {
    /// Matching paths, in name order per directory (logical paths, as the server names them).
    pub matches: Vec<PathBuf>,
    /// Directories that were listed: whoever may write one may add a match.
    pub listed: Vec<PathBuf>,
    /// More than the limit matched: the rest was not looked at.
    pub truncated: bool,
}

/// Expands `pattern` (absolute, logical) by listing directories at `real(dir)`; at most `limit`
/// paths are kept at any step.
pub fn expand(pattern: &Path, real: &dyn Fn(&Path) -> PathBuf, limit: usize) -> Expansion {
    let mut out = Expansion::default();
    let mut candidates = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy();
        if matches!(component, Component::Normal(_)) && is_glob(&part) {
            let mut next = Vec::new();
            for dir in &candidates {
                out.listed.push(dir.clone());
                let Ok(entries) = std::fs::read_dir(real(dir)) else {
                    continue;
                };
                let mut names: Vec<String> = entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| matches(&part, n))
                    .collect();
                names.sort();
                for name in names {
                    if next.len() >= limit {
                        out.truncated = true;
                        break;
                    }
                    next.push(dir.join(name));
                }
            }
            candidates = next;
        } else {
            for c in &mut candidates {
                c.push(component.as_os_str());
            }
        }
    }
    out.matches = candidates;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_classes_and_leading_dots() {
        assert!(matches("*.conf", "default.conf"));
        assert!(!matches("*.conf", "default.conf~"));
        assert!(!matches("*", ".hidden"));
        assert!(matches(".*", ".hidden"));
        assert!(matches("?", "a") && !matches("?", "ab"));
        assert!(matches("[a-c]*.load", "b1.load") && !matches("[a-c]*.load", "d.load"));
        assert!(matches("[!a]x", "bx") && !matches("[^a]x", "ax"));
        assert!(matches("a*b*c", "aXbYbZc") && !matches("a*b*c", "aXbY"));
        assert!(matches("[]]", "]") && matches("[x", "[x"));
        assert!(matches("*", "sites-enabled"));
    }

    #[test]
    fn expands_in_directory_components_in_name_order() {
        let root = crate::scratch::scratch("glob");
        for f in [
            "a/x/1.conf",
            "a/y/2.conf",
            "a/y/1.conf",
            "a/y/.3.conf",
            "a/z.conf",
        ] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, "").unwrap();
        }
        let real = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
        let e = expand(Path::new("/a/*/*.conf"), &real, 100);
        assert_eq!(
            e.matches,
            ["/a/x/1.conf", "/a/y/1.conf", "/a/y/2.conf"]
                .iter()
                .map(PathBuf::from)
                .collect::<Vec<_>>()
        );
        assert!(e.listed.contains(&PathBuf::from("/a")));
        assert!(e.listed.contains(&PathBuf::from("/a/y")));
        let e = expand(Path::new("/a/y/*.conf"), &real, 1);
        assert!(e.truncated && e.matches.len() == 1);
    }
}
