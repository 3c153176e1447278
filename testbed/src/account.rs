//! The agent's account on the bed, set up the way the README's checklist tells production users:
//! a system account with shell `/bin/sh`, a password field that no password matches (`*`), the
//! shipped sudoers line (`contrib/sudoers/certherd`) and the shipped sshd block
//! (`contrib/ssh/sshd-certherd.conf`), each with only names and paths substituted.
//!
//! Accounts and `/etc/sudoers.d` are global to the machine while beds run in parallel, so each
//! bed has its own account `certherd-bB` (B = the bed's index, held exclusively by its flock)
//! shared by its nodes, as one machine's nodes would share one `certherd` account, and its own
//! sudoers file `/etc/sudoers.d/certherd-bed-B`. Its home is the bed's root directory: sshd's
//! StrictModes then checks the authorized_keys path only up to there, never `/tmp` (1777).
//! A leftover of a bed that died without `Drop` is replaced by the next bed with that index.

use crate::BedError;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use super::proc::run_ok;
use super::slot::LOCK_DIR;

/// useradd/userdel wait for the shadow lock; bounded anyway.
const ACCOUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// One bed's agent account and sudoers file; removed by `remove` (called from the bed's Drop).
#[derive(Debug)]
pub(crate) struct Account {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    sudoers: PathBuf,
}

/// The workspace's `contrib/` (one up from this crate): the bed uses the files users copy.
pub(crate) fn contrib(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../contrib")
        .join(rel)
}

pub(crate) fn read_contrib(rel: &str) -> Result<String, BedError> {
    let p = contrib(rel);
    fs::read_to_string(&p).map_err(BedError::io("read", &p))
}

/// Serialises useradd/userdel of parallel beds (they fail, not wait, on a busy /etc/passwd lock).
fn accounts_lock() -> Result<Flock<File>, BedError> {
    fs::create_dir_all(LOCK_DIR)
        .map_err(|e| BedError::Setup(format!("cannot create {LOCK_DIR}: {e}")))?;
    let path = Path::new(LOCK_DIR).join("accounts.lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(BedError::io("open", &path))?;
    let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o666));
    Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| BedError::io("flock", &path)(e.into()))
}

fn exists(name: &str) -> bool {
    nix::unistd::User::from_name(name).ok().flatten().is_some()
}

impl Account {
    /// Creates bed `index`'s account with `home` as its home directory (which must exist).
    pub fn create(index: u8, home: &Path) -> Result<Account, BedError> {
        let name = format!("certherd-b{index}");
        let _lock = accounts_lock()?;
        if exists(&name) {
            // A bed with this index died without Drop: start from a clean account.
            run_ok(
                Command::new("/usr/sbin/userdel").arg("-f").arg(&name),
                ACCOUNT_TIMEOUT,
            )?;
        }
        // As the README (useradd, then `usermod -p '*'`, here in one call): no password opens
        // it, yet it is not "locked" (`!`), which sshd without PAM would refuse even for a key.
        run_ok(
            Command::new("/usr/sbin/useradd")
                .args([
                    "--system",
                    "--user-group",
                    "--no-create-home",
                    "--shell",
                    "/bin/sh",
                ])
                .args(["--password", "*", "--home-dir"])
                .arg(home)
                .arg(&name),
            ACCOUNT_TIMEOUT,
        )?;
        let user = nix::unistd::User::from_name(&name)
            .map_err(|e| BedError::Setup(format!("getpwnam {name}: {e}")))?
            .ok_or_else(|| format!("useradd {name}: the account does not exist afterwards"))?;
        Ok(Account {
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            sudoers: PathBuf::from(format!("/etc/sudoers.d/certherd-bed-{index}")),
            name,
        })
    }

    /// Writes the bed's sudoers file: the shipped line once per node, with the account's name and
    /// that node's nginx.conf substituted; checked with `visudo -c` before sudo sees it.
    pub fn write_sudoers(&self, nginx_confs: &[PathBuf]) -> Result<(), BedError> {
        let shipped = read_contrib("sudoers/certherd")?;
        let mut text = String::from("# certherd test bed: contrib/sudoers/certherd per node\n");
        for conf in nginx_confs {
            for line in shipped.lines().filter(|l| !l.trim_start().starts_with('#')) {
                if line.trim().is_empty() {
                    continue;
                }
                let line = line
                    .replacen("certherd ", &format!("{} ", self.name), 1)
                    .replace("/etc/nginx/nginx.conf", &conf.to_string_lossy());
                text.push_str(&line);
                text.push('\n');
            }
        }
        let tmp = self.sudoers.with_file_name(format!(
            ".{}.tmp",
            self.sudoers
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
        ));
        fs::write(&tmp, &text).map_err(BedError::io("write", &tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o440))
            .map_err(BedError::io("chmod", &tmp))?;
        if let Err(e) = run_ok(
            Command::new("/usr/sbin/visudo").arg("-cqf").arg(&tmp),
            ACCOUNT_TIMEOUT,
        ) {
            let _ = fs::remove_file(&tmp);
            return Err(BedError::Setup(format!(
                "visudo -c on the bed's sudoers:\n{text}{e}"
            )));
        }
        fs::rename(&tmp, &self.sudoers).map_err(BedError::io("rename to", &self.sudoers))
    }

    /// Gives `path` (not following a symlink) to the account.
    pub fn chown(&self, path: &Path) -> Result<(), BedError> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
            .map_err(|e| BedError::Setup(format!("chown {} {}: {e}", self.name, path.display())))
    }

    /// Removes the sudoers file and the account (bounded); errors are printed, not returned.
    pub fn remove(&self) {
        let _ = fs::remove_file(&self.sudoers);
        // The control-socket directory root's certherd made when it dropped to the account.
        let _ = fs::remove_dir_all(format!("/run/certherd-{}", self.uid));
        let Ok(_lock) = accounts_lock() else { return };
        if exists(&self.name) {
            if let Err(e) = run_ok(
                Command::new("/usr/sbin/userdel").arg("-f").arg(&self.name),
                ACCOUNT_TIMEOUT,
            ) {
                eprintln!("testbed: userdel {}: {e}", self.name);
            }
        }
    }
}
