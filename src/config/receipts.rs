//! `[receipts]`: the primary's deploy log — one JSON line per node per push, so "which node got
//! what, when" still has an answer a year later (see [`crate::report::receipts`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Rotated when it reaches this size (10 MiB: about 20,000 receipts).
const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated files kept (`receipts.jsonl.1` … `.5`).
const DEFAULT_KEEP: u32 = 5;

/// `[receipts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptsConfig {
    /// Whether receipts are written at all (default: yes).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The log file (default: `<letsencrypt_dir>/.certherd/receipts.jsonl`, beside the record
    /// of deployed versions: written by whoever deploys, with no extra permission to set up).
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Size in bytes at which the log is rotated before the next append (0: never; rotate it
    /// with logrotate's `copytruncate` instead).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// How many rotated files are kept.
    #[serde(default = "default_keep")]
    pub keep: u32,
}

impl Default for ReceiptsConfig {
    fn default() -> Self {
        ReceiptsConfig {
            enabled: true,
            path: None,
            max_bytes: DEFAULT_MAX_BYTES,
            keep: DEFAULT_KEEP,
        }
    }
}

impl ReceiptsConfig {
    /// The log file, or None when receipts are off.
    pub fn file(&self, letsencrypt_dir: &Path) -> Option<PathBuf> {
        if !self.enabled {
            return None;
        }
        Some(
            self.path
                .clone()
                .unwrap_or_else(|| letsencrypt_dir.join(".certherd").join("receipts.jsonl")),
        )
    }
}

fn yes() -> bool {
    true
}
fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}
fn default_keep() -> u32 {
    DEFAULT_KEEP
}
