//! Memory and CPU of certherd and of its `ssh` processes during one run, from `/proc`.
//!
//! `wait4`'s `ru_maxrss` is the largest of the child *and every descendant it reaped*, so for
//! certherd it may be an `ssh` client's figure, and the control masters (`ssh -M -f` forks and
//! the master lives on, re-parented) are not in it at all. A sampler thread therefore polls
//! `/proc` while the run lasts: certherd's own `VmHWM` (the kernel's peak RSS, so a sample
//! missed between polls loses nothing), the summed `VmRSS` of every `ssh` process that names the
//! bed's control directory (masters and mux clients; the peak of the sum over the samples) and
//! their CPU (each process's threads' `schedstat`, minus what a process already had when the run
//! began). Polling every [`POLL`] costs CPU on a 2-core machine, so the timed runs never carry a
//! sampler: it rides on separate runs made for it.
use std::collections::HashMap;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::measure::run_time;

/// How often `/proc` is read.
const POLL: Duration = Duration::from_millis(10);

/// What one sampled run used.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sampled {
    /// certherd's own peak resident set (`VmHWM`), KiB; 0 if it was never seen.
    pub(crate) own_hwm_kib: u64,
    /// The largest sum of the `ssh` processes' `VmRSS` seen at one instant, KiB.
    pub(crate) ssh_rss_kib: u64,
    /// CPU seconds the `ssh` processes used during the run (an `ssh` that lived less than one
    /// poll interval is missed, and the last interval of each process too: a lower bound).
    pub(crate) ssh_cpu_s: f64,
    /// How many distinct `ssh` processes were seen.
    pub(crate) ssh_procs: usize,
    /// The summed proportional set size (`Pss` of `smaps_rollup`: shared pages divided among
    /// the processes sharing them) of the `ssh` processes alive at the end — the masters that
    /// stay for the next hook call. RSS counts libcrypto and libc once per process; PSS is
    /// what they add up to. KiB.
    pub(crate) ssh_pss_end_kib: u64,
}

/// A running sampler; [`Sampler::stop`] ends it and hands back what it saw.
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Sampled>,
}

impl Sampler {
    /// Starts polling for a `certherd` child of this process and for `ssh` processes whose
    /// command line contains `ssh_marker` (the bed's control directory). The CPU that `ssh`
    /// processes alive right now already had is not counted.
    pub(crate) fn start(ssh_marker: String) -> Sampler {
        let before: HashMap<u32, f64> = scan(&ssh_marker)
            .into_iter()
            .filter(|p| p.kind == Kind::Ssh)
            .map(|p| (p.pid, p.cpu_s))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut out = Sampled::default();
            // pid -> (CPU when first seen or at the start, CPU last seen)
            let mut ssh: HashMap<u32, (f64, f64)> = HashMap::new();
            loop {
                let done = s.load(Ordering::Relaxed);
                let mut sum = 0;
                for p in scan(&ssh_marker) {
                    match p.kind {
                        Kind::Certherd => out.own_hwm_kib = out.own_hwm_kib.max(p.hwm_kib),
                        Kind::Ssh => {
                            sum += p.rss_kib;
                            let base = before.get(&p.pid).copied().unwrap_or(0.0);
                            ssh.entry(p.pid).or_insert((base, base)).1 = p.cpu_s;
                        }
                    }
                }
                out.ssh_rss_kib = out.ssh_rss_kib.max(sum);
                if done {
                    out.ssh_pss_end_kib = scan(&ssh_marker)
                        .iter()
                        .filter(|p| p.kind == Kind::Ssh)
                        .map(|p| pss_kib(p.pid))
                        .sum();
                    break;
                }
                std::thread::sleep(POLL);
            }
            out.ssh_cpu_s = ssh.values().map(|(a, b)| (b - a).max(0.0)).sum();
            out.ssh_procs = ssh.keys().filter(|p| !before.contains_key(p)).count();
            out
        });
        Sampler { stop, handle }
    }

    /// Takes one last sample and returns the figures.
    pub(crate) fn stop(self) -> Sampled {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Kind {
    Certherd,
    Ssh,
}

struct Proc {
    pid: u32,
    kind: Kind,
    hwm_kib: u64,
    rss_kib: u64,
    cpu_s: f64,
}

/// One pass over `/proc`: this process's `certherd` children and the bed's `ssh` processes.
/// Only `comm` is read for the others, to keep a pass cheap with hundreds of bed daemons.
fn scan(ssh_marker: &str) -> Vec<Proc> {
    let me = std::process::id();
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) else {
            continue;
        };
        let kind = match comm.trim_end() {
            "certherd" => Kind::Certherd,
            "ssh" => Kind::Ssh,
            _ => continue,
        };
        let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
            continue;
        };
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0)
        };
        match kind {
            Kind::Certherd if field("PPid:") != u64::from(me) => continue,
            Kind::Ssh => {
                let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if !String::from_utf8_lossy(&cmdline).contains(ssh_marker) {
                    continue;
                }
            }
            Kind::Certherd => {}
        }
        out.push(Proc {
            pid,
            kind,
            hwm_kib: field("VmHWM:"),
            rss_kib: field("VmRSS:"),
            cpu_s: run_time(&format!("/proc/{pid}/task")),
        });
    }
    out
}

/// `Pss:` of `/proc/PID/smaps_rollup`, KiB (0 if gone).
fn pss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A child named certherd is seen and its peak RSS is read (a copy of /bin/sleep under
    /// that name stands in for it).
    #[test]
    fn sees_a_certherd_child() {
        let dir = std::env::temp_dir().join(format!("sampler-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("certherd");
        fs::copy("/bin/sleep", &fake).unwrap();
        let s = Sampler::start("/nonexistent-marker".into());
        let mut child = std::process::Command::new(&fake)
            .arg("0.3")
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(150));
        let got = s.stop();
        let _ = child.wait();
        let _ = fs::remove_dir_all(&dir);
        assert!(got.own_hwm_kib > 0, "{got:?}");
        assert_eq!(got.ssh_procs, 0, "{got:?}");
    }
}
