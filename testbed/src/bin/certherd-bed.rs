//! `certherd-bed demo [--keep]`: the demo of `scripts/demo.sh` (certherd_testbed::demo): a
//! 3-node test bed with a pebble CA, a certificate issued through certherd's hooks while DNS
//! points only at nodes 2 and 3, deployed, renewed, and the time each phase took.
//!
//! Needs root and the packages from `scripts/setup-debian.sh`; finds `certherd` next to itself.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use certherd_testbed::demo::{self, DemoOptions};

#[derive(Parser)]
#[command(
    name = "certherd-bed",
    about = "certherd's test bed: loopback nodes, sshd, nginx, pebble"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Issue a certificate for site.test (DNS: nodes 2 and 3) with certbot on node 1 via certherd.
    Demo {
        /// Keep the bed running after the demo, until Enter or ctrl-c.
        #[arg(long)]
        keep: bool,
        /// Number of nodes (at least 3).
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// certherd binary (default: `certherd` next to this program).
        #[arg(long)]
        certherd: Option<PathBuf>,
        /// A phase timed before the demo (NAME=SECONDS, repeatable), shown first in its timing
        /// table: scripts/demo.sh passes `packages` and `build`.
        #[arg(long = "phase", value_name = "NAME=SECONDS", value_parser = parse_phase)]
        phases: Vec<(String, Duration)>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Demo {
            keep,
            nodes,
            certherd,
            phases,
        } => match run_demo(keep, nodes, certherd, phases) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("certherd-bed: {e}");
                ExitCode::from(1)
            }
        },
    }
}

fn run_demo(
    keep: bool,
    nodes: usize,
    certherd: Option<PathBuf>,
    phases_before: Vec<(String, Duration)>,
) -> Result<bool, String> {
    let certherd = match certherd {
        Some(p) => p,
        None => default_certherd()?,
    };
    demo::run(DemoOptions {
        nodes,
        certherd,
        keep,
        phases_before,
    })
}

fn default_certherd() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{} has no parent dir", exe.display()))?;
    Ok(dir.join("certherd"))
}

/// `NAME=SECONDS` (seconds as a decimal number) to a phase.
fn parse_phase(s: &str) -> Result<(String, Duration), String> {
    let (name, secs) = s
        .split_once('=')
        .ok_or_else(|| format!("phase {s:?}: expected NAME=SECONDS, e.g. build=212.5"))?;
    let secs: f64 = secs
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| {
            format!("phase {s:?}: {secs:?} is not a number of seconds, e.g. build=212.5")
        })?;
    Ok((name.to_owned(), Duration::from_secs_f64(secs)))
}
