//! File-system primitives, one copy each: the atomic write (temp file, fsync, rename), the
//! symlink swap, directory sync, walking (and making) directories without following
//! symlinks, and random bytes from the kernel.
//!
//! Walking a trusted directory without following symlinks below it: the agent's webroot and
//! letsencrypt dir come from its own config, but what lies inside them may have been planted
//! (a `live/<lineage>` or `renewal` symlink to `/etc`, a lock file linked to a file elsewhere).
//! Every component below the root is opened with `openat(O_NOFOLLOW | O_DIRECTORY)`, so such a
//! symlink is refused, naming the path, instead of written through.
//!
//! Callers that then write by path (temp file, rename) rely on this check having held: whoever
//! could swap a checked directory for a symlink afterwards already owns the agent's tree.

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fchmod, mkdirat, Mode};

use crate::error::{Error, Result};

/// Opens a directory relative to `parent` (or by absolute path when `None`).
pub fn open_dir(parent: Option<&OwnedFd>, path: &Path, extra: OFlag) -> nix::Result<OwnedFd> {
    let fd = openat(
        parent.map(|p| p.as_raw_fd()),
        path,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | extra,
        Mode::empty(),
    )?;
    // SAFETY: openat just returned this descriptor and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `N` random bytes from the kernel's CSPRNG (`/dev/urandom`, which never blocks once the
/// system has booted): throwaway tokens, jitter. One reader for the crate.
pub fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| Error::io("cannot read", "/dev/urandom", e))?;
    Ok(bytes)
}

/// The refusal for a planted symlink (or a file where a directory must be).
pub fn refuse_symlink(path: &Path) -> Error {
    Error::Input(format!(
        "refusing to use {}: it is a symlink or not a directory (expected a plain directory)",
        path.display()
    ))
}

/// Opens `root/parts…` without following a symlink at any of `parts`; with `create`, missing
/// directories are made with that mode (set on the opened directory, whatever the umask) and
/// their paths appended to `created`, outermost first. `None` when a part is missing and
/// `create` is not set.
pub fn walk(
    root: &Path,
    parts: &[&str],
    create: Option<u32>,
    created: &mut Vec<PathBuf>,
) -> Result<Option<OwnedFd>> {
    let mut dir = open_dir(None, root, OFlag::empty())
        .map_err(|e| Error::io("cannot open", root, e.into()))?;
    let mut path = root.to_path_buf();
    for part in parts {
        if part.is_empty() || *part == "." || *part == ".." || part.contains('/') {
            return Err(Error::Input(format!(
                "refusing path component {part:?} below {} (expected a plain name)",
                path.display()
            )));
        }
        path.push(part);
        let mut made = false;
        if let Some(mode) = create {
            match mkdirat(Some(dir.as_raw_fd()), *part, Mode::from_bits_truncate(mode)) {
                Ok(()) => made = true,
                Err(Errno::EEXIST) => {}
                Err(e) => return Err(Error::io("cannot create", &path, e.into())),
            }
        }
        dir = match open_dir(Some(&dir), Path::new(part), OFlag::O_NOFOLLOW) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) if create.is_none() => return Ok(None),
            Err(Errno::ELOOP) | Err(Errno::ENOTDIR) => return Err(refuse_symlink(&path)),
            Err(e) => return Err(Error::io("cannot open", &path, e.into())),
        };
        if made {
            created.push(path.clone());
            if let Some(mode) = create {
                fchmod(dir.as_raw_fd(), Mode::from_bits_truncate(mode))
                    .map_err(|e| Error::io("cannot chmod", &path, e.into()))?;
            }
        }
    }
    Ok(Some(dir))
}

/// Refuses `path` when it exists and is a symlink (a file this module's callers replace by
/// rename is never written through, but a lock or marker opened in place must not be a link).
pub fn refuse_if_symlink(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_symlink() => Err(Error::Input(format!(
            "refusing to use {}: it is a symlink (expected a plain file)",
            path.display()
        ))),
        _ => Ok(()),
    }
}

/// Writes a file by temp + fsync + rename, unless it already has this content and mode (a key
/// left 0644 with the right content is rewritten 0600, not skipped).
pub fn write_if_changed(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    if fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == mode)
        && fs::read(path).is_ok_and(|c| c == content)
    {
        return Ok(());
    }
    let tmp = temp_name(path);
    // A temp file under this name is stale: its PID is ours, so the process that made it is
    // dead (killed mid-write). Left in place it would fail `create_new` for every later write.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(content)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("cannot write", path, e)
    })
}

/// Points `link` at `target` by creating a temp symlink and renaming it over: the link never
/// disappears, readers see the old or the new target.
pub fn swap_symlink(link: &Path, target: &Path) -> Result<()> {
    let tmp = temp_name(link);
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(|e| Error::io("cannot create symlink", &tmp, e))?;
    fs::rename(&tmp, link).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("cannot replace", link, e)
    })
}

pub fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("cannot remove", path, e))
        }
        _ => Ok(()),
    }
}

pub fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.certherd-tmp-{}", std::process::id()))
}

/// Removes the temp files (see [`temp_name`]) any process left in `dir`. Call it only while
/// holding the lock that every writer of `dir` takes: then no temp there is in use, and one with
/// another PID is a killed writer's (issue 19: an agent stopped between a temp symlink and its
/// rename left `.chain.pem.certherd-tmp-<pid>` that no later install would remove). Only plain
/// files and symlinks are removed, never followed.
pub fn remove_stale_temps(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("cannot read", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("cannot read", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_temp = name.starts_with('.') && name.contains(".certherd-tmp-");
        if is_temp && entry.file_type().is_ok_and(|t| !t.is_dir()) {
            remove_if_exists(&entry.path())?;
        }
    }
    Ok(())
}

pub fn sync_dir(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot sync", path, e))
}

/// Writes a file by temp + fsync + rename unless it already has this content (and mode);
/// returns whether it changed. For other modules' certbot files (renewal configs, accounts).
pub fn write_file(path: &Path, content: &[u8], mode: u32) -> Result<bool> {
    let same = fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o777 == mode)
        && fs::read(path).is_ok_and(|c| c == content);
    if same {
        return Ok(false);
    }
    let _ = fs::remove_file(temp_name(path));
    write_if_changed(path, content, mode).map(|()| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_bytes_are_fresh_on_every_call() {
        let a: [u8; 16] = random_bytes().unwrap();
        let b: [u8; 16] = random_bytes().unwrap();
        assert_ne!(a, b, "two reads of /dev/urandom gave the same 16 bytes");
    }

    #[test]
    fn symlinks_below_the_root_are_refused() {
        let root = crate::scratch::scratch("nofollow");
        std::fs::create_dir_all(root.join("decoy")).unwrap();
        std::os::unix::fs::symlink(root.join("decoy"), root.join("live")).unwrap();
        let mut created = Vec::new();
        let err = walk(&root, &["live", "x"], Some(0o700), &mut created).unwrap_err();
        assert!(err.to_string().contains("live"), "{err}");
        assert!(err.to_string().contains("symlink"), "{err}");
        assert_eq!(std::fs::read_dir(root.join("decoy")).unwrap().count(), 0);
        assert!(created.is_empty());
        walk(&root, &["archive", "x"], Some(0o700), &mut created).unwrap();
        assert_eq!(created, vec![root.join("archive"), root.join("archive/x")]);
        assert!(walk(&root, &["nope"], None, &mut created)
            .unwrap()
            .is_none());
        assert!(walk(&root, &[".."], None, &mut created).is_err());
    }
}
