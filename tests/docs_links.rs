//! The docs stay true to the tree and to the binary (issue 22): README.md and every docs/*.md
//! (whatever files docs/ holds, new ones included) have no dead relative link — the file must
//! exist and a `#fragment` into a Markdown file must name one of its headings — and every
//! `--flag` they show on a `certherd …` command line, or on its own as an inline code span,
//! is an option of `certherd` or of one of its subcommands, as `--help` prints them (the
//! cargo-built binary). Flags of other programs the docs name (certbot's, ssh's, …) are listed
//! in `FOREIGN` below, so a renamed or removed certherd flag cannot hide among them.
//!
//! No bed needed: this reads files and runs `certherd … --help`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Flags of other programs that the docs name in inline code spans on their own.
const FOREIGN: &[&str] = &[
    // certbot
    "--apache",
    "--cert-name",
    "--deploy-hook",
    "--dry-run",
    "--force-renewal",
    "--ip-address",
    "--manual",
    "--manual-auth-hook",
    "--manual-cleanup-hook",
    "--post-hook",
    "--nginx",
    "--pre-hook",
    "--preferred-challenges",
    "--staging",
    "--webroot",
    "--work-dir",
    "--logs-dir",
    // cargo, dpkg, systemctl
    "--features",
    "--path",
    "--purge",
    "--now",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// README.md and every Markdown file in docs/.
fn documents() -> Vec<PathBuf> {
    let mut docs = vec![root().join("README.md")];
    let mut more: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ is readable")
        .map(|e| e.expect("a docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lines with their 1-based numbers.
type Numbered<'a> = Vec<(usize, &'a str)>;

/// The lines outside fenced code blocks, and the lines inside them.
fn split_fences(text: &str) -> (Numbered<'_>, Numbered<'_>) {
    let (mut prose, mut code) = (Vec::new(), Vec::new());
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if fenced {
            code.push((i + 1, line));
        } else {
            prose.push((i + 1, line));
        }
    }
    (prose, code)
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(text: &str) -> BTreeSet<String> {
    split_fences(text)
        .0
        .into_iter()
        .filter_map(|(_, l)| l.strip_prefix('#'))
        .map(|l| slug(l.trim_start_matches('#')))
        .collect()
}

/// Every `](target)` of the prose lines.
fn links(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in split_fences(text).0 {
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let tail = &rest[at + 2..];
            let end = tail.find(')').unwrap_or(tail.len());
            found.push((n, tail[..end].to_owned()));
            rest = &tail[end..];
        }
    }
    found
}

/// What is wrong with one link target, if anything.
fn dead(doc: &Path, target: &str) -> Option<String> {
    if target.contains("://") || target.starts_with("mailto:") {
        return None;
    }
    let (file, fragment) = match target.split_once('#') {
        Some((f, a)) => (f, Some(a)),
        None => (target, None),
    };
    let path = if file.is_empty() {
        doc.to_path_buf()
    } else {
        doc.parent().unwrap().join(file)
    };
    if !path.exists() {
        return Some(format!("{} does not exist", path.display()));
    }
    match fragment {
        Some(a) if path.extension().is_some_and(|x| x == "md") => (!anchors(&read(&path))
            .contains(a))
        .then(|| format!("{} has no heading whose anchor is #{a}", path.display())),
        _ => None,
    }
}

#[test]
fn no_dead_relative_link_in_the_docs() {
    let mut bad = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = read(&doc);
        for (n, target) in links(&text) {
            checked += 1;
            if let Some(why) = dead(&doc, &target) {
                bad.push(format!("{}:{n}: ({target}): {why}", doc.display()));
            }
        }
    }
    assert!(
        checked > 10,
        "found only {checked} links: is the parser broken?"
    );
    assert!(bad.is_empty(), "dead links:\n{}", bad.join("\n"));
}

fn help(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_certherd"))
        .args(args)
        .arg("--help")
        .output()
        .expect("run certherd --help");
    assert!(
        out.status.success(),
        "certherd {args:?} --help: {:?}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 help")
}

/// The long options of `certherd` and of every subcommand, as their `--help` lists them.
fn certherd_flags() -> BTreeSet<String> {
    let top = help(&[]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 10, "subcommands from --help: {commands:?}");
    let mut flags = BTreeSet::new();
    for text in std::iter::once(top).chain(commands.iter().map(|c| help(&[c]))) {
        for line in text.lines() {
            // An option line: "  -q, --quiet  …" or "      --format <FORMAT>  …".
            let l = line.trim_start();
            let l = match l.split_once(", ") {
                Some((short, long)) if short.len() == 2 && short.starts_with('-') => long,
                _ => l,
            };
            if let Some(flag) = long_flag(l) {
                flags.insert(flag);
            }
        }
    }
    flags
}

/// The long option `text` starts with (`--format` of `--format=json,`), if it starts with one.
fn long_flag(text: &str) -> Option<String> {
    let name: String = text
        .strip_prefix("--")?
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    (!name.is_empty()).then(|| format!("--{name}"))
}

/// Inline code spans of the prose lines.
fn spans(line: &str) -> Vec<&str> {
    line.split('`').skip(1).step_by(2).collect()
}

/// The `--flags` after each `certherd ` in `text`, up to where that command line ends (a quote,
/// a pipe, a comment, a redirect, `--` handing the rest to certbot).
fn flags_on_certherd_lines(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("certherd ") {
        let before = &rest[..at];
        rest = &rest[at + "certherd ".len()..];
        // A word of its own, or the binary's path (`/usr/bin/certherd agent`), not a directory
        // (`/var/lib/certherd`) or an account (`-o certherd`) that happens to end there.
        let last = before.chars().last();
        if last.is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_' || c == '/')
            && !before.ends_with("bin/")
        {
            continue;
        }
        let end = rest
            .find(['\'', '"', '\\', '|', ';', '#', '>', ')', '&'])
            .unwrap_or(rest.len());
        for word in rest[..end].split_whitespace() {
            let word = word.trim_start_matches('[');
            if word == "--" {
                break;
            }
            found.extend(long_flag(word));
        }
    }
    found
}

/// Every flag the docs show for certherd, and every flag an inline span names on its own.
fn flags_named(text: &str) -> Vec<(usize, String, bool)> {
    let (prose, code) = split_fences(text);
    let mut named = Vec::new();
    for (n, line) in code {
        named.extend(
            flags_on_certherd_lines(line)
                .into_iter()
                .map(|f| (n, f, true)),
        );
    }
    for (n, line) in prose {
        for span in spans(line) {
            named.extend(
                flags_on_certherd_lines(span)
                    .into_iter()
                    .map(|f| (n, f, true)),
            );
            if let Some(flag) = long_flag(span) {
                named.push((n, flag, false));
            }
        }
    }
    named
}

#[test]
fn every_flag_the_docs_name_exists_in_certherd_help() {
    let known = certherd_flags();
    for f in [
        "--config", "--format", "--warn", "--crit", "--jitter", "--settle",
    ] {
        assert!(known.contains(f), "{f} not found in --help: {known:?}");
    }
    let mut bad = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        for (n, flag, on_certherd_line) in flags_named(&read(&doc)) {
            checked += 1;
            let ok = known.contains(&flag) || (!on_certherd_line && FOREIGN.contains(&&*flag));
            if !ok {
                let what = if on_certherd_line {
                    "on a certherd command line"
                } else {
                    "on its own"
                };
                bad.push(format!("{}:{n}: {flag} ({what})", doc.display()));
            }
        }
    }
    assert!(
        checked > 20,
        "found only {checked} flags: is the parser broken?"
    );
    assert!(
        bad.is_empty(),
        "flags the docs name that no `certherd … --help` lists (a certbot flag? add it to FOREIGN):\n{}",
        bad.join("\n")
    );
}
