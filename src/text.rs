//! Text safety, in one place: every string that came from outside (a request, a peer's answer,
//! a command's output, a config value) passes through here before it reaches a terminal, a log
//! line or a metrics line, so that it cannot forge a line, move the cursor or break the format.
//!
//! Bottom layer: imports nothing from the crate.

/// Longest value [`printable`] shows before cutting it.
const PRINTABLE_MAX: usize = 64;

/// Escapes control characters and quotes, and shortens long values, so that hostile input can be
/// named in a one-line error without flooding the terminal or forging log lines. The result is
/// quoted: it names a value.
pub fn printable(value: &str) -> String {
    let mut out = String::from("\"");
    for (i, c) in value.chars().enumerate() {
        if i == PRINTABLE_MAX {
            out.push_str(&format!("…\" ({} bytes)", value.len()));
            return out;
        }
        out.extend(c.escape_debug());
    }
    out.push('"');
    out
}

/// A peer's text made safe to print on one line: control characters escaped (no forged log
/// lines, no terminal escapes), cut at `max` characters. Not quoted: it is a message.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push_str(&format!("… ({} bytes)", text.len()));
            break;
        }
        // Also line and paragraph separators and bidi overrides, which some viewers honour.
        if c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Multi-line output of a trusted source (a parser's message, a local command's output) on one
/// line: every run of whitespace, newlines included, becomes one space.
pub fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// An InfluxDB line-protocol tag value: `,`, `=` and space escaped, control characters replaced.
pub fn influx_tag(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ',' | '=' | ' ') {
            out.push('\\');
        }
        out.push(if c.is_control() { '_' } else { c });
    }
    out
}

/// The inside of an InfluxDB line-protocol string field (`field="…"`): `\` and `"` escaped.
pub fn influx_string(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The inside of a Prometheus label value (`label="…"`): `\`, `"` and newline escaped.
pub fn prometheus_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_cannot_forge_lines_or_escape() {
        let shown = one_line("disk\nFORGED node3: ok\u{1b}[2J\r\u{2028}\u{202e}x", 100);
        assert!(
            !shown.contains(['\n', '\r', '\u{1b}', '\u{2028}', '\u{202e}']),
            "{shown}"
        );
        assert!(shown.starts_with("disk\\nFORGED"), "{shown}");
        let long = one_line(&"x".repeat(10_000), 50);
        assert!(long.len() < 80 && long.ends_with("(10000 bytes)"), "{long}");
    }

    #[test]
    fn values_are_quoted_escaped_and_cut() {
        assert_eq!(printable("a\nb\""), r#""a\nb\"""#);
        let long = printable(&"x".repeat(10_000));
        assert!(
            long.len() < 100 && long.ends_with("(10000 bytes)"),
            "{long}"
        );
    }

    #[test]
    fn metrics_escapes() {
        assert_eq!(influx_tag("a b,c=d\ne"), "a\\ b\\,c\\=d_e");
        assert_eq!(influx_string(r#"say "x\y""#), r#"say \"x\\y\""#);
        assert_eq!(prometheus_label("a\"\n"), "a\\\"\\n");
        assert_eq!(squash(" a\n\tb  c "), "a b c");
    }
}
