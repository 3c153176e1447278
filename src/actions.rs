//! Per-lineage deploy actions: a node's own `[[deploy]]` entries, run after a lineage is
//! installed on it (the primary's local install and every agent's). Each entry whose globs match
//! the lineage writes its extra layout — HAProxy's combined PEM, `<dir>/<lineage>.pem` =
//! fullchain then private key — and runs its own test and reload.
//!
//! Everything but the lineage's content comes from this node's config: the directory, owner,
//! group, mode and commands. A request (and so a compromised primary) only picks which
//! lineage's files land in those configured paths. The directory must exist (it is never
//! created); the file is written as the certbot files are: a temp file in the same directory
//! opened with `O_EXCL | O_NOFOLLOW`, chowned and chmodded through its descriptor, fsynced,
//! renamed over, the directory fsynced. A symlink planted at `<dir>/<lineage>.pem` is refused,
//! never read or written through.
//!
//! The rollback rule is nginx's ([`crate::lineage::install`]): when the action's test fails, its
//! previous combined PEM is put back (or the new one removed when there was none) before the
//! error is returned; a failed reload leaves the new file, which passed the test. A file already
//! holding exactly the new content (same mode and owner) is not rewritten, and its commands only
//! run when the lineage itself changed on this node, so a repeated `sync` reloads nothing.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, OFlag};
use nix::sys::stat::{fchmod, fstat, Mode, SFlag};
use nix::unistd::{fchown, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::config::DeployAction;
use crate::error::Error;
use crate::exec::{run_bounded, ExecError};
use crate::names::LineageName;
use crate::wire::ErrorKind;

/// Largest previous combined PEM read back for a rollback (a chain and a key are a few KiB).
const MAX_PEM: u64 = 1024 * 1024;

/// Why a deploy action did not complete. Every variant names the action (`deploy[i]`) and the
/// file; the lineage itself is installed either way.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action's test failed; its previous combined PEM is back (or the new one removed).
    #[error("deploy[{index}] test failed, {} {}: {output}", if *.had_previous { "previous combined PEM restored at" } else { "new combined PEM removed from" }, .path.as_ref().map_or("-".into(), |p| p.display().to_string()))]
    TestFailed {
        /// Position in the config's `[[deploy]]` list.
        index: usize,
        /// The combined PEM (None: the action writes none).
        path: Option<PathBuf>,
        /// Whether a previous file was put back (else the new one was removed).
        had_previous: bool,
        /// How the test failed.
        output: ExecError,
    },
    /// The test failed and the previous file could not be put back.
    #[error("deploy[{index}] test failed ({output}) and the previous combined PEM could not be put back: {source}")]
    RollbackFailed {
        /// Position in the config's `[[deploy]]` list.
        index: usize,
        /// How the test failed.
        output: ExecError,
        /// Why the rollback failed.
        source: Box<Error>,
    },
    /// The action's reload failed after its test passed; the new file stays.
    #[error(
        "deploy[{index}] reload failed (new combined PEM in place, its test passed): {output}"
    )]
    ReloadFailed {
        /// Position in the config's `[[deploy]]` list.
        index: usize,
        /// How the reload failed.
        output: ExecError,
    },
    /// The combined PEM could not be written (missing directory, permissions, a planted
    /// symlink, an owner a non-root agent cannot give); nothing ran.
    #[error("deploy[{index}]: {source}")]
    Write {
        /// Position in the config's `[[deploy]]` list.
        index: usize,
        /// Why.
        source: Box<Error>,
    },
}

impl ActionError {
    /// The class the agent answers with (the primary decides by it, never by the text).
    pub fn kind(&self) -> ErrorKind {
        match self {
            ActionError::TestFailed { .. } | ActionError::RollbackFailed { .. } => {
                ErrorKind::ActionTestFailed
            }
            ActionError::ReloadFailed { .. } => ErrorKind::ActionReloadFailed,
            ActionError::Write { .. } => ErrorKind::Io,
        }
    }
}

/// The combined PEM as it was before this deploy, to put back when the test fails.
struct Previous {
    content: Vec<u8>,
    mode: u32,
    uid: Uid,
    gid: Gid,
}

/// Name of the marker in `live/<lineage>/` that says an action of this lineage was started and
/// did not finish (written and not yet reloaded, agent killed, test or reload failed): while it
/// is there, the next run tests and reloads even when every file is current, as the lineage's
/// own pending marker makes the next install finish an unfinished one.
pub const ACTIONS_PENDING: &str = ".certherd-actions-pending";

/// What a deploy brings to a node's actions.
#[derive(Debug, Clone, Copy)]
pub struct Deployed<'a> {
    /// The lineage.
    pub lineage: &'a LineageName,
    /// Its current fullchain.
    pub fullchain: &'a str,
    /// Its current private key.
    pub privkey: &'a str,
    /// Whether the lineage itself changed (or was reloaded) on this node: then the commands run
    /// even when the combined PEM was already current.
    pub installed: bool,
    /// `live/<lineage>/` on this node (checked by the install): where [`ACTIONS_PENDING`] lives.
    pub live_dir: &'a Path,
    /// Limit for each command.
    pub timeout: Duration,
}

/// The pending marker, written once, just before the first file or command of a run.
struct Marker {
    path: PathBuf,
    set: bool,
}

impl Marker {
    fn set(&mut self) -> Result<(), Error> {
        if !self.set {
            crate::fsx::refuse_if_symlink(&self.path)?;
            crate::fsx::write_file(&self.path, b"", 0o600)?;
            crate::fsx::sync_dir(self.path.parent().unwrap_or(Path::new("/")))?;
            self.set = true;
        }
        Ok(())
    }
}

/// Runs every action of `actions` whose globs match the lineage, in config order. All matching
/// actions run even when one fails; the first failure is returned (and the pending marker
/// stays, so the next run tests and reloads again). `Ok(true)`: something was written or run.
/// Whether [`run`] has anything to do for `lineage`: an action that applies to it, or a marker
/// of actions left pending by an earlier run. When not, a caller need not read the files.
pub fn needed(actions: &[DeployAction], lineage: &LineageName, live_dir: &Path) -> bool {
    actions.iter().any(|a| a.applies_to(lineage))
        || std::fs::symlink_metadata(live_dir.join(ACTIONS_PENDING)).is_ok()
}

pub fn run(actions: &[DeployAction], d: &Deployed) -> Result<bool, ActionError> {
    let path = d.live_dir.join(ACTIONS_PENDING);
    let pending = std::fs::symlink_metadata(&path).is_ok();
    let mut marker = Marker { set: pending, path };
    let forced = d.installed || pending;
    let mut changed = false;
    let mut first_error = None;
    for (index, action) in actions.iter().enumerate() {
        if !action.applies_to(d.lineage) {
            continue;
        }
        match run_one(index, action, d, forced, &mut marker) {
            Ok(c) => changed |= c,
            Err(e) => {
                changed = true;
                crate::error!("{}: {e}", d.lineage);
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => {
            if marker.set {
                crate::fsx::remove_if_exists(&marker.path).map_err(|e| ActionError::Write {
                    index: 0,
                    source: Box::new(e),
                })?;
            }
            Ok(changed)
        }
    }
}

fn run_one(
    index: usize,
    action: &DeployAction,
    d: &Deployed,
    forced: bool,
    marker: &mut Marker,
) -> Result<bool, ActionError> {
    let Deployed {
        lineage,
        fullchain,
        privkey,
        timeout,
        ..
    } = *d;
    let write_err = |source| ActionError::Write {
        index,
        source: Box::new(source),
    };
    let mut written = None;
    if let Some(dir) = &action.combined_pem {
        let mut content = fullchain.as_bytes().to_vec();
        if !content.ends_with(b"\n") {
            content.push(b'\n');
        }
        content.extend_from_slice(privkey.as_bytes());
        let target = Target::open(dir, lineage).map_err(write_err)?;
        let mode = action
            .mode_bits()
            .map_err(|e| write_err(Error::Input(e.to_string())))?;
        let (uid, gid) = owner_ids(action).map_err(write_err)?;
        let previous = target.read().map_err(write_err)?;
        let same = previous.as_ref().is_some_and(|p| {
            p.content == content
                && p.mode == mode
                && uid.map_or(true, |u| u == p.uid)
                && gid.map_or(true, |g| g == p.gid)
        });
        if !same {
            marker.set().map_err(write_err)?;
            target.write(&content, mode, uid, gid).map_err(write_err)?;
            written = Some((target, previous));
        }
    }
    if written.is_none() && !forced {
        return Ok(false);
    }
    marker.set().map_err(write_err)?;
    if let Err(output) = run_bounded(&action.test, timeout) {
        let path = written.as_ref().map(|(t, _)| t.path.clone()).or(action
            .combined_pem
            .as_ref()
            .map(|d| d.join(format!("{lineage}.pem"))));
        let mut had_previous = true;
        if let Some((target, previous)) = written {
            had_previous = previous.is_some();
            let restored = match previous {
                Some(p) => target.write(&p.content, p.mode, Some(p.uid), Some(p.gid)),
                None => target.remove(),
            };
            if let Err(source) = restored {
                return Err(ActionError::RollbackFailed {
                    index,
                    output,
                    source: Box::new(source),
                });
            }
        }
        return Err(ActionError::TestFailed {
            index,
            path,
            had_previous,
            output,
        });
    }
    run_bounded(&action.reload, timeout)
        .map_err(|output| ActionError::ReloadFailed { index, output })?;
    Ok(true)
}

/// The uid and gid the action asks for (names resolved now: the config was checked at load,
/// but accounts may change while an agent runs).
fn owner_ids(action: &DeployAction) -> Result<(Option<Uid>, Option<Gid>), Error> {
    let uid = action
        .owner_uid()
        .map_err(|m| Error::Input(format!("owner {m}")))?;
    let gid = action
        .group_gid()
        .map_err(|m| Error::Input(format!("group {m}")))?;
    Ok((uid, gid))
}

/// `<dir>/<lineage>.pem`, with the directory held open: every later step is relative to it.
struct Target {
    dir: OwnedFd,
    name: String,
    path: PathBuf,
}

impl Target {
    /// Opens the configured directory; a missing one is an error (never created).
    fn open(dir: &Path, lineage: &LineageName) -> Result<Target, Error> {
        let fd = crate::fsx::open_dir(None, dir, OFlag::empty()).map_err(|e| match e {
            Errno::ENOENT => Error::Input(format!(
                "combined_pem directory {} does not exist (certherd never creates it: make it, owned by the agent's account)",
                dir.display()
            )),
            e => Error::io("cannot open", dir, e.into()),
        })?;
        let name = format!("{lineage}.pem");
        Ok(Target {
            dir: fd,
            path: dir.join(&name),
            name,
        })
    }

    /// The current file, if any; a symlink or anything but a regular file there is refused.
    fn read(&self) -> Result<Option<Previous>, Error> {
        let fd = match openat(
            Some(self.dir.as_raw_fd()),
            self.name.as_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK,
            Mode::empty(),
        ) {
            // SAFETY: openat just returned this descriptor and nothing else owns it.
            Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(self.refuse()),
            Err(e) => return Err(Error::io("cannot open", &self.path, e.into())),
        };
        let st =
            fstat(fd.as_raw_fd()).map_err(|e| Error::io("cannot stat", &self.path, e.into()))?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
            return Err(self.refuse());
        }
        let mut content = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_PEM)
            .read_to_end(&mut content)
            .map_err(|e| Error::io("cannot read", &self.path, e))?;
        Ok(Some(Previous {
            content,
            mode: st.st_mode & 0o7777,
            uid: Uid::from_raw(st.st_uid),
            gid: Gid::from_raw(st.st_gid),
        }))
    }

    fn refuse(&self) -> Error {
        Error::Input(format!(
            "refusing to use {}: it is a symlink or not a regular file (expected a plain file or nothing)",
            self.path.display()
        ))
    }

    /// Writes the file: temp file (`O_EXCL | O_NOFOLLOW`, dot-named so HAProxy's directory
    /// loader skips it), owner and mode set through the descriptor before any content, fsync,
    /// rename over, fsync of the directory.
    fn write(
        &self,
        content: &[u8],
        mode: u32,
        uid: Option<Uid>,
        gid: Option<Gid>,
    ) -> Result<(), Error> {
        let tmp = format!(".{}.certherd-tmp-{}", self.name, std::process::id());
        let tmp_path = self.path.with_file_name(&tmp);
        let open = || {
            openat(
                Some(self.dir.as_raw_fd()),
                tmp.as_str(),
                OFlag::O_WRONLY
                    | OFlag::O_CREAT
                    | OFlag::O_EXCL
                    | OFlag::O_NOFOLLOW
                    | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o600),
            )
        };
        let fd = match open() {
            // A temp file of an earlier agent with this PID that was killed mid-write.
            Err(Errno::EEXIST) => {
                let _ = unlinkat(
                    Some(self.dir.as_raw_fd()),
                    tmp.as_str(),
                    UnlinkatFlags::NoRemoveDir,
                );
                open()
            }
            other => other,
        }
        .map_err(|e| Error::io("cannot create", &tmp_path, e.into()))?;
        // SAFETY: openat just returned this descriptor and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let result = (|| {
            if uid.is_some() || gid.is_some() {
                fchown(fd.as_raw_fd(), uid, gid).map_err(|e| match e {
                    Errno::EPERM => Error::Input(format!(
                        "cannot give {} to owner/group {}:{} (this agent runs as uid {}: a non-root agent can set only its own user and a group it is a member of; see docs/REFERENCE.md, \"Deploy actions\")",
                        self.path.display(),
                        uid.map_or("-".into(), |u| u.to_string()),
                        gid.map_or("-".into(), |g| g.to_string()),
                        Uid::effective()
                    )),
                    e => Error::io("cannot chown", &tmp_path, e.into()),
                })?;
            }
            fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
                .map_err(|e| Error::io("cannot chmod", &tmp_path, e.into()))?;
            let mut file = std::fs::File::from(fd);
            file.write_all(content)
                .and_then(|()| file.sync_all())
                .map_err(|e| Error::io("cannot write", &tmp_path, e))?;
            renameat(
                Some(self.dir.as_raw_fd()),
                tmp.as_str(),
                Some(self.dir.as_raw_fd()),
                self.name.as_str(),
            )
            .map_err(|e| Error::io("cannot replace", &self.path, e.into()))
        })();
        if result.is_err() {
            let _ = unlinkat(
                Some(self.dir.as_raw_fd()),
                tmp.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
        result?;
        self.sync()
    }

    /// Removes the file (the rollback when there was none before).
    fn remove(&self) -> Result<(), Error> {
        match unlinkat(
            Some(self.dir.as_raw_fd()),
            self.name.as_str(),
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => self.sync(),
            Err(e) => Err(Error::io("cannot remove", &self.path, e.into())),
        }
    }

    fn sync(&self) -> Result<(), Error> {
        nix::unistd::fsync(self.dir.as_raw_fd()).map_err(|e| {
            Error::io(
                "cannot sync",
                self.path.parent().unwrap_or(&self.path),
                e.into(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::scratch;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    fn action(dir: &Path, globs: &[&str], test: &[&str], mode: Option<&str>) -> DeployAction {
        DeployAction {
            lineages: globs.iter().map(|s| s.to_string()).collect(),
            combined_pem: Some(dir.to_owned()),
            owner: None,
            group: None,
            mode: mode.map(str::to_owned),
            test: test.iter().map(|s| s.to_string()).collect(),
            reload: vec!["true".into()],
        }
    }

    fn lineage(s: &str) -> LineageName {
        LineageName::parse(s).unwrap()
    }

    /// Runs the actions with `live/<lineage>/` in the scratch dir `live`.
    fn go(
        actions: &[DeployAction],
        name: &str,
        fullchain: &str,
        privkey: &str,
        installed: bool,
    ) -> Result<bool, ActionError> {
        // Each test's own live dir, beside its combined-PEM dir.
        let live = actions[0]
            .combined_pem
            .as_ref()
            .unwrap()
            .with_extension("live");
        fs::create_dir_all(&live).unwrap();
        run(
            actions,
            &Deployed {
                lineage: &lineage(name),
                fullchain,
                privkey,
                installed,
                live_dir: &live,
                timeout: Duration::from_secs(5),
            },
        )
    }

    #[test]
    fn writes_fullchain_then_key_with_mode_only_for_matching_lineages() {
        let dir = scratch("write");
        let a = [action(
            &dir,
            &["site.test", "*.example.org"],
            &["true"],
            Some("0640"),
        )];
        assert!(go(&a, "site.test", "CHAIN", "KEY\n", false).unwrap());
        let pem = dir.join("site.test.pem");
        assert_eq!(fs::read_to_string(&pem).unwrap(), "CHAIN\nKEY\n");
        assert_eq!(
            fs::metadata(&pem).unwrap().permissions().mode() & 0o7777,
            0o640
        );
        // Unchanged and the lineage did not change: nothing runs.
        assert!(!go(&a, "site.test", "CHAIN", "KEY\n", false).unwrap());
        assert!(!go(&a, "other.test", "CHAIN", "KEY\n", true).unwrap());
        assert!(go(&a, "www.example.org", "C", "K", false).unwrap());
        let mut names: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["site.test.pem", "www.example.org.pem"]);
        fs::remove_dir_all(&dir).unwrap();
        let _ = fs::remove_dir_all(dir.with_extension("live"));
    }

    #[test]
    fn a_failing_test_puts_the_previous_file_back_or_removes_the_new_one() {
        let dir = scratch("rollback");
        let ok = [action(&dir, &["*"], &["true"], None)];
        let bad = [action(&dir, &["*"], &["false"], None)];
        let e = go(&bad, "site.test", "NEW", "KEY", false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ActionTestFailed, "{e}");
        assert!(e.to_string().contains("removed"), "{e}");
        assert!(!dir.join("site.test.pem").exists());
        go(&ok, "site.test", "OLD", "KEY", false).unwrap();
        let e = go(&bad, "site.test", "NEW", "KEY", false).unwrap_err();
        assert!(
            matches!(
                e,
                ActionError::TestFailed {
                    had_previous: true,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(
            fs::read_to_string(dir.join("site.test.pem")).unwrap(),
            "OLD\nKEY"
        );
        let mut reload_fails = action(&dir, &["*"], &["true"], None);
        reload_fails.reload = vec!["false".into()];
        let e = go(&[reload_fails], "site.test", "NEW", "KEY", false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ActionReloadFailed, "{e}");
        assert_eq!(
            fs::read_to_string(dir.join("site.test.pem")).unwrap(),
            "NEW\nKEY"
        );
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "temp files left");
        fs::remove_dir_all(&dir).unwrap();
        let _ = fs::remove_dir_all(dir.with_extension("live"));
    }

    #[test]
    fn an_unfinished_action_is_finished_by_the_next_run_even_when_the_file_is_current() {
        let dir = scratch("retry");
        let count = dir.with_extension("count");
        let _ = fs::remove_file(&count);
        let mut failing = action(&dir, &["*"], &["true"], None);
        failing.reload = vec!["false".into()];
        let e = go(&[failing], "site.test", "NEW", "KEY", false).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ActionReloadFailed, "{e}");
        assert!(dir.with_extension("live").join(ACTIONS_PENDING).exists());
        let mut fixed = action(&dir, &["*"], &["true"], None);
        fixed.reload = ["sh", "-c", &format!("echo reloaded >> {}", count.display())]
            .iter()
            .map(|s| s.to_string())
            .collect();
        // Same content, lineage unchanged: the marker alone makes it test and reload again.
        assert!(go(&[fixed.clone()], "site.test", "NEW", "KEY", false).unwrap());
        assert!(!dir.with_extension("live").join(ACTIONS_PENDING).exists());
        assert!(!go(&[fixed], "site.test", "NEW", "KEY", false).unwrap());
        assert_eq!(fs::read_to_string(&count).unwrap(), "reloaded\n");
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(dir.with_extension("live")).unwrap();
        fs::remove_file(&count).unwrap();
    }

    #[test]
    fn a_planted_symlink_or_missing_dir_is_refused() {
        let dir = scratch("planted");
        let decoy = scratch("planted-decoy");
        fs::write(decoy.join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(decoy.join("victim"), dir.join("site.test.pem")).unwrap();
        let a = [action(&dir, &["*"], &["true"], None)];
        let e = go(&a, "site.test", "NEW", "KEY", true).unwrap_err();
        assert!(e.to_string().contains("symlink"), "{e}");
        assert_eq!(fs::read_to_string(decoy.join("victim")).unwrap(), "keep");
        let missing = [action(&dir.join("nope"), &["*"], &["true"], None)];
        let e = go(&missing, "site.test", "NEW", "KEY", true).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(!dir.join("nope").exists());
        fs::remove_dir_all(&dir).unwrap();
        let _ = fs::remove_dir_all(dir.with_extension("live"));
        fs::remove_dir_all(&decoy).unwrap();
    }
}
