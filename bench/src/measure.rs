//! Measuring one run: wall time from spawn to exit, exit code, peak RSS and CPU (`wait4`), the
//! CPU of the bed's processes and of the whole machine meanwhile; and the per-key series of
//! samples (and failures) the report is made of. A run is recorded only when verified.
use std::collections::BTreeMap;
use std::fs;
use std::process::Command;
use std::time::Duration;

use certherd_testbed::run_measured;

use crate::sampler::Sampled;

// ---------------------------------------------------------------------------------------------
// Running a command: wall time, exit code, peak RSS (wait4), output; bounded.

pub(crate) struct Run {
    pub(crate) wall: Duration,
    pub(crate) code: Option<i32>,
    pub(crate) rss_kib: u64,
    /// User + system CPU of the child and the descendants it reaped (`wait4`).
    pub(crate) cpu_s: f64,
    /// CPU time the whole machine was busy during the run (`/proc/stat`, steal excluded).
    pub(crate) busy_s: f64,
    /// CPU of the bed's processes during the run: sshd (with their sessions), nginx, pebble,
    /// ssh masters (see [`bed_cpu`]).
    pub(crate) bed_s: f64,
    /// CPU of this process (the delay proxies' threads) during the run.
    pub(crate) self_s: f64,
    /// The machine's 1-minute load average just before the spawn and after the exit.
    pub(crate) load: (f64, f64),
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn ok(&self) -> bool {
        self.code == Some(0)
    }

    pub(crate) fn why(&self) -> String {
        let tail: Vec<&str> = self.stderr.lines().rev().take(4).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        format!("exit {:?}: {}", self.code, tail.join(" | "))
    }
}

/// Runs `cmd` to completion (killed after `timeout`), feeding `input` on stdin, through the test
/// bed's one bounded runner ([`run_measured`]): wall time from just before `spawn` to the
/// child's exit (before reaping), peak RSS and CPU from `wait4`. The machine's, the bed's and
/// this process's CPU counters are read before the spawn and the moment the child has exited.
pub(crate) fn run(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<Run, String> {
    let load0 = load1();
    let busy0 = machine_busy();
    let bed0 = bed_cpu();
    let self0 = self_cpu();
    let (mut busy1, mut bed1, mut self1) = (busy0, bed0, self0);
    let m = run_measured(cmd, input, timeout, &mut || {
        busy1 = machine_busy();
        self1 = self_cpu();
        bed1 = bed_cpu();
    })
    .map_err(|e| format!("cannot run {:?}: {e}", cmd.get_program()))?;
    Ok(Run {
        wall: m.wall,
        code: m.output.status.code(),
        rss_kib: m.max_rss_kib,
        cpu_s: m.cpu.as_secs_f64(),
        busy_s: busy1 - busy0,
        bed_s: bed1 - bed0,
        self_s: self1 - self0,
        load: (load0, load1()),
        stdout: String::from_utf8_lossy(&m.output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&m.output.stderr).into_owned(),
    })
}

/// The machine's 1-minute load average (`/proc/loadavg`); 0 when unreadable.
pub(crate) fn load1() -> f64 {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The cores this process may use: a load average above it means runs queued for a CPU.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The bed's root directory, once a bed runs: [`bed_cpu`] counts the processes that name it.
pub(crate) static BED_ROOT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

pub(crate) fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    (unsafe { nix::libc::sysconf(nix::libc::_SC_CLK_TCK) }).max(1) as f64
}

/// CPU seconds of every live process that names the bed's root directory on its command line
/// (sshd, nginx masters, pebble, ssh control masters) or descends from one (sshd's
/// per-connection and session processes, nginx workers): each one's own run time (every
/// thread's `schedstat`, in ns) plus its reaped children's (`cutime + cstime`). Taken before
/// and after a run, the difference is the bed's CPU during the run, whatever else the machine
/// does: a process that exits in between is counted in its parent's reaped-children time.
pub(crate) fn bed_cpu() -> f64 {
    let Some(root) = BED_ROOT.get() else {
        return 0.0;
    };
    let hz = clk_tck();
    // (pid, ppid, cpu seconds, names the root)
    let mut procs: Vec<(u32, u32, f64, bool)> = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        let ppid = num(1) as u32;
        let children = (num(13) + num(14)) as f64 / hz;
        let named = fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains(root.as_str()))
            .unwrap_or(false);
        procs.push((pid, ppid, children, named));
    }
    let by_pid: std::collections::HashMap<u32, (u32, bool)> =
        procs.iter().map(|&(p, pp, _, n)| (p, (pp, n))).collect();
    let ours = |mut pid: u32| {
        for _ in 0..64 {
            match by_pid.get(&pid) {
                Some(&(_, true)) => return true,
                Some(&(pp, false)) if pp > 1 => pid = pp,
                _ => return false,
            }
        }
        false
    };
    procs
        .iter()
        .filter(|&&(pid, ..)| ours(pid))
        .map(|&(pid, _, children, _)| run_time(&format!("/proc/{pid}/task")) + children)
        .sum()
}

/// Seconds on the CPU of every thread under a `/proc/PID/task` directory (`schedstat`, ns).
pub(crate) fn run_time(task_dir: &str) -> f64 {
    fs::read_dir(task_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum::<u64>() as f64
        / 1e9
}

/// CPU seconds of this process (all its threads, not its children).
pub(crate) fn self_cpu() -> f64 {
    run_time("/proc/self/task")
}

/// Seconds of CPU time the machine has spent busy since boot, over all cores (user, nice,
/// system, irq, softirq; not idle, iowait or steal).
pub(crate) fn machine_busy() -> f64 {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let get = |i: usize| f.get(i).copied().unwrap_or(0.0);
    (get(0) + get(1) + get(2) + get(5) + get(6)) / clk_tck()
}

// ---------------------------------------------------------------------------------------------
// Results.

#[derive(Default, Clone, Debug)]
pub(crate) struct Series {
    pub(crate) samples: Vec<f64>,
    pub(crate) failures: Vec<String>,
    pub(crate) rss_kib: Vec<u64>,
    pub(crate) cpu_s: Vec<f64>,
    pub(crate) busy_s: Vec<f64>,
    pub(crate) bed_s: Vec<f64>,
    pub(crate) self_s: Vec<f64>,
    /// Runs made with the `/proc` sampler ([`crate::sampler`]).
    pub(crate) sampled: Vec<Sampled>,
    /// The 1-minute load average before and after each recorded run, in run order.
    pub(crate) load: Vec<(f64, f64)>,
}

impl Series {
    pub(crate) fn sorted(&self) -> Vec<f64> {
        let mut v = self.samples.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v
    }
    pub(crate) fn median(&self) -> Option<f64> {
        let v = self.sorted();
        match v.len() {
            0 => None,
            n if n % 2 == 1 => Some(v[n / 2]),
            n => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
        }
    }
    pub(crate) fn min(&self) -> Option<f64> {
        self.sorted().first().copied()
    }
    pub(crate) fn max(&self) -> Option<f64> {
        self.sorted().last().copied()
    }
    /// The highest load average seen around any of the series' runs.
    pub(crate) fn peak_load(&self) -> Option<f64> {
        self.load
            .iter()
            .flat_map(|&(a, b)| [a, b])
            .max_by(|a, b| a.total_cmp(b))
    }
    /// The peak load when it exceeded the cores: the series' times are not a fair comparison
    /// (a CPU-bound baseline, key exchanges, slows far more than a latency-bound run).
    pub(crate) fn overloaded(&self) -> Option<f64> {
        self.peak_load().filter(|&l| l > cores() as f64)
    }
}

#[derive(Default)]
pub(crate) struct Results {
    pub(crate) series: BTreeMap<String, Series>,
    pub(crate) notes: Vec<String>,
}

impl Results {
    pub(crate) fn get(&self, key: &str) -> Option<&Series> {
        self.series.get(key).filter(|s| !s.samples.is_empty())
    }
    pub(crate) fn median(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Series::median)
    }
    pub(crate) fn entry(&mut self, key: &str) -> &mut Series {
        self.series.entry(key.to_owned()).or_default()
    }
    pub(crate) fn sample(&mut self, key: &str, secs: f64) {
        self.entry(key).samples.push(secs);
    }
    pub(crate) fn fail(&mut self, key: &str, why: String) {
        eprintln!("  FAILED {key}: {why}");
        self.entry(key).failures.push(why);
    }
    /// Records a command's wall time if it succeeded and `verify` agrees; a failure otherwise.
    pub(crate) fn record(
        &mut self,
        key: &str,
        r: Result<Run, String>,
        verify: impl FnOnce(&Run) -> bool,
    ) {
        match r {
            Ok(run) if run.ok() && verify(&run) => {
                let secs = run.wall.as_secs_f64();
                let s = self.entry(key);
                s.samples.push(secs);
                s.rss_kib.push(run.rss_kib);
                s.cpu_s.push(run.cpu_s);
                s.busy_s.push(run.busy_s);
                s.bed_s.push(run.bed_s);
                s.self_s.push(run.self_s);
                s.load.push(run.load);
            }
            Ok(run) if run.ok() => self.fail(key, "ran, but the result was not verified".into()),
            Ok(run) => {
                let why = run.why();
                self.fail(key, why)
            }
            Err(e) => self.fail(key, e),
        }
    }
    /// [`Results::record`] for a run the `/proc` sampler watched.
    pub(crate) fn record_sampled(
        &mut self,
        key: &str,
        r: Result<Run, String>,
        got: Sampled,
        verify: impl FnOnce(&Run) -> bool,
    ) {
        let before = self.entry(key).samples.len();
        self.record(key, r, verify);
        let s = self.entry(key);
        if s.samples.len() > before {
            s.sampled.push(got);
        }
    }

    pub(crate) fn to_json(&self) -> String {
        let map: serde_json::Map<String, serde_json::Value> = self
            .series
            .iter()
            .map(|(k, s)| {
                (
                    k.clone(),
                    serde_json::json!({
                        "samples_s": s.samples,
                        "median_s": s.median(),
                        "failures": s.failures,
                        "rss_kib": s.rss_kib,
                        "cpu_s": s.cpu_s,
                        "machine_busy_s": s.busy_s,
                        "bed_cpu_s": s.bed_s,
                        "proxy_cpu_s": s.self_s,
                        "load_before_after": s.load,
                        "own_peak_rss_kib": s.sampled.iter().map(|x| x.own_hwm_kib).collect::<Vec<_>>(),
                        "ssh_rss_kib": s.sampled.iter().map(|x| x.ssh_rss_kib).collect::<Vec<_>>(),
                        "ssh_cpu_s": s.sampled.iter().map(|x| x.ssh_cpu_s).collect::<Vec<_>>(),
                        "ssh_pss_end_kib": s.sampled.iter().map(|x| x.ssh_pss_end_kib).collect::<Vec<_>>(),
                    }),
                )
            })
            .collect();
        serde_json::to_string_pretty(&serde_json::Value::Object(map)).unwrap_or_default()
    }
}

pub(crate) fn key_auth(what: &str, n: usize, rtt: u32) -> String {
    format!("auth/{what}/n{n}/rtt{rtt}")
}

pub(crate) fn key_kex(what: &str, n: usize, rtt: u32) -> String {
    format!("kex/{what}/n{n}/rtt{rtt}")
}

pub(crate) fn key_deploy(what: &str, n: usize) -> String {
    format!("deploy/{what}/n{n}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(crate) fn median_and_range() {
        let s = Series {
            samples: vec![3.0, 1.0, 2.0, 10.0],
            ..Default::default()
        };
        assert_eq!(s.median(), Some(2.5));
        assert_eq!(s.min(), Some(1.0));
        assert_eq!(s.max(), Some(10.0));
    }

    #[test]
    pub(crate) fn run_measures_and_verifies() {
        let r = run(
            Command::new("/bin/sh").args(["-c", "cat; echo err >&2; exit 3"]),
            Some(b"hi"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(r.code, Some(3));
        assert_eq!(r.stdout, "hi");
        assert_eq!(r.stderr.trim(), "err");
        assert!(r.rss_kib > 0);
    }

    #[test]
    pub(crate) fn run_kills_after_timeout() {
        let r = run(
            Command::new("/bin/sleep").arg("30"),
            None,
            Duration::from_millis(200),
        )
        .unwrap();
        assert_eq!(r.code, None);
        assert!(r.wall < Duration::from_secs(10));
    }
}
