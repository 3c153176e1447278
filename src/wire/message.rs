//! The messages: one request, one response. Requests are validated into typed names before
//! anything acts on them, and unknown fields or ops are refused.

use serde::{Deserialize, Serialize};

use super::payload::{ConfigExposure, Installed, LineageFiles, LineageStatus, RenewalBundle};
use crate::names::{KeyAuthorization, LineageName, Token};
use crate::text::printable;

/// Version of this protocol; `hello` tells the other end.
pub const PROTOCOL_VERSION: u32 = 1;

/// A request from the primary to a peer's agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Opens every conversation: versions and capabilities.
    Hello {
        /// The primary's protocol version.
        protocol: u32,
    },
    /// Write `<webroot>/.well-known/acme-challenge/<token>` containing the key authorization.
    PutToken {
        /// The token, also the file name.
        token: Token,
        /// The file's content.
        key_authorization: KeyAuthorization,
    },
    /// Remove a token file; removing a missing one is not an error.
    RemoveToken {
        /// The token to remove.
        token: Token,
    },
    /// Install a certificate version into certbot's layout, test, reload (or roll back).
    Install {
        /// certbot lineage name (directory under live/ and archive/).
        lineage: LineageName,
        /// Archive version number N.
        version: u32,
        /// The four files of version N.
        files: LineageFiles,
        /// When version N is already on the node with other content (a split brain): keep the
        /// node's version aside and install this one (`sync`), instead of refusing
        /// ([`ErrorKind::SplitBrain`]). Left out when false, so `deploy` sends what it always
        /// sent; an older agent refuses the field as invalid, changing nothing.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resolve_split_brain: bool,
    },
    /// Batch, first half: verify and write a version like `install` (same checks, same
    /// refusals), record it pending, but switch no link, test nothing, reload nothing: the
    /// lineage waits for `commit` in this session. Answers `staged`.
    Stage {
        /// certbot lineage name.
        lineage: LineageName,
        /// Archive version number N.
        version: u32,
        /// The four files of version N.
        files: LineageFiles,
        /// As `install`'s: keep a clashing version of the node's aside instead of refusing.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        resolve_split_brain: bool,
    },
    /// Batch, second half: switch the links of the named lineages staged in this session, run
    /// the node's config test once and reload once. A failing test puts every one back, then
    /// the lineages that break it are found and reported; the others go in. Answers
    /// `committed`, one entry per lineage named.
    Commit {
        /// The lineages to switch (each staged earlier in this session).
        lineages: Vec<LineageName>,
        /// Send `working` lines while the commit runs (one a second), so that a primary can
        /// tell a long commit (the halving search, many `[[deploy]]` actions) from a hung
        /// agent. Only sent to an agent whose `hello` said `commit_progress` (an older one
        /// refuses the unknown field).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        progress: bool,
    },
    /// Batch, abort: the named lineages staged in this session are dropped — what their
    /// `stage` wrote is removed under their lock, no link ever moved — and their locks
    /// released (a fleet-wide push that will not switch them: another node could not stage
    /// them, or a canary failed). Names not staged are ignored. Answers `done`, `changed` when
    /// anything was removed. Announced as [`DISCARD_OP`]; an agent without it discards what is
    /// still staged when the session ends.
    Discard {
        /// The lineages to drop.
        lineages: Vec<LineageName>,
    },
    /// Report every lineage installed on this node.
    Status {},
    /// Standby nodes: which certbot `certherd renew` runs there (`doctor` checks it can keep
    /// the primary's ACME profiles). The command is the standby's own `[renew] certbot`.
    CertbotVersion {},
    /// Standby nodes: certbot's renewal config for the lineage and the account it names.
    PutRenewal {
        /// certbot lineage name.
        lineage: LineageName,
        /// The files.
        bundle: RenewalBundle,
    },
}

/// Every op the agent understands, for `hello` and for naming unknown ops.
pub const OPS: &[&str] = &[
    "hello",
    "put_token",
    "remove_token",
    "install",
    "stage",
    "commit",
    "discard",
    "status",
    "put_renewal",
    "certbot_version",
];

/// What an agent's `hello` announced that changes what a primary may send it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Announced {
    /// Ops it supports.
    pub ops: Vec<String>,
    /// Most lineages it holds staged in one session (None: an older agent that does not say).
    pub max_staged: Option<u32>,
    /// Whether it sends `working` lines during a long `commit`.
    pub commit_progress: bool,
}

impl Announced {
    /// What `hello`'s answer announced (nothing, for any other answer).
    pub fn of(response: &Response) -> Self {
        match response {
            Response::Hello {
                ops,
                max_staged,
                commit_progress,
                ..
            } => Announced {
                ops: ops.clone(),
                max_staged: *max_staged,
                commit_progress: *commit_progress,
            },
            _ => Announced::default(),
        }
    }

    /// Whether it supports `op`.
    pub fn has(&self, op: &str) -> bool {
        self.ops.iter().any(|o| o == op)
    }
}

/// The agent's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Response {
    /// Answer to `hello`.
    Hello {
        /// certherd version of the agent binary.
        agent_version: String,
        /// The agent's protocol version.
        protocol: u32,
        /// The agent node's configured name.
        node: String,
        /// Ops this agent supports.
        ops: Vec<String>,
        /// Whether the agent's own config makes it a standby (`doctor` compares it with the
        /// primary's `[[peers]] standby`). Absent from older agents: unknown, not false.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        standby: Option<bool>,
        /// Most lineages this agent holds staged in one session (its file limit decides).
        /// Absent from older agents: they hold 256 (a primary assumes that of an agent that does
        /// not say).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_staged: Option<u32>,
        /// Whether it sends `working` lines during a `commit` that asks for them.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        commit_progress: bool,
    },
    /// Before the answer to a `commit` that asked for `progress`: the agent is still at work.
    Working,
    /// The op succeeded; `changed` says whether anything on disk changed.
    Done {
        /// Whether the node's state changed.
        changed: bool,
        /// `put_renewal`: keys of the received renewal config the standby did not write (hooks,
        /// paths, a server it does not allow, anything off its allow-list).
        ///
        /// Compatibility: added without a protocol bump. An older primary ignores the unknown
        /// field (responses are not `deny_unknown_fields`), and it is left out when empty, so
        /// every other `done` is byte-for-byte what it was. An older agent's `done` reads as
        /// "nothing dropped": the field reports, it protects nothing — the protection is that
        /// the standby writes only what it built.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        dropped: Vec<String>,
    },
    /// Answer to `install`: the fields of [`Installed`], next to `"result":"installed"`.
    Installed(Installed),
    /// Answer to `stage`: the version is written and pending, waiting for `commit`.
    Staged {
        /// The lineage staged.
        lineage: LineageName,
        /// Whether the node was already fully on this version (then `commit` changes nothing).
        current: bool,
    },
    /// Answer to `commit`: one outcome per lineage named, in the order named.
    Committed {
        /// Per lineage.
        lineages: Vec<Committed>,
    },
    /// Answer to `status`.
    Status {
        /// One entry per lineage under live/.
        lineages: Vec<LineageStatus>,
        /// Files of the node's web server config that root reads and a non-root account may
        /// change (issue 20), at most [`ConfigExposure::MAX`].
        ///
        /// Compatibility: added without a protocol bump, like `done`'s `dropped`: left out when
        /// empty (every other answer is byte-for-byte what it was), ignored by an older primary,
        /// and absent from an older agent's answer (then only that node's own `status` sees it).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        exposed: Vec<ConfigExposure>,
    },
    /// The standby's certbot version, as `certbot --version` printed it (e.g. `2.1.0`).
    CertbotVersion {
        /// The version.
        version: String,
    },
    /// The request was refused or failed; nothing was changed unless `kind` says `io`.
    Error {
        /// Machine-readable class.
        kind: ErrorKind,
        /// One human line.
        message: String,
    },
}

/// One lineage's outcome in a `commit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The lineage.
    pub lineage: LineageName,
    /// Installed (as `install` answers), or why not.
    #[serde(flatten)]
    pub outcome: CommitOutcome,
}

/// What `commit` did with one lineage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CommitOutcome {
    /// In place, tested and reloaded (or already current).
    Installed(Installed),
    /// Not installed; its previous links are back.
    Error {
        /// Machine-readable class (`test_failed` names this lineage as one that breaks the
        /// node's config test).
        kind: ErrorKind,
        /// One human line.
        message: String,
    },
}

/// The capability a primary looks for in `hello`'s `ops` before it sends `stage` and `commit`;
/// an agent without it gets one `install` per lineage.
pub const BATCH_OP: &str = "commit";

/// The capability a primary looks for before it sends `discard`; without it, it ends the
/// session instead (what is staged then goes when the agent's session ends, or stays pending
/// for the next stage to undo on an agent older than both).
pub const DISCARD_OP: &str = "discard";

/// Classes of agent errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The line exceeded the size limit.
    TooLarge,
    /// Not a JSON object with an `op`.
    Malformed,
    /// An op this agent does not know.
    UnknownOp,
    /// A known op with invalid or missing fields.
    Invalid,
    /// The agent could not carry out a valid request (disk, permissions).
    Io,
    /// `install`: the node's config test failed; its previous certificate was restored.
    TestFailed,
    /// `install`: the reload failed after a passing config test.
    ReloadFailed,
    /// `put_renewal` to a node whose own config does not say `standby = true`; nothing written.
    /// (New kinds need no protocol bump either: an older primary reports an unknown kind as a
    /// bad response from that node, which fails it just as clearly.)
    NotStandby,
    /// `install`: the files failed verification (not PEM of the right type, `cert` not first in
    /// `fullchain`, key not the certificate's, leaf expired); nothing written.
    Unverified,
    /// `install`: archive version N is already on the node with other content (both sides
    /// renewed during a split brain); the message names both leaf fingerprints. Nothing written:
    /// an archive version on disk is never overwritten (`sync` resolves it, keeping both).
    SplitBrain,
    /// `install`: the lineage is installed, but a `[[deploy]]` action's own test failed on the
    /// node; that action's previous combined PEM was put back.
    ActionTestFailed,
    /// `install`: the lineage is installed and a `[[deploy]]` action's layout written and
    /// tested, but its reload failed.
    ActionReloadFailed,
}

impl Response {
    /// Shorthand for an error response.
    pub fn error(kind: ErrorKind, message: impl Into<String>) -> Self {
        Response::Error {
            kind,
            message: message.into(),
        }
    }
}

/// Parses one request line, refusing anything that is not exactly a known, valid request.
pub fn parse_request(line: &[u8]) -> Result<Request, Response> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| Response::error(ErrorKind::Malformed, format!("request is not JSON: {e}")))?;
    let op = match value.get("op") {
        Some(serde_json::Value::String(op)) => op.clone(),
        _ => {
            return Err(Response::error(
                ErrorKind::Malformed,
                "request has no string field \"op\"",
            ))
        }
    };
    if !OPS.contains(&op.as_str()) {
        return Err(Response::error(
            ErrorKind::UnknownOp,
            format!(
                "unknown op {}: expected one of {}",
                printable(&op),
                OPS.join(", ")
            ),
        ));
    }
    let request: Request = serde_json::from_value(value)
        .map_err(|e| Response::error(ErrorKind::Invalid, format!("invalid {op} request: {e}")))?;
    if let Request::PutToken {
        token,
        key_authorization,
    } = &request
    {
        if key_authorization.token() != token.as_str() {
            return Err(Response::error(
                ErrorKind::Invalid,
                format!(
                    "key_authorization {} does not start with the token",
                    printable(key_authorization.as_str())
                ),
            ));
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(line: &str) -> ErrorKind {
        match parse_request(line.as_bytes()) {
            Err(Response::Error { kind, .. }) => kind,
            other => panic!("expected an error for {line}, got {other:?}"),
        }
    }

    #[test]
    fn requests_round_trip() {
        let r = Request::PutToken {
            token: Token::parse("abc").unwrap(),
            key_authorization: KeyAuthorization::parse("abc.xyz").unwrap(),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(
            line,
            r#"{"op":"put_token","token":"abc","key_authorization":"abc.xyz"}"#
        );
        assert!(matches!(
            parse_request(line.as_bytes()),
            Ok(Request::PutToken { .. })
        ));
    }

    #[test]
    fn hostile_requests_are_refused() {
        assert_eq!(kind("not json"), ErrorKind::Malformed);
        assert_eq!(kind(r#"{"token":"a"}"#), ErrorKind::Malformed);
        assert_eq!(kind(r#"{"op":"exec","cmd":"id"}"#), ErrorKind::UnknownOp);
        assert_eq!(
            kind(r#"{"op":"remove_token","token":"../../etc/passwd"}"#),
            ErrorKind::Invalid
        );
        assert_eq!(
            kind(r#"{"op":"remove_token","token":"a","path":"/etc"}"#),
            ErrorKind::Invalid
        );
        assert_eq!(
            kind(r#"{"op":"put_token","token":"a","key_authorization":"b.c"}"#),
            ErrorKind::Invalid
        );
    }

    /// `installed` carries the installer's own type, with the same bytes as before it did.
    #[test]
    fn installed_keeps_its_wire_format() {
        let line = r#"{"result":"installed","before":1,"after":2,"changed":true}"#;
        let parsed: Response = serde_json::from_str(line).unwrap();
        assert_eq!(
            parsed,
            Response::Installed(Installed {
                before: Some(1),
                after: 2,
                changed: true,
                split_brain: None,
            })
        );
        assert_eq!(serde_json::to_string(&parsed).unwrap(), line);
    }

    /// `commit` answers one entry per lineage, `installed` with the fields of `install`'s answer
    /// or an error with its kind; `hello` announces the batch ops an older primary never sends.
    #[test]
    fn committed_has_one_entry_per_lineage() {
        let line = r#"{"result":"committed","lineages":[{"lineage":"a.test","result":"installed","before":1,"after":2,"changed":true},{"lineage":"b.test","result":"error","kind":"test_failed","message":"nginx: bad"}]}"#;
        let parsed: Response = serde_json::from_str(line).unwrap();
        let Response::Committed { lineages } = &parsed else {
            panic!("{parsed:?}")
        };
        assert!(matches!(&lineages[0].outcome, CommitOutcome::Installed(i) if i.after == 2));
        assert!(matches!(
            &lineages[1].outcome,
            CommitOutcome::Error {
                kind: ErrorKind::TestFailed,
                ..
            }
        ));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), line);
        assert!(OPS.contains(&BATCH_OP) && OPS.contains(&"stage"));
        assert!(matches!(
            parse_request(br#"{"op":"commit","lineages":["a.test","../etc"]}"#),
            Err(Response::Error {
                kind: ErrorKind::Invalid,
                ..
            })
        ));
    }

    /// `dropped`, `standby` and `exposed` are optional both ways: old answers parse, and answers without
    /// them are byte-for-byte the old ones.
    #[test]
    fn new_fields_are_compatible() {
        let old = r#"{"result":"done","changed":true}"#;
        let parsed: Response = serde_json::from_str(old).unwrap();
        assert_eq!(
            parsed,
            Response::Done {
                changed: true,
                dropped: Vec::new()
            }
        );
        assert_eq!(serde_json::to_string(&parsed).unwrap(), old);
        let hello =
            r#"{"result":"hello","agent_version":"0.1.0","protocol":1,"node":"n","ops":[]}"#;
        let parsed: Response = serde_json::from_str(hello).unwrap();
        assert!(matches!(parsed, Response::Hello { standby: None, .. }));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), hello);
        let status = r#"{"result":"status","lineages":[]}"#;
        let parsed: Response = serde_json::from_str(status).unwrap();
        assert!(matches!(&parsed, Response::Status { exposed, .. } if exposed.is_empty()));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), status);
        for (kind, name) in [
            (ErrorKind::NotStandby, "\"not_standby\""),
            (ErrorKind::Unverified, "\"unverified\""),
            (ErrorKind::ActionTestFailed, "\"action_test_failed\""),
            (ErrorKind::ActionReloadFailed, "\"action_reload_failed\""),
            (ErrorKind::SplitBrain, "\"split_brain\""),
        ] {
            assert_eq!(serde_json::to_string(&kind).unwrap(), name);
        }
    }
}
