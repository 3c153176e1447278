//! Bed index allocation: many beds at once, in threads of one process or in several processes.
//!
//! A bed owns index B (1..=250) while it holds an exclusive `flock` on `/tmp/certherd-beds/B.lock`.
//! Its daemons are recorded in `/tmp/certherd-beds/B.pids` (`PID ROOTDIR` per line); whoever takes
//! B next kills leftovers of a bed whose process died without running `Drop` (only PIDs whose
//! command line still names that bed's root dir, so recycled PIDs are never hit) and removes that
//! bed's directory (unless `CERTHERD_KEEP_BED` is set).

use crate::BedError;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::Signal;

use super::proc::{descendants, ProcId};

pub(crate) const LOCK_DIR: &str = "/tmp/certherd-beds";
pub(crate) const MAX_INDEX: u8 = 250;

pub(crate) struct Slot {
    pub index: u8,
    pids_path: PathBuf,
    _lock: Flock<File>,
}

impl Slot {
    /// Takes the lowest free index whose addresses are also free.
    pub fn acquire(nodes: usize, ca: bool) -> Result<Slot, BedError> {
        fs::create_dir_all(LOCK_DIR)
            .map_err(|e| BedError::Setup(format!("cannot create {LOCK_DIR}: {e}")))?;
        let _ = fs::set_permissions(LOCK_DIR, fs::Permissions::from_mode(0o1777));
        let mut busy = Vec::new();
        for b in 1..=MAX_INDEX {
            let path = Path::new(LOCK_DIR).join(format!("{b}.lock"));
            let f = OpenOptions::new()
                .create(true)
                .truncate(false)
                .read(true)
                .write(true)
                .open(&path)
                .map_err(BedError::io("open", &path))?;
            let lock = match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
                Ok(l) => l,
                Err(_) => continue, // another live bed
            };
            let pids_path = Path::new(LOCK_DIR).join(format!("{b}.pids"));
            reap(&pids_path);
            if let Err(why) = ports_free(b, nodes, ca) {
                busy.push(format!("{b}: {why}"));
                continue; // drops the lock
            }
            let _ = fs::remove_file(&pids_path);
            return Ok(Slot {
                index: b,
                pids_path,
                _lock: lock,
            });
        }
        let more = busy.len().saturating_sub(3);
        busy.truncate(3);
        Err(BedError::Setup(format!(
            "no free test bed index in 1..={MAX_INDEX} (locks in {LOCK_DIR}); busy addresses: {}{}",
            busy.join("; "),
            if more > 0 {
                format!("; and {more} more (a daemon on 0.0.0.0? see ss -ltnp)")
            } else {
                String::new()
            }
        )))
    }

    /// Records a daemon PID so a later owner of this index can clean up after a crash.
    pub fn record(&self, pid: u32, root: &Path) {
        if let Ok(mut f) = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.pids_path)
        {
            let _ = writeln!(f, "{pid} {}", root.display());
        }
    }

    pub fn clear_record(&self) {
        let _ = fs::remove_file(&self.pids_path);
    }
}

/// Kills the daemons (and their descendants) of a dead bed that used this index.
fn reap(pids_path: &Path) {
    let Ok(text) = fs::read_to_string(pids_path) else {
        return;
    };
    let mut victims = Vec::new();
    let mut roots: Vec<&str> = Vec::new();
    for line in text.lines() {
        let Some((pid, root)) = line.split_once(' ') else {
            continue;
        };
        if root.starts_with("/tmp/certherd-bed-") && !roots.contains(&root) {
            roots.push(root);
        }
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        if root.len() < 10 {
            continue;
        }
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.contains(root) {
            continue;
        }
        if let Some(p) = ProcId::of(pid) {
            eprintln!("testbed: killing leftover daemon pid {pid} of dead bed {root}");
            victims.extend(descendants(pid));
            victims.push(p);
        }
    }
    for v in &victims {
        v.signal(Signal::SIGKILL);
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while victims.iter().any(|v| v.alive()) && std::time::Instant::now() < deadline {
        std::thread::sleep(super::proc::POLL);
    }
    // The dead bed's directory goes too, as its Drop would have done.
    if std::env::var_os("CERTHERD_KEEP_BED").is_none() {
        for r in roots {
            if Path::new(r).is_dir() {
                eprintln!("testbed: removing {r} of a dead bed");
                let _ = fs::remove_dir_all(r);
            }
        }
    }
    let _ = fs::remove_file(pids_path);
}

/// Checks that every address the bed will listen on can be bound right now.
fn ports_free(b: u8, nodes: usize, ca: bool) -> Result<(), BedError> {
    let tcp = |ip: Ipv4Addr, port: u16| -> Result<(), BedError> {
        TcpListener::bind(SocketAddrV4::new(ip, port))
            .map(drop)
            .map_err(|e| BedError::Setup(format!("{ip}:{port}: {e}")))
    };
    for i in 1..=nodes {
        let ip = Ipv4Addr::new(127, 0, b, i as u8);
        for port in [22, 80, 443] {
            tcp(ip, port)?;
        }
    }
    if ca {
        let ip = Ipv4Addr::new(127, 0, b, 250);
        for port in [14000, 15000, 8055, 8053] {
            tcp(ip, port)?;
        }
        UdpSocket::bind(SocketAddrV4::new(ip, 8053))
            .map(drop)
            .map_err(|e| BedError::Setup(format!("{ip}:8053/udp: {e}")))?;
    }
    Ok(())
}
