//! A new version's four files, staged: written under temp names next to their final ones
//! (`.certN.pem.certherd-staged`), fsynced, read back and verified as a pair, and only then
//! renamed in by [`commit`], after the install recorded its pending marker. So no version number
//! ever shows a certificate beside a key that is not its own, and a kill at any moment leaves
//! either nothing under the new names or files that are the incoming ones, byte for byte.
//!
//! The staged names are fixed (no PID): the lineage lock is held, so one left by a killed install
//! is stale and is removed, never an obstacle. certbot ignores them (it counts `certN.pem`).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::layout::KINDS;
use crate::error::{Error, Result};
use crate::fsx::{remove_if_exists, sync_dir};
use crate::wire::LineageFiles;

/// Marks the staged names (the tests look for it after every crash point).
pub const STAGED_SUFFIX: &str = ".certherd-staged";

/// `archive/<lineage>/certN.pem` → `archive/<lineage>/.certN.pem.certherd-staged`
pub fn staged_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}{STAGED_SUFFIX}"))
}

/// `kind`'s final name for `version` in `archive`.
pub fn final_name(archive: &Path, kind: &str, version: u32) -> PathBuf {
    archive.join(format!("{kind}{version}.pem"))
}

/// Writes the four files under their staged names (a key-reuse link as a staged symlink when the
/// older key here holds the same key), syncs them and the directory, then verifies the pair as
/// read back from disk. `note` is told each staged path before it is written (to undo).
pub(super) fn write(
    archive: &Path,
    version: u32,
    files: &LineageFiles,
    now: i64,
    mut note: impl FnMut(&Path),
) -> std::result::Result<(), super::InstallError> {
    let contents = [&files.cert, &files.chain, &files.fullchain, &files.privkey];
    for (kind, content) in KINDS.iter().zip(contents) {
        let staged = staged_name(&final_name(archive, kind, version));
        remove_if_exists(&staged)?;
        note(&staged);
        let reuse = (*kind == "privkey")
            .then_some(files.privkey_link)
            .flatten()
            .filter(|m| *m != version)
            .filter(|m| {
                fs::read_to_string(final_name(archive, "privkey", *m))
                    .is_ok_and(|k| k == files.privkey)
            });
        match reuse {
            // Keep certbot's key-reuse link when the older key file here holds the same key.
            Some(m) => std::os::unix::fs::symlink(format!("privkey{m}.pem"), &staged)
                .map_err(|e| Error::io("cannot create symlink", &staged, e))?,
            None => {
                let mode = if *kind == "privkey" { 0o600 } else { 0o644 };
                write_new(&staged, content.as_bytes(), mode)?;
            }
        }
    }
    sync_dir(archive)?;
    let read = |kind: &str| {
        let p = staged_name(&final_name(archive, kind, version));
        fs::read_to_string(&p).map_err(|e| Error::io("cannot read back", p, e))
    };
    crate::pem::verify_pair(
        &read("cert")?,
        &read("chain")?,
        &read("fullchain")?,
        &read("privkey")?,
        now,
    )
    .map_err(super::InstallError::Unverified)?;
    crate::crashpoint!("after-staged");
    Ok(())
}

/// A new file with this content and mode, never through a planted symlink, synced.
fn write_new(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(content)?;
        f.sync_all()
    })();
    result.map_err(|e| Error::io("cannot write", path, e))
}

/// Renames the staged files to their final names: the certificates first, the key last (before
/// it, version N has certificates and no key, never a key that is not theirs). `note` is told
/// each final name before it appears (to undo after a rollback).
pub(super) fn commit(archive: &Path, version: u32, mut note: impl FnMut(&Path)) -> Result<()> {
    for kind in KINDS {
        let to = final_name(archive, kind, version);
        note(&to);
        let from = staged_name(&to);
        fs::rename(&from, &to).map_err(|e| Error::io("cannot rename", &from, e))?;
        crate::crashpoint!("after-archive-{kind}");
    }
    sync_dir(archive)
}
