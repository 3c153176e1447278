//! The payloads requests and responses carry. One type each, used by both ends: the agent's
//! installer returns [`Installed`] and the response carries that very value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The content of one version. The private key only ever travels inside the SSH channel.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LineageFiles {
    /// `certN.pem`
    pub cert: String,
    /// `chainN.pem`
    pub chain: String,
    /// `fullchainN.pem`
    pub fullchain: String,
    /// `privkeyN.pem`
    pub privkey: String,
    /// With key reuse certbot makes `privkeyN.pem` a symlink to `privkeyM.pem`: M, preserved.
    #[serde(default)]
    pub privkey_link: Option<u32>,
}

impl std::fmt::Debug for LineageFiles {
    // Never print the private key, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineageFiles")
            .field("privkey_link", &self.privkey_link)
            .finish_non_exhaustive()
    }
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// Version the live links named before (None: no certificate yet).
    pub before: Option<u32>,
    /// Version they name now.
    pub after: u32,
    /// Whether anything changed (false: already installed, nothing run).
    pub changed: bool,
    /// This node held another version under the same number (a split brain) and, asked to
    /// resolve it, kept that version aside before installing. Absent otherwise (so every other
    /// `installed` answer is byte-for-byte what it was; an older primary ignores it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_brain: Option<SplitBrainKept>,
}

/// A split brain an install resolved: this node's own version, kept whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitBrainKept {
    /// The clashing version number.
    pub version: u32,
    /// SHA-256 of this node's own leaf (None: its `certN.pem` was gone).
    pub ours: Option<String>,
    /// SHA-256 of the leaf installed in its place (the primary's).
    pub theirs: String,
    /// Where this node's version now is, relative to the letsencrypt dir.
    pub kept: String,
}

/// A file of the node's own web server config that root reads and a non-root account may
/// change (issue 20), as the agent reports it in its `status` answer. Outside text to the
/// primary: it bounds and escapes every field before printing ([`ConfigExposure::MAX`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigExposure {
    /// `nginx` or `apache`.
    pub server: String,
    /// The file as the server names it.
    pub file: String,
    /// What root reads, where it is named and who may change it, on one line.
    pub reason: String,
}

impl ConfigExposure {
    /// Entries an answer may carry; the primary keeps no more than these.
    pub const MAX: usize = 32;
}

/// One lineage as installed on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineageStatus {
    /// Lineage name.
    pub lineage: String,
    /// Version the live links name when all four agree.
    pub version: Option<u32>,
    /// SHA-256 of the live certificate.
    pub fingerprint: Option<String>,
    /// Serial of the live certificate (hex).
    pub serial: Option<String>,
    /// Expiry (Unix seconds).
    pub not_after: Option<i64>,
    /// Start of validity (Unix seconds): with `not_after`, the certificate's own lifetime,
    /// which `status` judges expiry by. Absent from agents before it (then unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    /// An install moved the links but has not finished its test and reload: the node may not
    /// run what its links name until the next deploy or sync.
    #[serde(default)]
    pub pending: bool,
}

/// What a standby receives for one lineage.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalBundle {
    /// `renewal/<lineage>.conf` as on the primary.
    pub conf: String,
    /// The primary's letsencrypt dir (rewritten to the standby's).
    pub primary_root: String,
    /// The primary's certherd config path (rewritten to the standby's).
    pub primary_config: String,
    /// `accounts/<server dir>/<id>/`, relative to the letsencrypt dir.
    pub account_dir: String,
    /// File name → content (certbot's `meta.json`, `private_key.json`, `regr.json`).
    pub account_files: BTreeMap<String, String>,
}

impl std::fmt::Debug for RenewalBundle {
    // The account key must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewalBundle")
            .field("account_dir", &self.account_dir)
            .finish_non_exhaustive()
    }
}
