//! Receipts: one JSON line per node per push (`deploy`, `sync`, `watch`), appended to the
//! primary's deploy log (`[receipts]`), so "which node got what, when" has an answer long after
//! the terminal output is gone. Each line stands alone: when, which event, which primary, the
//! lineage, the version and its leaf fingerprint, and the node's row as `--format json` gives it
//! (versions before and after, install step, what it serves, time, how it was reached).
//!
//! Only nodes where something happened get a receipt (a version installed, a failure): an
//! hourly `sync` of 1,000 lineages to 10 nodes that finds everything current writes nothing, so
//! the log keeps its history instead of rotating it away.
//!
//! The log is rotated by size under a lock (`receipts.jsonl` → `.1` … `.keep`), so a watch and
//! a deploy hook appending at once never lose a line. A log that cannot be written is a warning:
//! the deploy itself has happened and is reported as usual.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{Config, ReceiptsConfig};
use crate::lineage::Layout;
use crate::names::LineageName;
use crate::pem;

use super::nodes::NodeJson;

/// One push, as the receipts need it: the version pushed and every node's JSON row.
pub struct Push<'a, T: Serialize> {
    /// The lineage.
    pub lineage: &'a LineageName,
    /// The version pushed.
    pub version: u32,
    /// Its notAfter (Unix seconds).
    pub not_after: i64,
    /// The rows of the nodes where something happened, as `--format json` gives them.
    pub nodes: Vec<&'a NodeJson<T>>,
}

/// One line of the log.
#[derive(Debug, Serialize)]
pub struct Receipt<'a, T: Serialize> {
    /// Unix seconds when the push ended.
    pub at: i64,
    /// `deploy`, `sync` or `watch`.
    pub event: &'a str,
    /// The primary that pushed.
    pub from: &'a str,
    /// The lineage.
    pub lineage: &'a str,
    /// The version pushed.
    pub version: u32,
    /// SHA-256 of the pushed version's leaf certificate (null: unreadable here).
    pub fingerprint: Option<String>,
    /// Its notAfter (Unix seconds).
    pub not_after: i64,
    /// The node's row.
    #[serde(flatten)]
    pub node: &'a NodeJson<T>,
}

/// Appends one receipt per node of `d` to the configured log; warns (never fails) when it
/// cannot.
pub fn append<T: Serialize>(config: &Config, d: &Push<'_, T>, event: &str) {
    let Some(path) = config.receipts.file(&config.letsencrypt_dir) else {
        return;
    };
    if d.nodes.is_empty() {
        return;
    }
    let lines = match lines(config, d, event) {
        Ok(l) => l,
        Err(e) => {
            crate::warn!("receipts: cannot encode the receipts of {}: {e}", d.lineage);
            return;
        }
    };
    if let Err(e) = write(&config.receipts, &path, &lines) {
        crate::warn!("receipts: cannot append to {}: {e}", path.display());
    }
}

/// The receipts of one push, one JSON object per line.
fn lines<T: Serialize>(
    config: &Config,
    d: &Push<'_, T>,
    event: &str,
) -> serde_json::Result<String> {
    let lineage = d.lineage.to_string();
    let from = config.node_name();
    let fingerprint = leaf_fingerprint(&Layout::new(&config.letsencrypt_dir), d);
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.as_secs() as i64);
    let mut out = String::new();
    for node in d.nodes.iter().copied() {
        let receipt = Receipt {
            at,
            event,
            from: &from,
            lineage: &lineage,
            version: d.version,
            fingerprint: fingerprint.clone(),
            not_after: d.not_after,
            node,
        };
        out.push_str(&serde_json::to_string(&receipt)?);
        out.push('\n');
    }
    Ok(out)
}

fn leaf_fingerprint<T: Serialize>(layout: &Layout, d: &Push<'_, T>) -> Option<String> {
    let pem_path = layout
        .archive_dir(d.lineage)
        .join(format!("cert{}.pem", d.version));
    let text = std::fs::read_to_string(pem_path).ok()?;
    pem::first_cert_der(&text).map(|der| pem::fingerprint(&der))
}

/// Rotates if due, then appends `lines` in one write, all under the log's lock.
fn write(cfg: &ReceiptsConfig, path: &Path, lines: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _lock = crate::lockfile::lock(&sibling(path, ".lock"))
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    if cfg.max_bytes > 0 {
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        if size > 0 && size + lines.len() as u64 > cfg.max_bytes {
            rotate(path, cfg.keep)?;
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        // A log planted as a symlink is refused, never followed.
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)?;
    f.write_all(lines.as_bytes())
}

/// `log` → `log.1` → … → `log.keep` (the oldest dropped); with `keep` 0 the log is emptied.
fn rotate(path: &Path, keep: u32) -> std::io::Result<()> {
    if keep == 0 {
        return std::fs::remove_file(path);
    }
    let _ = std::fs::remove_file(sibling(path, &format!(".{keep}")));
    for n in (1..keep).rev() {
        let from = sibling(path, &format!(".{n}"));
        if from.exists() {
            std::fs::rename(&from, sibling(path, &format!(".{}", n + 1)))?;
        }
    }
    std::fs::rename(path, sibling(path, ".1"))
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("certherd-receipts-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn appends_then_rotates_by_size_keeping_the_newest_files() {
        let dir = scratch("rotate");
        let log = dir.join("r.jsonl");
        let cfg = ReceiptsConfig {
            max_bytes: 25,
            keep: 2,
            ..Default::default()
        };
        for n in 0..4 {
            write(&cfg, &log, &format!("{{\"n\":{n}}}\n")).unwrap();
        }
        // Each line is 8 bytes: three fit under 25, the fourth rotates.
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "{\"n\":3}\n");
        assert_eq!(
            std::fs::read_to_string(sibling(&log, ".1")).unwrap(),
            "{\"n\":0}\n{\"n\":1}\n{\"n\":2}\n"
        );
        for n in 4..10 {
            write(&cfg, &log, &format!("{{\"n\":{n}}}\n")).unwrap();
        }
        // Rotated again at 6 and at 9: the oldest file (0–2) is gone, 3–5 and 6–8 are kept.
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap();
        assert_eq!(read(log.clone()), "{\"n\":9}\n");
        assert_eq!(
            read(sibling(&log, ".1")),
            "{\"n\":6}\n{\"n\":7}\n{\"n\":8}\n"
        );
        assert_eq!(
            read(sibling(&log, ".2")),
            "{\"n\":3}\n{\"n\":4}\n{\"n\":5}\n"
        );
        assert!(!sibling(&log, ".3").exists(), "only `keep` rotated files");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_log_planted_as_a_symlink_is_refused() {
        let dir = scratch("symlink");
        let target = dir.join("elsewhere");
        std::fs::write(&target, "").unwrap();
        let log = dir.join("r.jsonl");
        std::os::unix::fs::symlink(&target, &log).unwrap();
        assert!(write(&ReceiptsConfig::default(), &log, "{}\n").is_err());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
