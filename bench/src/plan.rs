//! What to run: the command line, the plan it becomes (`--smoke` applied, peer counts sorted and
//! checked), and the fixed names every scenario uses.
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub(crate) const DOMAIN: &str = "site.test";
pub(crate) const LINEAGE: &str = "site.test";
/// Any base64url string does as the ACME account thumbprint for hand-made tokens.
pub(crate) const THUMBPRINT: &str = "benchThumbprint0000000000000000000000000000";
pub(crate) const KINDS: [&str; 4] = ["cert", "chain", "fullchain", "privkey"];
/// Bound on any single measured command.
pub(crate) const RUN_TIMEOUT: Duration = Duration::from_secs(180);

#[derive(Parser, Debug)]
#[command(
    name = "certherd-bench",
    about = "Benchmarks certherd against ssh-loop and rsync baselines on the loopback test bed; writes BENCHMARKS.md"
)]
pub(crate) struct Cli {
    /// The certherd binary to measure (default: `certherd` next to this program).
    #[arg(long)]
    pub(crate) certherd: Option<PathBuf>,
    /// Where to write the report.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub(crate) out: PathBuf,
    /// Repetitions of each measurement.
    #[arg(long, default_value_t = 5)]
    pub(crate) reps: usize,
    /// Peer counts to measure (comma separated).
    #[arg(long, value_delimiter = ',', default_value = "1,3,10,30,100")]
    pub(crate) peers: Vec<usize>,
    /// The injected round-trip time for the delayed runs, in milliseconds.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) rtt_ms: f64,
    /// The rsync deploy script is slow; above this many peers it runs only twice.
    #[arg(long, default_value_t = 10)]
    pub(crate) rsync_full_max: usize,
    /// Above this many peers the rsync deploy script does not run at all (7 ssh connections per
    /// peer, one peer after the other: minutes at 30 peers on a loaded machine).
    #[arg(long, default_value_t = 10)]
    pub(crate) rsync_max: usize,
    /// The sequential ssh loop is slow (a second or more per peer on a loaded machine); above
    /// this many peers it runs once, in the first repetition.
    #[arg(long, default_value_t = 10)]
    pub(crate) seq_full_max: usize,
    /// A quick run that only checks the runner works: N = 3, 2 repetitions.
    #[arg(long)]
    pub(crate) smoke: bool,
    /// Also write the raw samples as JSON here.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// Run only these sections (comma separated: anatomy, startup, kex, auth, renewal, deploy).
    #[arg(long, value_delimiter = ',')]
    pub(crate) only: Vec<String>,
}

/// What to run, after `--smoke` is applied.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) reps: usize,
    pub(crate) peers: Vec<usize>,
    pub(crate) rtt_ms: f64,
    pub(crate) rsync_full_max: usize,
    pub(crate) rsync_max: usize,
    pub(crate) seq_full_max: usize,
    pub(crate) anatomy_reps: usize,
    pub(crate) startup_reps: usize,
    pub(crate) renew_reps: usize,
    pub(crate) smoke: bool,
    pub(crate) only: Vec<String>,
}

impl Plan {
    pub(crate) fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

pub(crate) fn args_text(cli: &Cli) -> String {
    let mut s = String::new();
    if cli.smoke {
        s.push_str(" --smoke");
    }
    if cli.reps != 5 {
        let _ = write!(s, " --reps {}", cli.reps);
    }
    if cli.peers != [1, 3, 10, 30, 100] {
        let _ = write!(
            s,
            " --peers {}",
            cli.peers
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if cli.rtt_ms != 20.0 {
        let _ = write!(s, " --rtt-ms {}", cli.rtt_ms);
    }
    for (flag, value, default) in [
        ("--rsync-full-max", cli.rsync_full_max, 10),
        ("--rsync-max", cli.rsync_max, 10),
        ("--seq-full-max", cli.seq_full_max, 10),
    ] {
        if value != default {
            let _ = write!(s, " {flag} {value}");
        }
    }
    if !cli.only.is_empty() {
        let _ = write!(s, " --only {}", cli.only.join(","));
    }
    s
}
