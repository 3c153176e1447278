//! Where the primary's control sockets live. A socket there is a live login to every peer, so
//! the directory must be ours alone (0700, not a symlink); and since every fan-out goes through
//! it, no other local user may be able to stop renewals by creating it first.
//!
//! Configured (`[ssh] control_dir`): that directory or a refusal, as the operator asked. Root:
//! `/run/certherd`. Any other account, the first that is ours and private of: `/run/certherd`
//! (a unit run with `User=` and `RuntimeDirectory=`), `/run/certherd-<uid>` (made by root when
//! certherd drops to the account: only root can create entries in `/run`), `$XDG_RUNTIME_DIR/certherd` (a login session), `/tmp/certherd-<uid>`.
//! The last one anyone can create first in `/tmp`; then it is a warning and a fresh private
//! directory (mkdtemp), never a refusal.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::PeerError;
use crate::config::SshConfig;

/// The directory for control sockets (see the module docs). Created 0700; a configured one is
/// refused when it is not ours or others can enter it. The default of a non-root account is
/// chosen once per process, so every peer of one run shares it.
pub fn control_dir(config: &SshConfig) -> Result<PathBuf, PeerError> {
    let uid = nix::unistd::getuid().as_raw();
    if let Some(dir) = &config.control_dir {
        return private_dir(dir, uid, true).map_err(PeerError::Connect);
    }
    if uid == 0 {
        return private_dir(Path::new("/run/certherd"), uid, true).map_err(PeerError::Connect);
    }
    static CHOSEN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    CHOSEN
        .get_or_init(|| {
            let (dir, warning) = choose(&candidates(uid), Path::new("/tmp"), uid)?;
            if let Some(w) = warning {
                crate::warn!("{w}");
            }
            Ok(dir)
        })
        .clone()
        .map_err(PeerError::Connect)
}

/// A non-root account's default places, best first, each with whether certherd may create it.
fn candidates(uid: u32) -> Vec<(PathBuf, bool)> {
    let mut c = vec![
        // A unit with `User=` and `RuntimeDirectory=certherd` (`RuntimeDirectoryMode=0700`).
        (PathBuf::from("/run/certherd"), false),
        (crate::privdrop::account_runtime_dir(uid), false),
    ];
    if let Some(r) = std::env::var_os("XDG_RUNTIME_DIR").filter(|r| !r.is_empty()) {
        c.push((PathBuf::from(r).join("certherd"), true));
    }
    c.push((PathBuf::from(format!("/tmp/certherd-{uid}")), true));
    c
}

/// The first candidate that is (or could be made) ours and private; when none is, a fresh
/// private directory under `tmp` and a warning naming why the last candidate was refused.
fn choose(
    candidates: &[(PathBuf, bool)],
    tmp: &Path,
    uid: u32,
) -> Result<(PathBuf, Option<String>), String> {
    let mut why = String::from("no candidate");
    for (dir, create) in candidates {
        if !create && std::fs::symlink_metadata(dir).is_err() {
            continue;
        }
        match private_dir(dir, uid, *create) {
            Ok(dir) => return Ok((dir, None)),
            Err(e) => why = e,
        }
    }
    let template = tmp.join(format!("certherd-{uid}-XXXXXX"));
    let fresh = nix::unistd::mkdtemp(&template)
        .map_err(|e| format!("{why}; and cannot create {}: {e}", template.display()))?;
    let fresh = private_dir(&fresh, uid, false)?;
    let warning = format!(
        "{why}: using the fresh private directory {} instead (remove the other one, or set [ssh] control_dir)",
        fresh.display()
    );
    Ok((fresh, Some(warning)))
}

/// `dir` when it is a directory (not a symlink) owned by `uid` that others cannot enter;
/// created 0700 first when `create` and it does not exist.
fn private_dir(dir: &Path, uid: u32, create: bool) -> Result<PathBuf, String> {
    if create {
        match std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(false)
            .create(dir)
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => {
                return Err(format!(
                    "cannot create control directory {}: {e}",
                    dir.display()
                ))
            }
        }
    }
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| format!("control directory {}: {e}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != uid || meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "control directory {} must be a directory owned by uid {uid} with mode 0700",
            dir.display()
        ));
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::scratch;

    /// Runs as root (as the e2e tests do): the directories made here are uid 0's.
    #[test]
    fn a_directory_someone_else_made_first_is_passed_over_with_a_warning() {
        let t = scratch("planted");
        let ours = t.join("ours");
        let made = choose(&[(ours.clone(), true)], &t, 0).unwrap();
        assert_eq!(made, (ours.clone(), None));
        assert_eq!(
            std::fs::metadata(&ours).unwrap().permissions().mode() & 0o777,
            0o700
        );

        // Another account's directory where ours should be: a fresh one, and a warning naming it.
        let planted = t.join("planted");
        std::fs::create_dir(&planted).unwrap();
        std::os::unix::fs::chown(&planted, Some(65534), None).unwrap();
        let (fresh, warning) = choose(&[(planted.clone(), true)], &t, 0).unwrap();
        assert_ne!(fresh, planted);
        assert!(fresh.starts_with(&t), "{}", fresh.display());
        let meta = std::fs::symlink_metadata(&fresh).unwrap();
        assert_eq!((meta.uid(), meta.permissions().mode() & 0o777), (0, 0o700));
        let warning = warning.unwrap();
        assert!(
            warning.contains(&planted.display().to_string()) && warning.contains("fresh"),
            "{warning}"
        );

        // A symlink to a private directory of ours is someone's plant too; a directory open to
        // others is not private.
        let link = t.join("link");
        std::os::unix::fs::symlink(&ours, &link).unwrap();
        assert_ne!(choose(&[(link, true)], &t, 0).unwrap().0, ours);
        std::fs::set_permissions(&ours, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(choose(&[(ours.clone(), true)], &t, 0).unwrap().1.is_some());

        // A candidate certherd may not create is skipped when absent, used when ours.
        let runtime = t.join("runtime");
        let later = t.join("later");
        let (dir, _) = choose(&[(runtime.clone(), false), (later.clone(), true)], &t, 0).unwrap();
        assert_eq!(dir, later);
        assert!(!runtime.exists(), "a root-made candidate was created");
        std::fs::remove_dir_all(&t).unwrap();
    }

    #[test]
    fn a_configured_directory_is_ours_or_refused() {
        let t = scratch("configured");
        let dir = t.join("cm");
        assert_eq!(private_dir(&dir, 0, true).unwrap(), dir);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        let e = private_dir(&dir, 0, true).unwrap_err();
        assert!(e.contains("mode 0700"), "{e}");
        std::fs::remove_dir_all(&t).unwrap();
    }
}
