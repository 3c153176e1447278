//! The bed's one error type. A bed that cannot start or do what a test asked says, in one line,
//! what failed and on what (the path, the command, the daemon), and keeps the data: a caller can
//! match on the variant instead of searching a string. A daemon's failure also carries the end
//! of its log, which `Debug` (what `.unwrap()` / `.expect()` print) and the `String` conversion
//! show below the line, so a failed bed start still tells the whole story.
//!
//! Test code written against the old `Result<_, String>` keeps working: `?` in a function that
//! returns `Result<_, String>` converts through `From<BedError> for String`.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// What went wrong on the bed.
#[derive(thiserror::Error)]
pub enum BedError {
    /// A file system call on `path` failed (`what`: "mkdir", "write", "read", "chmod", ...).
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A helper command (openssl, ssh-keygen, nginx -s reload, ip, ...) could not be started.
    #[error("cannot run {what}: {source}")]
    Spawn {
        what: String,
        #[source]
        source: io::Error,
    },
    /// A helper command ran and failed; `stderr` is its trimmed stderr.
    #[error("{what} failed ({status}): {}", first_line(stderr))]
    Command {
        what: String,
        status: ExitStatus,
        stderr: String,
    },
    /// A daemon was not ready (listening) within `waited`; `log_tail` is the end of its log.
    #[error("{what} not ready after {waited:?} (log {})", log.display())]
    Timeout {
        what: String,
        waited: Duration,
        log: PathBuf,
        log_tail: String,
    },
    /// A daemon exited before it was ready; `log_tail` is the end of its log.
    #[error("{what} exited ({status}) before it was ready (log {})", log.display())]
    Exited {
        what: String,
        status: ExitStatus,
        log: PathBuf,
        log_tail: String,
    },
    /// The bed was asked for something it cannot be (a node out of range, no CA on this bed, a
    /// file of the source tree that lacks what the bed reads from it, ...).
    #[error("{0}")]
    Setup(String),
}

impl BedError {
    /// A file system error on `path`, for `map_err`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> BedError {
        let path = path.into();
        move |source| BedError::Io { what, path, source }
    }

    /// What the one line leaves out: a failing command's whole stderr, a daemon's log tail.
    pub fn detail(&self) -> Option<&str> {
        let text = match self {
            BedError::Command { stderr, .. } => stderr,
            BedError::Timeout { log_tail, .. } | BedError::Exited { log_tail, .. } => log_tail,
            _ => return None,
        };
        Some(text.as_str()).filter(|t| t.lines().nth(1).is_some() || self.is_daemon())
    }

    fn is_daemon(&self) -> bool {
        matches!(self, BedError::Timeout { .. } | BedError::Exited { .. })
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

/// The line, then the detail: `.unwrap()` on a bed call prints everything there is to know.
impl fmt::Debug for BedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")?;
        if let Some(detail) = self.detail() {
            write!(f, "\n{detail}")?;
        }
        Ok(())
    }
}

/// Old-style callers (`Result<_, String>` test helpers) keep the line and the detail.
impl From<BedError> for String {
    fn from(e: BedError) -> String {
        format!("{e:?}")
    }
}

/// The bed's modules that still build their messages as text (their one line says what failed).
impl From<String> for BedError {
    fn from(s: String) -> BedError {
        BedError::Setup(s)
    }
}

impl From<&str> for BedError {
    fn from(s: &str) -> BedError {
        BedError::Setup(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn one_line_names_what_failed_and_debug_adds_the_log() {
        let e = BedError::Timeout {
            what: "sshd3 (pid 42) on 127.0.9.3:22".into(),
            waited: Duration::from_secs(30),
            log: "/tmp/bed/node3/sshd.log".into(),
            log_tail: "  bind: Address already in use\n".into(),
        };
        assert_eq!(
            e.to_string(),
            "sshd3 (pid 42) on 127.0.9.3:22 not ready after 30s (log /tmp/bed/node3/sshd.log)"
        );
        assert!(format!("{e:?}").ends_with("\n  bind: Address already in use\n"));
        assert_eq!(String::from(e).lines().count(), 2);
    }

    #[test]
    fn a_command_shows_its_first_stderr_line_and_keeps_the_rest() {
        let e = BedError::Command {
            what: "nginx -s reload on node 2".into(),
            status: ExitStatus::from_raw(1 << 8),
            stderr: "nginx: [emerg] unknown directive\nnginx: configuration file test failed"
                .into(),
        };
        let line = e.to_string();
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.contains("nginx -s reload on node 2 failed (exit status: 1)"),
            "{line}"
        );
        assert!(line.ends_with("unknown directive"), "{line}");
        assert!(format!("{e:?}").contains("configuration file test failed"));
    }

    #[test]
    fn io_names_the_path() {
        let e = BedError::io("mkdir", "/nonexistent/x")(io::Error::from(io::ErrorKind::NotFound));
        assert!(e.to_string().starts_with("mkdir /nonexistent/x: "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
