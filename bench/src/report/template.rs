//! A tiny template language for the report, so its prose lives in `bench/report-template.md`
//! (readable and editable as Markdown) and the code only computes figures and tables.
//!
//! - `{{name}}` is replaced by the value of `name`.
//! - A line that names a value set to *none* is left out: a sentence whose figure was not
//!   measured is not printed (rather than printed with a dash).
//! - `{{#name}}` … `{{/name}}` on lines of their own keep the lines between them only when
//!   `name` has a value.
//! - A name that was never set is an error, so a typo in the template cannot silently drop text.
//!
//! Runs of blank lines (left by dropped lines) are collapsed to one.

use std::collections::BTreeMap;

/// The values for one fill: each name is either a text or deliberately none.
#[derive(Default)]
pub(crate) struct Values(BTreeMap<String, Option<String>>);

impl Values {
    /// Sets `name` to `value`.
    pub(crate) fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_owned(), Some(value.into()));
    }

    /// Sets `name` to `value` or to none (lines naming it are left out).
    pub(crate) fn opt(&mut self, name: &str, value: Option<String>) {
        self.0.insert(name.to_owned(), value);
    }

    /// Sets `name` when `cond` holds (to an empty text), to none otherwise: a switch for a line
    /// or a block.
    pub(crate) fn flag(&mut self, name: &str, cond: bool) {
        self.opt(name, cond.then(String::new));
    }

    /// Sets `name` to `text`, or to none when `text` is empty: a block shown only with content.
    pub(crate) fn block(&mut self, name: &str, text: String) {
        self.opt(name, (!text.trim().is_empty()).then_some(text));
    }

    fn get(&self, name: &str) -> Result<Option<&str>, String> {
        self.0
            .get(name)
            .map(|v| v.as_deref())
            .ok_or_else(|| format!("report template: no value named {name:?}"))
    }
}

/// Fills `template` with `values` (see the module doc for the rules).
pub(crate) fn fill(template: &str, values: &Values) -> Result<String, String> {
    let mut out = String::new();
    // One entry per open block: whether its lines are kept.
    let mut blocks: Vec<(String, bool)> = Vec::new();
    for (i, line) in template.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(name) = block_tag(trimmed, "{{#") {
            let keep = values.get(name)?.is_some();
            blocks.push((name.to_owned(), keep));
            continue;
        }
        if let Some(name) = block_tag(trimmed, "{{/") {
            match blocks.pop() {
                Some((open, _)) if open == name => continue,
                _ => return Err(format!("report template line {}: stray {trimmed}", i + 1)),
            }
        }
        if blocks.iter().any(|(_, keep)| !keep) {
            continue;
        }
        if let Some(filled) = fill_line(line, values)? {
            out.push_str(&filled);
            out.push('\n');
        }
    }
    if let Some((open, _)) = blocks.pop() {
        return Err(format!("report template: {{{{#{open}}}}} is never closed"));
    }
    Ok(collapse_blank_lines(&out))
}

/// `name` when `line` is exactly `{{#name}}` / `{{/name}}` (per `open`).
fn block_tag<'a>(line: &'a str, open: &str) -> Option<&'a str> {
    line.strip_prefix(open)?.strip_suffix("}}")
}

/// The line with its placeholders replaced, or `None` when one of them is none.
fn fill_line(line: &str, values: &Values) -> Result<Option<String>, String> {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start + 2..].find("}}") else {
            break;
        };
        out.push_str(&rest[..start]);
        let name = &rest[start + 2..start + 2 + len];
        match values.get(name)? {
            Some(v) => out.push_str(v),
            None => return Ok(None),
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

fn collapse_blank_lines(text: &str) -> String {
    let mut out = String::new();
    let mut blank = false;
    for line in text.lines() {
        let is_blank = line.trim().is_empty();
        if is_blank && blank {
            continue;
        }
        blank = is_blank;
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_lines_and_blocks() {
        let mut v = Values::default();
        v.set("a", "1");
        v.opt("gone", None);
        v.flag("on", true);
        v.flag("off", false);
        let t = "x {{a}} y\nonly {{gone}}\n\n\n{{#on}}\nkept {{a}}\n{{/on}}\n{{#off}}\ndropped\n{{/off}}\nend";
        assert_eq!(fill(t, &v).unwrap(), "x 1 y\n\nkept 1\nend\n");
    }

    #[test]
    fn unknown_names_and_stray_tags_are_errors() {
        let v = Values::default();
        assert!(fill("{{typo}}", &v).unwrap_err().contains("typo"));
        assert!(fill("{{/x}}", &v).is_err());
        let mut v = Values::default();
        v.flag("x", true);
        assert!(fill("{{#x}}\nopen", &v).is_err());
    }

    #[test]
    fn the_report_template_has_balanced_blocks() {
        let t = include_str!("../../report-template.md");
        let opens = t.matches("{{#").count();
        assert_eq!(opens, t.matches("{{/").count());
    }
}
