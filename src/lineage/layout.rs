//! certbot's on-disk layout for one lineage: `archive/<lineage>/{cert,chain,fullchain,privkey}N.pem`
//! and `live/<lineage>/*.pem` as relative symlinks into the archive. Reading only; the agent's
//! install is in [`super::install`].

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::names::LineageName;
use crate::wire::{LineageFiles, LineageStatus};

/// The four files of a version, in certbot's order.
pub const KINDS: [&str; 4] = ["cert", "chain", "fullchain", "privkey"];

/// certbot's directory (`/etc/letsencrypt`) on one node.
#[derive(Debug, Clone)]
pub struct Layout {
    pub(super) root: PathBuf,
}

impl Layout {
    /// The layout under `letsencrypt_dir`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// The letsencrypt dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `live/<lineage>`
    pub fn live_dir(&self, lineage: &LineageName) -> PathBuf {
        self.root.join("live").join(lineage.as_str())
    }

    /// `archive/<lineage>`
    pub fn archive_dir(&self, lineage: &LineageName) -> PathBuf {
        self.root.join("archive").join(lineage.as_str())
    }

    /// Every lineage with a `live/<name>/cert.pem`.
    pub fn lineages(&self) -> Result<Vec<LineageName>> {
        let (names, refused) = self.lineages_and_refused()?;
        for r in &refused {
            crate::warn!("{r}");
        }
        Ok(names)
    }

    /// Every lineage under `live/` (a directory with a `cert.pem`), sorted, and, each on one
    /// line, why any other such directory is not carried: a name certherd cannot send (see
    /// [`LineageName`]) is reported, never skipped in silence (`status` makes it UNKNOWN).
    pub fn lineages_and_refused(&self) -> Result<(Vec<LineageName>, Vec<String>)> {
        let live = self.root.join("live");
        let entries = match fs::read_dir(&live) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok((Vec::new(), Vec::new()))
            }
            Err(e) => return Err(Error::io("cannot read", live, e)),
        };
        let mut names = Vec::new();
        let mut refused = Vec::new();
        for entry in entries.flatten() {
            if !entry.path().join("cert.pem").exists() {
                continue;
            }
            let raw = entry.file_name();
            match LineageName::parse(&raw.to_string_lossy()) {
                Ok(name) => names.push(name),
                Err(e) => refused.push(format!(
                    "{}: not carried to any node: {e}",
                    crate::text::printable(&live.join(&raw).to_string_lossy())
                )),
            }
        }
        names.sort();
        refused.sort();
        Ok((names, refused))
    }

    /// The version each live link names, in [`KINDS`] order (None: missing or not ours).
    pub fn link_versions(&self, lineage: &LineageName) -> [Option<u32>; 4] {
        KINDS.map(|kind| {
            let target = fs::read_link(self.live_dir(lineage).join(format!("{kind}.pem"))).ok()?;
            target_version(kind, &target)
        })
    }

    /// The version the live links name, when all four agree.
    pub fn current_version(&self, lineage: &LineageName) -> Result<u32> {
        let versions = self.link_versions(lineage);
        match versions {
            [Some(v), ..] if versions.iter().all(|x| *x == Some(v)) => Ok(v),
            _ => Err(Error::Failed(format!(
                "{}: live symlinks do not all name one archive version ({versions:?})",
                self.live_dir(lineage).display()
            ))),
        }
    }

    /// What is installed for one lineage (for `status`).
    pub fn status(&self, lineage: &LineageName) -> LineageStatus {
        let version = self.current_version(lineage).ok();
        let info = fs::read_to_string(self.live_dir(lineage).join("cert.pem"))
            .ok()
            .and_then(|p| crate::pem::info_pem(&p));
        LineageStatus {
            lineage: lineage.to_string(),
            version,
            fingerprint: info.as_ref().map(|i| i.fingerprint.clone()),
            serial: info.as_ref().map(|i| i.serial.clone()),
            not_after: info.as_ref().map(|i| i.not_after),
            not_before: info.map(|i| i.not_before),
            pending: self.live_dir(lineage).join(PENDING).exists(),
        }
    }

    /// Status of every lineage.
    pub fn status_all(&self) -> Result<Vec<LineageStatus>> {
        Ok(self.lineages()?.iter().map(|l| self.status(l)).collect())
    }

    /// Reads a version's files from the archive.
    pub fn read_version(&self, lineage: &LineageName, version: u32) -> Result<LineageFiles> {
        let dir = self.archive_dir(lineage);
        let read = |kind: &str| {
            let p = dir.join(format!("{kind}{version}.pem"));
            fs::read_to_string(&p).map_err(|e| Error::io("cannot read", p, e))
        };
        let privkey_path = dir.join(format!("privkey{version}.pem"));
        let privkey_link = fs::read_link(&privkey_path).ok().and_then(|t| {
            t.to_str()?
                .strip_prefix("privkey")?
                .strip_suffix(".pem")?
                .parse()
                .ok()
        });
        Ok(LineageFiles {
            cert: read("cert")?,
            chain: read("chain")?,
            fullchain: read("fullchain")?,
            privkey: read("privkey")?,
            privkey_link,
        })
    }
}

/// Marker in `live/<lineage>/` while an install has moved links but not finished its reload;
/// holds the link targets to roll back to (JSON, one entry per [`KINDS`]).
pub const PENDING: &str = ".certherd-pending";

/// The rollback targets of an unfinished install, if one is recorded. An unreadable marker still
/// means "unfinished": the current links are then the best rollback target there is.
pub(super) fn read_pending(path: &Path) -> Option<Vec<Option<PathBuf>>> {
    let bytes = fs::read(path).ok()?;
    let live = path.parent()?;
    Some(
        serde_json::from_slice::<Vec<Option<PathBuf>>>(&bytes)
            .ok()
            .filter(|links| links.len() == KINDS.len())
            .unwrap_or_else(|| {
                KINDS
                    .iter()
                    .map(|k| fs::read_link(live.join(format!("{k}.pem"))).ok())
                    .collect()
            }),
    )
}

/// Directory below `archive/<lineage>/` where a split brain's other version is kept
/// (`split-brain-<N>-<fingerprint prefix>/`, see [`super::split_brain`]). certbot numbers
/// versions from the `certN.pem` names directly in the archive dir, so what lies here never
/// takes a number.
pub const SPLIT_BRAIN_PREFIX: &str = "split-brain-";

/// The archive version a live link's target names (`…/certN.pem` for kind `cert`). A target in a
/// split-brain directory is no version: links there are a node's own kept certificate, not
/// certbot's version N, so an install of N is never mistaken for already done.
pub(super) fn target_version(kind: &str, target: &Path) -> Option<u32> {
    let in_split_brain = target
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|d| d.to_str())
        .is_some_and(|d| d.starts_with(SPLIT_BRAIN_PREFIX));
    if in_split_brain {
        return None;
    }
    let name = target.file_name()?.to_str()?;
    name.strip_prefix(kind)?.strip_suffix(".pem")?.parse().ok()
}

/// The version recorded link targets name, when all four agree.
pub(super) fn version_of(links: &[Option<PathBuf>]) -> Option<u32> {
    let versions: Vec<Option<u32>> = KINDS
        .iter()
        .zip(links)
        .map(|(kind, target)| target_version(kind, target.as_ref()?))
        .collect();
    match versions.first() {
        Some(Some(v)) if versions.iter().all(|x| *x == Some(*v)) => Some(*v),
        _ => None,
    }
}
