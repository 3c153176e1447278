//! The served check: after a deploy, which certificate does each node hand out over TLS?
//!
//! The name sent as SNI comes from the certificate itself (its subjectAltName list), never from
//! the lineage's name or certbot's `$RENEWED_DOMAINS`: a lineage may be named after a name its
//! vhost does not answer, and a wildcard (`*.example.com`) is no valid SNI. What comes back is
//! classified against every version of the lineage: `new` (this version), `OLD` (an older
//! version of this lineage: the reload did not take) or `unused` (no version of this lineage:
//! no vhost uses the lineage yet, a warning and not a failure).
//!
//! Waiting is only for what waiting can fix. A node that does not answer at all may still be
//! restarting, so it gets the whole deadline. A node that answers with an old or foreign
//! certificate or a TLS alert is judged after a short settle window (a graceful nginx reload
//! swaps its workers within milliseconds; the window covers the odd connection an old worker
//! still accepts). A name that cannot be sent as SNI is never sent and fails at once. A
//! certificate for IP addresses only is checked by its first address, with no SNI at all.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::lineage::Layout;
use crate::names::LineageName;
use crate::pem;
use crate::tls::{self, TlsError};

/// The label put in place of `*` when a certificate holds only wildcard names:
/// `*.example.com` is checked as `certherd-check.example.com`. Any vhost with
/// `server_name *.example.com` answers it; it is unlikely to have a vhost of its own.
pub const WILDCARD_LABEL: &str = "certherd-check";

/// How long an answer that a finished reload would give (old or foreign certificate, alert)
/// may still change before it is the verdict.
pub const SETTLE: Duration = Duration::from_secs(1);

/// How long after a first `new` answer the second handshake confirms it. nginx's master starts
/// the new workers on a reload and sleeps 100 ms before it tells the old ones to stop: for
/// about that long a new connection may still get the old certificate (measured on nginx 1.22
/// and 1.26: up to 104 ms after `nginx -s reload` returned). The confirmation lands past it.
pub const CONFIRM_AFTER: Duration = Duration::from_millis(150);

/// One TLS attempt may take this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// The name the served check sends as SNI for a certificate with these subjectAltNames: the
/// first name that is a valid SNI; if there is none and the list has wildcards, the first
/// wildcard with [`WILDCARD_LABEL`] in place of `*`. `None` when no name can be sent.
pub fn check_name(sans: &[String]) -> Option<String> {
    let plain = sans
        .iter()
        .find(|n| !n.starts_with("*.") && tls::sni_name(n).is_some());
    let wildcard = || {
        sans.iter()
            .filter_map(|n| n.strip_prefix("*."))
            .map(|rest| format!("{WILDCARD_LABEL}.{rest}"))
            .find(|n| tls::sni_name(n).is_some())
    };
    plain.cloned().or_else(wildcard)
}

/// The name to check for a leaf certificate (DER): a DNS name of it ([`check_name`]), else,
/// for a certificate of IP addresses only, its first address, checked without SNI.
pub fn check_name_for(leaf: &[u8]) -> Option<String> {
    check_name(&pem::dns_names(leaf)?)
        .or_else(|| pem::ip_addresses(leaf)?.first().map(|ip| ip.to_string()))
}

/// The fingerprints of a lineage's versions, to tell `new` from `OLD` from `unused`.
#[derive(Debug, Clone, Default)]
pub struct Versions {
    /// SHA-256 of the version being deployed (or, for `status`, the primary's current one).
    pub current: String,
    /// SHA-256 of every other version of the lineage, with its number.
    pub others: Vec<(u32, String)>,
}

impl Versions {
    /// The fingerprints of every `archive/<lineage>/certN.pem` of this node (certbot's archive
    /// keeps every version, and every node's archive is a copy of the primary's). A file that
    /// cannot be read is left out: its version then shows as `unused`, never as `new`.
    pub fn read(layout: &Layout, lineage: &LineageName, current: u32, fingerprint: &str) -> Self {
        let mut others = Vec::new();
        if let Ok(entries) = std::fs::read_dir(layout.archive_dir(lineage)) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(n) = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("cert")?.strip_suffix(".pem"))
                    .and_then(|n| n.parse::<u32>().ok())
                else {
                    continue;
                };
                if n == current {
                    continue;
                }
                let info = std::fs::read_to_string(entry.path())
                    .ok()
                    .and_then(|pem| pem::info_pem(&pem));
                if let Some(info) = info {
                    others.push((n, info.fingerprint));
                }
            }
        }
        others.sort();
        Versions {
            current: fingerprint.to_owned(),
            others,
        }
    }
}

/// What a node served, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "served")]
pub enum Served {
    /// The version expected.
    New,
    /// Another version of this lineage: the reload did not take.
    Old {
        /// Its version number.
        version: u32,
    },
    /// A certificate of no version of this lineage: nothing uses the lineage for this name.
    Unused {
        /// SHA-256 of what was served instead.
        fingerprint: String,
    },
    /// The node has no HTTPS listener to ask (`https = ""`: a dedicated certbot box that only
    /// renews and deploys): nothing to check, not a failure.
    #[serde(rename = "no_https")]
    NoHttps,
    /// No certificate: why.
    None {
        /// The failure, as the user sees it.
        error: String,
    },
}

impl Served {
    /// The table's word: `new`, `OLD`, `unused`, `NONE`, `no-https`.
    pub fn word(&self) -> &'static str {
        match self {
            Served::New => "new",
            Served::Old { .. } => "OLD",
            Served::Unused { .. } => "unused",
            Served::None { .. } => "NONE",
            Served::NoHttps => "no-https",
        }
    }

    /// A failure of the node (`OLD`, `NONE`); `unused` is only a warning.
    pub fn failed(&self) -> bool {
        matches!(self, Served::Old { .. } | Served::None { .. })
    }
}

/// What one check asked and got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// The SNI sent, if any could be.
    pub name: Option<String>,
    /// The verdict.
    pub served: Served,
    /// SHA-256 of the certificate served, if one was.
    pub fingerprint: Option<String>,
    /// notAfter of the certificate served (Unix seconds), if one was and it could be read:
    /// `status` calls a node that serves an expired certificate CRITICAL.
    pub not_after: Option<i64>,
}

/// Classifies one attempt's result; the flag says whether waiting may change it.
fn classify(result: std::result::Result<Vec<u8>, TlsError>, versions: &Versions) -> (Served, bool) {
    match result {
        Ok(der) => {
            let fp = pem::fingerprint(&der);
            if fp == versions.current {
                (Served::New, false)
            } else if let Some((v, _)) = versions.others.iter().find(|(_, f)| *f == fp) {
                (Served::Old { version: *v }, false)
            } else {
                (Served::Unused { fingerprint: fp }, false)
            }
        }
        Err(e) => {
            let transient = e.may_change_by_waiting();
            (
                Served::None {
                    error: e.to_string(),
                },
                transient,
            )
        }
    }
}

/// Polls `addr` for `name` until it serves the current version or the verdict is final:
/// `wait` bounds waiting for a node that does not answer, [`SETTLE`] (capped by `wait`) an
/// answer that a finished reload would give. A zero `wait` is one attempt. `new` counts only
/// when a second handshake [`CONFIRM_AFTER`] later agrees: during a graceful reload the old workers may
/// still accept a connection or two.
pub async fn check(addr: &str, name: Option<&str>, versions: &Versions, wait: Duration) -> Check {
    // `https = ""`: the node serves no HTTPS (asked nothing, whatever the certificate names).
    if addr.is_empty() {
        return Check {
            name: name.map(str::to_owned),
            served: Served::NoHttps,
            fingerprint: None,
            not_after: None,
        };
    }
    let Some(name) = name else {
        return Check {
            name: None,
            served: Served::None {
                error: "the certificate names no DNS name that can be sent as SNI".into(),
            },
            fingerprint: None,
            not_after: None,
        };
    };
    let began = Instant::now();
    let until = began + wait;
    let settled = began + SETTLE.min(wait);
    let mut confirmed = false;
    loop {
        let result = tls::served_leaf(addr, name, ATTEMPT_TIMEOUT).await;
        let fp = result.as_deref().ok().map(pem::fingerprint);
        let not_after = result
            .as_deref()
            .ok()
            .and_then(pem::info)
            .map(|i| i.not_after);
        let (served, transient) = classify(result, versions);
        let done = |served| Check {
            name: Some(name.to_owned()),
            served,
            fingerprint: fp.clone(),
            not_after,
        };
        let now = Instant::now();
        if served == Served::New {
            if confirmed || wait.is_zero() || now >= until {
                return done(served);
            }
            confirmed = true;
            tokio::time::sleep(CONFIRM_AFTER).await;
            continue;
        }
        confirmed = false;
        let final_now = if transient {
            now >= until
        } else {
            now >= settled
        };
        if final_now {
            return done(served);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn plain_names_first_non_wildcard() {
        assert_eq!(
            check_name(&names(&["site.test", "www.site.test"])),
            Some("site.test".into())
        );
    }

    #[test]
    fn wildcard_and_apex_checks_the_apex() {
        assert_eq!(
            check_name(&names(&["*.wild.test", "wild.test"])),
            Some("wild.test".into())
        );
    }

    #[test]
    fn wildcard_only_checks_a_fixed_label() {
        assert_eq!(
            check_name(&names(&["*.wild.test"])),
            Some("certherd-check.wild.test".into())
        );
        assert_eq!(
            check_name(&names(&["*.a.test", "*.b.test"])),
            Some("certherd-check.a.test".into())
        );
    }

    #[test]
    fn idn_in_punycode_is_sent_as_is() {
        assert_eq!(
            check_name(&names(&["*.xn--bcher-kva.test", "xn--bcher-kva.test"])),
            Some("xn--bcher-kva.test".into())
        );
    }

    #[test]
    fn invalid_names_are_never_sent() {
        // A U-label (not allowed in a certificate), a partial wildcard, an address, a space.
        assert_eq!(
            check_name(&names(&[
                "bücher.test",
                "a*.site.test",
                "127.0.0.1",
                "a b.test"
            ])),
            None
        );
        assert_eq!(
            check_name(&names(&["bücher.test", "ok.test"])),
            Some("ok.test".into())
        );
        assert_eq!(check_name(&names(&["*.", "*"])), None);
        assert_eq!(check_name(&[]), None);
    }

    /// A certificate made with `openssl req -x509 -addext subjectAltName=DNS:*.wild.test,
    /// DNS:wild.test,DNS:xn--bcher-kva.test,IP:127.0.0.1`.
    const SANS_PEM: &str = include_str!("../tests/data/sans.pem");

    #[test]
    fn names_come_from_the_certificate() {
        let der = pem::first_cert_der(SANS_PEM).expect("pem");
        assert_eq!(
            pem::dns_names(&der),
            Some(names(&["*.wild.test", "wild.test", "xn--bcher-kva.test"]))
        );
        assert_eq!(check_name_for(&der), Some("wild.test".into()));
        assert_eq!(pem::dns_names(b"not a certificate"), None);
    }

    fn versions() -> Versions {
        Versions {
            current: "cc".into(),
            others: vec![(1, "aa".into()), (2, "bb".into())],
        }
    }

    #[test]
    fn classification_and_what_waiting_can_fix() {
        let v = versions();
        let fp = pem::fingerprint;
        let mut v2 = v.clone();
        v2.current = fp(b"new");
        v2.others.push((3, fp(b"old")));
        assert_eq!(classify(Ok(b"new".to_vec()), &v2), (Served::New, false));
        assert_eq!(
            classify(Ok(b"old".to_vec()), &v2),
            (Served::Old { version: 3 }, false)
        );
        assert!(matches!(
            classify(Ok(b"other".to_vec()), &v2),
            (Served::Unused { .. }, false)
        ));
        let alert = TlsError::Alert {
            addr: "a".into(),
            alert: "unrecognized_name".into(),
        };
        assert!(matches!(
            classify(Err(alert), &v),
            (Served::None { .. }, false)
        ));
        let refused = TlsError::Connect {
            addr: "a".into(),
            reason: "refused".into(),
        };
        assert!(matches!(
            classify(Err(refused), &v),
            (Served::None { .. }, true)
        ));
        assert!(Served::Old { version: 1 }.failed());
        assert!(!Served::Unused {
            fingerprint: "x".into()
        }
        .failed());
    }

    #[tokio::test]
    async fn no_answer_waits_for_the_deadline_a_bad_name_fails_at_once() {
        // Nothing listens on port 1 of 127.0.0.1: connection refused, which waiting may fix.
        let began = Instant::now();
        let c = check(
            "127.0.0.1:1",
            Some("a.test"),
            &versions(),
            Duration::from_millis(600),
        )
        .await;
        assert_eq!(c.served.word(), "NONE");
        assert!(began.elapsed() >= Duration::from_millis(600));
        // A name that cannot be sent fails at once, without trying.
        let began = Instant::now();
        let c = check("127.0.0.1:1", None, &versions(), Duration::from_secs(10)).await;
        assert_eq!(c.served.word(), "NONE");
        assert!(began.elapsed() < Duration::from_millis(100));
    }
}
