//! The one bounded process runner: a node's config test and reload run through here, without a
//! shell, in their own process group, killed with their children at the time limit, their
//! output drained so a chatty command cannot block on its pipes. The error is typed, so callers
//! decide by its variant; its text is one line.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why a bounded command did not succeed. `Display` is one line.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ExecError {
    /// The program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// argv[0].
        program: String,
        /// Why (shared: the error is cloned into reports).
        source: Arc<std::io::Error>,
    },
    /// It ran and failed.
    #[error("{command} exited with {status}: {output}")]
    Failed {
        /// argv joined by spaces.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Its stderr then stdout, whitespace squashed, at most 16 KiB each.
        output: String,
    },
    /// It did not end within the limit; its process group was killed.
    #[error("{command} killed after {timeout:?} (timeout)")]
    TimedOut {
        /// argv joined by spaces.
        command: String,
        /// The limit.
        timeout: Duration,
    },
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
    pub fn test(&self) -> Result<(), ExecError> {
        run_bounded(&self.test, self.timeout)
    }

    /// Runs the reload.
    pub fn reload(&self) -> Result<(), ExecError> {
        run_bounded(&self.reload, self.timeout)
    }
}

/// Bytes of each of stdout and stderr kept for the error message (the rest is drained).
const OUTPUT_KEPT: usize = 16 * 1024;
/// How long output is still collected after the command ended: a daemon it started may hold
/// the pipes open for ever, and must not hold the agent with them.
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// How long a timed-out command has between SIGTERM and SIGKILL. SIGTERM comes first because
/// it is the only way to reach a command run through sudo: sudo relays it to root's child,
/// while SIGKILL ends sudo alone and leaves root's child running (the account may not signal
/// it). Long enough for `nginx -t` or `systemctl reload` to end on SIGTERM, short next to the
/// `[reload] timeout`.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// Runs argv without a shell in its own process group; after `timeout` the whole group gets
/// SIGTERM, then SIGKILL after [`KILL_GRACE`] (by its PID, which is the group's id), so a hung
/// reload cannot leave children behind, and one behind sudo gets the SIGTERM that sudo relays.
/// An empty argv is nothing to run: `Ok`.
pub fn run_bounded(argv: &[String], timeout: Duration) -> Result<(), ExecError> {
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
        .map_err(|source| ExecError::Spawn {
            program: program.clone(),
            source: Arc::new(source),
        })?;
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
                stop_group(&mut child);
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
    let output = crate::text::squash(&String::from_utf8_lossy(&output.concat()));
    match status {
        Some(s) if s.success() => Ok(()),
        Some(status) => Err(ExecError::Failed {
            command: argv.join(" "),
            status,
            output,
        }),
        None => Err(ExecError::TimedOut {
            command: argv.join(" "),
            timeout,
        }),
    }
}

/// Ends a timed-out command's process group: SIGTERM, up to [`KILL_GRACE`] for the command to
/// end, then SIGKILL for whatever of the group is left (a child that ignored SIGTERM), then the
/// command is reaped. It is reaped only after the SIGKILL, so its PID, which is the group's id,
/// cannot have been reused by then.
fn stop_group(child: &mut std::process::Child) {
    use nix::sys::signal::{killpg, Signal};
    use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    if killpg(pid, Signal::SIGTERM).is_ok() {
        // WNOWAIT: see that it ended without reaping it.
        let ended = || {
            !matches!(
                waitid(
                    Id::Pid(pid),
                    WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT
                ),
                Ok(WaitStatus::StillAlive)
            )
        };
        let until = Instant::now() + KILL_GRACE;
        while !ended() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    if killpg(pid, Signal::SIGKILL).is_err() {
        let _ = child.kill();
    }
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn a_hung_command_is_killed_with_its_children() {
        let dir = crate::scratch::scratch("exec-hung");
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
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err}");
        assert!(err.to_string().contains("killed after"), "{err}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
        // The child, not only the shell, is gone (a zombie waiting for init to reap it counts as
        // gone: it runs nothing). Bounded: the kill is delivered by the time run_bounded returns.
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let stat = format!("/proc/{}/stat", pid.trim());
        let gone = || {
            std::fs::read_to_string(&stat).map_or(true, |s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while !gone() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone(), "the hung command's child {} survived", pid.trim());
    }

    /// SIGTERM comes first (the one signal sudo relays to root's child), and a command that
    /// ignores it still ends, by SIGKILL, within the grace.
    #[test]
    fn a_timed_out_command_gets_sigterm_then_sigkill() {
        let dir = crate::scratch::scratch("exec-term");
        let termed = dir.join("termed");
        let err = run_bounded(
            &argv(&[
                "sh",
                "-c",
                &format!(
                    "trap 'echo term > {}; exit 0' TERM; sleep 30 & wait",
                    termed.display()
                ),
            ]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        // Ending on the SIGTERM, even with status 0, is still a timeout.
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&termed).unwrap(), "term\n");

        let start = Instant::now();
        let err = run_bounded(
            &argv(&["sh", "-c", "trap '' TERM; sleep 30 & wait"]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert!(matches!(err, ExecError::TimedOut { .. }), "{err}");
        let took = start.elapsed();
        assert!(
            took >= KILL_GRACE,
            "SIGKILL came before the grace: {took:?}"
        );
        assert!(took < KILL_GRACE + Duration::from_secs(3), "{took:?}");
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
        assert!(
            matches!(&err, ExecError::Failed { status, .. } if status.code() == Some(3)),
            "{err:.200}"
        );
        assert!(start.elapsed() < Duration::from_secs(5));
        // A daemon holding the pipes does not hold the caller.
        let start = Instant::now();
        run_bounded(&argv(&["sh", "-c", "sleep 30 &"]), Duration::from_secs(10)).unwrap();
        assert!(start.elapsed() < Duration::from_secs(5));
    }
}
