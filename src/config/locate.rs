//! Where in a config file's text an error is: the line of a byte offset, and the dotted key path
//! (`ssh.connect_timeout`, `peers[1].http`) of the key or value there — and back, the line of a
//! key path. The toml crate's error carries only a byte span, and serde's message names the
//! value (`integer 5`), not the key a user has to find; so the text is parsed once more, with
//! `toml_edit` (the parser the toml crate itself uses, which keeps every key's and value's span),
//! and the most specific key whose key or value covers the offset is taken.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

/// The 1-based line of byte `offset` in `text` (an offset past the end counts as the last line).
pub fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The dotted key path at byte `offset`, when the text parses as TOML and a key or value covers
/// it (an error in a section header gives the section's path).
pub fn path_at(text: &str, offset: usize) -> Option<String> {
    entries(text)?
        .into_iter()
        .filter(|e| e.spans.iter().any(|s| covers(s, offset)))
        .max_by_key(|e| e.depth)
        .map(|e| e.path)
}

/// The 1-based line where `path` (as [`path_at`] spells it) is set, when it is in the text.
pub fn line_of_path(text: &str, path: &str) -> Option<usize> {
    let entry = entries(text)?.into_iter().find(|e| e.path == path)?;
    let start = entry.spans.iter().map(|s| s.start).min()?;
    Some(line_of(text, start))
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.contains(&offset) || (span.is_empty() && span.start == offset)
}

/// One key (or array element) with its path, nesting depth and the spans of its key and value.
struct Entry {
    path: String,
    depth: usize,
    spans: Vec<Range<usize>>,
}

fn entries(text: &str) -> Option<Vec<Entry>> {
    let doc = ImDocument::parse(text).ok()?;
    let mut out = Vec::new();
    table(doc.as_table(), "", 0, &mut out);
    Some(out)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// Records one entry; its spans are those of its key and its value or header, when known.
fn push(out: &mut Vec<Entry>, path: &str, depth: usize, spans: [Option<Range<usize>>; 2]) {
    out.push(Entry {
        path: path.to_owned(),
        depth,
        spans: spans.into_iter().flatten().collect(),
    });
}

fn table(t: &Table, prefix: &str, depth: usize, out: &mut Vec<Entry>) {
    for (key, item) in t.iter() {
        let path = join(prefix, key);
        let key_span = t.key(key).and_then(|k| k.span());
        match item {
            Item::Value(v) => {
                push(out, &path, depth + 1, [key_span, v.span()]);
                value(v, &path, depth + 1, out);
            }
            Item::Table(sub) => {
                push(out, &path, depth + 1, [key_span, sub.span()]);
                table(sub, &path, depth + 1, out);
            }
            Item::ArrayOfTables(array) => {
                push(out, &path, depth + 1, [key_span, None]);
                for (i, sub) in array.iter().enumerate() {
                    let path = format!("{path}[{i}]");
                    push(out, &path, depth + 2, [sub.span(), None]);
                    table(sub, &path, depth + 2, out);
                }
            }
            Item::None => {}
        }
    }
}

fn value(v: &Value, path: &str, depth: usize, out: &mut Vec<Entry>) {
    match v {
        Value::Array(array) => {
            for (i, element) in array.iter().enumerate() {
                let path = format!("{path}[{i}]");
                push(out, &path, depth + 1, [element.span(), None]);
                value(element, &path, depth + 1, out);
            }
        }
        Value::InlineTable(t) => {
            for (key, element) in t.iter() {
                let path = join(path, key);
                let key_span = t.key(key).and_then(|k| k.span());
                push(out, &path, depth + 1, [key_span, element.span()]);
                value(element, &path, depth + 1, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "name = \"a\"\n\n[ssh]\nuser = \"u\"\nconnect_timeout = 5\n\n[[peers]]\nname = \"b\"\nhost = \"h\"\n\n[[peers]]\nname = \"c\"\nhttp = \"x\"\n";

    #[test]
    fn paths_and_lines() {
        let at = |needle: &str| TEXT.find(needle).unwrap();
        assert_eq!(
            path_at(TEXT, at("5\n")).as_deref(),
            Some("ssh.connect_timeout")
        );
        assert_eq!(line_of(TEXT, at("5\n")), 5);
        assert_eq!(path_at(TEXT, at("\"x\"")).as_deref(), Some("peers[1].http"));
        assert_eq!(path_at(TEXT, at("user")).as_deref(), Some("ssh.user"));
        assert_eq!(line_of_path(TEXT, "peers[1].http"), Some(13));
        assert_eq!(line_of_path(TEXT, "ssh.connect_timeout"), Some(5));
        assert_eq!(line_of_path(TEXT, "nope"), None);
        assert_eq!(path_at("a = [", 3), None);
    }
}
