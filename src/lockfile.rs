//! Exclusive `flock` locks on lock files (0600), shared by the renew lock, the per-lineage install
//! lock on peers and the per-peer SSH master start-up lock. The lock is held while the returned
//! guard lives.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// A held lock; dropping it releases the lock.
pub type Lock = Flock<std::fs::File>;

fn open(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        // A lock file planted as a symlink is refused, never followed (and created) elsewhere.
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| Error::io("cannot open lock", path, e))
}

/// Takes the lock, waiting for the holder.
pub fn lock(path: &Path) -> Result<Lock> {
    Flock::lock(open(path)?, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io("cannot lock", path, e.into()))
}

/// Takes the lock if it is free; `None` when someone else holds it.
pub fn try_lock(path: &Path) -> Result<Option<Lock>> {
    match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io("cannot lock", path, e.into())),
    }
}
