//! Starting the holder (from `warm`, `issue` and `renew`) and the process it watches.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::config::Config;

/// A process by PID and start time (clock ticks since boot, from `/proc/PID/stat`), so that a
/// PID reused by another process does not keep the holder alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// The process id.
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start: u64,
}

impl Watched {
    /// The running process `pid`, or None when there is none.
    pub fn of(pid: u32) -> Option<Watched> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
        let rest = &stat[stat.rfind(')')? + 1..];
        // After ')': field 3 (state) is index 0, so field 22 (starttime) is index 19.
        let start = rest.split_whitespace().nth(19)?.parse().ok()?;
        Some(Watched { pid, start })
    }

    /// Whether the same process still runs (a zombie counts as gone).
    pub fn alive(&self) -> bool {
        let state = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                s.rfind(')')
                    .map(|i| s[i + 1..].trim_start().starts_with('Z'))
            });
        state == Some(false) && Watched::of(self.pid) == Some(*self)
    }

    /// The run `warm` belongs to: its parent (certbot), or the parent's parent when the parent
    /// is the shell certbot ran the hook through (`sh -c "certherd warm"`).
    pub fn certbot_run() -> Option<Watched> {
        let parent = std::os::unix::process::parent_id();
        let comm = std::fs::read_to_string(format!("/proc/{parent}/comm")).unwrap_or_default();
        let pid = if matches!(comm.trim(), "sh" | "dash" | "bash") {
            parent_of(parent).unwrap_or(parent)
        } else {
            parent
        };
        Watched::of(pid)
    }
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // Field 4 (ppid) is index 1 after ')'.
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// What the holder said at start-up.
#[derive(Debug)]
pub struct Started {
    /// Its `ready: …` line.
    pub ready: String,
    /// Each peer it could not open a session to, and why.
    pub down: Vec<(String, String)>,
}

/// Starts `certherd hold` for `config` watching `watched`, and waits (bounded) for its
/// start-up lines: `down: …` per failed peer, then `ready: …` or `failed: …`. Its stdin and
/// stdout are not certbot's: certbot waits for its hook's output pipes to close, so the holder
/// must not hold them. Its stderr goes to `log` in its private directory.
pub async fn start(config: &Config, watched: Watched) -> Result<Started, String> {
    let peers: Vec<_> = config.managed_peers().cloned().collect();
    let dir = super::dir(&config.ssh, &peers).map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find certherd itself: {e}"))?;
    let log = std::fs::File::create(dir.join("log"))
        .map_err(|e| format!("cannot create {}: {e}", dir.join("log").display()))?;
    let mut child = tokio::process::Command::new(exe)
        .arg("--config")
        .arg(&config.path)
        .args(["hold", "--watch-pid"])
        .arg(watched.pid.to_string())
        .arg("--watch-start")
        .arg(watched.start.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("cannot start the holder: {e}"))?;
    let stdout = child.stdout.take().ok_or("the holder has no stdout")?;
    // Every peer's connect timeout runs concurrently in the holder; a little more for the rest.
    let limit = config.ssh.connect_timeout + config.ssh.request_timeout + Duration::from_secs(5);
    let said = tokio::time::timeout(limit, read_start_up(BufReader::new(stdout))).await;
    // Reaps the holder should it exit while we still run; it outlives us otherwise.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    match said {
        Ok(result) => result,
        Err(_) => Err(format!("the holder was not ready within {limit:?}")),
    }
}

async fn read_start_up(
    mut reader: BufReader<tokio::process::ChildStdout>,
) -> Result<Started, String> {
    let mut down = Vec::new();
    // Bounded by the peers (one `down` line each) and the caller's timeout.
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line).await {
            Ok(n) if n > 0 => {}
            _ => return Err("the holder exited without saying ready".into()),
        }
        let line = line.trim();
        if let Some(ready) = line.strip_prefix("ready: ") {
            return Ok(Started {
                ready: ready.to_owned(),
                down,
            });
        } else if let Some(why) = line.strip_prefix("failed: ") {
            return Err(why.to_owned());
        } else if let Some(json) = line.strip_prefix("down: ") {
            if let Ok(peer) = serde_json::from_str::<(String, String)>(json) {
                down.push(peer);
            }
        }
    }
}
