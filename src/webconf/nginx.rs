//! nginx's config syntax, just enough to find the directives that make root read a file: words
//! separated by white space, `;` ends a directive, `{` opens a block (ending the directive before
//! it), `}` closes one, `#` at the start of a word comments out the rest of the line, and a word
//! may be quoted (`"…"` or `'…'`, backslash escapes inside) or carry a backslash-escaped
//! character. This is nginx's own tokenizer (`ngx_conf_read_token`) in miniature; what it does
//! not need (variables, blocks' meaning) it leaves alone.

use super::Directive;

/// Every directive of `text`, in order, with the line its name starts on. Block contents are
/// directives like any other (`include` is allowed in every context).
pub fn directives(text: &str) -> Vec<Directive> {
    let mut out = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut first_line = 0;
    let mut word = String::new();
    let mut in_word = false;
    let mut line = 1;
    let mut chars = text.chars().peekable();
    // Ends the current word (if any) and records the line the directive started on.
    fn flush(
        word: &mut String,
        in_word: &mut bool,
        words: &mut Vec<String>,
        first_line: &mut usize,
        line: usize,
    ) {
        if *in_word {
            if words.is_empty() {
                *first_line = line;
            }
            words.push(std::mem::take(word));
            *in_word = false;
        }
    }
    while let Some(c) = chars.next() {
        match c {
            '#' if !in_word => {
                // A comment runs to the end of the line (the newline itself counts below).
                while chars.peek().is_some_and(|&c| c != '\n') {
                    chars.next();
                }
            }
            '"' | '\'' if !in_word => {
                let start = line;
                while let Some(q) = chars.next() {
                    match q {
                        _ if q == c => break,
                        '\\' => match chars.next() {
                            Some('n') => word.push('\n'),
                            Some('t') => word.push('\t'),
                            Some('r') => word.push('\r'),
                            Some(e @ ('"' | '\'' | '\\')) => word.push(e),
                            Some(e) => {
                                if e == '\n' {
                                    line += 1;
                                }
                                word.push('\\');
                                word.push(e);
                            }
                            None => break,
                        },
                        '\n' => {
                            line += 1;
                            word.push('\n');
                        }
                        q => word.push(q),
                    }
                }
                // A quoted word is a word even when empty.
                in_word = true;
                flush(&mut word, &mut in_word, &mut words, &mut first_line, start);
            }
            '\\' => {
                if let Some(e) = chars.next() {
                    if e == '\n' {
                        line += 1;
                    }
                    word.push(e);
                    in_word = true;
                }
            }
            ';' | '{' | '}' => {
                flush(&mut word, &mut in_word, &mut words, &mut first_line, line);
                // A `}` after words is a syntax error nginx refuses: those words are no directive.
                if c != '}' && !words.is_empty() {
                    let name = words.remove(0);
                    out.push(Directive {
                        name,
                        args: std::mem::take(&mut words),
                        line: first_line,
                    });
                }
                words.clear();
            }
            c if c.is_whitespace() => {
                flush(&mut word, &mut in_word, &mut words, &mut first_line, line);
                if c == '\n' {
                    line += 1;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_args(text: &str) -> Vec<(String, Vec<String>)> {
        directives(text)
            .into_iter()
            .map(|d| (d.name, d.args))
            .collect()
    }

    #[test]
    fn directives_blocks_comments_and_quotes() {
        let text = "# top comment include /nope;\n\
                    user www-data;\n\
                    http {\n  include mime.types; # trailing include /nope2;\n\
                    \x20 server { listen 443 ssl; include \"/etc/letsencrypt/options ssl.conf\"; }\n\
                    \x20 include '/a/b;c.conf';\n\
                    \x20 log_format x 'a#b';\n\
                    \x20 include /x/a\\ b.conf;\n\
                    }\n";
        let got = names_args(text);
        let includes: Vec<&str> = got
            .iter()
            .filter(|(n, _)| n == "include")
            .map(|(_, a)| a[0].as_str())
            .collect();
        assert_eq!(
            includes,
            [
                "mime.types",
                "/etc/letsencrypt/options ssl.conf",
                "/a/b;c.conf",
                "/x/a b.conf"
            ]
        );
        assert!(got.iter().any(|(n, a)| n == "log_format" && a[1] == "a#b"));
        assert!(got.iter().any(|(n, _)| n == "http"));
    }

    #[test]
    fn a_hash_inside_a_word_is_no_comment_and_lines_are_counted() {
        let d = directives("a\n\nfoo#bar baz;\ninclude x;\n");
        assert_eq!(d[0].name, "a");
        assert_eq!(d[0].args, ["foo#bar", "baz"]);
        assert_eq!((d[1].name.as_str(), d[1].line), ("include", 4));
    }

    #[test]
    fn unterminated_input_yields_no_half_directive() {
        assert!(directives("include /x.conf").is_empty());
        assert!(directives("include \"/x.conf").is_empty());
    }
}
