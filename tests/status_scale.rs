//! `status` over many lineages asks every node what it serves without flooding it (issue 19,
//! item 8): 400 lineages on a primary and one peer, each nginx with the bed's limit of 256
//! connections. Every row must come back with a certificate: before the served checks were
//! bounded per node, status opened all 800 handshakes at once, nginx closed those over its
//! limit, and three rows in four said "serves no certificate", CRITICAL, on a healthy fleet.
//!
//! Proves guarantee 9 of docs/GUARANTEES.md (monitoring says what every node serves, and
//! why when it cannot) at the scale of a hosting fleet.

mod common;
use common::cluster::make_version;
use common::exec::Nodes;
use common::*;

const LINEAGES: usize = 400;

#[test]
fn status_over_many_lineages_gets_an_answer_for_every_row() {
    let bed = bed(2, false);
    default_tls_everywhere(&bed);
    let names: Vec<String> = (0..LINEAGES).map(|i| format!("s{i:03}.test")).collect();
    for l in &names {
        make_version(&bed, l, 1);
    }
    bed.node(1).certherd(["sync"]).run();

    // The default server answers every name with its own certificate: each row is `unused`
    // (drift, WARNING), never `none`.
    let (ran, report) = status_report(&bed);
    assert_eq!(report.rows.len(), 2 * LINEAGES, "{ran}");
    let unanswered: Vec<_> = report
        .rows
        .iter()
        .filter(|r| r.served.as_deref() != Some("unused"))
        .collect();
    assert!(
        unanswered.is_empty(),
        "{} of {} rows got no certificate, e.g. {:?}",
        unanswered.len(),
        report.rows.len(),
        unanswered.first()
    );
    for r in &report.rows {
        assert_eq!(r.version, Some(1), "{} on {}", r.lineage, r.node);
    }
}
