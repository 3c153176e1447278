//! Who, besides root, can change what certbot reads in the letsencrypt dir: the decision
//! [`super::become_owner_of`] acts on.
//!
//! certbot, run as root, executes what the tree tells it to: hooks in `renewal/*.conf` and
//! `cli.ini`, the scripts in `renewal-hooks/{pre,deploy,post}/`; and it writes through `archive/`
//! and `live/`. The owner of the top level alone says nothing about those (a config-management
//! run, an `rsync -a` or a tar restore can leave the top root's and `renewal-hooks/` the
//! account's). So every place certbot reads is looked at: the directories themselves, the
//! renewal confs and hook scripts, the account directories, and each lineage directory under
//! `archive/` and `live/` (their own owner and mode, not every PEM in them: with 1,000 lineages
//! that stays a few thousand `lstat`s).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Entries read from one directory at most; a tree beyond that is refused rather than half
/// checked.
const MAX_ENTRIES: usize = 50_000;
/// How deep `accounts/` is walked (`accounts/<server>/directory/<id>/`), directories only.
const ACCOUNTS_DEPTH: usize = 4;

/// What the walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The dir does not exist (yet).
    Missing,
    /// Everything is root's and no one else may write it.
    Root,
    /// Everything that is not root's belongs to this one account; `path` is the first such.
    Account {
        /// Its uid.
        uid: u32,
        /// A path it owns.
        path: PathBuf,
    },
}

/// Why the tree cannot be worked on as anyone.
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A path could not be examined.
    #[error("cannot examine {path}: {source}")]
    Stat {
        /// The path.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Two non-root accounts own parts of it: running as either leaves the other's files to it.
    #[error("the letsencrypt dir is split between two accounts: {first} belongs to {}, {second} to {}; expected one owner (chown -R certherd:certherd {top})", owner_name(*first_uid), owner_name(*second_uid))]
    Split {
        /// The letsencrypt dir.
        top: PathBuf,
        /// A path of the first account.
        first: PathBuf,
        /// Its owner.
        first_uid: u32,
        /// A path of the second account.
        second: PathBuf,
        /// Its owner.
        second_uid: u32,
    },
    /// A root-owned path that a group or everyone may write: no single account to run as.
    #[error("{path} belongs to root but is writable by {by} (mode {mode:o}): expected no group or other write bits (chmod go-w {path})")]
    Writable {
        /// The path.
        path: PathBuf,
        /// `group <gid>` or `every account`.
        by: String,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory with more entries than [`MAX_ENTRIES`].
    #[error("{path} has more than {MAX_ENTRIES} entries: refusing to run certbot over a tree that was not checked")]
    TooMany {
        /// The directory.
        path: PathBuf,
    },
}

/// `name (uid N)`, or `uid N` when the uid has no account.
fn owner_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(u)) => format!("{} (uid {uid})", u.name),
        _ => format!("uid {uid}"),
    }
}

/// Decides who certbot must run as over the letsencrypt dir `top` (see the module docs).
pub fn decide(top: &Path) -> Result<Decision, TreeError> {
    let mut walk = Walk {
        top: top.to_path_buf(),
        owner: None,
    };
    match std::fs::symlink_metadata(top) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Decision::Missing),
        _ => walk.path(top)?,
    };
    walk.path(&top.join("cli.ini"))?;
    walk.dir_and_children(&top.join("renewal"))?;
    let hooks = top.join("renewal-hooks");
    walk.path(&hooks)?;
    for phase in ["pre", "deploy", "post"] {
        walk.dir_and_children(&hooks.join(phase))?;
    }
    walk.dirs_down(&top.join("accounts"), ACCOUNTS_DEPTH)?;
    walk.dir_and_children(&top.join("archive"))?;
    walk.dir_and_children(&top.join("live"))?;
    Ok(match walk.owner {
        None => Decision::Root,
        Some((uid, path)) => Decision::Account { uid, path },
    })
}

struct Walk {
    top: PathBuf,
    /// The non-root owner seen first, and where.
    owner: Option<(u32, PathBuf)>,
}

impl Walk {
    /// Looks at one path (not following a symlink); an absent one is nothing to look at.
    fn path(&mut self, path: &Path) -> Result<Option<std::fs::Metadata>, TreeError> {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(TreeError::Stat {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        let uid = meta.uid();
        if uid != 0 {
            match &self.owner {
                None => self.owner = Some((uid, path.to_path_buf())),
                Some((first_uid, first)) if *first_uid != uid => {
                    return Err(TreeError::Split {
                        top: self.top.clone(),
                        first: first.clone(),
                        first_uid: *first_uid,
                        second: path.to_path_buf(),
                        second_uid: uid,
                    })
                }
                Some(_) => {}
            }
        } else if !meta.is_symlink() {
            // Root's, yet someone else may write it: no account to become would keep them out.
            let mode = meta.permissions().mode() & 0o7777;
            let by = if mode & 0o002 != 0 {
                Some("every account".to_owned())
            } else if mode & 0o020 != 0 && meta.gid() != 0 {
                Some(format!("group {}", meta.gid()))
            } else {
                None
            };
            if let Some(by) = by {
                return Err(TreeError::Writable {
                    path: path.to_path_buf(),
                    by,
                    mode,
                });
            }
        }
        Ok(Some(meta))
    }

    /// The entries of directory `dir`, bounded; none when it is absent or not a directory.
    fn children(&mut self, dir: &Path) -> Result<Vec<PathBuf>, TreeError> {
        let Some(meta) = self.path(dir)? else {
            return Ok(Vec::new());
        };
        if !meta.is_dir() {
            return Ok(Vec::new());
        }
        let stat = |source| TreeError::Stat {
            path: dir.to_path_buf(),
            source,
        };
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(stat)? {
            if out.len() == MAX_ENTRIES {
                return Err(TreeError::TooMany {
                    path: dir.to_path_buf(),
                });
            }
            out.push(entry.map_err(stat)?.path());
        }
        Ok(out)
    }

    /// `dir` and each of its entries (not deeper).
    fn dir_and_children(&mut self, dir: &Path) -> Result<(), TreeError> {
        for child in self.children(dir)? {
            self.path(&child)?;
        }
        Ok(())
    }

    /// `dir` and the directories under it down to `depth` levels (files are not looked at).
    fn dirs_down(&mut self, dir: &Path, depth: usize) -> Result<(), TreeError> {
        let children = self.children(dir)?;
        if depth == 0 {
            return Ok(());
        }
        for child in children {
            if std::fs::symlink_metadata(&child).is_ok_and(|m| m.is_dir()) {
                self.dirs_down(&child, depth - 1)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::chown;

    /// A certbot-shaped tree, all root's (the unit tests run as root).
    fn tree(name: &str) -> crate::scratch::Scratch {
        let t = crate::scratch::scratch(&format!("tree-{name}"));
        for d in [
            "renewal",
            "renewal-hooks/pre",
            "renewal-hooks/deploy",
            "renewal-hooks/post",
            "accounts/acme.test/directory/abc",
            "archive/site.test",
            "live/site.test",
        ] {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        std::fs::write(t.join("renewal/site.test.conf"), "").unwrap();
        std::fs::write(t.join("archive/site.test/cert1.pem"), "").unwrap();
        for entry in walkdir(&t) {
            let mode = if entry.is_dir() { 0o755 } else { 0o644 };
            std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        t
    }

    fn walkdir(root: &Path) -> Vec<PathBuf> {
        let mut out = vec![root.to_path_buf()];
        let mut i = 0;
        while i < out.len() {
            if out[i].is_dir() {
                let more: Vec<PathBuf> = std::fs::read_dir(&out[i])
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .collect();
                out.extend(more);
            }
            i += 1;
        }
        out
    }

    const NOBODY: u32 = 65534;
    const DAEMON: u32 = 1;

    #[test]
    fn all_roots_is_root_and_missing_is_missing() {
        let t = tree("root");
        assert_eq!(decide(&t).unwrap(), Decision::Root);
        assert_eq!(decide(&t.join("nope")).unwrap(), Decision::Missing);
    }

    /// Any one place certbot reads that an account owns makes certherd that account, whatever
    /// the top level's owner.
    #[test]
    fn an_account_owning_any_part_certbot_reads_is_the_one_to_run_as() {
        for rel in [
            "",
            "renewal",
            "renewal/site.test.conf",
            "renewal-hooks",
            "renewal-hooks/deploy",
            "renewal-hooks/pre/hook.sh",
            "accounts/acme.test/directory/abc",
            "archive",
            "live/site.test",
            "cli.ini",
        ] {
            let t = tree("one");
            let path = t.join(rel);
            if !path.exists() {
                std::fs::write(&path, "").unwrap();
            }
            chown(&path, Some(NOBODY), None).unwrap();
            assert_eq!(
                decide(&t).unwrap(),
                Decision::Account {
                    uid: NOBODY,
                    path: path.clone()
                },
                "{rel}"
            );
        }
    }

    #[test]
    fn a_tree_split_between_two_accounts_is_refused_naming_both() {
        let t = tree("split");
        chown(t.join("renewal-hooks/deploy"), Some(NOBODY), None).unwrap();
        chown(t.join("live/site.test"), Some(DAEMON), None).unwrap();
        let e = decide(&t).unwrap_err().to_string();
        for part in [
            "renewal-hooks/deploy",
            "nobody (uid 65534)",
            "live/site.test",
            "(uid 1)",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
    }

    #[test]
    fn root_owned_but_writable_by_others_is_refused() {
        let t = tree("writable");
        let deploy = t.join("renewal-hooks/deploy");
        std::fs::set_permissions(&deploy, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = decide(&t).unwrap_err().to_string();
        assert!(
            e.contains("renewal-hooks/deploy") && e.contains("every account"),
            "{e}"
        );
        std::fs::set_permissions(&deploy, std::fs::Permissions::from_mode(0o775)).unwrap();
        chown(&deploy, None, Some(NOBODY)).unwrap();
        let e = decide(&t).unwrap_err().to_string();
        assert!(e.contains("group 65534"), "{e}");
        // Group root may write: that is root's.
        chown(&deploy, None, Some(0)).unwrap();
        assert_eq!(decide(&t).unwrap(), Decision::Root);
    }
}
