//! Minimal leveled logging to stderr. certbot captures hook stderr into its own log, so every line
//! is prefixed with `certherd:` to be findable there.
//!
//! When stderr is the systemd journal (a unit's `StandardError=journal`, the default), each line
//! also starts with its syslog priority, `<3>` error, `<4>` warning, `<6>` info, which journald
//! strips and stores as the entry's PRIORITY (`journalctl -p warning` then finds them). systemd
//! documents how a program knows: `$JOURNAL_STREAM` is `DEVICE:INODE` of the stream it connected,
//! and it is ours only if stderr is still that very file (a child whose stderr was redirected
//! inherits the variable but not the stream). Anywhere else the lines are unchanged.

use std::sync::atomic::{AtomicI8, Ordering};
use std::sync::OnceLock;

static LEVEL: AtomicI8 = AtomicI8::new(0);

/// Whether stderr is the journal, decided once per process.
static JOURNAL: OnceLock<bool> = OnceLock::new();

/// Sets verbosity: -1 quiet (errors only), 0 normal, 1 verbose, 2 debug.
pub fn set_level(level: i8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// Whether messages of `level` are printed.
pub fn enabled(level: i8) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level
}

/// A line's syslog priority, as journald reads it from a `<N>` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// `<3>`.
    Error = 3,
    /// `<4>`.
    Warning = 4,
    /// `<6>` (info and verbose lines alike).
    Info = 6,
}

/// Writes one log line to stderr, with its priority prefix when stderr is the journal.
pub fn write(priority: Priority, line: std::fmt::Arguments<'_>) {
    let journal = *JOURNAL.get_or_init(|| {
        std::env::var("JOURNAL_STREAM")
            .ok()
            .is_some_and(|v| stderr_is(&v))
    });
    eprintln!("{}{line}", prefix(journal, priority));
}

/// The prefix of a line: `<N>` for the journal, nothing otherwise.
pub fn prefix(journal: bool, priority: Priority) -> String {
    if journal {
        format!("<{}>", priority as u8)
    } else {
        String::new()
    }
}

/// Parses `$JOURNAL_STREAM` (`DEVICE:INODE`, both decimal); None when malformed.
pub fn parse_stream(value: &str) -> Option<(u64, u64)> {
    let (dev, ino) = value.split_once(':')?;
    Some((dev.parse().ok()?, ino.parse().ok()?))
}

/// Whether stderr is the file `$JOURNAL_STREAM` names.
fn stderr_is(value: &str) -> bool {
    use std::os::fd::AsRawFd;
    let Some((dev, ino)) = parse_stream(value) else {
        return false;
    };
    nix::sys::stat::fstat(std::io::stderr().as_raw_fd())
        .is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

/// Prints an error line (always shown).
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Priority::Error, format_args!("certherd: error: {}", format_args!($($arg)*))) };
}

/// Prints a warning line (hidden by `-q`).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { if $crate::log::enabled(0) { $crate::log::write($crate::log::Priority::Warning, format_args!("certherd: warning: {}", format_args!($($arg)*))) } };
}

/// Prints an informational line (hidden by `-q`).
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { if $crate::log::enabled(0) { $crate::log::write($crate::log::Priority::Info, format_args!("certherd: {}", format_args!($($arg)*))) } };
}

/// Prints a line only with `-v`.
#[macro_export]
macro_rules! verbose {
    ($($arg:tt)*) => { if $crate::log::enabled(1) { $crate::log::write($crate::log::Priority::Info, format_args!("certherd: {}", format_args!($($arg)*))) } };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lines_carry_their_priority() {
        assert_eq!(prefix(true, Priority::Error), "<3>");
        assert_eq!(prefix(true, Priority::Warning), "<4>");
        assert_eq!(prefix(true, Priority::Info), "<6>");
        assert_eq!(prefix(false, Priority::Error), "");
    }

    #[test]
    fn journal_stream_is_device_colon_inode() {
        assert_eq!(parse_stream("8:1234"), Some((8, 1234)));
        for bad in ["", "8", "8:", ":1", "a:1", "8:1:2", "-1:2"] {
            assert_eq!(parse_stream(bad), None, "{bad}");
        }
    }
}
