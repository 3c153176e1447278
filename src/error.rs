//! The crate's error type. Each variant carries the data (path, key, value); `Display` is the one
//! line a user reads, naming the offending value and what was expected.

use std::path::PathBuf;

use crate::names::NameError;

/// Result with the crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: the operation failed (a node did not get or serve what it should).
pub const EXIT_FAILED: i32 = 1;
/// Exit code: bad usage, config or input; nothing was changed.
pub const EXIT_USAGE: i32 = 2;
/// Exit code of `status` (a monitoring plugin) when it could not check: UNKNOWN.
pub const EXIT_UNKNOWN: i32 = 3;

/// Everything that can go wrong, by layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config file could not be read.
    #[error("cannot read config {path}: {source}")]
    ConfigRead {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file does not exist.
    #[error("config {path} does not exist: start from /usr/share/doc/certherd/examples/contrib/certherd.toml.example (contrib/certherd.toml.example in the source), or name another file with --config or $CERTHERD_CONFIG")]
    ConfigMissing { path: PathBuf },
    /// The config file is invalid (where in it is not known).
    #[error("{path}: {}{message}", key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Config {
        path: PathBuf,
        message: String,
        key: Option<String>,
    },
    /// The config file is invalid at this line (and dotted key path, when known).
    #[error("{path}:{line}: {}{message}", key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    ConfigAt {
        path: PathBuf,
        line: usize,
        key: Option<String>,
        message: String,
    },
    /// A name from certbot, the command line or a request was refused.
    #[error("{0}")]
    Name(#[from] NameError),
    /// Input is missing or malformed (message names the value).
    #[error("{0}")]
    Input(String),
    /// A local file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// An operation ran but did not succeed everywhere it had to (details were already printed).
    #[error("{0}")]
    Failed(String),
    /// Started as root, certherd could not become the letsencrypt dir's owner (and stopped).
    #[error(transparent)]
    Privilege(#[from] crate::privdrop::DropError),
    /// Bad usage of `status` (an unknown flag, a bad `--format`, `--crit` beyond `--warn`): a
    /// monitoring plugin's bad usage is UNKNOWN, never a code a monitor reads as CRITICAL.
    /// `report` is the UNKNOWN report for stdout, in the format asked for.
    #[error("{message}")]
    StatusUsage { message: String, report: String },
    /// Any other error of `status`, its config included: UNKNOWN too, because `status` could not
    /// check; `report` is the UNKNOWN report for stdout, naming the error as the reason.
    #[error("{source}")]
    StatusFailed { source: Box<Error>, report: String },
}

impl Error {
    /// The documented process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ConfigRead { .. }
            | Error::ConfigMissing { .. }
            | Error::Config { .. }
            | Error::ConfigAt { .. }
            | Error::Name(_)
            | Error::Input(_) => EXIT_USAGE,
            Error::Io { .. } | Error::Failed(_) | Error::Privilege(_) => EXIT_FAILED,
            Error::StatusUsage { .. } | Error::StatusFailed { .. } => EXIT_UNKNOWN,
        }
    }

    /// What the error prints on stdout besides its line on stderr: a monitoring plugin's report
    /// (monitoring reads stdout, and UNKNOWN always says why).
    pub fn stdout_report(&self) -> Option<&str> {
        match self {
            Error::StatusUsage { report, .. } | Error::StatusFailed { report, .. } => Some(report),
            _ => None,
        }
    }

    /// Shorthand for an I/O error on a path.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
