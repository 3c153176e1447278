//! The warm holders `certherd warm` leaves (one per certbot run, issue 25): the bed stops them
//! with its shared connections, since their sessions ride the masters it closes.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// SIGTERM to the PID in each `<cm>/holder-*/pid` (a holder answers it by removing its socket
/// and exiting); waits for them, bounded. These are the bed's own processes, found by the PID
/// they wrote, never by name.
pub(crate) fn stop(cm: &Path) {
    let Ok(dirs) = fs::read_dir(cm) else {
        return;
    };
    let pids: Vec<i32> = dirs
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("holder-"))
        .filter_map(|e| fs::read_to_string(e.path().join("pid")).ok())
        .filter_map(|p| p.trim().parse().ok())
        .collect();
    for &pid in &pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(super::proc::POLL);
    }
}

/// Whether `pid` runs (a zombie, whose parent has not reaped it yet, counts as gone).
fn alive(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let state = s
            .rsplit_once(')')
            .map(|(_, r)| r.trim_start())
            .unwrap_or("");
        !state.starts_with('Z') && !state.starts_with('X')
    })
}
