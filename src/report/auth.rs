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
