//! Apache httpd's config syntax, just enough to find the directives that make root read a file:
//! one directive per line, a trailing backslash continues it on the next, a line whose first
//! non-blank character is `#` is a comment (a `#` later on a line is not), section tags
//! (`<IfModule …>`, `</VirtualHost>`) are skipped — their contents count, whatever the
//! condition — and arguments are split like `ap_getword_conf`: white space, or `"…"` / `'…'`
//! with a backslash-escaped quote inside. Directive names are case-insensitive: they come back
//! lower-cased.

use super::Directive;

/// Every directive of `text`, in order, with the line it starts on.
pub fn directives(text: &str) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut pending = String::new();
    let mut first_line = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            first_line = i + 1;
        }
        // A backslash as the line's last character joins the next line to it.
        if let Some(joined) = raw.strip_suffix('\\') {
            pending.push_str(joined);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let line = std::mem::take(&mut pending);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('<') {
            continue;
        }
        let mut words = words(line).into_iter();
        if let Some(name) = words.next() {
            out.push(Directive {
                name: name.to_ascii_lowercase(),
                args: words.collect(),
                line: first_line,
            });
        }
    }
    out
}

/// A line's words: unquoted runs of non-blank characters, or quoted strings (the quotes
/// removed, `\"` inside a `"…"` kept as `"`).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut word = String::new();
        if c == '"' || c == '\'' {
            chars.next();
            while let Some(q) = chars.next() {
                if q == '\\' && chars.peek() == Some(&c) {
                    word.push(c);
                    chars.next();
                } else if q == c {
                    break;
                } else {
                    word.push(q);
                }
            }
        } else {
            while let Some(&w) = chars.peek() {
                if w.is_whitespace() {
                    break;
                }
                word.push(w);
                chars.next();
            }
        }
        out.push(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_comments_sections_quotes_and_continuations() {
        let text = "# Include /nope.conf\n\
                    ServerRoot \"/etc/apache2\"\n\
                    <IfModule ssl_module>\n\
                    \x20   IncludeOptional \"/etc/letsencrypt/options ssl.conf\"\n\
                    </IfModule>\n\
                    \x20   # Include /nope2.conf\n\
                    CustomLog \"|/bin/sh -c \\\"id\\\"\" combined\n\
                    Include \\\n    ports.conf\n\
                    include mods-enabled/*.load\n";
        let d = directives(text);
        let got: Vec<(&str, Vec<&str>, usize)> = d
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.args.iter().map(String::as_str).collect(),
                    d.line,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("serverroot", vec!["/etc/apache2"], 2),
                (
                    "includeoptional",
                    vec!["/etc/letsencrypt/options ssl.conf"],
                    4
                ),
                ("customlog", vec!["|/bin/sh -c \"id\"", "combined"], 7),
                ("include", vec!["ports.conf"], 8),
                ("include", vec!["mods-enabled/*.load"], 10),
            ]
        );
    }
}
