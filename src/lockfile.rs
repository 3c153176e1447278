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

/// Takes the lock, waiting for the holder, and checks that `path` still names the file locked:
/// a holder that removed the lock file before letting go (an install undoing what it created)
/// hands the lock on an unlinked file, which excludes nobody who opens the path afresh. `None`
/// then: open the path again. Also `None` when the directory it is in was just removed the same
/// way (the caller makes it again).
pub fn lock_current(path: &Path) -> Result<Option<Lock>> {
    use std::os::unix::fs::MetadataExt;
    let file = match std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("cannot open lock", path, e)),
    };
    let lock = Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::io("cannot lock", path, e.into()))?;
    let held = lock
        .metadata()
        .map_err(|e| Error::io("cannot stat", path, e))?;
    let current = std::fs::symlink_metadata(path).ok();
    Ok(current
        .is_some_and(|m| m.dev() == held.dev() && m.ino() == held.ino())
        .then_some(lock))
}

/// Takes the lock if it is free; `None` when someone else holds it.
pub fn try_lock(path: &Path) -> Result<Option<Lock>> {
    match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io("cannot lock", path, e.into())),
    }
}
