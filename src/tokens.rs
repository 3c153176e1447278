//! The token store: `<webroot>/.well-known/acme-challenge/<token>` on one node.
//!
//! The webroot path comes from the node's own config; everything below it is walked with
//! `openat(O_NOFOLLOW)`, so a symlink planted at `.well-known` or `acme-challenge` (say, to `/etc`)
//! is refused instead of followed, and a symlink planted at the token name is replaced, not
//! written through. Files appear by rename, so nginx never serves a half-written token.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, Mode};
use nix::unistd::{unlinkat, UnlinkatFlags};

use crate::error::{Error, Result};
use crate::names::{KeyAuthorization, Token};

/// One node's token directory.
#[derive(Debug, Clone)]
pub struct TokenStore {
    webroot: PathBuf,
}

impl TokenStore {
    /// A store rooted at the configured webroot.
    pub fn new(webroot: impl Into<PathBuf>) -> Self {
        TokenStore {
            webroot: webroot.into(),
        }
    }

    /// The directory tokens are written to.
    pub fn dir(&self) -> PathBuf {
        self.webroot.join(".well-known/acme-challenge")
    }

    /// Writes a token file (mode 0644: the web server must read it; its content is public).
    /// Returns whether the file's content changed.
    pub fn put(&self, token: &Token, key_authorization: &KeyAuthorization) -> Result<bool> {
        let dir = self.open_challenge_dir(true)?.expect("created");
        let path = self.dir().join(token.as_str());
        let tmp = format!(".certherd-tmp-{}-{}", token, std::process::id());
        let io = |e: Errno| Error::io("cannot write token", &path, e.into());
        // A fresh inode, never an existing one: whatever sits at the temp name (a stale temp, or
        // a hard link someone planted to make us truncate another file) is unlinked first.
        let _ = unlinkat(
            Some(dir.as_raw_fd()),
            tmp.as_str(),
            UnlinkatFlags::NoRemoveDir,
        );
        let fd = openat(
            Some(dir.as_raw_fd()),
            tmp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map_err(io)?;
        // SAFETY: openat just returned this descriptor and nothing else owns it.
        let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // No fsync: a token lives for seconds and is rewritten on retry; rename alone already
        // guarantees readers see either nothing or the whole content.
        let written = file
            .write_all(key_authorization.as_str().as_bytes())
            .map_err(|e| Error::io("cannot write token", &path, e))
            .and_then(|()| fchmod(file.as_raw_fd(), Mode::from_bits_truncate(0o644)).map_err(io));
        if let Err(e) = written.and_then(|()| {
            renameat(
                Some(dir.as_raw_fd()),
                tmp.as_str(),
                Some(dir.as_raw_fd()),
                token.as_str(),
            )
            .map_err(io)
        }) {
            let _ = unlinkat(
                Some(dir.as_raw_fd()),
                tmp.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
            return Err(e);
        }
        Ok(true)
    }

    /// Removes a token file. Returns whether one was there.
    pub fn remove(&self, token: &Token) -> Result<bool> {
        let Some(dir) = self.open_challenge_dir(false)? else {
            return Ok(false);
        };
        match unlinkat(
            Some(dir.as_raw_fd()),
            token.as_str(),
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(e) => Err(Error::io(
                "cannot remove token",
                self.dir().join(token.as_str()),
                e.into(),
            )),
        }
    }

    /// Whether a token file exists (for tests and `doctor`).
    pub fn contains(&self, token: &Token) -> bool {
        self.dir().join(token.as_str()).exists()
    }

    /// Opens `.well-known/acme-challenge` below the webroot without following symlinks,
    /// creating the two directories (0755) when `create` is set. `None` when absent.
    fn open_challenge_dir(&self, create: bool) -> Result<Option<OwnedFd>> {
        // The agent runs with whatever umask sshd gave it; under 077 the web server could not
        // enter a directory we just made: `walk` sets the mode on the opened directory.
        crate::fsx::walk(
            &self.webroot,
            &[".well-known", "acme-challenge"],
            create.then_some(0o755),
            &mut Vec::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::scratch;

    #[test]
    fn put_and_remove() {
        let root = scratch("put");
        let store = TokenStore::new(&root);
        let t = Token::parse("tok").unwrap();
        store
            .put(&t, &KeyAuthorization::parse("tok.thumb").unwrap())
            .unwrap();
        let file = root.join(".well-known/acme-challenge/tok");
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "tok.thumb");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o644
        );
        assert!(store.remove(&t).unwrap());
        assert!(!store.remove(&t).unwrap());
        assert!(!file.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_planted_temp_file_is_never_written_through() {
        let root = scratch("hardlink");
        let store = TokenStore::new(&root);
        let t = Token::parse("tok").unwrap();
        store
            .put(&t, &KeyAuthorization::parse("tok.a").unwrap())
            .unwrap();
        let victim = root.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let tmp = store
            .dir()
            .join(format!(".certherd-tmp-tok-{}", std::process::id()));
        std::fs::hard_link(&victim, &tmp).unwrap();
        store
            .put(&t, &KeyAuthorization::parse("tok.b").unwrap())
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(
            std::fs::read_to_string(store.dir().join("tok")).unwrap(),
            "tok.b"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn created_directories_ignore_the_umask() {
        let root = scratch("umask");
        let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
        let result = TokenStore::new(&root).put(
            &Token::parse("tok").unwrap(),
            &KeyAuthorization::parse("tok.a").unwrap(),
        );
        nix::sys::stat::umask(old);
        result.unwrap();
        use std::os::unix::fs::PermissionsExt;
        for d in [".well-known", ".well-known/acme-challenge"] {
            let mode = std::fs::metadata(root.join(d))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o755, "{d}");
        }
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn planted_symlinks_are_not_followed() {
        let root = scratch("link");
        let target = scratch("link-target");
        std::os::unix::fs::symlink(&target, root.join(".well-known")).unwrap();
        let store = TokenStore::new(&root);
        let t = Token::parse("tok").unwrap();
        let err = store
            .put(&t, &KeyAuthorization::parse("tok.x").unwrap())
            .unwrap_err();
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(std::fs::read_dir(&target).unwrap().count(), 0);

        // A symlink planted at the token's own name is replaced, never written through.
        std::fs::remove_file(root.join(".well-known")).unwrap();
        std::fs::create_dir_all(root.join(".well-known/acme-challenge")).unwrap();
        let victim = target.join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, root.join(".well-known/acme-challenge/tok")).unwrap();
        store
            .put(&t, &KeyAuthorization::parse("tok.x").unwrap())
            .unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(
            !std::fs::symlink_metadata(root.join(".well-known/acme-challenge/tok"))
                .unwrap()
                .is_symlink()
        );
        std::fs::remove_dir_all(&root).unwrap();
        std::fs::remove_dir_all(&target).unwrap();
    }
}
