//! The command line. Every flag is documented here; `--help` is the manual.

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::certbot_env::ChallengeArgs;
use crate::error::Error;

const AFTER_HELP: &str = "\
Config: --config PATH, else $CERTHERD_CONFIG, else /etc/certherd/certherd.toml.

Exit codes:
  0  success
  1  the operation failed (a node did not get, install or serve what it should)
  2  bad usage, config or input; nothing was changed
  3  status only (a monitoring plugin): UNKNOWN, including any usage error of status

certbot flags:
  --manual-auth-hook 'certherd auth' --manual-cleanup-hook 'certherd cleanup'
  --pre-hook 'certherd warm' (connections open while certbot talks to the CA)
  or simply: certherd issue -d example.com";

/// What `--version` prints after the name: the release and the agent protocol version, which is
/// what a primary and its peers must agree on (the primary refuses another one at `hello`). A
/// literal because clap wants a `&'static str`; a unit test keeps it equal to
/// `wire::PROTOCOL_VERSION`.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (agent protocol 1)");

/// One certbot, many web servers: ACME HTTP-01 tokens and certificates on every node.
#[derive(Debug, Parser)]
#[command(name = "certherd", version = VERSION, after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file (default: $CERTHERD_CONFIG, else /etc/certherd/certherd.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// More output: per-node timings and SSH detail for deploy, sync and auth; repeat for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Errors only: no table, no info or warning lines (an explicit --format json still prints).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// certbot --manual-auth-hook: put the token on every node, then check every node serves it.
    Auth(AuthFlags),
    /// certbot --manual-cleanup-hook: remove the token from every node (a down peer only warns).
    Cleanup(ChallengeArgs),
    /// certbot --deploy-hook: install the renewed certificate on every node.
    Deploy(DeployFlags),
    /// The peer side, run by sshd as the forced command; speaks JSON lines on stdin/stdout.
    Agent,
    /// Check every node can answer for DOMAIN, then run certbot certonly with the hooks filled in.
    Issue(IssueFlags),
    /// For cron/systemd on every node: run `certbot renew` where this node is the primary.
    Renew(RenewFlags),
    /// Push every lineage's current version to every peer that lacks it.
    Sync(SyncFlags),
    /// Deploy lineages changed by other means (inotify); run it on the primary only.
    Watch(WatchFlags),
    /// Every node × every lineage: versions, expiry, what each node serves (exit 0 ok, 1 warning,
    /// 2 critical, 3 unknown; every usage error of status is 3 too).
    Status(StatusFlags),
    /// Print the ACME account thumbprint and the nginx snippet that answers any token without
    /// fan-out (use with `mode = "stateless"`).
    Stateless,
    /// Explain what is misconfigured: config, SSH and agents, and (with -d) whether every node
    /// serves tokens for each domain.
    Doctor(DoctorFlags),
    /// certbot --pre-hook: open (or refresh) the shared SSH connection to every peer while
    /// certbot talks to the CA, so the auth hook skips the key exchange. Always exit 0: a peer
    /// that is down is one warning line (exit 2 only for a bad config). `issue` and `renew` do
    /// this themselves.
    Warm,
    /// Print the shell completion script for SHELL on stdout (the Debian package installs them;
    /// e.g. `certherd completions bash > /etc/bash_completion.d/certherd`). Needs no config.
    Completions(CompletionsFlags),
}

/// What the command line asks for: a normal run, or the build-time `certherd manpages DIR`.
#[derive(Debug)]
pub enum Invocation {
    /// Every user-facing command.
    Run(Cli),
    /// Write the man pages into a directory (scripts/deb.sh).
    Manpages(ManpagesFlags),
    /// The warm holder `warm` starts for one certbot run (docs/HOLDER.md), with `--config`.
    Hold(Option<PathBuf>, HoldFlags),
}

/// Parses the process arguments. Bad usage exits with clap's message and code 2, except under
/// `status`: a monitoring plugin's bad usage is UNKNOWN, so it comes back as
/// [`Error::StatusUsage`] (exit 3), with the report for stdout in the `--format` asked for.
///
/// `manpages DIR` (write certherd.1 and one page per subcommand; scripts/deb.sh runs it so the
/// pages come from these very definitions) is added here rather than to [`Command`]: the man
/// pages and completions are generated from [`Cli`], and clap_complete offers even hidden
/// subcommands, so a build tool inside `Cli` would show up in every user's TAB completion.
pub fn parse() -> Result<Invocation, Error> {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let parsed =
        command()
            .try_get_matches_from(&args)
            .and_then(|matches| match matches.subcommand() {
                Some(("manpages", m)) => {
                    ManpagesFlags::from_arg_matches(m).map(Invocation::Manpages)
                }
                Some(("hold", m)) => HoldFlags::from_arg_matches(m).map(|flags| {
                    Invocation::Hold(matches.get_one::<PathBuf>("config").cloned(), flags)
                }),
                _ => Cli::from_arg_matches(&matches).map(Invocation::Run),
            });
    match parsed {
        Ok(Invocation::Run(cli)) => {
            if let Command::Status(flags) = &cli.command {
                flags
                    .check()
                    .map_err(|e| status_usage(e.to_string(), flags.format))?;
            }
            Ok(Invocation::Run(cli))
        }
        Ok(other) => Ok(other),
        // --help and --version are not errors: clap prints them and exits 0 as usual.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => match refused_status_format(&args) {
            Some(format) => Err(status_usage(first_line(&e.to_string()), format)),
            None => e.exit(),
        },
    }
}

/// The whole command line: [`Cli`], the hidden `manpages` and the hidden `hold` (the warm
/// holder that only `warm` starts: outside [`Cli`] for the same reason as `manpages`).
fn command() -> clap::Command {
    let manpages = ManpagesFlags::augment_args(
        clap::Command::new("manpages")
            .hide(true)
            .about("Write the man pages into DIR (for packaging); needs no config"),
    );
    let hold = HoldFlags::augment_args(
        clap::Command::new("hold")
            .hide(true)
            .about("The warm holder of one certbot run; started by `warm` only"),
    );
    Cli::command().subcommand(manpages).subcommand(hold)
}

/// For a command line clap refused: when it is a `status` one, the `--format` it asks for (the
/// default when that one is missing or invalid too), read by clap itself: each argument it does
/// not know is left out (clap stops at the first), then the rest is parsed with its errors
/// ignored. `None` for any other command.
fn refused_status_format(args: &[std::ffi::OsString]) -> Option<crate::report::status::Format> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let mut args = args.to_vec();
    // At most one round per word: each round leaves one out.
    for _ in 0..args.len() {
        let Err(e) = command().try_get_matches_from(&args) else {
            break;
        };
        let Some(ContextValue::String(unknown)) = (e.kind() == ErrorKind::UnknownArgument)
            .then(|| e.get(ContextKind::InvalidArg))
            .flatten()
        else {
            break;
        };
        let Some(at) = args.iter().position(|a| {
            let a = a.to_string_lossy();
            a == unknown.as_str() || a.starts_with(&format!("{unknown}="))
        }) else {
            break;
        };
        args.remove(at);
    }
    let matches = command()
        .ignore_errors(true)
        .try_get_matches_from(&args)
        .ok()?;
    let ("status", status) = matches.subcommand()? else {
        return None;
    };
    let format = status.try_get_one::<crate::report::status::Format>("format");
    Some(format.ok().flatten().copied().unwrap_or_default())
}

/// A usage error of `status`, with its UNKNOWN report in the format asked for.
fn status_usage(message: String, format: crate::report::status::Format) -> Error {
    Error::StatusUsage {
        report: crate::report::status::render_failed(&message, format),
        message,
    }
}

/// clap's message as one line: its first line without the `error: ` tag (the logger adds its
/// own), plus the `[possible values: …]` line when there is one (what was expected), without
/// the tips, usage and `For more information` tail.
fn first_line(message: &str) -> String {
    let mut lines = message.lines().map(str::trim);
    let first = lines.next().unwrap_or("bad usage");
    let mut out = first.strip_prefix("error: ").unwrap_or(first).to_owned();
    if let Some(expected) = lines.find(|l| l.starts_with("[possible values")) {
        out.push(' ');
        out.push_str(expected);
    }
    out
}

/// `completions` flags.
#[derive(Debug, Clone, Args)]
pub struct CompletionsFlags {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `hold` flags: the process whose end ends the holder, by PID and start time.
#[derive(Debug, Clone, Args)]
pub struct HoldFlags {
    /// PID of the process to watch (certbot, or the `renew`/`issue` running it).
    #[arg(long, value_name = "PID")]
    pub watch_pid: u32,
    /// Its start time in clock ticks since boot (/proc/PID/stat field 22), against PID reuse.
    #[arg(long, value_name = "TICKS")]
    pub watch_start: u64,
}

/// `manpages` flags.
#[derive(Debug, Clone, Args)]
pub struct ManpagesFlags {
    /// Directory to write the pages into (created if missing).
    pub dir: PathBuf,
}

/// `auth` flags.
#[derive(Debug, Clone, Args)]
pub struct AuthFlags {
    /// certbot's variables, overridden.
    #[command(flatten)]
    pub challenge: ChallengeArgs,
    /// Output format: the one-line summary certbot passes to cleanup, or one JSON object with a
    /// typed row per node (token write, self-check, time, SSH detail).
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::report::nodes::Format,
}

/// `deploy` flags.
#[derive(Debug, Clone, Args)]
pub struct DeployFlags {
    /// Lineage name (default: from $RENEWED_LINEAGE).
    #[arg(long, conflicts_with = "flush")]
    pub lineage: Option<String>,
    /// Only queue the lineage: `deploy --flush` (certbot's --post-hook) pushes every queued
    /// lineage at once, one config test and one reload per node. Under `certherd renew` and
    /// `certherd issue` the deploy hook queues by itself.
    #[arg(long, conflicts_with = "flush")]
    pub defer: bool,
    /// Push every queued lineage (see --defer) in one batch; nothing queued is a no-op.
    #[arg(long)]
    pub flush: bool,
    /// Output format: the table, or one JSON object with a typed row per node.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::report::nodes::Format,
}

/// `doctor` flags.
#[derive(Debug, Clone, Args)]
pub struct DoctorFlags {
    /// Check that every node serves tokens for this name; repeat for more.
    #[arg(short = 'd', long = "domain")]
    pub domains: Vec<String>,
}

/// `watch` flags.
#[derive(Debug, Clone, Args)]
pub struct WatchFlags {
    /// Quiet time after the last change before deploying.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub settle: std::time::Duration,
}

/// `renew` flags.
#[derive(Debug, Clone, Args)]
pub struct RenewFlags {
    /// Random delay before renewing, up to this (default: `[renew] jitter`, else none; `0s`: none).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub jitter: Option<std::time::Duration>,
    /// Further certbot arguments, after `--`.
    #[arg(last = true)]
    pub certbot_args: Vec<String>,
}

/// `status` flags.
#[derive(Debug, Clone, Args)]
pub struct StatusFlags {
    /// Output format. `nagios`: the monitoring-plugins convention, first line
    /// `CERTHERD OK|WARNING|CRITICAL|UNKNOWN - <summary> | <perfdata>` (days left per node and
    /// lineage with --warn/--crit in days, nodes in drift, nodes down), then one line per problem.
    /// Any usage error of `status` exits 3 (UNKNOWN), whatever the format.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::report::status::Format,
    /// Warning (exit 1) when a certificate has less than this left, or a node drifted: a share
    /// of the certificate's own lifetime (`25%`: 40 hours of a 160-hour certificate, 22 days of
    /// a 90-day one) or a time (`21d`).
    #[arg(long, default_value = "25%", value_name = "SHARE%|TIME")]
    pub warn: crate::report::expiry::Threshold,
    /// Critical (exit 2) when a certificate has less than this left, or a node serves none or an
    /// expired one: a share of its lifetime (`8%`) or a time (`7d`); at most --warn.
    #[arg(long, default_value = "8%", value_name = "SHARE%|TIME")]
    pub crit: crate::report::expiry::Threshold,
}

/// A `status` flag combination clap cannot refuse alone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StatusFlagsError {
    /// The critical threshold lies beyond the warning one.
    #[error(
        "--crit {crit} is longer than --warn {warn}: expected --crit at most --warn (critical is \
         the nearer expiry)"
    )]
    CritAboveWarn {
        /// --crit, as given back.
        crit: String,
        /// --warn, as given back.
        warn: String,
    },
}

impl StatusFlags {
    /// What clap cannot check alone: the critical threshold is not above the warning one (when
    /// both are times or both shares; a time and a share compare only per certificate).
    pub fn check(&self) -> Result<(), StatusFlagsError> {
        use crate::report::expiry::Threshold::{Before, Share};
        let above = match (self.crit, self.warn) {
            (Before(c), Before(w)) => c > w,
            (Share(c), Share(w)) => c > w,
            _ => false,
        };
        if above {
            return Err(StatusFlagsError::CritAboveWarn {
                crit: self.crit.to_string(),
                warn: self.warn.to_string(),
            });
        }
        Ok(())
    }
}

/// `sync` flags.
#[derive(Debug, Clone, Args)]
pub struct SyncFlags {
    /// Lineages to sync (default: every lineage under live/).
    pub lineages: Vec<String>,
    /// Output format: the tables, or one JSON object with every lineage's typed rows.
    #[arg(long, value_enum, default_value = "table")]
    pub format: crate::report::nodes::Format,
    /// Switch the first N receiving peers (config order) first and check over TLS that they
    /// serve the new version before the other peers and this node switch; a canary failure
    /// stops the rollout (the others keep their old pair) and exits 1. 0: no canaries; more
    /// than the peers: every peer, then this node. Default: `[rollout] canary` (0).
    #[arg(long, value_name = "N")]
    pub canary: Option<usize>,
}

/// `issue` flags.
#[derive(Debug, Clone, Args)]
pub struct IssueFlags {
    /// A name for the certificate; repeat for more (the first names the lineage).
    #[arg(short = 'd', long = "domain", required = true)]
    pub domains: Vec<String>,
    /// Call certbot even when a node fails the pre-flight check (wastes the CA's failure budget).
    #[arg(long)]
    pub skip_preflight: bool,
    /// Only run the pre-flight check; do not call certbot.
    #[arg(long)]
    pub preflight_only: bool,
    /// certbot program to run.
    #[arg(long, default_value = "certbot")]
    pub certbot: String,
    /// Ask the CA for this ACME profile (`classic`, `tlsserver`, `shortlived` at Let's Encrypt),
    /// falling back to its default if it has no such profile; needs certbot 4.0 or later, and
    /// 4.1 or later to keep it for renewals.
    #[arg(long, value_name = "NAME", conflicts_with = "required_profile")]
    pub preferred_profile: Option<String>,
    /// Like --preferred-profile, but fail when the CA does not offer the profile.
    #[arg(long, value_name = "NAME")]
    pub required_profile: Option<String>,
    /// Further certbot arguments, after `--` (e.g. `-- --server URL --config-dir DIR`).
    #[arg(last = true)]
    pub certbot_args: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<std::ffi::OsString> {
        line.split(' ').map(Into::into).collect()
    }

    #[test]
    fn a_refused_status_line_keeps_its_format() {
        use crate::report::status::Format;
        let format = |line| refused_status_format(&words(line));
        assert_eq!(
            format("certherd --config status -q status --bogus --format nagios"),
            Some(Format::Nagios)
        );
        assert_eq!(
            format("certherd status --format=json --crit"),
            Some(Format::Json)
        );
        assert_eq!(format("certherd status --format xml"), Some(Format::Table));
        assert_eq!(format("certherd -v deploy --bogus"), None);
        assert_eq!(format("certherd -- status"), None);
    }

    #[test]
    fn clap_messages_become_one_line_naming_what_was_expected() {
        let e = Cli::command()
            .try_get_matches_from(["certherd", "status", "--format", "xml"])
            .unwrap_err();
        let line = first_line(&e.to_string());
        assert!(!line.contains('\n'), "{line}");
        assert!(
            line.starts_with("invalid value 'xml' for '--format"),
            "{line}"
        );
        assert!(line.contains("[possible values: table, json"), "{line}");
    }

    #[test]
    fn crit_beyond_warn_is_refused() {
        use crate::report::expiry::Threshold::{self, Before, Share};
        let flags = |warn: Threshold, crit: Threshold| StatusFlags {
            format: crate::report::status::Format::Table,
            warn,
            crit,
        };
        let secs = |s| Before(std::time::Duration::from_secs(s));
        assert!(flags(secs(10), secs(10)).check().is_ok());
        assert!(flags(secs(10), secs(5)).check().is_ok());
        let e = flags(secs(5), secs(10)).check().unwrap_err().to_string();
        assert!(e.contains("--crit 10s") && e.contains("--warn 5s"), "{e}");
        assert!(flags(Share(0.25), Share(0.08)).check().is_ok());
        let e = flags(Share(0.08), Share(0.25))
            .check()
            .unwrap_err()
            .to_string();
        assert!(e.contains("--crit 25%") && e.contains("--warn 8%"), "{e}");
        // A time and a share compare only per certificate.
        assert!(flags(Share(0.25), secs(30 * 86400)).check().is_ok());
    }

    #[test]
    fn version_names_the_agent_protocol() {
        let expected = format!(
            "{} (agent protocol {})",
            env!("CARGO_PKG_VERSION"),
            crate::wire::PROTOCOL_VERSION
        );
        assert_eq!(VERSION, expected);
    }
}
