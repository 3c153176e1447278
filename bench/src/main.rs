//! `certherd-bench`: certherd against the hand-made baselines, side by side, on the loopback test
//! bed, with and without an injected round-trip delay; writes `BENCHMARKS.md`.
//!
//! ```text
//! sudo scripts/bench.sh                       # the full run (~30 min), writes BENCHMARKS.md
//! certherd-bench --smoke --out /tmp/b.md      # N = 3, 2 repetitions: checks the runner works
//! ```
//!
//! One bed (N_max + 1 nodes and pebble) serves every measurement; node 1 is the primary and its
//! config is rewritten for each N. A [`certherd_testbed::delay::DelayProxy`] stands in front of every peer (ssh, http,
//! https on `127.1.B.i`) for the delayed runs. The baselines log in with a second key that
//! has no forced command. Every run's result is verified (exit code, token files on the peers,
//! live links), so a fast failure is never reported as a fast success. Needs root and the
//! packages of `scripts/setup-debian.sh`.
//!
//! `certherd-bench fdpass HOST PORT` is an internal helper (an ssh `ProxyCommand` with
//! `ProxyUseFdpass`): it connects with `TCP_NODELAY` set and hands the socket to ssh.
//!
//! Data flows one way: [`plan`] (what to run) → [`scenarios`] (drive the bed, run certherd and
//! the [`baselines`] side by side) → [`measure`] (time and verify each run, collect the series)
//! → [`report`] (figures and tables into `bench/report-template.md`).

mod baselines;
mod environment;
mod fdpass;
mod measure;
mod plan;
mod report;
mod sampler;
mod scenarios;

use std::fs;
use std::time::{Instant, SystemTime};

use clap::Parser;

use environment::Environment;
use plan::{Cli, Plan};
use report::render;
use scenarios::Bench;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("fdpass") {
        std::process::exit(fdpass::fdpass(&args[2..]));
    }
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("certherd-bench: {e}");
            std::process::exit(1);
        }
    }
}

fn real_main(cli: Cli) -> Result<(), String> {
    if !nix::unistd::getuid().is_root() {
        return Err("needs root (sshd, nginx and ports 22/80/443 on loopback)".into());
    }
    let certherd = match &cli.certherd {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("current_exe: {e}"))?
            .with_file_name("certherd"),
    };
    let certherd = fs::canonicalize(&certherd)
        .map_err(|e| format!("certherd binary {}: {e}", certherd.display()))?;
    let plan = if cli.smoke {
        Plan {
            reps: cli.reps.min(2),
            peers: vec![3],
            rtt_ms: cli.rtt_ms,
            rsync_full_max: 3,
            rsync_max: 3,
            seq_full_max: 3,
            anatomy_reps: 2,
            startup_reps: 5,
            renew_reps: 1,
            smoke: true,
            only: cli.only.clone(),
        }
    } else {
        let mut peers = cli.peers.clone();
        peers.sort_unstable();
        peers.dedup();
        Plan {
            reps: cli.reps.max(1),
            peers,
            rtt_ms: cli.rtt_ms,
            rsync_full_max: cli.rsync_full_max,
            rsync_max: cli.rsync_max,
            seq_full_max: cli.seq_full_max,
            anatomy_reps: (cli.reps * 2).clamp(3, 15),
            startup_reps: 30,
            renew_reps: cli.reps.max(1),
            smoke: false,
            only: cli.only.clone(),
        }
    };
    const SECTIONS: [&str; 6] = ["anatomy", "startup", "kex", "auth", "renewal", "deploy"];
    if let Some(bad) = plan.only.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
        return Err(format!(
            "--only: unknown section {bad:?} (one of {SECTIONS:?})"
        ));
    }
    if plan.peers.is_empty() || plan.peers[0] == 0 {
        return Err("--peers needs at least one count ≥ 1".into());
    }
    let max_n = *plan.peers.last().unwrap_or(&1);
    // Nodes are 127.0.B.1..=249 (250 is the CA), their delay proxies 127.1.B.i.
    if max_n + 1 > 249 {
        return Err(format!(
            "--peers {max_n}: at most 248 peers (nodes are 127.0.B.1..=249)"
        ));
    }
    raise_nofile();
    let started = SystemTime::now();
    let t0 = Instant::now();
    let env = Environment::capture(&certherd);
    let mut b = Bench::start(&certherd, max_n, plan.clone())?;
    let res = b.run_all();
    let elapsed = t0.elapsed();
    // The raw samples first: they survive a report that cannot be rendered.
    if let Some(j) = &cli.json {
        fs::write(j, b.results.to_json()).map_err(|e| format!("write {}: {e}", j.display()))?;
    }
    let report = render(&plan, &env, &b.results, started, elapsed, &cli)?;
    fs::write(&cli.out, &report).map_err(|e| format!("write {}: {e}", cli.out.display()))?;
    eprintln!(
        "certherd-bench: wrote {} after {:.0?}",
        cli.out.display(),
        elapsed
    );
    drop(b);
    res
}

/// Raises this process's open-file limit to its hard limit. The delay proxies hold four
/// descriptors per proxied connection plus 3 listeners per peer: at 100 peers and 20 ms that
/// was ~1,900 descriptors at once, above the usual soft limit of 1,024.
fn raise_nofile() {
    use nix::libc;
    // SAFETY: getrlimit/setrlimit with a valid out-parameter; no other preconditions.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            let _ = libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}
