//! The bed's certherd binary where the agent's account can run it.
//!
//! The account runs certherd twice over: sshd starts `certherd agent` as it on every peer, and
//! certbot (which certherd runs as the letsencrypt dir's owner) runs the hooks as it on the
//! primary. A checkout under root's home (`/root/certherd`, mode 0700 above it) builds a binary
//! that account cannot reach: every hook then failed with certbot's "Unable to find
//! manual-auth-hook command …", every agent with "Permission denied". So a binary that others
//! cannot reach is placed in the bed's own directory (0755), and the bed runs that copy.

use crate::BedError;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Read and execute for others: what a non-root account that is neither owner nor group needs.
const OTHERS_RX: u32 = 0o005;
/// Search (execute) for others, on every directory above the binary.
const OTHERS_X: u32 = 0o001;

/// Whether any account can run `bin`: the file is readable and executable by others and every
/// directory above it can be entered by others. (Sufficient, not necessary: an account might
/// reach it through its group; the bed's account has only its own group, so this is exact here.)
pub(crate) fn runnable_by_anyone(bin: &Path) -> bool {
    let mode = |p: &Path| fs::metadata(p).map(|m| m.permissions().mode()).ok();
    let Ok(bin) = fs::canonicalize(bin) else {
        return false;
    };
    if !mode(&bin).is_some_and(|m| m & OTHERS_RX == OTHERS_RX) {
        return false;
    }
    bin.ancestors()
        .skip(1)
        .all(|dir| mode(dir).is_some_and(|m| m & OTHERS_X == OTHERS_X))
}

/// `bin` itself when anyone can run it (the installed `/usr/bin/certherd`, a checkout under
/// `/opt`), else a copy at `dir/certherd` (a hard link when the file's own mode allows it:
/// instant and no extra space; a copy made 0755 otherwise, e.g. across file systems).
pub(crate) fn place(bin: &Path, dir: &Path) -> Result<PathBuf, BedError> {
    if runnable_by_anyone(bin) {
        return Ok(bin.to_owned());
    }
    let src =
        fs::canonicalize(bin).map_err(BedError::io("canonicalize the certherd binary", &bin))?;
    fs::create_dir_all(dir).map_err(BedError::io("mkdir", &dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(BedError::io("chmod", &dir))?;
    let dest = dir.join("certherd");
    let _ = fs::remove_file(&dest);
    let own_mode = fs::metadata(&src)
        .map(|m| m.permissions().mode())
        .unwrap_or(0);
    let linked = own_mode & OTHERS_RX == OTHERS_RX && fs::hard_link(&src, &dest).is_ok();
    if !linked {
        fs::copy(&src, &dest).map_err(|e| {
            BedError::Setup(format!("copy {} to {}: {e}", src.display(), dest.display()))
        })?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755))
            .map_err(BedError::io("chmod", &dest))?;
    }
    if !runnable_by_anyone(&dest) {
        return Err(BedError::Setup(format!(
            "placed certherd at {} for the agent's account, but others still cannot run it (is /tmp mounted noexec or closed?)",
            dest.display()
        )));
    }
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("certherd-reach-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        d
    }

    #[test]
    fn a_binary_under_a_closed_directory_is_placed_where_anyone_can_run_it() {
        let top = scratch("closed");
        let private = top.join("home");
        fs::create_dir_all(private.join("checkout")).unwrap();
        fs::set_permissions(&private, fs::Permissions::from_mode(0o700)).unwrap();
        let bin = private.join("checkout/certherd");
        fs::write(&bin, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o755)).unwrap();
        assert!(!runnable_by_anyone(&bin));

        let placed = place(&bin, &top.join("bed/bin")).unwrap();
        assert_eq!(placed, top.join("bed/bin/certherd"));
        assert!(runnable_by_anyone(&placed));
        assert_eq!(fs::read(&placed).unwrap(), b"#!/bin/sh\n");

        // Open the directory: the binary is used where it is.
        fs::set_permissions(&private, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(place(&bin, &top.join("bed2/bin")).unwrap(), bin);
        assert!(!top.join("bed2").exists());
        fs::remove_dir_all(&top).unwrap();
    }

    #[test]
    fn a_binary_others_may_not_execute_is_copied_with_an_open_mode() {
        let top = scratch("mode");
        let bin = top.join("certherd");
        fs::write(&bin, "x").unwrap();
        fs::set_permissions(&bin, fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!runnable_by_anyone(&bin));
        let placed = place(&bin, &top.join("bin")).unwrap();
        assert_eq!(
            fs::metadata(&placed).unwrap().permissions().mode() & 0o777,
            0o755
        );
        // A copy, not a link: the original keeps its own mode.
        assert_eq!(
            fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
            0o700
        );
        fs::remove_dir_all(&top).unwrap();
    }
}
