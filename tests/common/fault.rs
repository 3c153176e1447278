//! Faults as guards: `cluster.fault(Fault::StopSshd(3))` breaks one thing on a real bed and
//! returns a [`FaultGuard`] that puts it back when dropped — also when the test panics — so a
//! failing test never leaves a mount, a stopped daemon, a planted link or a stray process behind.
//!
//! Two ways back: [`FaultGuard::heal`] is the repair a test makes on purpose ("once there is
//! room again, `sync` …"); dropping the guard heals if the test did not, then tears down what
//! only existed for the fault (a tmpfs, the processes a hung reload started). Each fault checks
//! that it took (the disk has exactly one page left, the webroot refuses a write) before the test
//! goes on: a fault that silently did nothing would make the test prove nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;

/// One thing broken on one node.
#[derive(Debug, Clone)]
pub enum Fault {
    /// The node's sshd and everything under it (agent sessions, their commands) stopped: the
    /// primary's connection is cut. Heal: sshd started again.
    StopSshd(usize),
    /// A tmpfs over the node's letsencrypt dir (a copy of it) with exactly one page free: the
    /// first new archive file fits, the next does not. Heal: the filler removed (room again, on
    /// the same tmpfs); teardown: unmounted.
    DiskFull(usize),
    /// The node's webroot is a read-only bind mount (root ignores permission bits). Heal: unmounted.
    ReadOnlyWebroot(usize),
    /// The node's `[reload]` commands name `/nonexistent/sbin/nginx`. Heal: the config put back.
    MissingNginx(usize),
    /// The node's reload starts a background `sleep 600` and waits for it, with `[reload]
    /// timeout`; the PIDs it started are written to a file ([`FaultGuard::pids`]). Heal: the
    /// config put back; teardown: those PIDs killed.
    HungReload { node: usize, timeout: &'static str },
    /// The node's config test is a root-owned script run through sudo (its own sudoers file,
    /// `/etc/sudoers.d/certherd-bed-B-hung`): as root it starts a background `sleep 600`,
    /// records both PIDs ([`FaultGuard::pids`]) and waits, ending its child on SIGTERM, as
    /// `nginx -t` or `systemctl` end theirs. The account cannot signal either process: only
    /// what sudo relays reaches them. Heal: the config put back; teardown: the sudoers file
    /// removed, those PIDs killed.
    HungConfigTestAsRoot { node: usize, timeout: &'static str },
    /// The node's config test sleeps `secs` before the real `nginx -t` (widens a window).
    /// Heal: the config put back.
    SlowConfigTest { node: usize, secs: u32 },
    /// The node's host key replaced by a new one, sshd restarted, the primary's shared
    /// connections closed (what a machine-in-the-middle looks like). Heal: the old key back.
    ChangedHostKey(usize),
    /// The directory `at` moved aside and a symlink to `to` planted in its place. Heal: the link
    /// removed, the directory moved back.
    PlantedSymlink { at: PathBuf, to: PathBuf },
    /// An address (a VIP) added to `lo`, as keepalived would on the node holding it. Heal: deleted.
    LoopbackAddress(String),
}

/// Applies `fault` to any bed (a [`super::cluster::Cluster`] does the same with `.fault`).
pub fn on(bed: &Bed, fault: Fault) -> FaultGuard<'_> {
    FaultGuard::apply(bed, fault)
}

/// Undoes a [`Fault`] on drop (see the module doc).
#[must_use = "the fault is undone when the guard is dropped"]
pub struct FaultGuard<'a> {
    bed: &'a Bed,
    heal: Vec<Step>,
    teardown: Vec<Step>,
    healed: bool,
    pids: Option<PathBuf>,
}

/// One undo step.
enum Step {
    StartSshd(usize),
    Umount(PathBuf),
    RemoveFile(PathBuf),
    WriteFile(PathBuf, Vec<u8>),
    KillPids(PathBuf),
    RestoreHostKey(usize, Vec<(PathBuf, Vec<u8>)>),
    Unplant { at: PathBuf, saved: PathBuf },
    DeleteAddress(String),
}

impl<'a> FaultGuard<'a> {
    /// Breaks it; panics (failing the test loudly) when the fault cannot be made.
    pub fn apply(bed: &'a Bed, fault: Fault) -> FaultGuard<'a> {
        let mut g = FaultGuard {
            bed,
            heal: Vec::new(),
            teardown: Vec::new(),
            healed: false,
            pids: None,
        };
        match fault {
            Fault::StopSshd(n) => {
                bed.stop_sshd(n);
                g.heal.push(Step::StartSshd(n));
            }
            Fault::DiskFull(n) => g.disk_full(n),
            Fault::ReadOnlyWebroot(n) => {
                let webroot = bed.webroot(n);
                mount(&webroot, &["--bind", webroot.to_str().unwrap()]);
                g.heal.push(Step::Umount(webroot.clone()));
                mount(&webroot, &["-o", "remount,bind,ro"]);
                assert!(
                    std::fs::write(webroot.join("probe"), "x").is_err(),
                    "the bind mount is not read-only"
                );
            }
            Fault::MissingNginx(n) => {
                g.keep_config(n);
                for key in ["reload.test", "reload.reload"] {
                    bed.config(n)
                        .update(key, |v| {
                            let words = v.as_mut().and_then(|v| v.as_array_mut());
                            let nginx = words
                                .into_iter()
                                .flatten()
                                .find(|w| w.as_str() == Some("/usr/sbin/nginx"))
                                .ok_or_else(|| {
                                    "expected a command naming /usr/sbin/nginx".to_owned()
                                })?;
                            *nginx = "/nonexistent/sbin/nginx".into();
                            Ok(())
                        })
                        .unwrap();
                }
            }
            Fault::HungReload { node, timeout } => {
                let pids = bed.node_dir(node).join("reload.pids");
                // The reload runs as the agent's account: it may append to this file only.
                std::fs::write(&pids, "").unwrap();
                bed.chown_to_agent(&pids).unwrap();
                g.teardown.push(Step::KillPids(pids.clone()));
                g.pids = Some(pids.clone());
                g.keep_config(node);
                let script = format!(
                    "echo $$ >> {p}; sleep 600 & echo $! >> {p}; wait",
                    p = pids.display()
                );
                bed.config(node)
                    .set("reload.reload", vec!["sh", "-c", &script])
                    .unwrap()
                    .set("reload.timeout", timeout)
                    .unwrap();
            }
            Fault::HungConfigTestAsRoot { node, timeout } => {
                g.hung_config_test_as_root(node, timeout)
            }
            Fault::SlowConfigTest { node, secs } => {
                g.keep_config(node);
                let test = format!(
                    "sleep {secs}; exec sudo -n /usr/sbin/nginx -t -q -c {}",
                    bed.nginx_conf(node).display()
                );
                bed.config(node)
                    .set("reload.test", vec!["sh", "-c", &test])
                    .unwrap();
            }
            Fault::ChangedHostKey(n) => g.changed_host_key(n),
            Fault::PlantedSymlink { at, to } => {
                let saved = at.with_file_name(format!(
                    "{}.fault-saved",
                    at.file_name().unwrap().to_string_lossy()
                ));
                std::fs::rename(&at, &saved).unwrap();
                g.heal.push(Step::Unplant {
                    at: at.clone(),
                    saved,
                });
                std::os::unix::fs::symlink(&to, &at).unwrap();
            }
            Fault::LoopbackAddress(addr) => {
                run(Command::new("ip").args(["addr", "add", &format!("{addr}/32"), "dev", "lo"]));
                g.heal.push(Step::DeleteAddress(addr));
            }
        }
        g
    }

    /// The PIDs a [`Fault::HungReload`] or [`Fault::HungConfigTestAsRoot`] has started so far.
    pub fn pids(&self) -> Vec<i32> {
        let Some(file) = &self.pids else {
            panic!("only a hung reload or config test records PIDs")
        };
        read_pids(file)
    }

    /// Repairs the fault now, on purpose; panics when the repair fails.
    pub fn heal(mut self) {
        self.healed = true;
        for step in std::mem::take(&mut self.heal).iter().rev() {
            if let Err(e) = step.run(self.bed) {
                panic!("healing the fault: {e}");
            }
        }
    }

    /// Saves node `n`'s config to be written back on heal.
    fn keep_config(&mut self, n: usize) {
        let path = self.bed.config_path(n);
        let bytes = std::fs::read(&path).unwrap();
        self.heal.push(Step::WriteFile(path, bytes));
    }

    fn disk_full(&mut self, n: usize) {
        let le = self.bed.letsencrypt_dir(n);
        let saved = self.bed.node_dir(n).join("letsencrypt.saved");
        run(Command::new("cp").arg("-a").arg(&le).arg(&saved));
        mount(&le, &["-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs"]);
        self.teardown.push(Step::Umount(le.clone()));
        run(Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", saved.display()))
            .arg(&le));
        // Fill the tmpfs, then give one page back.
        let filler = le.join("filler");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&filler).unwrap();
            let page = [0u8; 4096];
            while f.write_all(&page).is_ok() {}
            let len = f.metadata().unwrap().len();
            f.set_len(len - (len % 4096) - 4096).unwrap();
        }
        self.heal.push(Step::RemoveFile(filler));
        let free = nix::sys::statvfs::statvfs(&le).unwrap();
        assert_eq!(
            free.blocks_available() * free.fragment_size(),
            4096,
            "exactly one page left"
        );
    }

    fn hung_config_test_as_root(&mut self, node: usize, timeout: &str) {
        let bed = self.bed;
        // Root-owned, in the root-owned node directory: nothing the account can write.
        let pids = bed.node_dir(node).join("config-test.pids");
        let script = bed.node_dir(node).join("hung-config-test.sh");
        std::fs::write(&pids, "").unwrap();
        self.teardown.push(Step::KillPids(pids.clone()));
        self.pids = Some(pids.clone());
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 sleep 600 & child=$!\n\
                 trap 'kill $child; exit 143' TERM\n\
                 echo $$ $child >> {p}\n\
                 wait\n",
                p = pids.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let sudoers = PathBuf::from(format!("/etc/sudoers.d/certherd-bed-{}-hung", bed.index()));
        let tmp = sudoers.with_file_name(format!(".certherd-bed-{}-hung.tmp", bed.index()));
        std::fs::write(
            &tmp,
            format!(
                "{} ALL=(root) NOPASSWD: {}\n",
                bed.agent_user(),
                script.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o440)).unwrap();
        run(Command::new("/usr/sbin/visudo").arg("-cqf").arg(&tmp));
        std::fs::rename(&tmp, &sudoers).unwrap();
        self.teardown.push(Step::RemoveFile(sudoers));
        self.keep_config(node);
        bed.config(node)
            .set(
                "reload.test",
                vec!["/usr/bin/sudo", "-n", script.to_str().unwrap()],
            )
            .unwrap()
            .set("reload.timeout", timeout)
            .unwrap();
    }

    fn changed_host_key(&mut self, n: usize) {
        let bed = self.bed;
        let key = bed.node_dir(n).join("sshd/ssh_host_ed25519_key");
        let files: Vec<(PathBuf, Vec<u8>)> = [key.clone(), key.with_extension("pub")]
            .into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect();
        bed.stop_sshd(n);
        self.heal.push(Step::RestoreHostKey(n, files.clone()));
        for (p, _) in &files {
            std::fs::remove_file(p).unwrap();
        }
        run(Command::new("/usr/bin/ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key));
        bed.start_sshd(n).unwrap();
        bed.close_control_masters();
    }
}

impl Drop for FaultGuard<'_> {
    fn drop(&mut self) {
        // Never panic here: the test may already be panicking.
        if !self.healed {
            for step in self.heal.iter().rev() {
                let _ = step.run(self.bed);
            }
        }
        for step in self.teardown.iter().rev() {
            let _ = step.run(self.bed);
        }
    }
}

impl Step {
    fn run(&self, bed: &Bed) -> Result<(), String> {
        let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
        match self {
            Step::StartSshd(n) => Ok(bed.start_sshd(*n)?),
            Step::Umount(target) => {
                let ok = Command::new("umount")
                    .arg(target)
                    .status()
                    .is_ok_and(|s| s.success());
                if !ok {
                    // Busy (an agent still has a file open): detach it lazily.
                    let lazy = Command::new("umount").arg("-l").arg(target).status();
                    if !lazy.is_ok_and(|s| s.success()) {
                        return Err(format!("umount {} failed", target.display()));
                    }
                }
                Ok(())
            }
            Step::RemoveFile(p) => std::fs::remove_file(p).map_err(|e| io("remove", p, e)),
            Step::WriteFile(p, bytes) => std::fs::write(p, bytes).map_err(|e| io("write", p, e)),
            Step::KillPids(file) => {
                for pid in read_pids(file) {
                    if alive(pid) {
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                Ok(())
            }
            Step::RestoreHostKey(n, files) => {
                bed.stop_sshd(*n);
                for (p, bytes) in files {
                    std::fs::write(p, bytes).map_err(|e| io("write", p, e))?;
                    if p.extension().is_none() {
                        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                            .map_err(|e| io("chmod", p, e))?;
                    }
                }
                bed.start_sshd(*n)?;
                bed.close_control_masters();
                Ok(())
            }
            Step::Unplant { at, saved } => {
                std::fs::remove_file(at).map_err(|e| io("remove", at, e))?;
                std::fs::rename(saved, at).map_err(|e| io("rename", saved, e))
            }
            Step::DeleteAddress(addr) => {
                let deleted = Command::new("ip")
                    .args(["addr", "del", &format!("{addr}/32"), "dev", "lo"])
                    .status()
                    .is_ok_and(|s| s.success());
                if deleted {
                    Ok(())
                } else {
                    Err(format!("ip addr del {addr}/32 dev lo failed"))
                }
            }
        }
    }
}

/// `mount ARGS… TARGET`; fails the test loudly when the sandbox forbids it.
fn mount(target: &Path, args: &[&str]) {
    let mut cmd = Command::new("mount");
    cmd.args(args).arg(target);
    let ran = super::exec::exec(cmd).any_status().run();
    ran.ensure(
        ran.code() == Some(0),
        format!(
            "mount {args:?} {}: this fault needs mount(2) (root, CAP_SYS_ADMIN)",
            target.display()
        ),
    );
}

/// Runs a set-up command, asserting it worked.
fn run(cmd: &mut Command) {
    // The transcript of a failure is the idiom's; `exec` takes the command by value.
    super::exec::exec(std::mem::replace(cmd, Command::new("true"))).run();
}

fn read_pids(file: &Path) -> Vec<i32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start())
            .unwrap_or("");
        !state.starts_with('Z') && !state.starts_with('X')
    })
}
