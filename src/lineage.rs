//! certbot's on-disk layout for one lineage, and the atomic install the agent performs:
//! `archive/<lineage>/{cert,chain,fullchain,privkey}N.pem` and `live/<lineage>/*.pem` as
//! relative symlinks into the archive.
//!
//! Install order is what makes a kill at any moment safe: archive files appear complete (temp
//! file, fsync, rename) before any symlink moves; each symlink is swapped by rename, never
//! deleted first; an install is a no-op only when all four links already name the version and
//! the archive files match, so a half-switched node is finished by the next deploy or sync.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::LineageName;

/// The four files of a version, in certbot's order.
pub const KINDS: [&str; 4] = ["cert", "chain", "fullchain", "privkey"];

/// The content of one version. The private key only ever travels inside the SSH channel.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LineageFiles {
    /// `certN.pem`
    pub cert: String,
    /// `chainN.pem`
    pub chain: String,
    /// `fullchainN.pem`
    pub fullchain: String,
    /// `privkeyN.pem`
    pub privkey: String,
    /// With key reuse certbot makes `privkeyN.pem` a symlink to `privkeyM.pem`: M, preserved.
    #[serde(default)]
    pub privkey_link: Option<u32>,
}

impl std::fmt::Debug for LineageFiles {
    // Never print the private key, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineageFiles")
            .field("privkey_link", &self.privkey_link)
            .finish_non_exhaustive()
    }
}

/// What an install did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// Version the live links named before (None: no certificate yet).
    pub before: Option<u32>,
    /// Version they name now.
    pub after: u32,
    /// Whether anything changed (false: already installed, nothing run).
    pub changed: bool,
}

/// Why an install did not complete.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InstallError {
    /// The config test failed; the previous links were put back.
    #[error("config test failed, previous certificate (version {restored}) restored: {output}")]
    TestFailed {
        /// The test's output, one line.
        output: String,
        /// Version restored ("none" when there was none).
        restored: String,
    },
    /// The reload failed after a passing test; the new version is installed.
    #[error("reload failed (new certificate installed, config test passed): {0}")]
    ReloadFailed(String),
    /// The files failed verification; nothing was written.
    #[error("refused before writing anything: {0}")]
    Unverified(crate::pem::PairError),
    /// The request cannot be carried out on this node's filesystem; nothing was written.
    #[error("refused: {0}")]
    Refused(String),
    /// Anything else (disk full, permissions, bad layout).
    #[error("{0}")]
    Other(String),
}

impl From<Error> for InstallError {
    fn from(e: Error) -> Self {
        InstallError::Other(e.to_string())
    }
}

/// certbot's directory (`/etc/letsencrypt`) on one node.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    /// The layout under `letsencrypt_dir`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Layout { root: root.into() }
    }

    /// The letsencrypt dir itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `live/<lineage>`
    pub fn live_dir(&self, lineage: &LineageName) -> PathBuf {
        self.root.join("live").join(lineage.as_str())
    }

    /// `archive/<lineage>`
    pub fn archive_dir(&self, lineage: &LineageName) -> PathBuf {
        self.root.join("archive").join(lineage.as_str())
    }

    /// Every lineage with a `live/<name>/cert.pem`.
    pub fn lineages(&self) -> Result<Vec<LineageName>> {
        let live = self.root.join("live");
        let entries = match fs::read_dir(&live) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io("cannot read", live, e)),
        };
        let mut names: Vec<_> = entries
            .flatten()
            .filter_map(|e| LineageName::parse(&e.file_name().to_string_lossy()).ok())
            .filter(|n| self.live_dir(n).join("cert.pem").exists())
            .collect();
        names.sort();
        Ok(names)
    }

    /// The version each live link names, in [`KINDS`] order (None: missing or not ours).
    pub fn link_versions(&self, lineage: &LineageName) -> [Option<u32>; 4] {
        KINDS.map(|kind| {
            let target = fs::read_link(self.live_dir(lineage).join(format!("{kind}.pem"))).ok()?;
            let name = target.file_name()?.to_str()?;
            name.strip_prefix(kind)?.strip_suffix(".pem")?.parse().ok()
        })
    }

    /// The version the live links name, when all four agree.
    pub fn current_version(&self, lineage: &LineageName) -> Result<u32> {
        let versions = self.link_versions(lineage);
        match versions {
            [Some(v), ..] if versions.iter().all(|x| *x == Some(v)) => Ok(v),
            _ => Err(Error::Failed(format!(
                "{}: live symlinks do not all name one archive version ({versions:?})",
                self.live_dir(lineage).display()
            ))),
        }
    }

    /// What is installed for one lineage (for `status`).
    pub fn status(&self, lineage: &LineageName) -> crate::protocol::LineageStatus {
        let version = self.current_version(lineage).ok();
        let info = fs::read_to_string(self.live_dir(lineage).join("cert.pem"))
            .ok()
            .and_then(|p| crate::pem::info_pem(&p));
        crate::protocol::LineageStatus {
            lineage: lineage.to_string(),
            version,
            fingerprint: info.as_ref().map(|i| i.fingerprint.clone()),
            serial: info.as_ref().map(|i| i.serial.clone()),
            not_after: info.map(|i| i.not_after),
            pending: self.live_dir(lineage).join(PENDING).exists(),
        }
    }

    /// Status of every lineage.
    pub fn status_all(&self) -> Result<Vec<crate::protocol::LineageStatus>> {
        Ok(self.lineages()?.iter().map(|l| self.status(l)).collect())
    }

    /// Reads a version's files from the archive.
    pub fn read_version(&self, lineage: &LineageName, version: u32) -> Result<LineageFiles> {
        let dir = self.archive_dir(lineage);
        let read = |kind: &str| {
            let p = dir.join(format!("{kind}{version}.pem"));
            fs::read_to_string(&p).map_err(|e| Error::io("cannot read", p, e))
        };
        let privkey_path = dir.join(format!("privkey{version}.pem"));
        let privkey_link = fs::read_link(&privkey_path).ok().and_then(|t| {
            t.to_str()?
                .strip_prefix("privkey")?
                .strip_suffix(".pem")?
                .parse()
                .ok()
        });
        Ok(LineageFiles {
            cert: read("cert")?,
            chain: read("chain")?,
            fullchain: read("fullchain")?,
            privkey: read("privkey")?,
            privkey_link,
        })
    }

    /// Whether the node is fully on `version` with exactly these files.
    fn has(&self, lineage: &LineageName, version: u32, files: &LineageFiles) -> bool {
        self.link_versions(lineage)
            .iter()
            .all(|v| *v == Some(version))
            && self.read_version(lineage, version).is_ok_and(|f| {
                f.cert == files.cert
                    && f.chain == files.chain
                    && f.fullchain == files.fullchain
                    && f.privkey == files.privkey
            })
    }

    /// Installs `version` and runs the node's test and reload commands (see the module docs).
    ///
    /// The files are verified first ([`crate::pem::verify_pair`]); a refused, failed or
    /// rolled-back install removes every file and directory it created, so the node is exactly
    /// as before unless the error is [`InstallError::Other`] after links moved (then the pending
    /// marker makes the next deploy or sync finish or undo it).
    pub fn install(
        &self,
        lineage: &LineageName,
        version: u32,
        files: &LineageFiles,
        commands: &Commands,
    ) -> std::result::Result<Installed, InstallError> {
        if lineage.as_str().len() > NAME_MAX {
            return Err(InstallError::Refused(format!(
                "lineage {} is {} bytes (expected at most {NAME_MAX}, a file name)",
                crate::names::printable(lineage.as_str()),
                lineage.as_str().len()
            )));
        }
        if version == 0 || files.privkey_link == Some(0) {
            return Err(InstallError::Refused(
                "version 0 (expected certbot's numbering, from 1)".into(),
            ));
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        crate::pem::verify_pair(
            &files.cert,
            &files.chain,
            &files.fullchain,
            &files.privkey,
            now,
        )
        .map_err(InstallError::Unverified)?;
        let mut made = Created::default();
        let result = self.install_verified(lineage, version, files, commands, &mut made);
        if let Err(e) = &result {
            if !matches!(e, InstallError::ReloadFailed(_)) && !made.links_moved {
                made.undo();
            }
        }
        result
    }

    fn install_verified(
        &self,
        lineage: &LineageName,
        version: u32,
        files: &LineageFiles,
        commands: &Commands,
        made: &mut Created,
    ) -> std::result::Result<Installed, InstallError> {
        // Walked without following symlinks: a planted `live/<lineage>` link is refused.
        for (parts, mode) in [
            (["archive", ""], 0o700),
            (["live", ""], 0o700),
            (["archive", lineage.as_str()], 0o755),
            (["live", lineage.as_str()], 0o755),
        ] {
            let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
            crate::nofollow::walk(&self.root, &parts, Some(mode), &mut made.dirs)?;
        }
        let archive = self.archive_dir(lineage);
        let live = self.live_dir(lineage);
        let lock_path = archive.join(".certherd.lock");
        made.note(&lock_path);
        // Blocking is fine: the other holder is an install of the same lineage, bounded by its
        // command timeouts, and sshd's channel is gone if the primary gives up.
        let _lock = crate::lockfile::lock(&lock_path)?;
        // An earlier install that moved the links but never finished its test and reload (agent
        // killed, connection cut, reload failed) left this marker: links naming the version are
        // then not proof that the node runs it, so the install is finished instead of skipped.
        let pending_path = live.join(PENDING);
        crate::nofollow::refuse_if_symlink(&pending_path)?;
        let pending = read_pending(&pending_path);
        let before = match &pending {
            Some(links) => version_of(links),
            None => self.current_version(lineage).ok(),
        };
        if pending.is_none() && self.has(lineage, version, files) {
            key_mode_0600(&archive, version)?;
            return Ok(Installed {
                before,
                after: version,
                changed: false,
            });
        }

        for (kind, content) in [
            ("cert", &files.cert),
            ("chain", &files.chain),
            ("fullchain", &files.fullchain),
        ] {
            let path = archive.join(format!("{kind}{version}.pem"));
            made.note(&path);
            write_if_changed(&path, content.as_bytes(), 0o644)?;
            crate::crashpoint!("after-archive-{kind}");
        }
        let key_path = archive.join(format!("privkey{version}.pem"));
        made.note(&key_path);
        match files.privkey_link.filter(|m| *m != version) {
            // Keep certbot's key-reuse link when the older key file here holds the same key.
            Some(m)
                if fs::read_to_string(archive.join(format!("privkey{m}.pem")))
                    .is_ok_and(|k| k == files.privkey) =>
            {
                swap_symlink(&key_path, Path::new(&format!("privkey{m}.pem")))?
            }
            _ => write_if_changed(&key_path, files.privkey.as_bytes(), 0o600)?,
        }
        key_mode_0600(&archive, version)?;
        sync_dir(&archive)?;
        crate::crashpoint!("after-archive-privkey");
        made.note(&live.join("README"));
        write_readme(&live)?;

        // What to roll back to: the links before the first unfinished install, else the current
        // ones; recorded before any link moves.
        let previous: Vec<Option<PathBuf>> = match pending {
            Some(links) => links,
            None => KINDS
                .iter()
                .map(|k| fs::read_link(live.join(format!("{k}.pem"))).ok())
                .collect(),
        };
        let record = serde_json::to_vec(&previous)
            .map_err(|e| InstallError::Other(format!("cannot record the previous links: {e}")))?;
        made.note(&pending_path);
        write_if_changed(&pending_path, &record, 0o600)?;
        sync_dir(&live)?;
        crate::crashpoint!("after-pending-marker");
        made.links_moved = true;
        for kind in KINDS {
            let target = PathBuf::from(format!("../../archive/{lineage}/{kind}{version}.pem"));
            swap_symlink(&live.join(format!("{kind}.pem")), &target)?;
            crate::crashpoint!("after-link-{kind}");
        }
        sync_dir(&live)?;
        crate::crashpoint!("before-test");

        if let Err(output) = commands.test() {
            for (kind, old) in KINDS.iter().zip(&previous) {
                let link = live.join(format!("{kind}.pem"));
                match old {
                    Some(target) => swap_symlink(&link, target)?,
                    None => remove_if_exists(&link)?,
                }
                crate::crashpoint!("rollback-after-link-{kind}");
            }
            sync_dir(&live)?;
            crate::crashpoint!("rollback-before-marker-removed");
            remove_if_exists(&pending_path)?;
            // Back where it was: what this install created goes too.
            made.links_moved = false;
            let restored = before.map_or("none".to_owned(), |v| v.to_string());
            return Err(InstallError::TestFailed { output, restored });
        }
        crate::crashpoint!("after-test");
        // A failed reload keeps the marker: the next deploy or sync tests and reloads again.
        commands.reload().map_err(InstallError::ReloadFailed)?;
        crate::crashpoint!("after-reload");
        remove_if_exists(&pending_path)?;
        sync_dir(&live)?;
        crate::crashpoint!("after-pending-removed");
        Ok(Installed {
            before,
            after: version,
            changed: true,
        })
    }
}

/// Longest file name the kernel accepts (NAME_MAX on Linux).
const NAME_MAX: usize = 255;

/// What an install created, to remove again when it does not complete.
#[derive(Default)]
struct Created {
    /// Directories it made, outermost first.
    dirs: Vec<PathBuf>,
    /// Files (and symlinks) that did not exist before it wrote them.
    files: Vec<PathBuf>,
    /// Live links have moved: what they name must stay until a rollback puts them back.
    links_moved: bool,
}

impl Created {
    /// Remembers `path` as created by this install if nothing is there yet.
    fn note(&mut self, path: &Path) {
        if fs::symlink_metadata(path).is_err() {
            self.files.push(path.to_owned());
        }
    }

    /// Removes, newest first, what this install created (best effort: the error that made the
    /// install fail is the one reported).
    fn undo(&mut self) {
        for f in self.files.drain(..).rev() {
            let _ = fs::remove_file(&f);
            let _ = fs::remove_file(temp_name(&f));
        }
        for d in self.dirs.drain(..).rev() {
            let _ = fs::remove_dir(&d);
        }
    }
}

/// Sets a version's private key file to 0600 when it is not (a key certbot or an older certherd
/// left 0644, or the older file a key-reuse link names). A symlink is never followed further
/// than one link inside the archive directory.
fn key_mode_0600(archive: &Path, version: u32) -> Result<()> {
    let mut path = archive.join(format!("privkey{version}.pem"));
    let mut meta = fs::symlink_metadata(&path).map_err(|e| Error::io("cannot stat", &path, e))?;
    if meta.is_symlink() {
        let target = fs::read_link(&path).map_err(|e| Error::io("cannot read", &path, e))?;
        if target.components().count() != 1 {
            return Ok(());
        }
        path = archive.join(target);
        meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => return Ok(()),
        };
    }
    if meta.is_file() && meta.permissions().mode() & 0o7777 != 0o600 {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .map_err(|e| Error::io("cannot chmod", &path, e))?;
    }
    Ok(())
}

/// A node's `[reload]` commands with their time limit.
#[derive(Debug, Clone)]
pub struct Commands {
    /// argv of the config test; empty: none.
    pub test: Vec<String>,
    /// argv of the reload; empty: none.
    pub reload: Vec<String>,
    /// Limit for each.
    pub timeout: Duration,
}

impl Commands {
    /// Runs the config test.
    pub fn test(&self) -> std::result::Result<(), String> {
        run_bounded(&self.test, self.timeout)
    }

    /// Runs the reload.
    pub fn reload(&self) -> std::result::Result<(), String> {
        run_bounded(&self.reload, self.timeout)
    }
}

/// Bytes of each of stdout and stderr kept for the error message (the rest is drained).
const OUTPUT_KEPT: usize = 16 * 1024;
/// How long output is still collected after the command ended: a daemon it started may hold
/// the pipes open for ever, and must not hold the agent with them.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Runs argv without a shell in its own process group; after `timeout` the whole group is
/// killed (by its PID, which is the group's id), so a hung reload cannot leave children behind.
/// Err is one line of output.
pub fn run_bounded(argv: &[String], timeout: Duration) -> std::result::Result<(), String> {
    use std::os::unix::process::CommandExt;
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    // One reader per pipe, each draining to the end: a command that fills one pipe while we
    // wait on the other would otherwise block until its timeout.
    let (tx, rx) = std::sync::mpsc::channel();
    let pipes: [Option<Box<dyn Read + Send>>; 2] = [
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ];
    for (i, pipe) in pipes.into_iter().enumerate() {
        let Some(mut pipe) = pipe else { continue };
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buf = [0u8; 8192];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                let room = OUTPUT_KEPT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            let _ = tx.send((i, kept));
        });
    }
    drop(tx);
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < timeout => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let group = nix::unistd::Pid::from_raw(child.id() as i32);
                if nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).is_err() {
                    let _ = child.kill();
                }
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut output = [Vec::new(), Vec::new()];
    let until = Instant::now() + OUTPUT_GRACE;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok((i, kept)) => output[i] = kept,
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&output.concat()).into_owned();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(format!("{} exited with {s}: {text}", argv.join(" "))),
        None => Err(format!(
            "{} killed after {timeout:?} (timeout)",
            argv.join(" ")
        )),
    }
}

/// Marker in `live/<lineage>/` while an install has moved links but not finished its reload;
/// holds the link targets to roll back to (JSON, one entry per [`KINDS`]).
pub const PENDING: &str = ".certherd-pending";

/// The rollback targets of an unfinished install, if one is recorded. An unreadable marker still
/// means "unfinished": the current links are then the best rollback target there is.
fn read_pending(path: &Path) -> Option<Vec<Option<PathBuf>>> {
    let bytes = fs::read(path).ok()?;
    let live = path.parent()?;
    Some(
        serde_json::from_slice::<Vec<Option<PathBuf>>>(&bytes)
            .ok()
            .filter(|links| links.len() == KINDS.len())
            .unwrap_or_else(|| {
                KINDS
                    .iter()
                    .map(|k| fs::read_link(live.join(format!("{k}.pem"))).ok())
                    .collect()
            }),
    )
}

/// The version recorded link targets name, when all four agree.
fn version_of(links: &[Option<PathBuf>]) -> Option<u32> {
    let versions: Vec<Option<u32>> = KINDS
        .iter()
        .zip(links)
        .map(|(kind, target)| {
            let name = target.as_ref()?.file_name()?.to_str()?;
            name.strip_prefix(kind)?.strip_suffix(".pem")?.parse().ok()
        })
        .collect();
    match versions.first() {
        Some(Some(v)) if versions.iter().all(|x| *x == Some(*v)) => Some(*v),
        _ => None,
    }
}

/// Writes a file by temp + fsync + rename, unless it already has this content and mode (a key
/// left 0644 with the right content is rewritten 0600, not skipped).
fn write_if_changed(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    if fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o7777 == mode)
        && fs::read(path).is_ok_and(|c| c == content)
    {
        return Ok(());
    }
    let tmp = temp_name(path);
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
fn swap_symlink(link: &Path, target: &Path) -> Result<()> {
    let tmp = temp_name(link);
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(|e| Error::io("cannot create symlink", &tmp, e))?;
    fs::rename(&tmp, link).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("cannot replace", link, e)
    })
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("cannot remove", path, e))
        }
        _ => Ok(()),
    }
}

fn temp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.certherd-tmp-{}", std::process::id()))
}

fn sync_dir(path: &Path) -> Result<()> {
    fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("cannot sync", path, e))
}

fn write_readme(live: &Path) -> Result<()> {
    const README: &str = "This directory contains your keys and certificates.\n\n\
`privkey.pem`  : the private key for your certificate.\n\
`fullchain.pem`: the certificate file used in most server software.\n\
`chain.pem`    : used for OCSP stapling in Nginx >=1.3.7.\n\
`cert.pem`     : will break many server configurations, and should not be used\n\
                 without reading further documentation (see link below).\n\n\
WARNING: DO NOT MOVE OR RENAME THESE FILES!\n\
         certherd and Certbot expect these files to remain in this location in order\n\
         to function properly!\n\n\
We recommend not moving these files. For more information, see the Certbot\n\
User Guide at https://certbot.eff.org/docs/using.html#where-are-my-certificates.\n";
    let path = live.join("README");
    if path.exists() {
        return Ok(());
    }
    write_if_changed(&path, README.as_bytes(), 0o644)
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
    use crate::pem::PairError;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn a_hung_command_is_killed_with_its_children() {
        let dir = scratch("hung");
        let pid_file = dir.join("child.pid");
        let start = Instant::now();
        let err = run_bounded(
            &argv(&[
                "sh",
                "-c",
                &format!("sleep 30 & echo $! > {}; wait", pid_file.display()),
            ]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(err.contains("killed after"), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // The child, not only the shell, is gone (a zombie waiting for init to reap it counts as
        // gone: it runs nothing). Bounded: the kill is delivered by the time run_bounded returns.
        let pid = fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let gone = || {
            fs::read_to_string(&stat).map_or(true, |s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(), "the hung command's child {} survived", pid.trim());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_chatty_command_does_not_block_on_its_pipes() {
        // 200 KiB on stderr, then stdout: more than both pipe buffers.
        let start = Instant::now();
        let err = run_bounded(
            &argv(&[
                "sh",
                "-c",
                "head -c 204800 /dev/zero >&2; echo done; exit 3",
            ]),
            Duration::from_secs(10),
        )
        .unwrap_err();
        assert!(err.contains("exit status: 3"), "{err:.200}");
        assert!(start.elapsed() < Duration::from_secs(5));
        // A daemon holding the pipes does not hold the caller.
        let start = Instant::now();
        run_bounded(&argv(&["sh", "-c", "sleep 30 &"]), Duration::from_secs(10)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
    }

    /// A real version made by openssl (P-256, self-signed): install verifies what it writes.
    fn real_files(tag: &str) -> LineageFiles {
        let dir = std::env::temp_dir().join(format!("certherd-files-{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=example.com",
            ])
            .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
            .arg("-keyout")
            .arg(dir.join("k.pem"))
            .arg("-out")
            .arg(dir.join("c.pem"))
            .output()
            .unwrap();
        assert!(out.status.success());
        let cert = fs::read_to_string(dir.join("c.pem")).unwrap();
        let privkey = fs::read_to_string(dir.join("k.pem")).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        LineageFiles {
            chain: cert.clone(),
            fullchain: format!("{cert}{cert}"),
            cert,
            privkey,
            privkey_link: None,
        }
    }

    fn scratch(tag: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("certherd-lineage-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        root
    }

    fn commands(test: &[&str], reload: &[&str]) -> Commands {
        Commands {
            test: argv(test),
            reload: argv(reload),
            timeout: Duration::from_secs(5),
        }
    }

    /// Every path below `root` (sorted), to compare before and after.
    fn tree(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_owned()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                out.push(e.path());
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn an_unfinished_install_is_finished_not_skipped() {
        let root = scratch("unfinished");
        let layout = Layout::new(&root);
        let lineage = LineageName::parse("example.com").unwrap();
        let files = real_files("unfinished");
        let failed = layout.install(&lineage, 1, &files, &commands(&["true"], &["false"]));
        assert!(
            matches!(failed, Err(InstallError::ReloadFailed(_))),
            "{failed:?}"
        );
        assert!(layout.live_dir(&lineage).join(PENDING).exists());
        let again = layout
            .install(&lineage, 1, &files, &commands(&["true"], &["true"]))
            .unwrap();
        assert!(again.changed, "the reload was not retried");
        assert!(!layout.live_dir(&lineage).join(PENDING).exists());
        let noop = layout
            .install(&lineage, 1, &files, &commands(&["true"], &["false"]))
            .unwrap();
        assert!(!noop.changed);
        fs::remove_dir_all(&root).unwrap();
    }

    /// Issue 9: refused and rolled-back installs leave nothing they created, on a fresh node and
    /// next to an installed version.
    #[test]
    fn refused_or_rolled_back_installs_leave_nothing() {
        let root = scratch("leftover");
        let layout = Layout::new(&root);
        let lineage = LineageName::parse("example.com").unwrap();
        let good = real_files("leftover-a");
        let other = real_files("leftover-b");
        let mismatched = LineageFiles {
            privkey: other.privkey.clone(),
            ..good.clone()
        };
        let ok = commands(&["true"], &["true"]);
        for round in 0..2 {
            let before = tree(&root);
            for v in 2..6 {
                let r = layout.install(&lineage, v, &mismatched, &ok);
                assert!(
                    matches!(r, Err(InstallError::Unverified(PairError::KeyMismatch))),
                    "{r:?}"
                );
                let r = layout.install(&lineage, v, &other, &commands(&["false"], &["true"]));
                assert!(matches!(r, Err(InstallError::TestFailed { .. })), "{r:?}");
            }
            assert_eq!(tree(&root), before, "round {round}: leftovers");
            layout.install(&lineage, 1, &good, &ok).unwrap();
        }
        assert_eq!(layout.current_version(&lineage).unwrap(), 1);
        fs::remove_dir_all(&root).unwrap();
    }

    /// Issue 9: a key left 0644 with the same content, and the older key a reuse link names, are
    /// 0600 after the install.
    #[test]
    fn keys_are_0600_after_every_install() {
        let root = scratch("keymode");
        let layout = Layout::new(&root);
        let lineage = LineageName::parse("example.com").unwrap();
        let files = real_files("keymode");
        let ok = commands(&["true"], &["true"]);
        layout.install(&lineage, 1, &files, &ok).unwrap();
        let key1 = layout.archive_dir(&lineage).join("privkey1.pem");
        fs::set_permissions(&key1, fs::Permissions::from_mode(0o644)).unwrap();
        let noop = layout.install(&lineage, 1, &files, &ok).unwrap();
        assert!(!noop.changed);
        assert_eq!(mode(&key1), 0o600, "equal content, no-op install");
        fs::set_permissions(&key1, fs::Permissions::from_mode(0o644)).unwrap();
        let reuse = LineageFiles {
            privkey_link: Some(1),
            ..files.clone()
        };
        layout.install(&lineage, 2, &reuse, &ok).unwrap();
        let key2 = layout.archive_dir(&lineage).join("privkey2.pem");
        assert_eq!(fs::read_link(&key2).unwrap(), PathBuf::from("privkey1.pem"));
        assert_eq!(mode(&key1), 0o600, "the file a reuse link names");
        fs::remove_dir_all(&root).unwrap();
    }

    /// Issue 9: planted symlinks at live/<lineage> and at the lock file are refused, naming the
    /// path, and nothing is written through them.
    #[test]
    fn planted_symlinks_are_refused() {
        let root = scratch("planted");
        let decoy = scratch("planted-decoy");
        let layout = Layout::new(&root);
        let lineage = LineageName::parse("example.com").unwrap();
        let files = real_files("planted");
        let ok = commands(&["true"], &["true"]);
        fs::create_dir_all(root.join("live")).unwrap();
        std::os::unix::fs::symlink(&decoy, layout.live_dir(&lineage)).unwrap();
        let err = layout
            .install(&lineage, 1, &files, &ok)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("live/example.com") && err.contains("symlink"),
            "{err}"
        );
        fs::remove_file(layout.live_dir(&lineage)).unwrap();
        fs::create_dir_all(layout.archive_dir(&lineage)).unwrap();
        std::os::unix::fs::symlink(
            decoy.join("lock"),
            layout.archive_dir(&lineage).join(".certherd.lock"),
        )
        .unwrap();
        let err = layout
            .install(&lineage, 1, &files, &ok)
            .unwrap_err()
            .to_string();
        assert!(err.contains(".certherd.lock"), "{err}");
        assert_eq!(
            tree(&decoy),
            Vec::<PathBuf>::new(),
            "written through a planted link"
        );
        fs::remove_dir_all(&root).unwrap();
        fs::remove_dir_all(&decoy).unwrap();
    }
}
