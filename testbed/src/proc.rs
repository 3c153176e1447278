//! Daemon start/stop by PID, bounded waits, and the one bounded command runner (also used by the
//! benchmarks, which time it).
//!
//! Everything here is synchronous std code. A daemon is a `Child` we spawned ourselves; it is only
//! ever signalled through its own PID (and the PIDs of its descendants, found via `/proc` and
//! identified by PID + start time so a recycled PID is never hit).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::BedError;

/// Poll interval for every bounded wait.
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// A daemon we spawned. Its stdout and stderr go to `log`.
pub(crate) struct Daemon {
    pub name: String,
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Spawns `cmd` with stdin from /dev/null and stdout+stderr appended to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Result<Daemon, BedError> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(BedError::io("open the log of", log))?;
        let err = out
            .try_clone()
            .map_err(BedError::io("dup the log fd of", log))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| BedError::Spawn {
                what: format!("{name} ({:?})", cmd.get_program()),
                source,
            })?;
        Ok(Daemon {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(status)` once the daemon has exited (and is reaped).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits (bounded by `deadline`) until `addr` accepts a TCP connection. Fails early, with the
    /// log tail, if the daemon exits first.
    pub fn wait_tcp(&mut self, addr: SocketAddr, deadline: Instant) -> Result<(), BedError> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Err(BedError::Exited {
                    what: format!("{} (listening on {addr})", self.name),
                    status,
                    log: self.log.clone(),
                    log_tail: log_tail(&self.log, 20),
                });
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(BedError::Timeout {
                    what: format!("{} (pid {}) listening on {addr}", self.name, self.pid()),
                    waited: start.elapsed(),
                    log: self.log.clone(),
                    log_tail: log_tail(&self.log, 20),
                });
            }
            thread::sleep(POLL);
        }
    }
}

/// The last `lines` lines of a (log) file, or a note that it could not be read.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return format!("  (cannot read {}: {e})", path.display()),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(16 * 1024);
    let _ = f.seek(SeekFrom::Start(start));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        return "  (log is empty)".to_string();
    }
    tail.iter().map(|l| format!("  | {l}\n")).collect()
}

/// A process identified by PID and its start time (field 22 of /proc/PID/stat), so that a
/// recycled PID is never signalled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ProcId {
    pub pid: i32,
    pub start: u64,
}

impl ProcId {
    pub fn of(pid: i32) -> Option<ProcId> {
        stat(pid).map(|(_, start)| ProcId { pid, start })
    }
    pub fn alive(&self) -> bool {
        matches!(stat(self.pid), Some((_, s)) if s == self.start)
    }
    pub fn signal(&self, sig: Signal) {
        if self.alive() {
            let _ = kill(Pid::from_raw(self.pid), sig);
        }
    }
}

/// (ppid, starttime) of a process, from /proc/PID/stat. Zombies count as not running.
fn stat(pid: i32) -> Option<(i32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and parentheses: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] = state (field 3), f[1] = ppid (field 4), f[19] = starttime (field 22)
    if f.first() == Some(&"Z") || f.first() == Some(&"X") {
        return None;
    }
    Some((f.get(1)?.parse().ok()?, f.get(19)?.parse().ok()?))
}

/// All live descendants of `pid` (not including `pid` itself), found by scanning /proc.
pub(crate) fn descendants(pid: i32) -> Vec<ProcId> {
    let mut children: HashMap<i32, Vec<ProcId>> = HashMap::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if let Some((ppid, start)) = stat(p) {
                children
                    .entry(ppid)
                    .or_default()
                    .push(ProcId { pid: p, start });
            }
        }
    }
    let mut out = Vec::new();
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        if let Some(cs) = children.get(&p) {
            for c in cs {
                if !out.contains(c) {
                    out.push(*c);
                    queue.push(c.pid);
                }
            }
        }
    }
    out
}

/// Stops daemons: SIGTERM to each daemon and its descendants (all at once), waits until `grace`
/// has passed for all of them together, then SIGKILLs whatever is left. Always reaps our children
/// (bounded).
pub(crate) fn stop_all(mut daemons: Vec<Daemon>, grace: Duration) {
    let mut family: Vec<ProcId> = Vec::new();
    for d in daemons.iter_mut() {
        if d.exited().is_some() {
            continue;
        }
        family.extend(descendants(d.pid() as i32));
        let _ = kill(Pid::from_raw(d.pid() as i32), Signal::SIGTERM);
    }
    for p in &family {
        p.signal(Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    loop {
        let mut running = false;
        for d in daemons.iter_mut() {
            if d.exited().is_none() {
                running = true;
            }
        }
        running |= family.iter().any(|p| p.alive());
        if !running || Instant::now() >= deadline {
            break;
        }
        thread::sleep(POLL);
    }
    for d in daemons.iter_mut() {
        if d.exited().is_none() {
            eprintln!(
                "testbed: {} (pid {}) ignored SIGTERM, sending SIGKILL",
                d.name,
                d.pid()
            );
            let _ = d.child.kill();
        }
    }
    for p in &family {
        p.signal(Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    for d in daemons.iter_mut() {
        while d.exited().is_none() && Instant::now() < deadline {
            thread::sleep(POLL);
        }
    }
}

/// What [`run_measured`] saw of one run.
pub struct Measured {
    /// Exit status and everything the command wrote. After a timeout, stderr ends with a
    /// `[testbed: killed after ...]` note.
    pub output: Output,
    /// From just before `spawn` to the moment the child exited (`waitid` with `WNOWAIT`, before
    /// reaping): output readers and reaping are not counted.
    pub wall: Duration,
    /// Peak resident set of the child (or of the largest descendant it reaped), `ru_maxrss` of
    /// `wait4`, in KiB.
    pub max_rss_kib: u64,
    /// User + system CPU time of the child and the descendants it reaped (`wait4`).
    pub cpu: Duration,
    /// The command was killed after the timeout.
    pub timed_out: bool,
}

/// The one bounded process runner of the bed, the tests and the benchmarks: runs `cmd` to
/// completion with captured stdout/stderr, feeding `input` on stdin (none: `/dev/null`); after
/// `timeout` a watchdog kills it and everything it started (by PID + start time). `at_exit` runs
/// the moment the child has exited, before it is reaped and before its output is collected, so
/// a caller can take measurements that end with the run (the benchmarks' CPU counters).
pub fn run_measured(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
    at_exit: &mut dyn FnMut(),
) -> std::io::Result<Measured> {
    use nix::libc;
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
        let data = data.to_vec();
        thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
    }
    let (out_buf, out_done) = drain(child.stdout.take());
    let (err_buf, err_done) = drain(child.stderr.take());

    // Watchdog: kills the child and its descendants after `timeout`. It checks and kills under
    // the lock, and the child is reaped only after `exited` is set under the same lock, so the
    // PID it signals is always still our unreaped child.
    let watch = Arc::new((Mutex::new((false, false)), Condvar::new()));
    let watchdog = {
        let watch = watch.clone();
        thread::spawn(move || {
            let (lock, cv) = &*watch;
            let guard = lock.lock().unwrap_or_else(|e| e.into_inner());
            let (mut guard, _) = cv
                .wait_timeout_while(guard, timeout, |(exited, _)| !*exited)
                .unwrap_or_else(|e| e.into_inner());
            if !guard.0 {
                // Anything it started that would keep our pipes open goes too.
                let family = descendants(pid);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                for p in family {
                    p.signal(Signal::SIGKILL);
                }
                guard.1 = true;
            }
        })
    };
    let exited = loop {
        // SAFETY: waitid on our own child; `info` is a plain out-parameter.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            break Err(err);
        }
    };
    let wall = start.elapsed();
    if exited.is_ok() {
        at_exit();
    }
    let timed_out = {
        let (lock, cv) = &*watch;
        let mut guard = lock.lock().unwrap_or_else(|e| e.into_inner());
        guard.0 = true;
        cv.notify_all();
        guard.1
    };
    let _ = watchdog.join();
    exited?;
    let mut status: libc::c_int = 0;
    // SAFETY: reaps our exited child; rusage is an out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::wait4(pid, &mut status, 0, &mut ru) } != pid {
        return Err(std::io::Error::last_os_error());
    }
    drop(child);

    // A grandchild that daemonized (an ssh control master, say) may hold our pipes open forever:
    // wait for EOF only briefly after the child itself has exited.
    let eof_deadline = Instant::now() + Duration::from_secs(2);
    while !(out_done.load(Ordering::SeqCst) && err_done.load(Ordering::SeqCst))
        && Instant::now() < eof_deadline
    {
        thread::sleep(POLL);
    }
    let stdout = std::mem::take(&mut *out_buf.lock().unwrap_or_else(|e| e.into_inner()));
    let mut stderr = std::mem::take(&mut *err_buf.lock().unwrap_or_else(|e| e.into_inner()));
    if timed_out {
        stderr.extend_from_slice(
            format!(
                "\n[testbed: killed after {}]\n",
                humantime::format_duration(timeout)
            )
            .as_bytes(),
        );
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    Ok(Measured {
        output: Output {
            status: ExitStatus::from_raw(status),
            stdout,
            stderr,
        },
        wall,
        max_rss_kib: ru.ru_maxrss as u64,
        cpu: tv(ru.ru_utime) + tv(ru.ru_stime),
        timed_out,
    })
}

/// [`run_measured`] without stdin or measurements: the output of a bounded run.
pub(crate) fn run_bounded(cmd: &mut Command, timeout: Duration) -> std::io::Result<Output> {
    run_measured(cmd, None, timeout, &mut || {}).map(|m| m.output)
}

/// Reads `r` to EOF on a thread, into a shared buffer; the flag is set at EOF (at once for none).
fn drain<R: Read + Send + 'static>(r: Option<R>) -> (Arc<Mutex<Vec<u8>>>, Arc<AtomicBool>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let (b, d) = (buf.clone(), done.clone());
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        let Some(mut r) = r else {
            d.store(true, Ordering::SeqCst);
            return;
        };
        loop {
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => b
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(&chunk[..n]),
            }
        }
        d.store(true, Ordering::SeqCst);
    });
    (buf, done)
}

/// Runs a short helper (openssl, ssh-keygen, ...) bounded, failing with its stderr unless it exits 0.
pub(crate) fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<Output, BedError> {
    let what = format!("{cmd:?}");
    let out = run_bounded(cmd, timeout).map_err(|source| BedError::Spawn {
        what: what.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(BedError::Command {
            what,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_feeds_stdin_and_calls_at_exit() {
        let mut exits = 0;
        let m = run_measured(
            Command::new("/bin/sh").args(["-c", "cat; echo err >&2; exit 3"]),
            Some(b"hi"),
            Duration::from_secs(10),
            &mut || exits += 1,
        )
        .unwrap();
        assert_eq!(exits, 1);
        assert_eq!(m.output.status.code(), Some(3));
        assert_eq!(m.output.stdout, b"hi");
        assert_eq!(m.output.stderr, b"err\n");
        assert!(m.max_rss_kib > 0 && !m.timed_out);
    }

    /// A timed-out command goes with everything it started: a background child that would keep
    /// the pipes open (and live on) is killed too, and the run ends promptly.
    #[test]
    fn timeout_kills_the_command_and_its_children() {
        let dir = std::env::temp_dir().join(format!("testbed-proc-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("child.pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let start = Instant::now();
        let m = run_measured(
            Command::new("/bin/sh").args(["-c", &script]),
            None,
            Duration::from_millis(300),
            &mut || {},
        )
        .unwrap();
        assert!(m.timed_out && m.output.status.code().is_none());
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(String::from_utf8_lossy(&m.output.stderr).contains("[testbed: killed after"));
        let child: i32 = fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL is delivered at once, but the orphan is reaped by init: wait for that, bounded.
        let deadline = Instant::now() + Duration::from_secs(5);
        while ProcId::of(child).is_some() && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        assert!(ProcId::of(child).is_none(), "the background sleep survived");
        let _ = fs::remove_dir_all(&dir);
    }
}
