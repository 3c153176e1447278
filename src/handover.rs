//! Gives what certbot wrote as root back to the owner of the letsencrypt dir.
//!
//! In production the agent's account owns the letsencrypt dir on every node, so that a node can
//! be a peer (the agent installs there) and, after a failover, the primary (certbot runs there as
//! root and creates `archive/<lineage>/`, `live/<lineage>/`, `renewal/`, `accounts/` as root,
//! 0700/0755). Without this step a node that was primary could no longer be installed on as a
//! peer: the agent would get "Permission denied" in certbot's root-owned directories. `deploy`
//! and `sync` run on the node where certbot just ran, as root, so they hand the tree over first.
//!
//! Root walking a tree that another account owns is the classic privilege hazard, so: every
//! directory is opened relative to its parent with `O_NOFOLLOW | O_DIRECTORY` (a directory
//! swapped for a symlink is refused, never followed), ownership is changed with
//! `AT_SYMLINK_NOFOLLOW`, only entries owned by root are changed (what certbot made), and a
//! regular file with more than one link is left alone (a hard link planted to a root file).

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fstat, fstatat, Mode, SFlag};
use nix::unistd::{fchownat, geteuid, Gid, Uid};

/// certbot's tree is four levels deep (`archive/<lineage>/certN.pem`); anything deeper is left.
const MAX_DEPTH: usize = 6;

/// Why the hand-over stopped; the caller reports it and goes on (it only matters for a later
/// change of roles).
#[derive(Debug, thiserror::Error)]
#[error("cannot give {path} to the letsencrypt dir's owner: {source}")]
pub struct HandoverError {
    /// The entry it stopped at.
    pub path: PathBuf,
    /// What the system said.
    pub source: nix::Error,
}

fn err(path: &Path) -> impl FnOnce(nix::Error) -> HandoverError + '_ {
    move |source| HandoverError {
        path: path.to_path_buf(),
        source,
    }
}

/// When running as root and `dir` belongs to another account, gives every root-owned entry
/// under it to that account (and its group). Returns how many entries changed; 0 when not root
/// or when `dir` itself is root's (a primary-only set-up).
pub fn hand_over(dir: &Path) -> Result<usize, HandoverError> {
    if !geteuid().is_root() {
        return Ok(0);
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let top = match Dir::open(dir, flags, Mode::empty()) {
        Ok(d) => d,
        Err(nix::Error::ENOENT) => return Ok(0),
        Err(e) => return Err(err(dir)(e)),
    };
    let st = fstat(top.as_raw_fd()).map_err(err(dir))?;
    if st.st_uid == 0 {
        return Ok(0);
    }
    let owner = (Uid::from_raw(st.st_uid), Gid::from_raw(st.st_gid));
    walk(top, dir, owner, 0)
}

fn walk(mut d: Dir, path: &Path, owner: (Uid, Gid), depth: usize) -> Result<usize, HandoverError> {
    let fd = d.as_raw_fd();
    let names: Vec<std::ffi::CString> = d
        .iter()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    let mut changed = 0;
    for name in names {
        let child = path.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
        let st = match fstatat(Some(fd), name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(nix::Error::ENOENT) => continue, // removed meanwhile
            Err(e) => return Err(err(&child)(e)),
        };
        let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
        let planted_link = kind == SFlag::S_IFREG && st.st_nlink > 1;
        if st.st_uid == 0 && !planted_link {
            fchownat(
                Some(fd),
                name.as_c_str(),
                Some(owner.0),
                Some(owner.1),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(err(&child))?;
            changed += 1;
        }
        if kind == SFlag::S_IFDIR && depth < MAX_DEPTH {
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
            match Dir::openat(Some(fd), name.as_c_str(), flags, Mode::empty()) {
                Ok(sub) => changed += walk(sub, &child, owner, depth + 1)?,
                Err(nix::Error::ENOENT) => {}
                Err(e) => return Err(err(&child)(e)),
            }
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// As root: root-made entries go to the dir's owner, a symlink is not followed, a hard
    /// link to a file outside is left as it is.
    #[test]
    fn hands_root_entries_to_the_owner_without_following_links() {
        assert!(
            geteuid().is_root(),
            "this test needs root (chown), as the e2e tests do"
        );
        let t = std::env::temp_dir().join(format!("certherd-handover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let le = t.join("le");
        std::fs::create_dir_all(le.join("archive/site.test")).unwrap();
        std::fs::write(le.join("archive/site.test/cert1.pem"), "x").unwrap();
        let outside = t.join("outside");
        std::fs::write(&outside, "secret").unwrap();
        std::os::unix::fs::symlink(&outside, le.join("archive/link")).unwrap();
        std::fs::hard_link(&outside, le.join("archive/hard")).unwrap();
        std::os::unix::fs::chown(&le, Some(65534), Some(65534)).unwrap();
        let n = hand_over(&le).unwrap();
        assert_eq!(n, 4, "archive, site.test, cert1.pem, the symlink itself");
        for p in [
            "archive",
            "archive/site.test",
            "archive/site.test/cert1.pem",
        ] {
            assert_eq!(std::fs::metadata(le.join(p)).unwrap().uid(), 65534, "{p}");
        }
        assert_eq!(
            std::fs::metadata(&outside).unwrap().uid(),
            0,
            "not followed"
        );
        assert_eq!(
            std::fs::symlink_metadata(le.join("archive/link"))
                .unwrap()
                .uid(),
            65534
        );
        std::fs::remove_dir_all(&t).unwrap();
    }
}
