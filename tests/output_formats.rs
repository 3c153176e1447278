//! Output formats on the real bed: `status --format nagios` read with a strict parser of the
//! monitoring-plugins convention, its exit codes 0/1/2/3 and usage errors (always 3, one line);
//! `auth --format json`'s typed rows; `-q` (errors only) and `-v` (per-node timings and SSH
//! detail); journald priorities when stderr is `$JOURNAL_STREAM`.
//!
//! Proves Guarantee 9 of docs/GUARANTEES.md for the plugin format (a stopped peer is UNKNOWN,
//! named, with `U` in its perfdata, never OK) and Guarantee 3 (the down peer is named in every
//! format, the others still report).

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use serde::Deserialize;

// ---- a strict parser of the plugin output ----

/// The first line of a plugin: `CERTHERD STATE - summary | perfdata`.
#[derive(Debug)]
struct PluginLine {
    state: String,
    summary: String,
    perf: Vec<Perf>,
}

/// One perfdata item: `'label'=value[UOM];[warn];[crit];[min];[max]`.
#[derive(Debug, PartialEq)]
struct Perf {
    label: String,
    /// None: `U` (could not be determined).
    value: Option<f64>,
    uom: String,
    warn: String,
    crit: String,
    min: String,
    max: String,
}

fn is_number(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let mut parts = s.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.map_or(true, |f| {
            !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit())
        })
}

/// A threshold field: empty, or a plugin range `[@][start:][end]` with `~` for -infinity.
fn is_range(s: &str) -> bool {
    let s = s.strip_prefix('@').unwrap_or(s);
    if s.is_empty() {
        return false;
    }
    match s.split_once(':') {
        None => is_number(s),
        Some((start, end)) => {
            (start.is_empty() || start == "~" || is_number(start))
                && (end.is_empty() || is_number(end))
        }
    }
}

fn parse_perf(text: &str) -> Result<Vec<Perf>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        // The label: quoted ('' is a quote inside), or bare (no space, '=' or quote).
        let (label, after) = if let Some(r) = rest.strip_prefix('\'') {
            let mut label = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next() {
                    Some((i, '\'')) if r[i + 1..].starts_with('\'') => {
                        label.push('\'');
                        chars.next();
                    }
                    Some((i, '\'')) => break i + 1,
                    Some((_, c)) => label.push(c),
                    None => return Err(format!("unterminated label in {text:?}")),
                }
            };
            (label, &r[end..])
        } else {
            let end = rest.find('=').ok_or(format!("no '=' in {rest:?}"))?;
            let label = &rest[..end];
            if label.is_empty() || label.contains([' ', '\'']) {
                return Err(format!("bad bare label {label:?}"));
            }
            (label.to_owned(), &rest[end..])
        };
        if label.is_empty() || label.contains('=') {
            return Err(format!("bad label {label:?}"));
        }
        let after = after
            .strip_prefix('=')
            .ok_or(format!("no '=' after label {label:?}"))?;
        let (item, next) = after.split_once(' ').unwrap_or((after, ""));
        if next.starts_with(' ') || (next.is_empty() && after.ends_with(' ')) {
            return Err(format!("double or trailing space in {text:?}"));
        }
        let fields: Vec<&str> = item.split(';').collect();
        if fields.len() > 5 {
            return Err(format!("too many fields in {item:?}"));
        }
        let (value, uom) = if let Some(uom) = fields[0].strip_prefix('U') {
            (None, uom)
        } else {
            let end = fields[0]
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-'))
                .unwrap_or(fields[0].len());
            let number = &fields[0][..end];
            if !is_number(number) {
                return Err(format!("bad value {:?}", fields[0]));
            }
            (Some(number.parse().unwrap()), &fields[0][end..])
        };
        if !["", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"].contains(&uom) {
            return Err(format!("bad unit {uom:?} in {item:?}"));
        }
        let field = |i: usize| fields.get(i).copied().unwrap_or("").to_owned();
        for (i, f) in fields.iter().enumerate().skip(1) {
            let ok = f.is_empty() || if i <= 2 { is_range(f) } else { is_number(f) };
            if !ok {
                return Err(format!("bad field {i} {f:?} in {item:?}"));
            }
        }
        out.push(Perf {
            label,
            value,
            uom: uom.to_owned(),
            warn: field(1),
            crit: field(2),
            min: field(3),
            max: field(4),
        });
        rest = next;
    }
    Ok(out)
}

fn parse_plugin_line(line: &str) -> Result<PluginLine, String> {
    let rest = line
        .strip_prefix("CERTHERD ")
        .ok_or(format!("not CERTHERD: {line:?}"))?;
    let (state, rest) = rest.split_once(" - ").ok_or("no ' - '")?;
    if !["OK", "WARNING", "CRITICAL", "UNKNOWN"].contains(&state) {
        return Err(format!("bad state {state:?}"));
    }
    let (summary, perf) = match rest.split_once(" | ") {
        Some((s, p)) => (s, parse_perf(p)?),
        None => (rest, Vec::new()),
    };
    if summary.is_empty() || summary.contains('|') {
        return Err(format!("bad summary {summary:?}"));
    }
    Ok(PluginLine {
        state: state.into(),
        summary: summary.into(),
        perf,
    })
}

#[test]
fn the_plugin_parser_is_strict() {
    assert!(parse_plugin_line("CERTHERD OK - fine | 'a b'=1;2;3;0; x=U").is_ok());
    assert!(parse_plugin_line("CERTHERD OK - fine | 'it''s'=1.5s;~:2;@1:3;0;9").is_ok());
    for bad in [
        "CERTHERD FINE - x | a=1",
        "certherd OK - x | a=1",
        "CERTHERD OK x | a=1",
        "CERTHERD OK - x | a=1;2;3;0;1;9",
        "CERTHERD OK - x | a=one",
        "CERTHERD OK - x | 'a=1",
        "CERTHERD OK - x | a=1  b=2",
        "CERTHERD OK - x | a=1;x",
        "CERTHERD OK - a | b | c=1",
        "CERTHERD OK - x | a=1 ",
    ] {
        assert!(parse_plugin_line(bad).is_err(), "accepted {bad:?}");
    }
}

// ---- helpers ----

/// `certherd status ARGS…` on node 1.
fn status<'a>(bed: &'a Bed, args: &[&str]) -> Exec<'a> {
    bed.node(1).certherd(["status"].iter().chain(args))
}

/// Runs `status --format nagios …`, checks the exit code matches the state word and that every
/// line after the first names a state, and returns the parsed first line and the details.
fn nagios(bed: &Bed, args: &[&str]) -> (PluginLine, Vec<String>, Ran) {
    let ran = status(bed, &[&["--format", "nagios"], args].concat())
        .any_status()
        .run();
    let stdout = String::from_utf8(ran.output.stdout.clone())
        .unwrap_or_else(|e| ran.fail(&format!("stdout is not UTF-8: {e}")));
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or_else(|| ran.fail("no output"));
    let line = parse_plugin_line(first).unwrap_or_else(|e| ran.fail(&e));
    let code = ["OK", "WARNING", "CRITICAL", "UNKNOWN"]
        .iter()
        .position(|s| *s == line.state)
        .unwrap() as i32;
    ran.ensure(
        ran.code() == Some(code),
        format!("exit status {code} expected for {}", line.state),
    );
    let details: Vec<String> = lines.map(str::to_owned).collect();
    for d in &details {
        ran.ensure(
            ["CRITICAL: ", "WARNING: ", "UNKNOWN: "]
                .iter()
                .any(|p| d.starts_with(p)),
            format!("detail line without a state: {d:?}"),
        );
    }
    (line, details, ran)
}

fn perf<'a>(line: &'a PluginLine, label: &str) -> &'a Perf {
    line.perf
        .iter()
        .find(|p| p.label == label)
        .unwrap_or_else(|| panic!("no perfdata {label} in {line:?}"))
}

/// `certherd [ARGS…] auth` on node 1 with certbot's environment for `token` of site.test.
fn auth<'a>(bed: &'a Bed, args: &[&str], token: &str) -> Exec<'a> {
    bed.node(1)
        .certherd([args, &["auth"]].concat())
        .env("CERTBOT_DOMAIN", "site.test")
        .env("CERTBOT_TOKEN", token)
        .env("CERTBOT_VALIDATION", format!("{token}.thumb"))
}

/// `certherd [ARGS…] cleanup` on node 1 with certbot's environment for `token` of site.test.
fn cleanup<'a>(bed: &'a Bed, args: &[&str], token: &str) -> Exec<'a> {
    bed.node(1)
        .certherd([args, &["cleanup"]].concat())
        .env("CERTBOT_DOMAIN", "site.test")
        .env("CERTBOT_TOKEN", token)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthReport {
    domain: String,
    token: String,
    ok: bool,
    nodes: Vec<AuthNode>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthNode {
    node: String,
    optional: bool,
    ok: bool,
    token_write: String,
    self_check: String,
    self_check_ms: Option<u64>,
    self_check_attempts: u32,
    error: Option<String>,
    elapsed_ms: u64,
    ssh: Option<Ssh>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ssh {
    destination: String,
    reused: Option<bool>,
    connect_ms: Option<u64>,
    exchange_ms: Option<u64>,
}

/// Runs `cmd` with stderr on a file and `$JOURNAL_STREAM` naming that file's device and inode
/// (or, with `matching` false, another inode): what systemd sets up for a unit's stderr.
fn with_journal(bed: &Bed, mut cmd: std::process::Command, matching: bool, name: &str) -> String {
    let path = bed.root().join(format!("journal-{name}"));
    let file = std::fs::File::create(&path).unwrap();
    let meta = file.metadata().unwrap();
    let ino = if matching { meta.ino() } else { meta.ino() + 1 };
    let status = cmd
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), ino))
        .stdout(Stdio::null())
        .stderr(file)
        .status()
        .unwrap();
    let _ = status;
    std::fs::read_to_string(&path).unwrap()
}

fn lines_of(ran: &Ran) -> Vec<String> {
    ran.stderr().lines().map(str::to_owned).collect()
}

// ---- the bed ----

#[test]
fn nagios_json_quiet_verbose_and_journal_outputs() {
    let bed = issued_bed();
    let b = bed.index();
    let nodes = ["node1", "node2", "node3"];

    // OK: every node current, far from the default thresholds.
    let (ok, details, _) = nagios(&bed, &[]);
    assert_eq!(ok.state, "OK", "{ok:?}");
    assert!(details.is_empty(), "{details:?}");
    assert!(ok.summary.contains("1 lineage on 3 nodes"), "{ok:?}");
    // The default thresholds are shares of each certificate's own lifetime (25 %, 8 %): the
    // days fields follow the lifetime pebble gave it, the share fields are the flags.
    let json: serde_json::Value = bed
        .node(1)
        .certherd(["status", "--format", "json"])
        .any_status()
        .run()
        .json();
    let lifetime_days = json["rows"][0]["lifetime"].as_f64().unwrap() / 86400.0;
    let days = |share: f64| {
        let t = format!("{:.2}", lifetime_days * share);
        t.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    for n in nodes {
        let p = perf(&ok, &format!("{n}/site.test_days"));
        assert!(p.value.is_some_and(|d| d > lifetime_days * 0.25), "{p:?}");
        assert_eq!(
            (p.warn.clone(), p.crit.clone(), p.min.as_str()),
            (days(0.25), days(0.08), "0")
        );
        let left = perf(&ok, &format!("{n}/site.test_left"));
        assert!(
            left.value.is_some_and(|s| s > 25.0 && s <= 100.0),
            "{left:?}"
        );
        assert_eq!(
            (left.warn.as_str(), left.crit.as_str(), left.max.as_str()),
            ("25", "8", "100")
        );
    }
    assert_eq!(perf(&ok, "drift_nodes").value, Some(0.0));
    assert_eq!(perf(&ok, "drift_nodes").max, "3");
    assert_eq!(perf(&ok, "down_nodes").value, Some(0.0));

    // WARNING and CRITICAL from the thresholds, in days in the perfdata; one line per problem.
    let (warn, details, _) = nagios(&bed, &["--warn", "3650d", "--crit", "36h"]);
    assert_eq!(warn.state, "WARNING");
    assert_eq!(details.len(), 3, "{details:?}");
    assert!(details
        .iter()
        .all(|d| d.starts_with("WARNING: node") && d.contains("/site.test: expires in")));
    let p = perf(&warn, "node2/site.test_days");
    assert_eq!((p.warn.as_str(), p.crit.as_str()), ("3650", "1.5"));
    let (crit, details, _) = nagios(&bed, &["--warn", "3650d", "--crit", "3000d"]);
    assert_eq!(crit.state, "CRITICAL");
    assert_eq!(details.len(), 3, "{details:?}");
    assert!(crit.summary.contains("expires in"), "{crit:?}");

    // Usage errors: UNKNOWN (3) in every format, one line naming the value on stderr, and on
    // stdout the UNKNOWN report in the format asked for, with that line as the reason
    // (monitoring reads stdout; UNKNOWN always says why).
    for (args, named) in [
        (&["--crit", "30"][..], "'30'"),
        (&["--format", "xml"][..], "'xml'"),
        (&["--warn", "7d", "--crit", "30d"][..], "--crit 30days"),
        (&["--bogus"][..], "--bogus"),
        (&["--format", "json", "--warn", "soon"][..], "'soon'"),
    ] {
        let ran = status(&bed, args)
            .expect_status(3)
            .stdout_has([named])
            .run();
        let err = lines_of(&ran);
        ran.ensure(err.len() == 1, format!("{args:?}: one line on stderr"));
        ran.ensure(
            err[0].starts_with("certherd: error: ") && err[0].contains(named),
            format!("{args:?}: stderr is one error line naming {named}"),
        );
        ran.ensure(
            ran.stdout().to_uppercase().contains("UNKNOWN"),
            format!("{args:?}: stdout says UNKNOWN"),
        );
    }
    for args in [&["--crit", "30"][..], &["--warn", "1d", "--crit", "2d"][..]] {
        let (line, details, ran) = nagios(&bed, args);
        ran.ensure(line.state == "UNKNOWN", "state UNKNOWN");
        ran.ensure(
            line.perf.is_empty() && details.is_empty(),
            "no perfdata, no details",
        );
    }
    // Another command's usage error keeps clap's code.
    bed.node(1)
        .certherd(["deploy", "--bogus"])
        .expect_status(2)
        .run();

    // auth --format json: a typed row per node, this node first, the peers with SSH detail.
    let report: AuthReport = auth(&bed, &[], "tokjson")
        .args(["--format", "json"])
        .run()
        .json();
    assert!(report.ok, "{report:?}");
    assert_eq!(
        (report.domain.as_str(), report.token.as_str()),
        ("site.test", "tokjson")
    );
    let names: Vec<&str> = report.nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, nodes);
    for n in &report.nodes {
        assert!(n.ok && !n.optional && n.error.is_none(), "{n:?}");
        assert_eq!(
            (n.token_write.as_str(), n.self_check.as_str()),
            ("written", "ok")
        );
        assert!(n.elapsed_ms < 60_000, "{n:?}");
        assert!(
            n.self_check_ms.is_some_and(|ms| ms < 60_000) && n.self_check_attempts >= 1,
            "the self-check's own timing: {n:?}"
        );
    }
    assert!(report.nodes[0].ssh.is_none(), "this node needs no ssh");
    for (i, n) in report.nodes.iter().enumerate().skip(1) {
        let ssh = n.ssh.as_ref().unwrap_or_else(|| panic!("{n:?}"));
        assert_eq!(
            ssh.destination,
            format!("{}@127.0.{b}.{}:22", bed.agent_user(), i + 1),
            "{n:?}"
        );
        assert!(ssh.reused.is_some() && ssh.connect_ms.is_some(), "{n:?}");
        assert!(ssh.exchange_ms.is_some(), "{n:?}");
    }
    cleanup(&bed, &[], "tokjson").run();

    // -q: errors only; nothing went wrong, so nothing at all, for every hook-like command.
    let node1 = bed.node(1);
    for quiet in [
        node1.certherd(["-q", "deploy", "--lineage", "site.test"]),
        node1.certherd(["-q", "sync"]),
        auth(&bed, &["-q"], "tokq"),
        cleanup(&bed, &["-q"], "tokq"),
        node1.certherd(["-q", "warm"]),
    ] {
        quiet.stdout_is("").stderr_is("").run();
    }
    // …while without -q deploy prints its table (the silence above is -q's doing).
    node1
        .certherd(["deploy", "--lineage", "site.test"])
        .stdout_has(["NODE"])
        .run();

    // -v: one timing line per node, peers with destination, connection reuse and times.
    let verbose_ok = |ran: &Ran, what: &str| {
        let err = ran.stderr();
        ran.ensure(
            err.contains(&format!("certherd: node1: {what} ")) && err.contains("this node, no ssh"),
            format!("a -v {what} line for node1, no ssh"),
        );
        for i in 2..=3 {
            let line = err
                .lines()
                .find(|l| l.starts_with(&format!("certherd: node{i}: {what} ")))
                .unwrap_or_else(|| ran.fail(&format!("no -v line for node{i}")));
            ran.ensure(
                line.contains(&format!("ssh {}@127.0.{b}.{i}:22", bed.agent_user()))
                    && line.contains("shared connection ")
                    && line.contains(", connect ")
                    && line.contains(" ms, exchange ")
                    && line.ends_with(" ms"),
                format!("node{i}'s -v line has ssh, reuse and times: {line}"),
            );
        }
    };
    let ran = node1
        .certherd(["-v", "deploy", "--lineage", "site.test"])
        .run();
    verbose_ok(&ran, "deploy");
    let ran = auth(&bed, &["-v"], "tokv").run();
    verbose_ok(&ran, "token write");
    // ... and the self-check's own time per node.
    let err = ran.stderr();
    for n in &nodes {
        ran.ensure(
            err.lines().any(|l| {
                l.contains(&format!("{n}: serves the token for site.test (self-check "))
                    && l.contains(" ms, ")
            }),
            format!("{n}: a self-check timing line"),
        );
    }
    cleanup(&bed, &[], "tokv").run();

    // journald: <6> info lines when stderr is $JOURNAL_STREAM; unchanged when it is not.
    let journal = with_journal(
        &bed,
        bed.certherd(1, &["-v", "deploy", "--lineage", "site.test"]),
        true,
        "info",
    );
    assert!(!journal.is_empty());
    for l in journal.lines() {
        assert!(l.starts_with("<6>certherd: "), "{l:?} in\n{journal}");
    }
    let plain = with_journal(
        &bed,
        bed.certherd(1, &["-v", "deploy", "--lineage", "site.test"]),
        false,
        "other",
    );
    assert!(!plain.is_empty());
    for l in plain.lines() {
        assert!(l.starts_with("certherd: "), "{l:?} in\n{plain}");
    }
    let journal = with_journal(
        &bed,
        bed.certherd(1, &["status", "--crit", "30"]),
        true,
        "err",
    );
    assert!(journal.starts_with("<3>certherd: error: "), "{journal}");

    // A stopped peer: UNKNOWN, named, `U` in its perfdata, the others still measured.
    bed.stop_sshd(3);
    bed.close_control_masters();
    let (down, details, ran) = nagios(&bed, &[]);
    ran.ensure(down.state == "UNKNOWN", "state UNKNOWN");
    assert!(down.summary.contains("node3 down"), "{down:?}");
    assert_eq!(perf(&down, "node3/site.test_days").value, None);
    assert!(perf(&down, "node2/site.test_days").value.is_some());
    assert_eq!(perf(&down, "down_nodes").value, Some(1.0));
    assert_eq!(details.len(), 1, "{details:?}");
    assert!(
        details[0].starts_with("UNKNOWN: node3: could not be asked: "),
        "{details:?}"
    );

    // …warm warns about it with <4> under the journal, and -q deploy prints only its errors.
    let journal = with_journal(&bed, bed.certherd(1, &["warm"]), true, "warn");
    assert!(
        journal
            .lines()
            .any(|l| l.starts_with("<4>certherd: warning: node3: ")),
        "{journal}"
    );
    let ran = node1
        .certherd(["-q", "deploy", "--lineage", "site.test"])
        .expect_status(1)
        .stdout_is("")
        .stderr_has(["node3"])
        .run();
    let err = lines_of(&ran);
    ran.ensure(!err.is_empty(), "errors on stderr");
    for l in &err {
        ran.ensure(
            l.starts_with("certherd: error: "),
            format!("not an error line: {l:?}"),
        );
    }
    ran.ensure(
        err.iter().any(|l| l.contains("node3")),
        "an error line names node3",
    );
}
