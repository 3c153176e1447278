//! The report of `certherd status` rendered: rows of node × lineage as a table, JSON, InfluxDB
//! lines or Prometheus text (the data itself is `status_model.rs`; the Nagios plugin's output is
//! `nagios.rs`, which this dispatches to).

use std::time::{Duration, UNIX_EPOCH};

use crate::text::{influx_string, influx_tag, one_line, prometheus_label as label};

pub use super::status_model::{Exposed, Format, Report, Row, State, Unknown};

/// The plugin's one line when `status` could not check at all (see [`super::nagios::unknown`]).
pub fn nagios_unknown(message: &str) -> String {
    super::nagios::unknown(message)
}

/// The whole output of a `status` that could not check at all, in the format asked for:
/// UNKNOWN for this host with the reason (the plugin's one UNKNOWN line under nagios).
pub fn render_failed(reason: &str, format: Format) -> String {
    match format {
        Format::Nagios => nagios_unknown(reason) + "\n",
        other => render(&Report::failed(reason), other),
    }
}

/// Formats the report; each row carries the thresholds it was judged with.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Nagios => super::nagios::render(report),
        Format::Json => serde_json::to_string_pretty(report).unwrap_or_default() + "\n",
        Format::Table => table(report),
        Format::Influx => influx(report),
        Format::Prometheus => prometheus(report),
    }
}

fn short(fp: &Option<String>) -> String {
    fp.as_deref()
        .map_or("-".into(), |f| f[..f.len().min(12)].to_owned())
}

fn table(report: &Report) -> String {
    let mut out = format!(
        "{:<14} {:<24} {:>7} {:<20} {:>9} {:<12} {:<12} {:<16} CHECKED\n",
        "NODE", "LINEAGE", "VERSION", "NOT_AFTER", "EXPIRES", "INSTALLED", "SERVED", "STATE"
    );
    for r in &report.rows {
        let not_after = r.not_after.map_or("-".into(), |t| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t.max(0) as u64))
                .to_string()
        });
        let expires = r.expires_in.map_or("-".into(), super::expiry::left);
        let served = match (r.up, r.served.as_deref()) {
            (false, _) => "DOWN".to_owned(),
            (true, Some("old")) => "OLD".to_owned(),
            (true, Some(word @ ("new" | "unused" | "no-https"))) => word.to_owned(),
            _ => "NONE".to_owned(),
        };
        let state = format!(
            "{:?}{}{}",
            r.state,
            if r.drift { " drift" } else { "" },
            if r.pending { " pending" } else { "" }
        )
        .to_uppercase();
        out.push_str(&format!(
            "{:<14} {:<24} {:>7} {:<20} {:>9} {:<12} {:<12} {:<16} {}\n",
            r.node,
            r.lineage,
            r.version.map_or("-".into(), |v| v.to_string()),
            not_after,
            expires,
            short(&r.fingerprint),
            served,
            state,
            r.served_name.as_deref().unwrap_or("-")
        ));
        if let Some(e) = &r.error {
            out.push_str(&format!("  {}: {e}\n", r.node));
        }
        if let Some(p) = &r.serving_problem {
            out.push_str(&format!("  {}: critical: {p}\n", r.node));
        }
        if r.up && r.served.as_deref() == Some("unused") {
            out.push_str(&format!(
                "  {}: warning: {} is not in use: the node serves another certificate ({}) for {}; no server block uses live/{}/ yet?\n",
                r.node,
                r.lineage,
                short(&r.served_fingerprint),
                r.served_name.as_deref().unwrap_or("-"),
                r.lineage
            ));
        }
    }
    for x in &report.exposed {
        out.push_str(&format!(
            "CRITICAL {}: {} (fix: certherd doctor)\n",
            x.node,
            one_line(&x.reason, 600)
        ));
    }
    for u in &report.unknown {
        out.push_str(&format!(
            "UNKNOWN {}: {}\n",
            u.node,
            one_line(&u.reason, 400)
        ));
    }
    out.push_str(
        &format!("certherd status {:?}\n", report.state)
            .to_uppercase()
            .replace("CERTHERD STATUS", "certherd status"),
    );
    out
}

fn influx(report: &Report) -> String {
    let ns = report.checked_at as i128 * 1_000_000_000;
    let mut out = String::new();
    for r in &report.rows {
        let mut fields = vec![
            format!("up={}", r.up),
            format!("drift={}", r.drift),
            format!("state={}i", r.state as i32),
            format!(
                "served_match={}",
                r.served_fingerprint.is_some() && r.served_fingerprint == r.fingerprint
            ),
        ];
        if let Some(v) = r.version {
            fields.push(format!("version={v}i"));
        }
        if let Some(t) = r.not_after {
            fields.push(format!("not_after={t}i"));
        }
        if let Some(s) = r.expires_in {
            fields.push(format!("expires_in={s}i"));
        }
        if let Some(l) = r.lifetime {
            fields.push(format!("lifetime={l}i"));
        }
        if let Some(f) = r.left_share {
            fields.push(format!("left_share={f}"));
        }
        out.push_str(&format!(
            "certherd_status,node={},lineage={},from={} {} {ns}\n",
            influx_tag(&r.node),
            influx_tag(&r.lineage),
            influx_tag(&report.from),
            fields.join(",")
        ));
    }
    for u in &report.unknown {
        out.push_str(&format!(
            "certherd_unknown,node={},from={} state=3i,reason=\"{}\" {ns}\n",
            influx_tag(&u.node),
            influx_tag(&report.from),
            influx_string(&one_line(&u.reason, 400))
        ));
    }
    for x in &report.exposed {
        out.push_str(&format!(
            "certherd_exposed,node={},server={},from={} state=2i,file=\"{}\",reason=\"{}\" {ns}\n",
            influx_tag(&x.node),
            influx_tag(&x.server),
            influx_tag(&report.from),
            influx_string(&one_line(&x.file, 400)),
            influx_string(&one_line(&x.reason, 600))
        ));
    }
    out
}

fn prometheus(report: &Report) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, values: Vec<(String, f64)>| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} gauge\n"));
        for (labels, v) in values {
            out.push_str(&format!("{name}{{{labels}}} {v}\n"));
        }
    };
    let labels = |r: &Row| {
        format!(
            "node=\"{}\",lineage=\"{}\"",
            label(&r.node),
            label(&r.lineage)
        )
    };
    let mut up: Vec<(String, f64)> = Vec::new();
    for r in &report.rows {
        let l = format!("node=\"{}\"", label(&r.node));
        if !up.iter().any(|(x, _)| *x == l) {
            up.push((l, if r.up { 1.0 } else { 0.0 }));
        }
    }
    metric(
        "certherd_node_up",
        "Whether the node's certherd agent answered.",
        up,
    );
    metric(
        "certherd_certificate_not_after_seconds",
        "Expiry of the installed certificate, Unix time.",
        report
            .rows
            .iter()
            .filter_map(|r| Some((labels(r), r.not_after? as f64)))
            .collect(),
    );
    metric(
        "certherd_certificate_lifetime_seconds",
        "The installed certificate's own lifetime, notAfter minus notBefore.",
        report
            .rows
            .iter()
            .filter_map(|r| Some((labels(r), r.lifetime? as f64)))
            .collect(),
    );
    metric(
        "certherd_certificate_left_ratio",
        "Share of the installed certificate's lifetime left (0 to 1).",
        report
            .rows
            .iter()
            .filter_map(|r| Some((labels(r), r.left_share?)))
            .collect(),
    );
    metric(
        "certherd_certificate_version",
        "Archive version the live symlinks name.",
        report
            .rows
            .iter()
            .filter_map(|r| Some((labels(r), r.version? as f64)))
            .collect(),
    );
    metric(
        "certherd_certificate_served_match",
        "1 when the node serves the certificate it has installed.",
        report
            .rows
            .iter()
            .filter(|r| r.up)
            .map(|r| {
                (
                    labels(r),
                    (r.served_fingerprint.is_some() && r.served_fingerprint == r.fingerprint) as u8
                        as f64,
                )
            })
            .collect(),
    );
    metric(
        "certherd_certificate_drift",
        "1 when the node differs from the node that ran the check.",
        report
            .rows
            .iter()
            .map(|r| (labels(r), r.drift as u8 as f64))
            .collect(),
    );
    metric(
        "certherd_node_unknown",
        "1 for a node whose certificates could not be seen; the reason is a label.",
        report
            .unknown
            .iter()
            .map(|u| {
                (
                    format!(
                        "node=\"{}\",reason=\"{}\"",
                        label(&u.node),
                        label(&one_line(&u.reason, 400))
                    ),
                    1.0,
                )
            })
            .collect(),
    );
    metric(
        "certherd_config_exposed",
        "1 for a file root's web server reads as configuration that a non-root account may change (root-equivalent; certherd doctor gives the fix).",
        report
            .exposed
            .iter()
            .map(|x| {
                (
                    format!(
                        "node=\"{}\",server=\"{}\",file=\"{}\"",
                        label(&x.node),
                        label(&x.server),
                        label(&one_line(&x.file, 400))
                    ),
                    1.0,
                )
            })
            .collect(),
    );
    metric(
        "certherd_status_state",
        "Overall monitoring state: 0 ok, 1 warning, 2 critical, 3 unknown.",
        vec![(
            format!("from=\"{}\"", label(&report.from)),
            report.state as i32 as f64,
        )],
    );
    out
}
