//! Root never works over files the agent's account can write: started as root, certherd first
//! becomes the owner of the letsencrypt dir.
//!
//! The agent's account owns the letsencrypt dir on every node (it installs there as a peer). If
//! root then ran certbot over that tree — `certherd renew` from the timer, `certherd issue` typed
//! by an operator — certbot would run, as root, whatever the tree holds: `renew_hook`,
//! `pre_hook`, `post_hook` in `renewal/*.conf`, the scripts in `renewal-hooks/*/`. A bug in the
//! agent (reachable by a hostile primary) would become root on the next renewal. So every
//! command that reads or writes that tree, or runs certbot, switches to the tree's owner first
//! (the owner of any part certbot reads, not only of the top level: `tree`):
//! `initgroups`, `setgid`, `setuid` — each checked, then checked again that there is no way back
//! (`setuid(0)` must fail). certbot, its hooks and `certherd deploy`'s local reload (through the
//! sudoers line, as the agent's) then run as that account. A tree that root owns (a single-node
//! or not yet migrated set-up) is left as it is; `certherd doctor` warns about it.
//!
//! Dropping here, in the process, rather than `User=` in the systemd units alone: the same rule
//! then holds for cron, keepalived's notify script and an operator's root shell.

use std::ffi::CString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{getegid, geteuid, getgid, getuid, Gid, Uid, User};

mod tree;

/// Why certherd could not become the letsencrypt dir's owner; it then stops before doing
/// anything (exit 1), since going on as root is exactly what must not happen.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    /// The tree is split between accounts, or root's parts are writable by others.
    #[error(transparent)]
    Tree(#[from] tree::TreeError),
    /// The owner's uid has no account (no passwd entry): nothing to switch to.
    #[error("{path} in the letsencrypt dir {top} belongs to uid {uid}, which has no account: expected the agent's account (chown -R certherd:certherd {top})")]
    NoAccount {
        /// The letsencrypt dir.
        top: PathBuf,
        /// The part of it that uid owns (the dir itself when it owns that).
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// A step of the switch failed.
    #[error("cannot become {account} (the letsencrypt dir's owner): {step} failed: {source}")]
    Step {
        /// The account.
        account: String,
        /// `getpwuid`, `initgroups`, `setgid` or `setuid`.
        step: &'static str,
        /// What the system said.
        source: nix::Error,
    },
    /// After the switch the process could still act as root (or as someone else).
    #[error("after becoming {account} the process still has uid {uid}/{euid}, gid {gid}/{egid} or can become root again: refusing to go on")]
    StillPrivileged {
        /// The account.
        account: String,
        /// Real and effective uid, real and effective gid, after the switch.
        uid: u32,
        /// Effective uid.
        euid: u32,
        /// Real gid.
        gid: u32,
        /// Effective gid.
        egid: u32,
    },
}

/// What [`become_owner_of`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not started as root: nothing to drop.
    NotRoot,
    /// The dir does not exist (yet): nothing to protect, run as started.
    Missing,
    /// The dir belongs to root: run as root (single-node or not migrated; `doctor` warns).
    RootOwned,
    /// Now running as this account.
    Became {
        /// The account's name.
        account: String,
        /// Its uid.
        uid: u32,
        /// Its primary gid.
        gid: u32,
        /// The first path of the tree it owns (the letsencrypt dir itself when it owns that).
        owns: PathBuf,
    },
}

/// When running as root and any part of the tree certbot reads in `dir` belongs to another
/// account (`tree`: the top level, `renewal/`, `renewal-hooks/`, `accounts/`, `archive/`,
/// `live/`), becomes that account for good — supplementary groups, gid and uid, with `HOME`,
/// `USER` and `LOGNAME` set to the account's and root's `XDG_RUNTIME_DIR` removed — after making
/// its control-socket directory ([`account_runtime_dir`]). Refuses a tree split between two
/// accounts or with root's parts writable by others. Call it before any thread starts.
pub fn become_owner_of(dir: &Path) -> Result<Outcome, DropError> {
    if !geteuid().is_root() {
        return Ok(Outcome::NotRoot);
    }
    let (uid, owns) = match tree::decide(dir)? {
        tree::Decision::Missing => return Ok(Outcome::Missing),
        tree::Decision::Root => return Ok(Outcome::RootOwned),
        tree::Decision::Account { uid, path } => (uid, path),
    };
    let step = |account: &str, step: &'static str| {
        let account = account.to_owned();
        move |source| DropError::Step {
            account,
            step,
            source,
        }
    };
    let user = User::from_uid(Uid::from_raw(uid))
        .map_err(step(&format!("uid {uid}"), "getpwuid"))?
        .ok_or_else(|| DropError::NoAccount {
            top: dir.to_path_buf(),
            path: owns.clone(),
            uid,
        })?;
    let name = user.name.clone();
    // A passwd name never holds a NUL; should it, initgroups fails with EINVAL below.
    let c_name = CString::new(name.as_bytes()).unwrap_or_default();
    nix::unistd::initgroups(&c_name, user.gid).map_err(step(&name, "initgroups"))?;
    make_account_runtime_dir(&user);
    nix::unistd::setgid(user.gid).map_err(step(&name, "setgid"))?;
    nix::unistd::setuid(user.uid).map_err(step(&name, "setuid"))?;
    let still = DropError::StillPrivileged {
        account: name.clone(),
        uid: getuid().as_raw(),
        euid: geteuid().as_raw(),
        gid: getgid().as_raw(),
        egid: getegid().as_raw(),
    };
    let back = nix::unistd::setuid(Uid::from_raw(0)).is_ok()
        || nix::unistd::setgid(Gid::from_raw(0)).is_ok() && user.gid.as_raw() != 0;
    if back
        || getuid() != user.uid
        || geteuid() != user.uid
        || getgid() != user.gid
        || getegid() != user.gid
    {
        return Err(still);
    }
    // Single-threaded here (the caller's contract), so changing the environment is sound.
    std::env::set_var("HOME", &user.dir);
    std::env::set_var("USER", &name);
    std::env::set_var("LOGNAME", &name);
    std::env::remove_var("XDG_RUNTIME_DIR");
    Ok(Outcome::Became {
        account: name,
        uid,
        gid: user.gid.as_raw(),
        owns,
    })
}

/// The account's directory for SSH control sockets that root makes before dropping to it
/// (`crate::ssh`'s first choice for a non-root account). In `/run`, where only root can create
/// entries: no other local user can make it first, as anyone can in `/tmp`.
pub fn account_runtime_dir(uid: u32) -> PathBuf {
    PathBuf::from(format!("/run/certherd-{uid}"))
}

/// Creates [`account_runtime_dir`] for `user` (0700, theirs) while still root. Best effort: when
/// it cannot be made, or something other than a plain directory of root's or theirs is there,
/// it is left alone and `crate::ssh` passes it over.
fn make_account_runtime_dir(user: &User) {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = account_runtime_dir(user.uid.as_raw());
    // The promise rests on the parent: root's, and no one else may create entries in it.
    let parent_is_roots = dir
        .parent()
        .and_then(|p| std::fs::metadata(p).ok())
        .is_some_and(|m| m.uid() == 0 && m.permissions().mode() & 0o022 == 0);
    if !parent_is_roots {
        return;
    }
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let Ok(meta) = std::fs::symlink_metadata(&dir) else {
        return;
    };
    if meta.is_dir() && (meta.uid() == 0 || meta.uid() == user.uid.as_raw()) {
        let _ = std::os::unix::fs::lchown(&dir, Some(user.uid.as_raw()), Some(user.gid.as_raw()));
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
}

/// The account certbot runs as over `dir` when certherd is started as root (the owner of any
/// part of the tree, as [`become_owner_of`] decides); `None` for root, a missing dir, or a tree
/// that would be refused.
pub fn certbot_account(dir: &Path) -> Option<u32> {
    match tree::decide(dir) {
        Ok(tree::Decision::Account { uid, .. }) => Some(uid),
        _ => None,
    }
}

/// The warning `doctor` prints when root owns the letsencrypt dir: certbot and certherd then
/// run as root there, which is safe only while no agent can write the tree (a single node).
pub fn root_owned_warning(dir: &Path) -> Option<String> {
    let decision = tree::decide(dir).ok()?;
    (decision == tree::Decision::Root).then(|| {
        format!(
            "the letsencrypt dir {} belongs to root, so certbot runs as root here: fine on a single node; with peers or standbys give it (and /var/lib/letsencrypt, /var/log/letsencrypt) to the agent's account (chown -R certherd:certherd ...), then certherd runs certbot as that account",
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root (the unit tests run as root, as the e2e tests do), in a child process so the test
    /// runner keeps its privileges: a dir owned by `nobody` makes the process `nobody` for good.
    #[test]
    fn becomes_the_owner_and_cannot_go_back() {
        assert!(
            geteuid().is_root(),
            "this test needs root, as the e2e tests do"
        );
        let nobody = User::from_name("nobody")
            .unwrap()
            .expect("the nobody account");
        let t = std::env::temp_dir().join(format!("certherd-privdrop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(t.join("le")).unwrap();
        std::os::unix::fs::chown(t.join("le"), Some(nobody.uid.as_raw()), None).unwrap();
        std::fs::create_dir_all(t.join("root-le")).unwrap();
        assert_eq!(
            become_owner_of(&t.join("root-le")).unwrap(),
            Outcome::RootOwned
        );
        assert_eq!(
            become_owner_of(&t.join("missing")).unwrap(),
            Outcome::Missing
        );
        assert!(root_owned_warning(&t.join("root-le")).is_some());
        assert!(root_owned_warning(&t.join("le")).is_none());
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let ok = matches!(become_owner_of(&t.join("le")), Ok(Outcome::Became { uid, .. }) if uid == nobody.uid.as_raw())
                    && getuid() == nobody.uid
                    && geteuid() == nobody.uid
                    && nix::unistd::setuid(Uid::from_raw(0)).is_err()
                    && std::env::var("USER").as_deref() == Ok("nobody")
                    && std::fs::write("/root/certherd-privdrop-must-fail", "x").is_err();
                unsafe { nix::libc::_exit(if ok { 0 } else { 1 }) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                // Bounded: a child stuck on a lock another test thread held at fork is killed.
                let mut status = nix::sys::wait::WaitStatus::StillAlive;
                for _ in 0..200 {
                    status =
                        nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG))
                            .unwrap();
                    if status != nix::sys::wait::WaitStatus::StillAlive {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                if status == nix::sys::wait::WaitStatus::StillAlive {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    let _ = nix::sys::wait::waitpid(child, None);
                }
                std::fs::remove_dir_all(&t).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
                // Root made the account's control-socket directory before dropping: its own, 0700.
                use std::os::unix::fs::PermissionsExt;
                let run = account_runtime_dir(nobody.uid.as_raw());
                let meta = std::fs::symlink_metadata(&run).unwrap();
                let _ = std::fs::remove_dir(&run);
                assert_eq!(
                    (meta.uid(), meta.permissions().mode() & 0o777),
                    (nobody.uid.as_raw(), 0o700)
                );
            }
        }
    }
}
