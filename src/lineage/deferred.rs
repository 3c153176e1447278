//! Deploys deferred to the end of a certbot run (issue 19, item 2): one certbot run that renews
//! several lineages calls the deploy hook once per lineage; pushed one by one, every node tests
//! and reloads its web server once per lineage. Instead, a hook that runs under a certherd run
//! only writes the lineage's name down here, and the run pushes every name at once when its
//! certbot ends: one config test and one reload per node.
//!
//! `<letsencrypt_dir>/.certherd/`:
//! - `run.lock` — every `certherd renew` / `certherd issue` holds it (shared) from before it
//!   starts certbot until it has pushed what certbot renewed. While any run holds it, the runs
//!   own the deploys: `watch` waits, and a deploy hook with [`DEFER_ENV`] set only queues.
//! - `deferred` — the queue: lineage names, one per line (0600); `deferred.lock` guards its
//!   rewrites. A name stays until a push has taken it, so a run killed before its flush leaves
//!   the name for the next flush (`certherd renew`, `certherd deploy --flush`, `watch`, `sync`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::lockfile::{self, Lock};
use crate::names::LineageName;

/// Set to `1` by `certherd renew` and `certherd issue` in certbot's environment: certbot passes
/// it on to its deploy hooks, which then queue instead of pushing (when the run is still on).
pub const DEFER_ENV: &str = "CERTHERD_DEFER_DEPLOY";

/// The directory of the queue and the run lock, inside the letsencrypt dir.
const DIR: &str = ".certherd";

/// One letsencrypt dir's queue of deferred deploys.
#[derive(Debug, Clone)]
pub struct Deferred {
    root: PathBuf,
    dir: PathBuf,
}

/// A certherd run in progress: while this lives, deploys of renewed lineages are queued.
#[derive(Debug)]
pub struct Run {
    _lock: Flock<std::fs::File>,
}

impl Deferred {
    /// The queue of the letsencrypt dir `root`.
    pub fn new(root: &Path) -> Self {
        Deferred {
            root: root.to_owned(),
            dir: root.join(DIR),
        }
    }

    /// Makes `.certherd/` (0700), following no symlink on the way.
    fn make_dir(&self) -> Result<()> {
        crate::fsx::walk(&self.root, &[DIR], Some(0o700), &mut Vec::new()).map(|_| ())
    }

    fn open_run_lock(&self) -> Result<(std::fs::File, PathBuf)> {
        self.make_dir()?;
        let path = self.dir.join("run.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io("cannot open lock", &path, e))?;
        Ok((file, path))
    }

    /// Marks a run as started (a shared lock: two `issue` runs may overlap; each pushes the
    /// whole queue when its certbot ends).
    pub fn begin_run(&self) -> Result<Run> {
        let (file, path) = self.open_run_lock()?;
        let lock = Flock::lock(file, FlockArg::LockShared)
            .map_err(|(_, e)| Error::io("cannot lock", &path, e.into()))?;
        Ok(Run { _lock: lock })
    }

    /// Whether a `renew` or `issue` run is in progress (it will push what its certbot renews).
    pub fn run_active(&self) -> bool {
        let Ok((file, _)) = self.open_run_lock() else {
            return false;
        };
        matches!(
            Flock::lock(file, FlockArg::LockExclusiveNonblock),
            Err((_, Errno::EWOULDBLOCK))
        )
    }

    fn queue_path(&self) -> PathBuf {
        self.dir.join("deferred")
    }

    fn queue_lock(&self) -> Result<Lock> {
        self.make_dir()?;
        lockfile::lock(&self.dir.join("deferred.lock"))
    }

    /// Appends `lineage` to the queue.
    pub fn add(&self, lineage: &LineageName) -> Result<()> {
        let _lock = self.queue_lock()?;
        let path = self.queue_path();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io("cannot open", &path, e))?;
        file.write_all(format!("{lineage}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(|e| Error::io("cannot write", &path, e))
    }

    /// The queued lineages, each once, in name order. A line that is not a lineage name (the
    /// file is the account's own, but a hand edit or a torn write may leave one) is skipped with
    /// a warning.
    pub fn list(&self) -> Result<Vec<LineageName>> {
        let path = self.queue_path();
        let read = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&path)
            .and_then(|mut f| {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut f, &mut bytes).map(|_| bytes)
            });
        let text = match read {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot read", &path, e)),
        };
        let mut names: Vec<LineageName> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| match LineageName::parse(l.trim()) {
                Ok(name) => Some(name),
                Err(e) => {
                    crate::warn!("{}: skipping a line: {e}", path.display());
                    None
                }
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// Takes `done` off the queue (names queued meanwhile stay); the file goes when empty.
    pub fn remove(&self, done: &[LineageName]) -> Result<()> {
        let _lock = self.queue_lock()?;
        let left: Vec<LineageName> = self
            .list()?
            .into_iter()
            .filter(|n| !done.contains(n))
            .collect();
        let path = self.queue_path();
        if left.is_empty() {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(Error::io("cannot remove", &path, e))
                }
                _ => Ok(()),
            };
        }
        let text: String = left.iter().map(|n| format!("{n}\n")).collect();
        crate::fsx::write_file(&path, text.as_bytes(), 0o600).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> LineageName {
        LineageName::parse(s).unwrap()
    }

    #[test]
    fn queue_keeps_each_name_once_until_removed() {
        let dir = crate::scratch::scratch("deferred");
        let q = Deferred::new(&dir);
        assert!(q.list().unwrap().is_empty());
        for n in ["b.example", "a.example", "b.example", "site_test"] {
            q.add(&name(n)).unwrap();
        }
        assert_eq!(
            q.list().unwrap(),
            vec![name("a.example"), name("b.example"), name("site_test")]
        );
        q.remove(&[name("b.example")]).unwrap();
        assert_eq!(
            q.list().unwrap(),
            vec![name("a.example"), name("site_test")]
        );
        q.remove(&[name("a.example"), name("site_test")]).unwrap();
        assert!(!q.queue_path().exists(), "an empty queue leaves no file");
    }

    #[test]
    fn a_bad_line_is_skipped_not_fatal() {
        let dir = crate::scratch::scratch("deferred-bad");
        let q = Deferred::new(&dir);
        q.add(&name("ok.example")).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(q.queue_path())
            .unwrap();
        f.write_all(b"../../etc\n").unwrap();
        assert_eq!(q.list().unwrap(), vec![name("ok.example")]);
    }

    #[test]
    fn a_run_is_seen_while_it_lasts() {
        let dir = crate::scratch::scratch("deferred-run");
        let q = Deferred::new(&dir);
        assert!(!q.run_active());
        let run = q.begin_run().unwrap();
        let second = q.begin_run().unwrap();
        assert!(q.run_active());
        drop(run);
        assert!(q.run_active(), "the second run still holds it");
        drop(second);
        assert!(!q.run_active());
    }
}
