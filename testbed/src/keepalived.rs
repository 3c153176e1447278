//! keepalived (the Debian package) in a node's namespace on a namespaced bed: real VRRP between
//! the nodes' `eth0`s over the bed's bridge, a VIP that moves, and
//! `contrib/keepalived/notify-certherd.sh` byte for byte as shipped as the notify script.
//!
//! keepalived runs notify scripts only when `enable_script_security` finds them safe: the script
//! and every directory above it root-owned and not writable by others (`/tmp` passes: sticky).
//! The bed copies the shipped script into `<root>/keepalived-notify/` (root, 0755) and checks the
//! copy equals the shipped file.
//!
//! The bed's machine has no systemd, so keepalived's PATH starts with a stand-in `systemctl`
//! (TEST BED ONLY, written per node, see [`shim`]) that knows exactly the two units the notify
//! script names: `start certherd-renew.service` runs `certherd renew --jitter 0s` for that node
//! (synchronously, as systemd runs a oneshot unit; with `--no-block`, what the shipped script
//! says, in the background, as a queued job) and logs its exit code;
//! `start`/`stop certherd-watch.service` starts `certherd watch` in the background / stops it by
//! the PID it recorded (after checking that PID's command line still names the node's config).
//! Watchers are also recorded in the slot's PID file, so a crashed run's are reaped, and stopped
//! by PID in the bed's Drop.
//!
//! Both instances start as BACKUP, by default with `nopreempt`: the higher priority wins the
//! first election, and a node that comes back does not take the VIP back (the README's Failover
//! set-up); with [`Vrrp::preempt`] a higher priority takes it over from a MASTER (a flap).

use crate::BedError;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::account::contrib;
use super::node::{mkdir, write_mode};
use super::proc::{self, Daemon, ProcId};
use super::slot::LOCK_DIR;
use super::Bed;

pub(crate) const KEEPALIVED: &str = "/usr/sbin/keepalived";
/// How long keepalived gets to enter its first state.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// One node's VRRP instance.
#[derive(Clone, Copy, Debug)]
pub struct Vrrp {
    /// The virtual address (on the bed's 198.18.B.0/24, above the nodes: see [`Bed::vip`]).
    pub vip: Ipv4Addr,
    /// VRRP priority (1..=254); the highest wins the first election.
    pub priority: u8,
    /// A higher priority takes the VIP over from a running MASTER (keepalived's default), which
    /// then enters BACKUP: a flap. `false`: `nopreempt`, the README's Failover set-up.
    pub preempt: bool,
}

fn dir(bed: &Bed, node: usize) -> PathBuf {
    bed.node_dir(node).join("keepalived")
}

/// A single-quoted shell word; the bed's paths never hold a quote, refused anyway.
fn sq(p: &Path) -> Result<String, BedError> {
    let s = p.to_string_lossy();
    if s.contains('\'') {
        return Err(BedError::Setup(format!("path with a quote: {s}")));
    }
    Ok(format!("'{s}'"))
}

/// The stand-in `systemctl` for node `node` (TEST BED ONLY).
fn shim(bed: &Bed, node: usize) -> Result<String, BedError> {
    let d = sq(&dir(bed, node))?;
    let bin = sq(bed.certherd_bin())?;
    let cfg = sq(&bed.config_path(node))?;
    let ca = sq(&bed.ca_bundle())?;
    let pids = sq(&Path::new(LOCK_DIR).join(format!("{}.pids", bed.index())))?;
    let root = bed.root().display();
    Ok(format!(
        r#"#!/bin/sh
# certherd TEST BED ONLY (testbed/src/keepalived.rs), never for production: the bed's machine
# has no systemd, so keepalived's PATH starts with this stand-in for `systemctl`. It knows the
# two units contrib/keepalived/notify-certherd.sh names, for node {node}; anything else fails.
set -u
# systemd starts a unit with UMask=0022; keepalived runs notify scripts under its own 0177, which
# makes certbot's mkdtemp directories 0600 (untraversable) once certherd runs it as the account.
umask 0022
dir={d}
cfg={cfg}
log="$dir/systemctl.log"
case "$*" in
"start certherd-renew.service")
    echo "renew start" >> "$log"
    REQUESTS_CA_BUNDLE={ca} {bin} --config "$cfg" renew --jitter 0s >> "$dir/renew.log" 2>&1
    echo "renew exit $?" >> "$log"
    ;;
"--no-block start certherd-renew.service")
    # queued: systemd runs the oneshot while the caller goes on
    echo "renew queued" >> "$log"
    (
        REQUESTS_CA_BUNDLE={ca} {bin} --config "$cfg" renew --jitter 0s >> "$dir/renew.log" 2>&1
        echo "renew exit $?" >> "$log"
    ) < /dev/null &
    ;;
"start certherd-watch.service"|"--no-block start certherd-watch.service")
    if [ -s "$dir/watch.pid" ] && tr '\0' ' ' < "/proc/$(cat "$dir/watch.pid")/cmdline" 2>/dev/null | grep -qF "$cfg"; then
        echo "watch already running" >> "$log"
        exit 0
    fi
    {bin} --config "$cfg" watch < /dev/null >> "$dir/watch.log" 2>&1 &
    echo "$!" > "$dir/watch.pid"
    echo "$! {root}" >> {pids}
    echo "watch start $!" >> "$log"
    ;;
"stop certherd-watch.service")
    if [ -s "$dir/watch.pid" ]; then
        pid=$(cat "$dir/watch.pid")
        if tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$cfg"; then
            kill "$pid"
        fi
        rm -f "$dir/watch.pid"
        echo "watch stop $pid" >> "$log"
    else
        echo "watch stop (not running)" >> "$log"
    fi
    ;;
*)
    echo "unknown: $*" >> "$log"
    exit 1
    ;;
esac
exit 0
"#
    ))
}

fn config(bed: &Bed, node: usize, peers: &[usize], v: &Vrrp, notify: &Path) -> String {
    let peers: String = peers
        .iter()
        .map(|&p| format!("    {}\n", bed.ip(p)))
        .collect();
    format!(
        "# certherd test bed {b}, node{node}: keepalived in the node's namespace\n\
         global_defs {{\n\
         \x20 router_id node{node}\n\
         \x20 enable_script_security\n\
         \x20 script_user root\n\
         }}\n\
         vrrp_instance certherd {{\n\
         \x20 state BACKUP\n\
         {nopreempt}\
         \x20 interface eth0\n\
         \x20 virtual_router_id 51\n\
         \x20 priority {prio}\n\
         \x20 advert_int 1\n\
         \x20 unicast_src_ip {ip}\n\
         \x20 unicast_peer {{\n{peers}  }}\n\
         \x20 virtual_ipaddress {{\n    {vip}/24 dev eth0\n  }}\n\
         \x20 notify {notify}\n\
         }}\n",
        b = bed.index(),
        prio = v.priority,
        nopreempt = if v.preempt { "" } else { "  nopreempt\n" },
        ip = bed.ip(node),
        vip = v.vip,
        notify = notify.display(),
    )
}

/// keepalived on namespaced beds.
impl Bed {
    /// `198.18.B.<last>`: a free address on the bed's bridge for a VIP (`last` in 100..=253).
    pub fn vip(&self, last: u8) -> Result<Ipv4Addr, BedError> {
        if self.net.is_none() || !(100..=253).contains(&last) {
            return Err(BedError::Setup(format!(
                "vip({last}): a VIP is 198.18.B.100..=253 on a namespaced bed"
            )));
        }
        Ok(super::netns::node_ip(self.index, last as usize))
    }

    /// What node `node`'s stand-in `systemctl` did, one line per call (`renew exit N`,
    /// `watch start PID`, `watch stop PID`…); `renew.log` and `watch.log` are next to it.
    pub fn systemctl_log(&self, node: usize) -> PathBuf {
        dir(self, node).join("systemctl.log")
    }

    /// keepalived's own log (stdout/stderr, `-l -D`) on node `node`.
    pub fn keepalived_log(&self, node: usize) -> PathBuf {
        dir(self, node).join("keepalived.log")
    }

    /// Starts keepalived in node `node`'s namespace with one VRRP instance for `v`, unicast to
    /// the `peers`' addresses, notify = the shipped script; waits (bounded) until it entered its
    /// first state. A namespaced bed only.
    pub fn start_keepalived(&self, node: usize, peers: &[usize], v: &Vrrp) -> Result<(), BedError> {
        let ns = self.netns(node)?;
        let notify_dir = self.root().join("keepalived-notify");
        let notify = notify_dir.join("notify-certherd.sh");
        if !notify.exists() {
            mkdir(&notify_dir, 0o755)?;
            let shipped = contrib("keepalived/notify-certherd.sh");
            let text = fs::read_to_string(&shipped).map_err(BedError::io("read", &shipped))?;
            write_mode(&notify, &text, 0o755)?;
            if fs::read(&notify).ok() != fs::read(&shipped).ok() {
                return Err(BedError::Setup(format!(
                    "{} differs from the shipped script",
                    notify.display()
                )));
            }
        }
        let d = dir(self, node);
        let bin = d.join("bin");
        mkdir(&d, 0o755)?;
        mkdir(&bin, 0o755)?;
        write_mode(&bin.join("systemctl"), &shim(self, node)?, 0o755)?;
        let conf = d.join("keepalived.conf");
        write_mode(&conf, &config(self, node, peers, v, &notify), 0o644)?;
        let log = self.keepalived_log(node);
        let mut cmd = super::netns::command_in(&ns, KEEPALIVED);
        cmd.args(["-n", "-l", "-D", "-f"])
            .arg(&conf)
            .arg("-p")
            .arg(d.join("keepalived.pid"))
            .arg("-r")
            .arg(d.join("vrrp.pid"))
            .arg("-c")
            .arg(d.join("checkers.pid"))
            .env(
                "PATH",
                format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", bin.display()),
            );
        let key = format!("keepalived{node}");
        self.insert(&key, Daemon::spawn(&key, &mut cmd, &log)?);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Entering BACKUP STATE") || text.contains("Entering MASTER STATE") {
                return Ok(());
            }
            if let Some(status) = self.exit_status(&key) {
                return Err(BedError::Exited {
                    what: format!("keepalived on node {node}"),
                    status,
                    log: log.clone(),
                    log_tail: proc::log_tail(&log, 20),
                });
            }
            if Instant::now() >= deadline {
                return Err(BedError::Timeout {
                    what: format!("keepalived on node {node} (entering a VRRP state)"),
                    waited: START_TIMEOUT,
                    log: log.clone(),
                    log_tail: proc::log_tail(&log, 20),
                });
            }
            std::thread::sleep(proc::POLL);
        }
    }

    /// Stops node `node`'s keepalived (by PID); it releases the VIP on the way out.
    pub fn stop_keepalived(&self, node: usize) {
        self.stop_key(&format!("keepalived{node}"));
    }
}

/// Stops every `certherd watch` a stand-in `systemctl` started (by the PID it recorded, if that
/// process still runs with the node's config on its command line). Called from the bed's Drop,
/// after keepalived stopped.
pub(crate) fn stop_watchers(bed: &Bed) {
    let mut running = Vec::new();
    for n in 1..=bed.nodes() {
        let pid_file = dir(bed, n).join("watch.pid");
        let Some(pid) = fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
        else {
            continue;
        };
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cfg = bed.config_path(n).to_string_lossy().into_owned();
        if !String::from_utf8_lossy(&cmdline).contains(&cfg) {
            continue;
        }
        if let Some(p) = ProcId::of(pid) {
            p.signal(Signal::SIGTERM);
            running.push(p);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while running.iter().any(|p| p.alive()) && Instant::now() < deadline {
        std::thread::sleep(proc::POLL);
    }
    for p in running {
        p.signal(Signal::SIGKILL);
    }
}
