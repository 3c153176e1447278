//! The command line. Every flag is documented here; `--help` is the manual.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Config: --config PATH, else $CERTHERD_CONFIG, else /etc/certherd/certherd.toml.

Exit codes:
  0  success
  1  the operation failed (a node did not get, install or serve what it should)
  2  bad usage, config or input; nothing was changed

certbot flags:
  --manual-auth-hook 'certherd auth' --manual-cleanup-hook 'certherd cleanup'
  or simply: certherd issue -d example.com";

/// One certbot, many web servers: ACME HTTP-01 tokens and certificates on every node.
#[derive(Debug, Parser)]
#[command(name = "certherd", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file (default: $CERTHERD_CONFIG, else /etc/certherd/certherd.toml).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// More output; repeat for more.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors.
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
    Auth(ChallengeFlags),
    /// certbot --manual-cleanup-hook: remove the token from every node (a down peer only warns).
    Cleanup(ChallengeFlags),
    /// certbot --deploy-hook: install the renewed certificate on every node.
    Deploy(DeployFlags),
    /// The peer side, run by sshd as the forced command; speaks JSON lines on stdin/stdout.
    Agent,
    /// Check every node can answer for DOMAIN, then run certbot certonly with the hooks filled in.
    Issue(IssueFlags),
    /// For cron/systemd on every node: run `certbot renew` where this node is the primary.
    Renew,
    /// Push every lineage's current version to every peer that lacks it.
    Sync(SyncFlags),
    /// Deploy lineages changed by other means (inotify).
    Watch,
    /// Every node × every lineage: versions, expiry, what each node serves.
    Status,
    /// Explain what is misconfigured.
    Doctor,
}

/// Manual overrides for certbot's CERTBOT_* variables.
#[derive(Debug, Clone, Args)]
pub struct ChallengeFlags {
    /// The domain being validated (default: $CERTBOT_DOMAIN, or $CERTBOT_IDENTIFIER).
    #[arg(long)]
    pub domain: Option<String>,
    /// The challenge token (default: $CERTBOT_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// The key authorization to serve (default: $CERTBOT_VALIDATION). Ignored by cleanup.
    #[arg(long)]
    pub validation: Option<String>,
}

/// `deploy` flags.
#[derive(Debug, Clone, Args)]
pub struct DeployFlags {
    /// Lineage name (default: from $RENEWED_LINEAGE).
    #[arg(long)]
    pub lineage: Option<String>,
}

/// `sync` flags.
#[derive(Debug, Clone, Args)]
pub struct SyncFlags {
    /// Lineages to sync (default: every lineage under live/).
    pub lineages: Vec<String>,
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
    /// Further certbot arguments, after `--` (e.g. `-- --server URL --config-dir DIR`).
    #[arg(last = true)]
    pub certbot_args: Vec<String>,
}
