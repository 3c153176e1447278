//! The primary's record of the last version of each lineage that reached every required node,
//! so that one renewal is deployed once: certbot's stored deploy hook, the
//! `renewal-hooks/deploy/` hook (which certbot 5.3+ also runs after `certonly`) and `watch` all
//! see the same renewal. Whoever deploys it first, under the lineage's lock, records it; the
//! others find it recorded and do nothing — no second config test and reload on the primary, no
//! second alert.
//!
//! `<letsencrypt_dir>/.certherd/deployed/<lineage>` holds `VERSION FINGERPRINT`, written by the
//! account that deploys (the letsencrypt dir's owner); `<lineage>.lock` beside it is the lock.
//! `sync` does not consult it: it asks every node what it has.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::lockfile::{self, Lock};
use crate::names::LineageName;

/// The directory of the records, inside the letsencrypt dir.
const DIR: [&str; 2] = [".certherd", "deployed"];

/// How long a deploy waits for another one of the same lineage (a deploy's own time is bounded
/// by its SSH and served-check deadlines, well below this).
pub const LOCK_WAIT: Duration = Duration::from_secs(300);

/// The records of one letsencrypt dir.
#[derive(Debug, Clone)]
pub struct Deployed {
    root: PathBuf,
    dir: PathBuf,
}

impl Deployed {
    /// The records of the letsencrypt dir `root`.
    pub fn new(root: &Path) -> Self {
        Deployed {
            root: root.to_owned(),
            dir: DIR.iter().fold(root.to_owned(), |p, part| p.join(part)),
        }
    }

    /// Makes the records' directory (0700), following no symlink on the way.
    fn make_dir(&self) -> Result<()> {
        crate::fsx::walk(&self.root, &DIR, Some(0o700), &mut Vec::new()).map(|_| ())
    }

    fn record_path(&self, lineage: &LineageName) -> PathBuf {
        self.dir.join(lineage.as_str())
    }

    /// Takes the lineage's deploy lock, waiting (without blocking the runtime) at most
    /// [`LOCK_WAIT`]; `None` when another deploy held it all that time.
    pub async fn lock(&self, lineage: &LineageName) -> Result<Option<Lock>> {
        self.make_dir()?;
        let path = self.dir.join(format!("{lineage}.lock"));
        let until = Instant::now() + LOCK_WAIT;
        loop {
            if let Some(lock) = lockfile::try_lock(&path)? {
                return Ok(Some(lock));
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether this exact version and certificate was recorded as deployed everywhere.
    pub fn has(&self, lineage: &LineageName, version: u32, fingerprint: &str) -> bool {
        std::fs::read_to_string(self.record_path(lineage))
            .is_ok_and(|r| r.trim() == format!("{version} {fingerprint}"))
    }

    /// Records the version as deployed everywhere (call with the lock held).
    pub fn record(&self, lineage: &LineageName, version: u32, fingerprint: &str) -> Result<()> {
        self.make_dir()?;
        crate::fsx::write_file(
            &self.record_path(lineage),
            format!("{version} {fingerprint}\n").as_bytes(),
            0o600,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_recorded_version_is_found_and_only_that_one() {
        let root = crate::scratch::scratch("deployed");
        let d = Deployed::new(&root);
        let l = LineageName::parse("site.test").unwrap();
        assert!(!d.has(&l, 2, "ab"));
        let lock = d.lock(&l).await.unwrap().expect("free");
        d.record(&l, 2, "ab").unwrap();
        assert!(d.has(&l, 2, "ab"));
        assert!(!d.has(&l, 2, "cd"), "same number, other certificate");
        assert!(!d.has(&l, 3, "ab"));
        // Held: a second taker waits; once let go, it gets it.
        assert!(
            lockfile::try_lock(&root.join(".certherd/deployed/site.test.lock"))
                .unwrap()
                .is_none()
        );
        drop(lock);
        assert!(d.lock(&l).await.unwrap().is_some());
    }
}
