//! Who besides root may change what root reads: a file's owner and mode, and the same for every
//! directory above it (whoever may write a directory may replace the file in it). Symlinks are
//! followed — the file root reads is the target — and the directories above the link count too.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One reason a non-root account may change a file: the path (the file or a directory above
/// it, real) and why, in words that name the account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Writable {
    /// The file itself or a directory above it.
    pub path: PathBuf,
    /// A directory (not the file itself).
    pub is_dir: bool,
    /// `owned by certherd (uid 998)`, `writable by every account (mode 0777)`, …
    pub why: String,
}

/// The checks of one scan: who counts as root, where the tree ends, and what was already seen.
pub struct Places {
    trusted_uid: u32,
    stop: PathBuf,
    seen: HashMap<(PathBuf, bool), Option<String>>,
}

impl Places {
    /// `trusted_uid` is root's (0) in production; ancestors are checked up to `stop` (`/`).
    pub fn new(trusted_uid: u32, stop: &Path) -> Places {
        Places {
            trusted_uid,
            stop: stop.to_owned(),
            seen: HashMap::new(),
        }
    }

    /// Every way a non-root account may change what root reads at `real`: the file (its
    /// target, if a link) and each directory above it and above the link. `creates`: `real` may
    /// be missing and would be read once it exists (an include's glob, an optional include), so
    /// the directory it would appear in may not be writable even with the sticky bit.
    pub fn check(&mut self, real: &Path, creates: bool) -> Vec<Writable> {
        let mut out = Vec::new();
        let canonical = std::fs::canonicalize(real).ok();
        if let Some(c) = &canonical {
            if let Some(why) = self.verdict(c, creates) {
                out.push(Writable {
                    path: c.clone(),
                    is_dir: std::fs::metadata(c).is_ok_and(|m| m.is_dir()),
                    why,
                });
            }
        }
        let chains = [canonical.as_deref(), Some(real)];
        for path in chains.into_iter().flatten() {
            let mut nearest = creates && canonical.is_none();
            for dir in self.ancestors(path) {
                if !dir.exists() {
                    continue;
                }
                if let Some(why) = self.verdict(&dir, nearest) {
                    if !out.iter().any(|w| w.path == dir) {
                        out.push(Writable {
                            path: dir,
                            is_dir: true,
                            why,
                        });
                    }
                }
                nearest = false;
            }
        }
        out
    }

    /// The directories above `path`, nearest first, up to the stop (or `/` for a path outside it).
    fn ancestors(&self, path: &Path) -> Vec<PathBuf> {
        let stop = if path.starts_with(&self.stop) {
            self.stop.as_path()
        } else {
            Path::new("/")
        };
        let mut out = Vec::new();
        for dir in path.ancestors().skip(1) {
            if dir.as_os_str().is_empty() {
                break;
            }
            out.push(dir.to_owned());
            if dir == stop {
                break;
            }
        }
        out
    }

    fn verdict(&mut self, path: &Path, creates: bool) -> Option<String> {
        let key = (path.to_owned(), creates);
        if let Some(v) = self.seen.get(&key) {
            return v.clone();
        }
        let v = std::fs::metadata(path)
            .ok()
            .and_then(|m| verdict(&m, self.trusted_uid, creates));
        self.seen.insert(key, v.clone());
        v
    }
}

/// Why a non-root account may write this file or directory, if it may.
fn verdict(meta: &std::fs::Metadata, trusted_uid: u32, creates: bool) -> Option<String> {
    let mode = meta.mode() & 0o7777;
    if meta.uid() != trusted_uid {
        return Some(format!("owned by {}", user(meta.uid())));
    }
    // In a sticky directory others may add entries but not replace root's.
    let sticky = meta.is_dir() && mode & 0o1000 != 0 && !creates;
    if mode & 0o002 != 0 && !sticky {
        return Some(format!("writable by every account (mode {mode:04o})"));
    }
    if mode & 0o020 != 0 && !sticky {
        return Some(format!(
            "writable by group {} (mode {mode:04o})",
            group(meta.gid())
        ));
    }
    None
}

/// `name (uid N)`, or `uid N` for an account without a name.
pub fn user(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

fn group(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(g)) => format!("{} (gid {gid})", g.name),
        _ => format!("gid {gid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn chmod(p: &Path, mode: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn the_file_its_directories_and_a_links_target_count() {
        let me = nix::unistd::geteuid().as_raw();
        let root = crate::scratch::scratch("place");
        std::fs::create_dir_all(root.join("etc/ok")).unwrap();
        std::fs::create_dir_all(root.join("etc/open")).unwrap();
        chmod(&root, 0o755);
        chmod(&root.join("etc"), 0o755);
        chmod(&root.join("etc/ok"), 0o755);
        std::fs::write(root.join("etc/ok/a.conf"), "").unwrap();
        chmod(&root.join("etc/ok/a.conf"), 0o644);
        let mut places = Places::new(me, &root);
        assert_eq!(places.check(&root.join("etc/ok/a.conf"), false), []);

        chmod(&root.join("etc/ok/a.conf"), 0o666);
        let mut places = Places::new(me, &root);
        let w = places.check(&root.join("etc/ok/a.conf"), false);
        assert!(
            w.len() == 1 && !w[0].is_dir && w[0].why.contains("every account"),
            "{w:?}"
        );
        chmod(&root.join("etc/ok/a.conf"), 0o644);

        // A link in a good directory to a file in a group-writable one.
        chmod(&root.join("etc/open"), 0o775);
        std::fs::write(root.join("etc/open/b.conf"), "").unwrap();
        std::os::unix::fs::symlink("../open/b.conf", root.join("etc/ok/b.conf")).unwrap();
        let mut places = Places::new(me, &root);
        let w = places.check(&root.join("etc/ok/b.conf"), false);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].is_dir && w[0].path.ends_with("etc/open") && w[0].why.contains("group"));

        // Sticky: fine for a file that exists, not for one that would be read once created.
        chmod(&root.join("etc/open"), 0o1777);
        let mut places = Places::new(me, &root);
        assert_eq!(places.check(&root.join("etc/open/b.conf"), false), []);
        let w = places.check(&root.join("etc/open/new.conf"), true);
        assert!(w.len() == 1 && w[0].why.contains("every account"), "{w:?}");

        // Another owner (root's files, seen by a test that trusts another uid).
        let mut places = Places::new(me.wrapping_add(1), &root);
        let w = places.check(&root.join("etc/ok/a.conf"), false);
        assert!(w[0].why.starts_with("owned by"), "{w:?}");
    }
}
