//! `status --format nagios`: the monitoring-plugins convention (Nagios, Icinga, Naemon, Sensu).
//!
//! ```text
//! CERTHERD WARNING - node2/example.com expires in 12d | 'node1/example.com_days'=80;22.5;7.2;0; 'node1/example.com_left'=88.9%;25;8;0;100 … 'drift_nodes'=0;;;0;3 'down_nodes'=0;;;0;3
//! WARNING: node2/example.com: expires in 12d
//! ```
//!
//! The first line is what the monitoring system shows and alerts on: the state word, a short
//! summary and the performance data (per node and lineage the days left, with `--warn`/`--crit`
//! for that certificate's lifetime in days as the warn and crit fields, and the share of its
//! lifetime left in percent; then how many nodes drifted or are down). Every further
//! line is one problem. The exit code is the state (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN).
//! Text from outside (a node's error) is kept to one line and never contains `|`, which would
//! start the performance data.

use std::collections::BTreeSet;

use super::expiry::left;
use super::status_model::{Report, Row, State};

/// Longest piece of outside text (an error) in one problem line.
const MAX_REASON: usize = 200;
/// How many problems the first line names before "and N more".
const SUMMARY_PROBLEMS: usize = 3;

/// The whole plugin output: the first line, then one line per problem.
pub fn render(report: &Report) -> String {
    let problems = problems(report);
    let mut out = format!(
        "CERTHERD {} - {} | {}\n",
        word(report.state),
        summary(report, &problems),
        perfdata(report)
    );
    for p in &problems {
        out.push_str(&format!("{}: {}: {}\n", word(p.state), p.subject, p.detail));
    }
    out
}

/// The one line of a `status` that could not check at all (bad usage, unreadable config).
pub fn unknown(message: &str) -> String {
    format!("CERTHERD UNKNOWN - {}", clean(message))
}

/// The plugin word of a state.
pub fn word(state: State) -> &'static str {
    match state {
        State::Ok => "OK",
        State::Warning => "WARNING",
        State::Critical => "CRITICAL",
        State::Unknown => "UNKNOWN",
    }
}

/// One problem: a node (down) or a node × lineage (expiry, drift).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    state: State,
    /// `node` or `node/lineage`.
    subject: String,
    /// Short, for the first line.
    short: String,
    /// Long, for the problem's own line.
    detail: String,
}

/// Every problem, the worst first (critical, unknown, warning), in report order within a state.
fn problems(report: &Report) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut down = BTreeSet::new();
    for r in &report.rows {
        if !r.up {
            // One line per node, not per lineage: the node could not be asked at all.
            if down.insert(r.node.clone()) {
                let why = r.error.as_deref().unwrap_or("no answer");
                out.push(Problem {
                    state: State::Unknown,
                    subject: clean(&r.node),
                    short: format!("{} down", clean(&r.node)),
                    detail: format!("could not be asked: {}", clean(why)),
                });
            }
            continue;
        }
        if r.state == State::Ok {
            continue;
        }
        let subject = format!("{}/{}", clean(&r.node), clean(&r.lineage));
        let expiry = expiry(r);
        let mut why = Vec::new();
        if let Some(p) = &r.serving_problem {
            why.push(clean(p));
        }
        if let Some(e) = &expiry {
            why.push(e.clone());
        }
        if r.drift {
            why.push(drift(r));
        }
        let short = format!("{subject} {}", why.first().cloned().unwrap_or_default());
        out.push(Problem {
            state: r.state,
            subject,
            short: short.trim_end().to_owned(),
            detail: why.join("; "),
        });
    }
    // Nodes that could not be seen at all (this node's letsencrypt dir missing, unreadable or
    // empty; status itself failing) have no row: their reason is a problem of its own.
    for u in &report.unknown {
        if down.insert(u.node.clone()) {
            out.push(Problem {
                state: State::Unknown,
                subject: clean(&u.node),
                short: format!("{} unknown", clean(&u.node)),
                detail: clean(&u.reason),
            });
        }
    }
    // A config root reads that an account may change: root-equivalent, whatever the rows say.
    for x in &report.exposed {
        out.push(Problem {
            state: State::Critical,
            subject: clean(&x.node),
            short: format!("{} account-writable {}", clean(&x.node), clean(&x.file)),
            detail: format!(
                "root's {} reads {}, which a non-root account may change (fix: certherd doctor); {}",
                clean(&x.server),
                clean(&x.file),
                clean(&x.reason)
            ),
        });
    }
    let rank = |s: State| match s {
        State::Critical => 0,
        State::Unknown => 1,
        State::Warning => 2,
        State::Ok => 3,
    };
    out.sort_by_key(|p| rank(p.state));
    out
}

/// The expiry part of a row's problem, when its expiry is what is wrong (or unknown): a row
/// far from expiry is a drift problem only.
fn expiry(r: &Row) -> Option<String> {
    match r.expires_in {
        None => Some("not installed".to_owned()),
        Some(s) if s < 0 => Some(format!("expired {} ago", left(-s))),
        Some(s) if s < r.warn_below.unwrap_or(0) => Some(format!("expires in {}", left(s))),
        Some(_) => None,
    }
}

/// What drifted on a row, in words.
fn drift(r: &Row) -> String {
    let version = r.version.map_or("-".to_owned(), |v| v.to_string());
    let served = r.served.as_deref().unwrap_or("none");
    let mut out = format!("drift: installed version {version}, serves {served}");
    if r.pending {
        out.push_str(", an install is pending");
    }
    if let Some(e) = &r.served_error {
        out.push_str(&format!(" ({})", clean(e)));
    }
    out
}

/// The short text of the first line.
fn summary(report: &Report, problems: &[Problem]) -> String {
    let nodes: BTreeSet<&str> = report.rows.iter().map(|r| r.node.as_str()).collect();
    let lineages: BTreeSet<&str> = report.rows.iter().map(|r| r.lineage.as_str()).collect();
    if problems.is_empty() {
        if report.rows.is_empty() {
            return match report.state {
                State::Ok => format!("no lineages on {}", clean(&report.from)),
                _ => format!(
                    "no lineages on {}; a node could not be asked",
                    clean(&report.from)
                ),
            };
        }
        let soonest = report
            .rows
            .iter()
            .filter_map(|r| Some((r.expires_in?, r)))
            .min_by_key(|(s, _)| *s);
        let mut out = format!(
            "{} lineage{} on {} node{} current",
            lineages.len(),
            plural(lineages.len()),
            nodes.len(),
            plural(nodes.len())
        );
        if let Some((s, r)) = soonest {
            out.push_str(&format!(
                ", soonest expiry in {} ({}/{})",
                left(s),
                clean(&r.node),
                clean(&r.lineage)
            ));
        }
        return out;
    }
    let mut out = problems
        .iter()
        .take(SUMMARY_PROBLEMS)
        .map(|p| p.short.clone())
        .collect::<Vec<_>>()
        .join(", ");
    if problems.len() > SUMMARY_PROBLEMS {
        out.push_str(&format!(" and {} more", problems.len() - SUMMARY_PROBLEMS));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Performance data: `'label'=value[UOM];[warn];[crit];[min];[max]`, space separated.
fn perfdata(report: &Report) -> String {
    let nodes: BTreeSet<&str> = report.rows.iter().map(|r| r.node.as_str()).collect();
    let mut out: Vec<String> = Vec::new();
    for r in &report.rows {
        let days = r
            .expires_in
            .filter(|_| r.up)
            .map_or("U".to_owned(), |s| s.div_euclid(86400).to_string());
        let in_days = |t: Option<i64>| t.map_or(String::new(), |s| decimal(s as f64 / 86400.0));
        out.push(format!(
            "{}={days};{};{};0;",
            label(&format!("{}/{}_days", r.node, r.lineage)),
            in_days(r.warn_below),
            in_days(r.crit_below)
        ));
        let share = r
            .left_share
            .filter(|_| r.up)
            .map_or("U".to_owned(), |f| format!("{}%", decimal(f * 100.0)));
        let of_lifetime = |t: Option<i64>| match (t, r.lifetime) {
            (Some(t), Some(l)) if l > 0 => decimal(t as f64 * 100.0 / l as f64),
            _ => String::new(),
        };
        out.push(format!(
            "{}={share};{};{};0;100",
            label(&format!("{}/{}_left", r.node, r.lineage)),
            of_lifetime(r.warn_below),
            of_lifetime(r.crit_below)
        ));
    }
    let drifted = nodes_where(report, |r| r.up && r.drift);
    let down = nodes_where(report, |r| !r.up);
    out.push(format!("'drift_nodes'={drifted};;;0;{}", nodes.len()));
    out.push(format!("'down_nodes'={down};;;0;{}", nodes.len()));
    out.join(" ")
}

/// How many distinct nodes have a row matching `pred`.
fn nodes_where(report: &Report, pred: impl Fn(&Row) -> bool) -> usize {
    report
        .rows
        .iter()
        .filter(|r| pred(r))
        .map(|r| r.node.as_str())
        .collect::<BTreeSet<_>>()
        .len()
}

/// A perfdata number: whole as an integer, else up to two decimals.
fn decimal(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A perfdata label: quoted, a quote doubled, `=` (which ends a label) and control characters
/// replaced.
fn label(raw: &str) -> String {
    let inner: String = raw
        .chars()
        .map(|c| if c == '=' || c.is_control() { '_' } else { c })
        .collect();
    format!("'{}'", inner.replace('\'', "''"))
}

/// Outside text for a plugin line: one line, no `|` (that starts the perfdata).
fn clean(text: &str) -> String {
    crate::text::one_line(text, MAX_REASON).replace('|', "/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(node: &str, lineage: &str, days: Option<i64>, state: State) -> Row {
        Row {
            node: node.into(),
            lineage: lineage.into(),
            up: true,
            error: None,
            version: Some(1),
            fingerprint: None,
            serial: None,
            not_after: None,
            expires_in: days.map(|d| d * 86400 + 3600),
            lifetime: Some(90 * 86400),
            left_share: days.map(|d| (d * 86400 + 3600) as f64 / (90 * 86400) as f64),
            warn_below: Some(21 * 86400),
            crit_below: Some(7 * 86400),
            served_name: None,
            served: Some("new".into()),
            served_fingerprint: None,
            served_error: None,
            served_not_after: None,
            serving_problem: None,
            pending: false,
            drift: false,
            state,
        }
    }

    fn report(rows: Vec<Row>) -> Report {
        let state = rows.iter().fold(State::Ok, |s, r| s.worst(r.state));
        Report {
            from: "node1".into(),
            checked_at: 0,
            state,
            rows,
            unknown: Vec::new(),
            exposed: Vec::new(),
        }
    }

    #[test]
    fn ok_first_line_has_summary_and_perfdata() {
        let r = report(vec![
            row("node1", "example.com", Some(80), State::Ok),
            row("node2", "example.com", Some(54), State::Ok),
        ]);
        let out = render(&r);
        assert_eq!(
            out,
            "CERTHERD OK - 1 lineage on 2 nodes current, soonest expiry in 54d \
             (node2/example.com) | 'node1/example.com_days'=80;21;7;0; \
             'node1/example.com_left'=88.94%;23.33;7.78;0;100 \
             'node2/example.com_days'=54;21;7;0; \
             'node2/example.com_left'=60.05%;23.33;7.78;0;100 \
             'drift_nodes'=0;;;0;2 'down_nodes'=0;;;0;2\n"
        );
    }

    #[test]
    fn problems_worst_first_one_line_each() {
        let mut down = row("node3", "example.com", None, State::Unknown);
        down.up = false;
        down.error = Some("ssh: connection refused | x\nforged".into());
        let mut drifted = row("node4", "example.com", Some(80), State::Warning);
        drifted.drift = true;
        drifted.served = Some("old".into());
        let r = report(vec![
            row("node1", "example.com", Some(10), State::Warning),
            row("node2", "example.com", Some(3), State::Critical),
            down,
            drifted,
        ]);
        let out = render(&r);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 5, "{out}");
        assert!(
            lines[0].starts_with(
                "CERTHERD CRITICAL - node2/example.com expires in 3d, node3 down, \
                 node1/example.com expires in 10d and 1 more | "
            ),
            "{out}"
        );
        assert_eq!(lines[0].matches('|').count(), 1, "{out}");
        assert!(lines[0].contains("'node3/example.com_days'=U;21;7;0;"));
        assert!(lines[0].ends_with("'drift_nodes'=1;;;0;4 'down_nodes'=1;;;0;4"));
        assert_eq!(lines[1], "CRITICAL: node2/example.com: expires in 3d");
        assert_eq!(
            lines[2],
            "UNKNOWN: node3: could not be asked: ssh: connection refused / x\\nforged"
        );
        assert_eq!(lines[3], "WARNING: node1/example.com: expires in 10d");
        assert_eq!(
            lines[4],
            "WARNING: node4/example.com: drift: installed version 1, serves old"
        );
    }

    #[test]
    fn labels_and_thresholds_follow_the_grammar() {
        assert_eq!(label("n'1/a=b_days"), "'n''1/a_b_days'");
        assert_eq!(decimal(21.0), "21");
        assert_eq!(decimal(1.5), "1.5");
        assert_eq!(decimal(0.0), "0");
    }

    #[test]
    fn expired_and_missing_certificates_are_named() {
        let r = report(vec![
            row("node1", "a.example", Some(-3), State::Critical),
            row("node2", "a.example", None, State::Critical),
        ]);
        let out = render(&r);
        assert!(
            out.contains("CRITICAL: node1/a.example: expired 2d ago"),
            "{out}"
        );
        assert!(
            out.contains("CRITICAL: node2/a.example: not installed"),
            "{out}"
        );
    }

    #[test]
    fn unknown_line_is_one_line_without_a_pipe() {
        assert_eq!(
            unknown("--crit 30d | bad\nline"),
            "CERTHERD UNKNOWN - --crit 30d / bad\\nline"
        );
    }

    #[test]
    fn a_node_seen_not_at_all_is_unknown_with_its_reason() {
        let mut r = report(Vec::new());
        r.state = State::Unknown;
        r.unknown.push(crate::report::status_model::Unknown {
            node: "node1".into(),
            reason: "no certificate lineage under /etc/letsencrypt/live | x".into(),
        });
        let out = render(&r);
        let first = out.lines().next().unwrap();
        assert!(
            first.starts_with("CERTHERD UNKNOWN - node1 unknown"),
            "{out}"
        );
        assert!(out.contains("no certificate lineage"), "{out}");
        assert_eq!(first.matches('|').count(), 1, "{first}");
    }
}
