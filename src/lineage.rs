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
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
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
    pub fn install(
        &self,
        lineage: &LineageName,
        version: u32,
        files: &LineageFiles,
        commands: &Commands,
    ) -> std::result::Result<Installed, InstallError> {
        for dir in [self.root.join("archive"), self.root.join("live")] {
            make_dir(&dir, 0o700)?;
        }
        let archive = self.archive_dir(lineage);
        let live = self.live_dir(lineage);
        make_dir(&archive, 0o755)?;
        make_dir(&live, 0o755)?;
        // Blocking is fine: the other holder is an install of the same lineage, bounded by its
        // command timeouts, and sshd's channel is gone if the primary gives up.
        let _lock = crate::lockfile::lock(&archive.join(".certherd.lock"))?;
        // An earlier install that moved the links but never finished its test and reload (agent
        // killed, connection cut, reload failed) left this marker: links naming the version are
        // then not proof that the node runs it, so the install is finished instead of skipped.
        let pending_path = live.join(PENDING);
        let pending = read_pending(&pending_path);
        let before = match &pending {
            Some(links) => version_of(links),
            None => self.current_version(lineage).ok(),
        };
        if pending.is_none() && self.has(lineage, version, files) {
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
            write_if_changed(
                &archive.join(format!("{kind}{version}.pem")),
                content.as_bytes(),
                0o644,
            )?;
        }
        let key_path = archive.join(format!("privkey{version}.pem"));
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
        sync_dir(&archive)?;
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
        write_if_changed(&pending_path, &record, 0o600)?;
        sync_dir(&live)?;
        for kind in KINDS {
            let target = PathBuf::from(format!("../../archive/{lineage}/{kind}{version}.pem"));
            swap_symlink(&live.join(format!("{kind}.pem")), &target)?;
        }
        sync_dir(&live)?;

        if let Err(output) = commands.test() {
            for (kind, old) in KINDS.iter().zip(&previous) {
                let link = live.join(format!("{kind}.pem"));
                match old {
                    Some(target) => swap_symlink(&link, target)?,
                    None => remove_if_exists(&link)?,
                }
            }
            sync_dir(&live)?;
            remove_if_exists(&pending_path)?;
            let restored = before.map_or("none".to_owned(), |v| v.to_string());
            return Err(InstallError::TestFailed { output, restored });
        }
        // A failed reload keeps the marker: the next deploy or sync tests and reloads again.
        commands.reload().map_err(InstallError::ReloadFailed)?;
        remove_if_exists(&pending_path)?;
        sync_dir(&live)?;
        Ok(Installed {
            before,
            after: version,
            changed: true,
        })
    }
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

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    match fs::DirBuilder::new().mode(mode).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(Error::io("cannot create", path, e)),
    }
}

/// Writes a file by temp + fsync + rename, unless it already has this content.
fn write_if_changed(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.is_file())
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

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn a_hung_command_is_killed_with_its_children() {
        let start = Instant::now();
        let err = run_bounded(
            &argv(&["sh", "-c", "sleep 30 & echo started; wait"]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(err.contains("killed after"), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
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

    #[test]
    fn an_unfinished_install_is_finished_not_skipped() {
        let root = std::env::temp_dir().join(format!("certherd-lineage-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        let layout = Layout::new(&root);
        let lineage = LineageName::parse("example.com").unwrap();
        let files = LineageFiles {
            cert: "C".into(),
            chain: "CH".into(),
            fullchain: "F".into(),
            privkey: "K".into(),
            privkey_link: None,
        };
        let commands = |reload: &[&str]| Commands {
            test: argv(&["true"]),
            reload: argv(reload),
            timeout: Duration::from_secs(5),
        };
        let failed = layout.install(&lineage, 1, &files, &commands(&["false"]));
        assert!(
            matches!(failed, Err(InstallError::ReloadFailed(_))),
            "{failed:?}"
        );
        assert!(layout.live_dir(&lineage).join(PENDING).exists());
        let again = layout
            .install(&lineage, 1, &files, &commands(&["true"]))
            .unwrap();
        assert!(again.changed, "the reload was not retried");
        assert!(!layout.live_dir(&lineage).join(PENDING).exists());
        let noop = layout
            .install(&lineage, 1, &files, &commands(&["false"]))
            .unwrap();
        assert!(!noop.changed);
        fs::remove_dir_all(&root).unwrap();
    }
}
