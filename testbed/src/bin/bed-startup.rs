//! `bed-startup [--nodes 3] [--runs 5] [--certherd PATH]`: how long `Bed::start` (and the bed's
//! Drop) takes with and without the `netns` option, runs alternating in one process so both see
//! the same machine load. Prints a Markdown table of medians (and min/max) for BENCHMARKS.md.
//!
//! Needs root and the packages from `scripts/setup-debian.sh`; `scripts/bed-startup.sh` builds
//! and runs it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use certherd_testbed::{Bed, BedOptions};

#[derive(Parser)]
#[command(
    name = "bed-startup",
    about = "time Bed::start with and without network namespaces"
)]
struct Cli {
    /// Nodes per bed (with pebble).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Runs of each kind (alternating).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// certherd binary the bed's configs name (not run at start-up).
    #[arg(long, default_value = "target/debug/certherd")]
    certherd: PathBuf,
}

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.runs == 0 {
        eprintln!("bed-startup: --runs must be at least 1");
        return ExitCode::from(2);
    }
    // [start, drop] per kind: plain, netns.
    let mut times: [[Vec<Duration>; 2]; 2] = Default::default();
    for run in 1..=cli.runs {
        for (k, netns) in [false, true].into_iter().enumerate() {
            let t = Instant::now();
            let bed = match Bed::start(BedOptions {
                nodes: cli.nodes,
                ca: true,
                certherd: cli.certherd.clone(),
                netns,
            }) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("bed-startup: run {run} (netns {netns}): {e}");
                    return ExitCode::from(1);
                }
            };
            let started = t.elapsed();
            let t = Instant::now();
            drop(bed);
            let dropped = t.elapsed();
            eprintln!(
                "run {run} netns={netns}: start {}, drop {}",
                ms(started),
                ms(dropped)
            );
            times[k][0].push(started);
            times[k][1].push(dropped);
        }
    }
    println!(
        "| bed ({} nodes + CA) | `Bed::start` median | min–max | Drop median | min–max |",
        cli.nodes
    );
    println!("|---|---:|---:|---:|---:|");
    for (k, name) in ["loopback (127.0.B.i)", "netns (198.18.B.i)"]
        .iter()
        .enumerate()
    {
        let mut cells = Vec::new();
        for v in times[k].iter_mut() {
            let m = median(v);
            cells.push(ms(m));
            cells.push(format!("{}–{}", ms(v[0]), ms(v[v.len() - 1])));
        }
        println!("| {name} | {} |", cells.join(" | "));
    }
    println!("\n{} runs of each, alternating.", cli.runs);
    ExitCode::SUCCESS
}
