//! What every per-node report shares, for `deploy`, `sync` and `auth`: the output format flag,
//! the JSON row's common fields (node, optional, ok, error, time, how the peer was reached)
//! around a command's own step, JSON printing, and the `-v` timing lines.

use std::time::Duration;

use serde::Serialize;

use crate::fanout::NodeResult;
use crate::fleet::SshDetail;

/// Output formats of `deploy`, `sync` and `auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human table (`auth`: the one-line summary certbot passes to cleanup).
    #[default]
    Table,
    /// One JSON object with a typed row per node (see docs/REFERENCE.md, "Reports as JSON").
    Json,
}

/// One node in a JSON report: the common fields around the command's own `step` (flattened,
/// so a row is one flat object).
#[derive(Debug, Clone, Serialize)]
pub struct NodeJson<T: Serialize> {
    /// Node name.
    pub node: String,
    /// Failures of optional nodes only warn.
    pub optional: bool,
    /// The node did what the command needs from it.
    pub ok: bool,
    /// The command's own fields.
    #[serde(flatten)]
    pub step: T,
    /// Why the row failed, one line.
    pub error: Option<String>,
    /// Time on this node, milliseconds.
    pub elapsed_ms: u64,
    /// How the peer was reached (null: this node, no SSH).
    pub ssh: Option<SshDetail>,
}

impl<T: Serialize> NodeJson<T> {
    /// The row of one node's result, with the command's verdict and fields.
    pub fn of<R>(r: &NodeResult<R>, ok: bool, step: T, error: Option<String>) -> Self {
        NodeJson {
            node: r.node.clone(),
            optional: r.optional,
            ok,
            step,
            error,
            elapsed_ms: millis(r.elapsed),
            ssh: r.ssh.clone(),
        }
    }
}

/// Prints a report as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => crate::error!("cannot encode the report as JSON: {e}"),
    }
}

/// With `-v`: one line per node with its time and, for a peer, how it was reached.
pub fn log_timings<'a, R: 'a>(rows: impl IntoIterator<Item = &'a NodeResult<R>>, what: &str) {
    if !crate::log::enabled(1) {
        return;
    }
    for r in rows {
        crate::verbose!("{}", timing_line(&r.node, r.elapsed, r.ssh.as_ref(), what));
    }
}

/// The `-v` line of one node, e.g. `node2: install 412 ms; ssh certherd@10.0.0.2:22, shared
/// connection reused, connect 3 ms, exchange 380 ms`.
pub fn timing_line(node: &str, elapsed: Duration, ssh: Option<&SshDetail>, what: &str) -> String {
    let mut line = format!("{node}: {what} {} ms", millis(elapsed));
    match ssh {
        None => line.push_str("; this node, no ssh"),
        Some(d) => {
            line.push_str(&format!("; ssh {}", d.destination));
            match d.reused {
                Some(true) => line.push_str(", shared connection reused"),
                Some(false) => line.push_str(", shared connection opened"),
                None => line.push_str(", no connection"),
            }
            let ms = |v: Option<u64>| v.map_or("-".to_owned(), |v| format!("{v} ms"));
            line.push_str(&format!(
                ", connect {}, exchange {}",
                ms(d.connect_ms),
                ms(d.exchange_ms)
            ));
        }
    }
    line
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(ssh: Option<SshDetail>) -> NodeResult<()> {
        NodeResult {
            node: "node2".into(),
            optional: true,
            https: "127.0.0.1:443".into(),
            result: (),
            elapsed: Duration::from_millis(1500),
            ssh,
        }
    }

    #[test]
    fn rows_are_flat_objects_with_the_common_fields() {
        #[derive(Serialize)]
        struct Step {
            token: &'static str,
        }
        let ssh = SshDetail {
            destination: "certherd@h:22".into(),
            reused: Some(true),
            connect_ms: Some(3),
            exchange_ms: Some(40),
        };
        let row = NodeJson::of(&result(Some(ssh)), false, Step { token: "written" }, None);
        let v = serde_json::to_value(&row).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "node": "node2", "optional": true, "ok": false, "token": "written",
                "error": null, "elapsed_ms": 1500,
                "ssh": {"destination": "certherd@h:22", "reused": true, "connect_ms": 3,
                        "exchange_ms": 40}
            })
        );
    }

    #[test]
    fn timing_lines_name_the_connection() {
        let ssh = SshDetail {
            destination: "certherd@h:22".into(),
            reused: Some(false),
            connect_ms: Some(120),
            exchange_ms: None,
        };
        assert_eq!(
            timing_line("node2", Duration::from_millis(130), Some(&ssh), "install"),
            "node2: install 130 ms; ssh certherd@h:22, shared connection opened, connect 120 ms, \
             exchange -"
        );
        assert_eq!(
            timing_line("node1", Duration::from_millis(7), None, "install"),
            "node1: install 7 ms; this node, no ssh"
        );
    }
}
