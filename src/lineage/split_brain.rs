//! A split brain on disk: archive version N of a lineage is already on this node with other
//! content than the version N an install brings. It happens when both sides of a VRRP split
//! brain renewed (each certbot numbered its new version max+1 from its own archive dir), then
//! failed back: the primary's `cert2.pem` and this node's `cert2.pem` are two certificates with
//! two keys.
//!
//! Guarantee 2: an archive version on disk is never overwritten. An install that meets one is
//! refused, naming both leaf fingerprints ([`Conflict`]), unless the primary asks to resolve it
//! (`sync` does, see `crate::fanout::certs`). Resolving keeps this node's version whole under
//! `archive/<lineage>/split-brain-<N>-<fingerprint prefix>/` (copies, each written by temp file,
//! fsync and rename, before anything else moves; copies, not hard links, so nothing that later
//! writes a numbered name in place can reach them), points any live link that named it there (same bytes: nothing served
//! changes), and only then takes the names `*N.pem` away for the primary's version. Why not the
//! other choice (write the incoming pair as the next free number): the fleet would then hold the
//! primary's version N under another number on this node, certbot on this node would number its
//! next renewal from there, and every later push of the primary's N+1 would meet the same clash
//! again. Set aside, the numbers stay the primary's everywhere, and nothing under
//! `split-brain-*/` takes a number (certbot only counts `certN.pem` directly in the archive dir).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::layout::{target_version, KINDS, SPLIT_BRAIN_PREFIX};
use crate::error::{Error, Result};
use crate::fsx::{remove_if_exists, swap_symlink, sync_dir, write_if_changed};
use crate::names::LineageName;
use crate::wire::LineageFiles;

/// Version N here differs from the version N sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The clashing version number.
    pub version: u32,
    /// SHA-256 of this node's leaf `certN.pem` (None: that file is gone, the others differ).
    pub ours: Option<String>,
    /// SHA-256 of the leaf sent.
    pub theirs: String,
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "split brain: archive version {v} here is another certificate (leaf sha256 {ours} \
             here, {theirs} sent; both nodes renewed on their own?); nothing overwritten, run \
             `certherd sync` on the primary to keep this node's version {v} aside and take the \
             primary's",
            v = self.version,
            ours = self.ours.as_deref().unwrap_or("unknown, cert missing"),
            theirs = self.theirs,
        )
    }
}

fn archive_file(archive: &Path, kind: &str, version: u32) -> PathBuf {
    archive.join(format!("{kind}{version}.pem"))
}

/// Compares each of version `version`'s files present in `archive` with `files` byte for byte
/// (the key through a key-reuse link); any difference is a [`Conflict`]. Missing files are no
/// conflict: nothing is lost by writing them.
pub(super) fn find(archive: &Path, version: u32, files: &LineageFiles) -> Result<Option<Conflict>> {
    let sent = [&files.cert, &files.chain, &files.fullchain, &files.privkey];
    let mut differs = false;
    for (kind, want) in KINDS.iter().zip(sent) {
        let path = archive_file(archive, kind, version);
        match fs::read(&path) {
            Ok(have) => differs |= have != want.as_bytes(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot read", path, e)),
        }
    }
    if !differs {
        return Ok(None);
    }
    let ours = fs::read_to_string(archive_file(archive, "cert", version))
        .ok()
        .and_then(|pem| crate::pem::info_pem(&pem))
        .map(|i| i.fingerprint);
    let theirs = crate::pem::info_pem(&files.cert)
        .map(|i| i.fingerprint)
        .unwrap_or_default();
    Ok(Some(Conflict {
        version,
        ours,
        theirs,
    }))
}

/// The directory this node's clashing version is kept in: `split-brain-<N>-<16 hex>`.
fn kept_dir_name(conflict: &Conflict) -> String {
    let tag = conflict
        .ours
        .as_deref()
        .map_or("nocert", |fp| &fp[..fp.len().min(16)]);
    format!("{SPLIT_BRAIN_PREFIX}{}-{tag}", conflict.version)
}

/// This node's version, kept: where, relative to `archive/<lineage>/`.
#[derive(Debug, Clone)]
pub(super) struct Kept {
    /// `split-brain-<N>-<prefix>`
    pub dir: String,
    version: u32,
}

impl Kept {
    /// The live link target of a kept file, as certbot writes targets (relative).
    fn link_target(&self, lineage: &LineageName, kind: &str) -> PathBuf {
        PathBuf::from(format!(
            "../../archive/{lineage}/{}/{kind}{}.pem",
            self.dir, self.version
        ))
    }

    /// `target` if it does not name the clashing version, else the kept copy's (when kept).
    pub fn redirect(
        &self,
        archive: &Path,
        lineage: &LineageName,
        kind: &str,
        target: Option<PathBuf>,
    ) -> Option<PathBuf> {
        let t = target?;
        if target_version(kind, &t) == Some(self.version)
            && archive
                .join(&self.dir)
                .join(format!("{kind}{}.pem", self.version))
                .exists()
        {
            Some(self.link_target(lineage, kind))
        } else {
            Some(t)
        }
    }
}

/// Keeps every file of this node's clashing version under [`kept_dir_name`] (copies with the
/// same mode, a key reuse link's content too), synced, before anything else changes. Idempotent: a
/// resolution killed half-way finds its copies and goes on; a copy with other content there is
/// refused, never replaced.
pub(super) fn keep(archive: &Path, conflict: &Conflict) -> Result<Kept> {
    let dir = kept_dir_name(conflict);
    crate::fsx::walk(archive, &[dir.as_str()], Some(0o700), &mut Vec::new())?;
    let kept = archive.join(&dir);
    let v = conflict.version;
    for kind in KINDS {
        let from = archive_file(archive, kind, v);
        let to = archive_file(&kept, kind, v);
        // Through a key-reuse link: its file's content and mode.
        let Ok(meta) = fs::metadata(&from) else {
            continue;
        };
        let content = fs::read(&from).map_err(|e| Error::io("cannot read", &from, e))?;
        if fs::symlink_metadata(&to).is_ok() {
            if fs::read(&to).is_ok_and(|c| c == content) {
                continue;
            }
            return Err(Error::Failed(format!(
                "{} already holds another file than {}: refusing to replace either",
                to.display(),
                from.display()
            )));
        }
        let mode = if kind == "privkey" {
            0o600
        } else {
            meta.permissions().mode() & 0o644
        };
        write_if_changed(&to, &content, mode)?;
    }
    sync_dir(&kept)?;
    sync_dir(archive)?;
    crate::crashpoint!("split-brain-after-keep");
    Ok(Kept { dir, version: v })
}

/// Points every live link that names the clashing version at its kept copy (the same bytes, so
/// what the node serves does not change), then takes the version's names away: the key first,
/// so no name of version N ever pairs a certificate with a key that is not its own.
pub(super) fn release(
    archive: &Path,
    live: &Path,
    lineage: &LineageName,
    kept: &Kept,
) -> Result<()> {
    for kind in KINDS {
        let link = live.join(format!("{kind}.pem"));
        let target = fs::read_link(&link).ok();
        let moved = kept.redirect(archive, lineage, kind, target.clone());
        if let (Some(to), true) = (&moved, moved != target) {
            swap_symlink(&link, to)?;
        }
    }
    sync_dir(live)?;
    crate::crashpoint!("split-brain-after-links-kept");
    unshare_reused_key(archive, kept.version)?;
    for kind in ["privkey", "chain", "fullchain", "cert"] {
        remove_if_exists(&archive_file(archive, kind, kept.version))?;
        crate::crashpoint!("split-brain-after-remove-{kind}");
    }
    sync_dir(archive)
}

/// A later version of this node's own that reuses the clashing key (certbot's key-reuse link
/// `privkeyM.pem -> privkeyN.pem`) would dangle once `privkeyN.pem` goes: each such link becomes
/// a file with the same bytes first (temp, fsync, rename: the name never shows anything else).
fn unshare_reused_key(archive: &Path, version: u32) -> Result<()> {
    let name = format!("privkey{version}.pem");
    let Ok(key) = fs::read(archive.join(&name)) else {
        return Ok(());
    };
    let entries = fs::read_dir(archive).map_err(|e| Error::io("cannot read", archive, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        if fs::read_link(&path).is_ok_and(|t| t == Path::new(&name)) {
            write_if_changed(&path, &key, 0o600)?;
        }
    }
    sync_dir(archive)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::super::install::tests::{commands, mode, real_files, scratch, tree};
    use super::super::{InstallError, Layout, OnSplitBrain, PENDING};
    use crate::names::LineageName;
    use crate::wire::{ErrorKind, LineageFiles};

    fn same_key(cert_pem: &str, key_pem: &str) -> bool {
        crate::pem::verify_pair(cert_pem, cert_pem, cert_pem, key_pem, 0).is_ok()
    }

    /// Guarantee 2: version 2 here from another issuance is refused as a split brain naming both
    /// leaf fingerprints, and nothing on disk changes.
    #[test]
    fn a_split_brain_is_refused_and_nothing_is_overwritten() {
        let root = scratch("splitbrain-refused");
        let layout = Layout::new(&root);
        let lineage = LineageName::parse("example.com").unwrap();
        let ours = real_files("sb-ours");
        let theirs = real_files("sb-theirs");
        let ok = commands(&["true"], &["true"]);
        layout.install(&lineage, 2, &ours, &ok).unwrap();
        let before: Vec<(PathBuf, Vec<u8>)> = tree(&root)
            .into_iter()
            .filter(|p| p.is_file())
            .map(|p| (p.clone(), fs::read(&p).unwrap()))
            .collect();
        let err = layout.install(&lineage, 2, &theirs, &ok).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::SplitBrain, "{err}");
        let text = err.to_string();
        let fp = |f: &LineageFiles| crate::pem::info_pem(&f.cert).unwrap().fingerprint;
        assert!(text.contains("split brain"), "{text}");
        assert!(
            text.contains(&fp(&ours)) && text.contains(&fp(&theirs)),
            "{text}"
        );
        let after: Vec<(PathBuf, Vec<u8>)> = tree(&root)
            .into_iter()
            .filter(|p| p.is_file())
            .map(|p| (p.clone(), fs::read(&p).unwrap()))
            .collect();
        assert_eq!(before, after, "a refused split brain changed files");
        fs::remove_dir_all(&root).unwrap();
    }

    /// Guarantee 2: resolving (sync) keeps this node's version 2 whole aside, installs the
    /// primary's as version 2, and every name of version 2 pairs its certificate with its key.
    #[test]
    fn a_resolved_split_brain_keeps_both_keys() {
        let root = scratch("splitbrain-kept");
        let layout = Layout::new(&root);
        let lineage = LineageName::parse("example.com").unwrap();
        let ours = real_files("sbk-ours");
        let theirs = real_files("sbk-theirs");
        let ok = commands(&["true"], &["true"]);
        layout.install(&lineage, 2, &ours, &ok).unwrap();
        let done = layout
            .install_with(&lineage, 2, &theirs, &ok, OnSplitBrain::KeepAside)
            .unwrap();
        let kept = done.split_brain.expect("the split brain is reported");
        assert_eq!(layout.current_version(&lineage).unwrap(), 2);
        assert!(layout.read_version(&lineage, 2).unwrap() == theirs);
        let dir = root.join(&kept.kept);
        assert_eq!(
            fs::read_to_string(dir.join("privkey2.pem")).unwrap(),
            ours.privkey
        );
        assert_eq!(
            fs::read_to_string(dir.join("cert2.pem")).unwrap(),
            ours.cert
        );
        assert_eq!(mode(&dir.join("privkey2.pem")), 0o600);
        let live = layout.live_dir(&lineage);
        assert!(same_key(
            &fs::read_to_string(live.join("cert.pem")).unwrap(),
            &fs::read_to_string(live.join("privkey.pem")).unwrap()
        ));
        assert!(!live.join(PENDING).exists());
        let staged: Vec<PathBuf> = tree(&root)
            .into_iter()
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                name.contains("certherd-staged") || name.contains("certherd-tmp")
            })
            .collect();
        assert!(staged.is_empty(), "{staged:?}");
        // Resolved once, the next sync or deploy of the same version is a no-op.
        let again = layout
            .install_with(&lineage, 2, &theirs, &ok, OnSplitBrain::KeepAside)
            .unwrap();
        assert!(!again.changed && again.split_brain.is_none());
        fs::remove_dir_all(&root).unwrap();
    }

    /// This node's own version 3 reuses its version 2 key (`privkey3.pem -> privkey2.pem`):
    /// resolving version 2 gives version 3 the key's bytes as its own file, never a dangling link.
    #[test]
    fn a_later_version_reusing_the_clashing_key_keeps_it() {
        let root = scratch("splitbrain-reuse");
        let layout = Layout::new(&root);
        let lineage = LineageName::parse("example.com").unwrap();
        let ours = real_files("sbu-ours");
        let theirs = real_files("sbu-theirs");
        let ok = commands(&["true"], &["true"]);
        layout.install(&lineage, 2, &ours, &ok).unwrap();
        let reuse = LineageFiles {
            privkey_link: Some(2),
            ..ours.clone()
        };
        layout.install(&lineage, 3, &reuse, &ok).unwrap();
        let key3 = layout.archive_dir(&lineage).join("privkey3.pem");
        assert!(fs::read_link(&key3).is_ok(), "the reuse link is set up");
        layout
            .install_with(&lineage, 2, &theirs, &ok, OnSplitBrain::KeepAside)
            .unwrap();
        assert!(fs::read_link(&key3).is_err(), "privkey3.pem is a file now");
        assert_eq!(fs::read_to_string(&key3).unwrap(), ours.privkey);
        assert_eq!(mode(&key3), 0o600);
        assert!(layout.read_version(&lineage, 2).unwrap() == theirs);
        fs::remove_dir_all(&root).unwrap();
    }

    /// A resolution whose config test fails puts the links back on this node's own version (its
    /// kept copy), which is then no version number: the next install of 2 is not a no-op.
    #[test]
    fn a_resolution_rolled_back_serves_the_kept_version() {
        let root = scratch("splitbrain-rollback");
        let layout = Layout::new(&root);
        let lineage = LineageName::parse("example.com").unwrap();
        let ours = real_files("sbr-ours");
        let theirs = real_files("sbr-theirs");
        let ok = commands(&["true"], &["true"]);
        layout.install(&lineage, 2, &ours, &ok).unwrap();
        let failed = layout.install_with(
            &lineage,
            2,
            &theirs,
            &commands(&["false"], &["true"]),
            OnSplitBrain::KeepAside,
        );
        assert!(
            matches!(failed, Err(InstallError::TestFailed { .. })),
            "{failed:?}"
        );
        let live = layout.live_dir(&lineage);
        assert_eq!(
            fs::read_to_string(live.join("cert.pem")).unwrap(),
            ours.cert
        );
        assert_eq!(
            fs::read_to_string(live.join("privkey.pem")).unwrap(),
            ours.privkey
        );
        assert!(layout.current_version(&lineage).is_err());
        let done = layout.install(&lineage, 2, &theirs, &ok).unwrap();
        assert!(done.changed);
        assert_eq!(
            fs::read_to_string(live.join("cert.pem")).unwrap(),
            theirs.cert
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
