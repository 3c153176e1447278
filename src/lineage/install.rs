//! The atomic install the agent performs, and its rollback.
//!
//! Install order is what makes a kill at any moment safe: the four archive files are staged
//! under temp names, fsynced and verified as read back ([`super::stage`]); the pending marker is
//! written; only then are they renamed to their version names (key last) and the symlinks moved;
//! each symlink is swapped by rename, never deleted first; an install is a no-op only when all
//! four links already name the version and the archive files match, so a half-switched node is
//! finished by the next deploy or sync. A version already on disk with other content is never
//! written over ([`super::split_brain`]).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use super::layout::{read_pending, version_of, Layout, KINDS, PENDING};
use crate::error::{Error, Result};
use crate::exec::{Commands, ExecError};
use crate::fsx::{remove_if_exists, swap_symlink, sync_dir, temp_name, write_if_changed};
use crate::names::LineageName;
use crate::wire::{ErrorKind, Installed, LineageFiles, SplitBrainKept};

/// Why an install did not complete.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The config test failed; the previous links were put back.
    #[error("config test failed, previous certificate (version {}) restored: {output}", restored.map_or("none".to_owned(), |v| v.to_string()))]
    TestFailed {
        /// How the test failed (its output, one line).
        output: ExecError,
        /// Version restored (None: there was none).
        restored: Option<u32>,
    },
    /// The reload failed after a passing test; the new version is installed.
    #[error("reload failed (new certificate installed, config test passed): {0}")]
    ReloadFailed(ExecError),
    /// Batch: the config test fails with every lineage of the batch back on its previous
    /// certificate too: this node's config is broken, not the batch.
    #[error("config test fails with the previous certificates too (this node's config is broken; every lineage of the batch restored): {0}")]
    ConfigBroken(ExecError),
    /// Batch: the reload failed after a passing test; every lineage went back.
    #[error("reload failed; every lineage of the batch restored to its previous certificate: {0}")]
    BatchReloadFailed(ExecError),
    /// Batch: still suspected of breaking the config test when the test budget ran out.
    #[error("restored: the config test fails with the batch, and {0} tests did not tell which lineages break it")]
    NotIsolated(usize),
    /// The files failed verification; nothing was written.
    #[error("refused before writing anything: {0}")]
    Unverified(crate::pem::PairError),
    /// The request cannot be carried out on this node's filesystem; nothing was written.
    #[error("refused: {0}")]
    Refused(String),
    /// Version N is already here with other content (see [`super::split_brain`]); nothing was
    /// written.
    #[error("{0}")]
    SplitBrain(super::split_brain::Conflict),
    /// Anything else (disk full, permissions, bad layout, a planted symlink).
    #[error("{0}")]
    Other(#[from] Error),
    /// The rollback record could not be encoded.
    #[error("cannot record the previous links: {0}")]
    Record(#[from] serde_json::Error),
}

impl InstallError {
    /// The class the agent answers with: the primary decides by it, never by the message.
    pub fn kind(&self) -> ErrorKind {
        match self {
            InstallError::TestFailed { .. }
            | InstallError::ConfigBroken(_)
            | InstallError::NotIsolated(_) => ErrorKind::TestFailed,
            InstallError::BatchReloadFailed(_) => ErrorKind::ReloadFailed,
            InstallError::ReloadFailed(_) => ErrorKind::ReloadFailed,
            InstallError::Unverified(_) => ErrorKind::Unverified,
            InstallError::Refused(_) => ErrorKind::Invalid,
            InstallError::SplitBrain(_) => ErrorKind::SplitBrain,
            InstallError::Other(_) | InstallError::Record(_) => ErrorKind::Io,
        }
    }
}

/// What an install does when the version number it brings is here with other content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnSplitBrain {
    /// Refuse, naming both leaf fingerprints; nothing written (`deploy`, `watch`).
    #[default]
    Refuse,
    /// Keep this node's version aside, whole, then install the one sent (`sync`).
    KeepAside,
}

impl Layout {
    /// Whether the node is fully on `version` with exactly these files.
    fn has(&self, lineage: &LineageName, version: u32, files: &LineageFiles) -> bool {
        self.link_versions(lineage)
            .iter()
            .all(|v| *v == Some(version))
            && self.read_version(lineage, version).is_ok_and(|f| {
                f.cert == files.cert
                    && f.chain == files.chain
                    && f.fullchain == files.fullchain
                    && f.privkey == files.privkey
            })
    }

    /// Installs `version` and runs the node's test and reload commands (see the module docs).
    ///
    /// The files are verified first ([`crate::pem::verify_pair`]); a refused, failed or
    /// rolled-back install removes every file and directory it created, so the node is exactly
    /// as before unless the error is [`InstallError::Other`] after links moved (then the pending
    /// marker makes the next deploy or sync finish or undo it).
    pub fn install(
        &self,
        lineage: &LineageName,
        version: u32,
        files: &LineageFiles,
        commands: &Commands,
    ) -> std::result::Result<Installed, InstallError> {
        self.install_with(lineage, version, files, commands, OnSplitBrain::Refuse)
    }

    /// [`Layout::install`], choosing what a split brain does (see [`super::split_brain`]).
    pub fn install_with(
        &self,
        lineage: &LineageName,
        version: u32,
        files: &LineageFiles,
        commands: &Commands,
        on_split_brain: OnSplitBrain,
    ) -> std::result::Result<Installed, InstallError> {
        let now = Self::check_request(lineage, version, files)?;
        let mut made = Created::default();
        let _lock = self.lock_lineage(lineage, &mut made)?;
        let result = self.install_verified(
            lineage,
            version,
            files,
            commands,
            (on_split_brain, now),
            &mut made,
        );
        // Still under the lock (issue 19): undone after letting go, this would delete the
        // files and the lock of the next install of the lineage, already waiting.
        if let Err(e) = &result {
            if !matches!(e, InstallError::ReloadFailed(_)) && !made.links_moved {
                made.undo();
            }
        }
        result
    }

    /// What every install and stage refuses before touching the disk: a name no file can carry,
    /// version 0, files that are not a verified pair. Returns the time it verified at.
    pub(super) fn check_request(
        lineage: &LineageName,
        version: u32,
        files: &LineageFiles,
    ) -> std::result::Result<i64, InstallError> {
        if lineage.as_str().len() > NAME_MAX {
            return Err(InstallError::Refused(format!(
                "lineage {} is {} bytes (expected at most {NAME_MAX}, a file name)",
                crate::text::printable(lineage.as_str()),
                lineage.as_str().len()
            )));
        }
        if version == 0 || files.privkey_link == Some(0) {
            return Err(InstallError::Refused(
                "version 0 (expected certbot's numbering, from 1)".into(),
            ));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        crate::pem::verify_pair(
            &files.cert,
            &files.chain,
            &files.fullchain,
            &files.privkey,
            now,
        )
        .map_err(InstallError::Unverified)?;
        Ok(now)
    }

    /// Makes the lineage's directories (walked without following symlinks: a planted
    /// `live/<lineage>` link is refused) and takes its install lock. An install that failed
    /// removes what it created, the lock file and fresh directories included, before it lets
    /// go; a waiter then holds a lock nobody else will see, so it starts over (bounded).
    pub(super) fn lock_lineage(
        &self,
        lineage: &LineageName,
        made: &mut Created,
    ) -> std::result::Result<crate::lockfile::Lock, InstallError> {
        let locked = self.lock_lineage_once(lineage, made);
        if locked.is_err() {
            made.undo();
        }
        locked
    }

    fn lock_lineage_once(
        &self,
        lineage: &LineageName,
        made: &mut Created,
    ) -> std::result::Result<crate::lockfile::Lock, InstallError> {
        let lock_path = self.archive_dir(lineage).join(".certherd.lock");
        for _ in 0..LOCK_ATTEMPTS {
            for (parts, mode) in [
                (["archive", ""], 0o700),
                (["live", ""], 0o700),
                (["archive", lineage.as_str()], 0o755),
                (["live", lineage.as_str()], 0o755),
            ] {
                let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
                crate::fsx::walk(&self.root, &parts, Some(mode), &mut made.dirs)?;
            }
            made.note(&lock_path);
            // Blocking is fine: the other holder is an install of the same lineage, bounded by
            // its command timeouts, and sshd's channel is gone if the primary gives up.
            if let Some(lock) = crate::lockfile::lock_current(&lock_path)? {
                crate::fsx::remove_stale_temps(&self.live_dir(lineage))?;
                crate::fsx::remove_stale_temps(&self.archive_dir(lineage))?;
                return Ok(lock);
            }
        }
        Err(InstallError::Other(Error::Failed(format!(
            "{}: removed under this install {LOCK_ATTEMPTS} times in a row (expected the \
             other installs of the lineage to finish)",
            lock_path.display()
        ))))
    }

    fn install_verified(
        &self,
        lineage: &LineageName,
        version: u32,
        files: &LineageFiles,
        commands: &Commands,
        how: (OnSplitBrain, i64),
        made: &mut Created,
    ) -> std::result::Result<Installed, InstallError> {
        let prepared = self.prepare(lineage, version, files, how, made)?;
        if prepared.current {
            return Ok(prepared.installed(false));
        }
        self.switch_links(lineage, version)?;
        crate::crashpoint!("before-test");

        if let Err(output) = commands.test() {
            self.restore_links(lineage, &prepared.previous)?;
            // Back where it was: what this install created goes too.
            made.links_moved = false;
            return Err(InstallError::TestFailed {
                output,
                restored: prepared.before,
            });
        }
        crate::crashpoint!("after-test");
        // A failed reload keeps the marker: the next deploy or sync tests and reloads again.
        commands.reload().map_err(InstallError::ReloadFailed)?;
        crate::crashpoint!("after-reload");
        self.finish(lineage)?;
        Ok(prepared.installed(true))
    }

    /// Everything of an install before its links move, under the lineage lock: the no-op check,
    /// the split-brain rule, the staged files, the pending marker (the links to go back to),
    /// then the version's archive names. `install` and the batch's `stage` share it.
    pub(super) fn prepare(
        &self,
        lineage: &LineageName,
        version: u32,
        files: &LineageFiles,
        (on_split_brain, now): (OnSplitBrain, i64),
        made: &mut Created,
    ) -> std::result::Result<Prepared, InstallError> {
        let archive = self.archive_dir(lineage);
        let live = self.live_dir(lineage);
        // An earlier install that moved the links but never finished its test and reload (agent
        // killed, connection cut, reload failed) left this marker: links naming the version are
        // then not proof that the node runs it, so the install is finished instead of skipped.
        let pending_path = live.join(PENDING);
        crate::fsx::refuse_if_symlink(&pending_path)?;
        let pending = read_pending(&pending_path);
        let before = match &pending {
            Some(links) => version_of(links),
            None => self.current_version(lineage).ok(),
        };
        if pending.is_none() && self.has(lineage, version, files) {
            key_mode_0600(&archive, version)?;
            return Ok(Prepared {
                version,
                before,
                current: true,
                previous: Vec::new(),
                kept: None,
            });
        }

        // Guarantee 2: what is on disk under this number is never overwritten. Other content
        // there is a split brain: refused, or (sync) this node's version kept aside first.
        let kept = match super::split_brain::find(&archive, version, files)? {
            None => None,
            Some(conflict) if on_split_brain == OnSplitBrain::Refuse => {
                return Err(InstallError::SplitBrain(conflict))
            }
            Some(conflict) => Some((super::split_brain::keep(&archive, &conflict)?, conflict)),
        };

        // All four under staged names, synced and verified as read back, before any name of
        // this version changes.
        super::stage::write(&archive, version, files, now, |p| made.note(p))?;
        made.note(&live.join("README"));
        write_readme(&live)?;

        // What to roll back to: the links before the first unfinished install, else the current
        // ones (a link to this node's own clashing version: to its kept copy); recorded before
        // any archive name or link changes.
        let previous: Vec<Option<PathBuf>> = match pending {
            Some(links) => links,
            None => KINDS
                .iter()
                .map(|k| fs::read_link(live.join(format!("{k}.pem"))).ok())
                .collect(),
        };
        let previous: Vec<Option<PathBuf>> = match &kept {
            Some((k, _)) => KINDS
                .iter()
                .zip(previous)
                .map(|(kind, t)| k.redirect(&archive, lineage, kind, t))
                .collect(),
            None => previous,
        };
        let record = serde_json::to_vec(&previous)?;
        made.note(&pending_path);
        write_if_changed(&pending_path, &record, 0o600)?;
        sync_dir(&live)?;
        crate::crashpoint!("after-pending-marker");
        // From here an error leaves the marker: the next install finishes or undoes this one.
        made.links_moved = true;
        if let Some((k, _)) = &kept {
            super::split_brain::release(&archive, &live, lineage, k)?;
        }
        super::stage::commit(&archive, version, |p| made.note(p))?;
        key_mode_0600(&archive, version)?;
        Ok(Prepared {
            version,
            before,
            current: false,
            previous,
            kept: kept.map(|(k, c)| SplitBrainKept {
                version,
                ours: c.ours,
                theirs: c.theirs,
                kept: format!("archive/{lineage}/{}/", k.dir),
            }),
        })
    }

    /// Points the four live links at `version` (each swapped by rename, never deleted first).
    pub(super) fn switch_links(&self, lineage: &LineageName, version: u32) -> Result<()> {
        let live = self.live_dir(lineage);
        for kind in KINDS {
            let target = PathBuf::from(format!("../../archive/{lineage}/{kind}{version}.pem"));
            swap_symlink(&live.join(format!("{kind}.pem")), &target)?;
            crate::crashpoint!("after-link-{kind}");
        }
        sync_dir(&live)
    }

    /// Puts the links recorded in the pending marker back and removes the marker: the lineage
    /// is where it was before the install.
    pub(super) fn restore_links(
        &self,
        lineage: &LineageName,
        previous: &[Option<PathBuf>],
    ) -> Result<()> {
        let live = self.live_dir(lineage);
        for (kind, old) in KINDS.iter().zip(previous) {
            let link = live.join(format!("{kind}.pem"));
            match old {
                Some(target) => swap_symlink(&link, target)?,
                None => remove_if_exists(&link)?,
            }
            crate::crashpoint!("rollback-after-link-{kind}");
        }
        sync_dir(&live)?;
        crate::crashpoint!("rollback-before-marker-removed");
        remove_if_exists(&live.join(PENDING))
    }

    /// After a passing test and reload: the marker goes, the install is complete.
    pub(super) fn finish(&self, lineage: &LineageName) -> Result<()> {
        let live = self.live_dir(lineage);
        remove_if_exists(&live.join(PENDING))?;
        sync_dir(&live)?;
        crate::crashpoint!("after-pending-removed");
        Ok(())
    }
}

/// An install prepared up to its links: what [`Layout::prepare`] leaves for the switch.
#[derive(Debug)]
pub(super) struct Prepared {
    /// The version prepared.
    pub version: u32,
    /// The version the links named before (the first unfinished install's, if any).
    pub before: Option<u32>,
    /// The node was already fully on this version: nothing to switch, test or reload.
    pub current: bool,
    /// The links to go back to (as recorded in the pending marker).
    pub previous: Vec<Option<PathBuf>>,
    /// A clashing version of this node's, kept aside.
    pub kept: Option<SplitBrainKept>,
}

impl Prepared {
    /// The answer for this install once done (`changed`: links moved and the node reloaded).
    pub fn installed(&self, changed: bool) -> Installed {
        Installed {
            before: self.before,
            after: self.version,
            changed,
            split_brain: self.kept.clone(),
        }
    }
}

/// How many times an install takes the lineage lock again after finding its lock file removed
/// by the holder it waited for (each wait is bounded by that holder's command timeouts).
const LOCK_ATTEMPTS: usize = 20;

/// Longest file name the kernel accepts (NAME_MAX on Linux).
const NAME_MAX: usize = 255;

/// What an install created, to remove again when it does not complete.
#[derive(Default, Debug)]
pub(super) struct Created {
    /// Directories it made, outermost first.
    dirs: Vec<PathBuf>,
    /// Files (and symlinks) that did not exist before it wrote them.
    pub(super) files: Vec<PathBuf>,
    /// Live links have moved: what they name must stay until a rollback puts them back.
    pub(super) links_moved: bool,
}

impl Created {
    /// Remembers `path` as created by this install if nothing is there yet.
    pub(super) fn note(&mut self, path: &Path) {
        if fs::symlink_metadata(path).is_err() {
            self.files.push(path.to_owned());
        }
    }

    /// Removes, newest first, what this install created (best effort: the error that made the
    /// install fail is the one reported).
    pub(super) fn undo(&mut self) {
        for f in self.files.drain(..).rev() {
            let _ = fs::remove_file(&f);
            let _ = fs::remove_file(temp_name(&f));
        }
        for d in self.dirs.drain(..).rev() {
            let _ = fs::remove_dir(&d);
        }
    }
}

/// Sets a version's private key file to 0600 when it is not (a key certbot or an older certherd
/// left 0644, or the older file a key-reuse link names). A symlink is never followed further
/// than one link inside the archive directory.
fn key_mode_0600(archive: &Path, version: u32) -> Result<()> {
    let mut path = archive.join(format!("privkey{version}.pem"));
    let mut meta = fs::symlink_metadata(&path).map_err(|e| Error::io("cannot stat", &path, e))?;
    if meta.is_symlink() {
        let target = fs::read_link(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        if target.components().count() != 1 {
            return Ok(());
        }
        path = archive.join(target);
        meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
    }
    if meta.is_file() && meta.permissions().mode() & 0o7777 != 0o600 {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("cannot chmod", &path, e))?;
    }
    Ok(())
}

fn write_readme(live: &Path) -> Result<()> {
    const README: &str = "This directory contains your keys and certificates.\n\n\
`privkey.pem`  : the private key for your certificate.\n\
`fullchain.pem`: the certificate file used in most server software.\n\
`chain.pem`    : used for OCSP stapling in Nginx >=1.3.7.\n\
`cert.pem`     : will break many server configurations, and should not be used\n\
                 without reading further documentation (see link below).\n\n\
WARNING: DO NOT MOVE OR RENAME THESE FILES!\n\
         certherd and Certbot expect these files to remain in this location in order\n\
         to function properly!\n\n\
We recommend not moving these files. For more information, see the Certbot\n\
User Guide at https://certbot.eff.org/docs/using.html#where-are-my-certificates.\n";
    let path = live.join("README");
    if path.exists() {
        return Ok(());
    }
    write_if_changed(&path, README.as_bytes(), 0o644)
}

#[cfg(test)]
#[path = "install_tests.rs"]
pub(super) mod tests;
