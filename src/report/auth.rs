//! The report of `certherd auth`: the one-line summary certbot hands to cleanup (default) and,
//! with `--format json`, one object with a typed row per node, the same row shape as `deploy`'s
//! ([`super::nodes::NodeJson`]).

use serde::Serialize;

use crate::config::{Config, Mode};
use crate::fanout::tokens::{self, Published};

use super::nodes::NodeJson;

/// The token step of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// The token file was written.
    Written,
    /// Writing it failed (the node was then not checked).
    Failed,
    /// A `check_only` peer: certherd does not write there, only checks.
    CheckOnly,
    /// `mode = "stateless"`: nothing is written anywhere.
    Stateless,
}

/// The self-check of one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// It served the key authorization.
    Ok,
    /// It did not, before `[check] timeout`.
    Failed,
    /// Not checked (its write failed).
    Skipped,
}

/// An `auth` node's own fields (the common ones are [`NodeJson`]'s).
#[derive(Debug, Clone, Serialize)]
pub struct TokenJson {
    /// The write.
    pub token_write: TokenState,
    /// The self-check.
    pub self_check: CheckState,
    /// How long the self-check took until its verdict, retries included (absent when skipped).
    pub self_check_ms: Option<u64>,
    /// Fetches the self-check made (0 when skipped).
    pub self_check_attempts: u32,
}

/// The whole `auth --format json` report.
#[derive(Debug, Clone, Serialize)]
pub struct AuthJson {
    /// The name being validated.
    pub domain: String,
    /// The challenge token.
    pub token: String,
    /// Every required node holds and serves the token.
    pub ok: bool,
    /// This node, then every peer (managed or check-only) in config order.
    pub nodes: Vec<NodeJson<TokenJson>>,
}

/// The typed report of one challenge published with [`tokens::publish_and_check_rows`].
pub fn json(config: &Config, domain: &str, token: &str, published: &Published) -> AuthJson {
    let nodes = tokens::targets(config, &[])
        .into_iter()
        .map(|target| {
            let write = published.writes.iter().find(|w| w.node == target.node);
            let verdict = published
                .verdicts
                .iter()
                .find(|v| v.target.node == target.node);
            let token_write = match write.map(|w| w.result.is_ok()) {
                Some(true) => TokenState::Written,
                Some(false) => TokenState::Failed,
                None if config.mode == Mode::Stateless => TokenState::Stateless,
                None => TokenState::CheckOnly,
            };
            let self_check = match verdict.map(|v| v.result.is_ok()) {
                Some(true) => CheckState::Ok,
                Some(false) => CheckState::Failed,
                None => CheckState::Skipped,
            };
            let error = match (write.map(|w| &w.result), verdict.map(|v| &v.result)) {
                (Some(Err(e)), _) => Some(format!("writing the token failed: {e}")),
                (_, Some(Err(e))) => Some(format!("self-check failed: {e}")),
                _ => None,
            };
            let ok = token_write != TokenState::Failed && self_check == CheckState::Ok;
            let step = TokenJson {
                token_write,
                self_check,
                self_check_ms: verdict.map(|v| v.elapsed.as_millis() as u64),
                self_check_attempts: verdict.map_or(0, |v| v.attempts),
            };
            match write {
                Some(w) => NodeJson::of(w, ok, step, error),
                None => NodeJson {
                    node: target.node,
                    optional: target.optional,
                    ok,
                    step,
                    error,
                    elapsed_ms: 0,
                    ssh: None,
                },
            }
        })
        .collect();
    AuthJson {
        domain: domain.to_owned(),
        token: token.to_owned(),
        ok: published.ok,
        nodes,
    }
}

/// The default output, one line: what certbot passes to cleanup as `$CERTBOT_AUTH_OUTPUT`.
pub fn summary_line(domain: &str, token: &str, published: &Published) -> String {
    serde_json::json!({
        "domain": domain,
        "token": token,
        "nodes": published.holders,
        "ok": published.ok,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::check::{CheckFailure, Target, Verdict};
    use crate::fanout::tokens::TokenError;
    use crate::fanout::NodeResult;
    use crate::names::Domain;
    use crate::ssh::PeerError;

    fn config() -> Config {
        Config::parse(
            "name = \"web1\"\n\
             [[peers]]\nname = \"web2\"\nhost = \"192.0.2.2\"\n\
             [[peers]]\nname = \"web3\"\nhost = \"192.0.2.3\"\ncheck_only = true\n\
             [[peers]]\nname = \"web4\"\nhost = \"192.0.2.4\"\noptional = true\n",
            Path::new("/x/certherd.toml"),
        )
        .unwrap()
    }

    fn write(node: &str, result: Result<(), TokenError>) -> tokens::NodeReport {
        NodeResult {
            node: node.into(),
            optional: node == "web4",
            https: String::new(),
            result,
            elapsed: Duration::from_millis(5),
            ssh: None,
        }
    }

    fn verdict(node: &str, result: Result<(), CheckFailure>) -> Verdict {
        Verdict {
            target: Target {
                node: node.into(),
                http: String::new(),
                https: String::new(),
                optional: false,
            },
            domain: Domain::parse("example.com").unwrap(),
            result,
            elapsed: Duration::from_millis(7),
            attempts: 2,
        }
    }

    #[test]
    fn every_node_gets_a_typed_row_in_config_order() {
        let published = Published {
            ok: false,
            holders: vec!["web1".into(), "web2".into()],
            writes: vec![
                write("web1", Ok(())),
                write("web2", Ok(())),
                write(
                    "web4",
                    Err(TokenError::Peer(PeerError::Agent("gone".into()))),
                ),
            ],
            verdicts: vec![
                verdict("web1", Ok(())),
                verdict(
                    "web2",
                    Err(CheckFailure::Status {
                        status: 404,
                        url: "http://example.com/x".into(),
                    }),
                ),
                verdict("web3", Ok(())),
            ],
        };
        let report = json(&config(), "example.com", "tok", &published);
        let v = serde_json::to_value(&report).unwrap();
        let rows = v["nodes"].as_array().unwrap();
        let names: Vec<&str> = rows.iter().map(|r| r["node"].as_str().unwrap()).collect();
        assert_eq!(names, ["web1", "web2", "web3", "web4"]);
        let step = |i: usize| {
            (
                rows[i]["token_write"].as_str().unwrap(),
                rows[i]["self_check"].as_str().unwrap(),
                rows[i]["ok"].as_bool().unwrap(),
            )
        };
        assert_eq!(step(0), ("written", "ok", true));
        assert_eq!(step(1), ("written", "failed", false));
        assert_eq!(step(2), ("check_only", "ok", true));
        assert_eq!(step(3), ("failed", "skipped", false));
        // The self-check's own timing: present where it ran, absent where it was skipped.
        assert_eq!(rows[0]["self_check_ms"], 7);
        assert_eq!(rows[0]["self_check_attempts"], 2);
        assert!(rows[3]["self_check_ms"].is_null());
        assert_eq!(rows[3]["self_check_attempts"], 0);
        assert!(rows[1]["error"]
            .as_str()
            .unwrap()
            .starts_with("self-check failed: HTTP 404"));
        assert!(rows[3]["error"]
            .as_str()
            .unwrap()
            .starts_with("writing the token failed"));
        assert_eq!(rows[3]["optional"], true);
        assert_eq!(v["ok"], false);
        assert_eq!(
            summary_line("example.com", "tok", &published),
            r#"{"domain":"example.com","nodes":["web1","web2"],"ok":false,"token":"tok"}"#
        );
    }
}
