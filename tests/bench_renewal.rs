//! Benchmark, not a check (`#[ignore]`d; run with `cargo test --release --test bench_renewal --
//! --ignored --nocapture`): a renewal run of many lineages through real certbot and pebble
//! (issue 19, items 2 and "load held"). Side by side in each round: `certherd renew --
//! --force-renewal --cert-name <one>` (one lineage) and `certherd renew -- --force-renewal` (all
//! of them); for the run of all, each node's config tests and reloads are counted, and a client
//! makes TLS handshakes to every node without pause, SNI spread over the lineages, checking that
//! each answer is that lineage's old or new certificate. `CERTHERD_BENCH_LINEAGES` (default 20)
//! and `CERTHERD_BENCH_ROUNDS` (default 3) size it; the figures go into BENCHMARKS.md.

mod common;
use common::bench::{env_or, median};
use common::reloads::{count_tests_and_reloads, counts};
use common::*;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use certherd_testbed::Bed;

const NODES: usize = 4;

/// The SHA-256 fingerprint of `lineage`'s current certificate on node 1.
fn current_fingerprint(bed: &Bed, lineage: &str) -> String {
    let pem = std::fs::read_to_string(
        bed.letsencrypt_dir(1)
            .join("live")
            .join(lineage)
            .join("cert.pem"),
    )
    .unwrap();
    certherd::pem::fingerprint(&certherd::pem::first_cert_der(&pem).unwrap())
}

/// What the handshake client saw on one node: handshakes made, failed ones (with the first
/// few errors), and each lineage's fingerprints answered.
#[derive(Default)]
struct Seen {
    handshakes: usize,
    failed: usize,
    errors: Vec<String>,
    fingerprints: HashMap<String, HashSet<String>>,
}

/// Handshakes to node `n` without pause until `running` is cleared, round-robin over `names`.
fn handshakes(addr: String, names: Vec<String>, running: Arc<AtomicBool>) -> Seen {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut seen = Seen::default();
    let mut i = 0;
    while running.load(Ordering::Relaxed) {
        let name = &names[i % names.len()];
        i += 1;
        seen.handshakes += 1;
        match runtime.block_on(certherd::tls::served_leaf(
            &addr,
            name,
            Duration::from_secs(5),
        )) {
            Ok(der) => {
                seen.fingerprints
                    .entry(name.clone())
                    .or_default()
                    .insert(certherd::pem::fingerprint(&der));
            }
            Err(e) => {
                seen.failed += 1;
                if seen.errors.len() < 5 {
                    seen.errors.push(format!("{name}: {e}"));
                }
            }
        }
    }
    seen
}

/// `certherd renew -- --force-renewal EXTRA…` on node 1, through exec (no node's logs read
/// after the run): the caller times it, and the timing is certherd's alone.
fn renew(bed: &Bed, extra: &[&str]) -> Exec<'static> {
    let mut args = vec!["renew", "--", "--force-renewal"];
    args.extend_from_slice(extra);
    let mut cmd = bed.certherd(1, &args);
    cmd.env("REQUESTS_CA_BUNDLE", bed.ca_bundle());
    exec(cmd)
}

#[test]
#[ignore = "benchmark: minutes; run by hand, figures go into BENCHMARKS.md"]
fn a_renewal_run_of_many_lineages_against_one() {
    let lineages = env_or("CERTHERD_BENCH_LINEAGES", 20);
    let rounds = env_or("CERTHERD_BENCH_ROUNDS", 3);
    let bed = bed(NODES, true);
    let peers: Vec<PeerSpec> = (2..=NODES).map(PeerSpec::new).collect();
    bed.write_config(
        1,
        &peers,
        &format!(
            "[renew]\nprimary = \"node1\"\ncertbot = {:?}\n",
            bed.renew_certbot_argv(1)
        ),
    )
    .unwrap();
    default_tls_everywhere(&bed);
    let names: Vec<String> = (0..lineages).map(|i| format!("r{i:02}.test")).collect();
    let began = Instant::now();
    for l in &names {
        bed.dns(l, &[2, 3]).unwrap();
        let mut cmd = bed.certherd(
            1,
            &[
                "issue",
                "--certbot",
                &certbot_program_arg(),
                "--skip-preflight",
                "-d",
                l,
                "--",
            ],
        );
        cmd.args(bed.certbot_common_args())
            .env("REQUESTS_CA_BUNDLE", bed.ca_bundle());
        bed.node(1).command(cmd).run();
    }
    for n in 1..=NODES {
        for l in &names {
            bed.add_tls_vhost(n, l, l).unwrap();
        }
        reload_nginx(&bed, n);
    }
    eprintln!("{lineages} lineages issued in {:?}", began.elapsed());
    count_tests_and_reloads(&bed, NODES);

    let (mut one, mut all) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let began = Instant::now();
        renew(&bed, &["--cert-name", &names[0]]).run();
        one.push(began.elapsed());

        // Settle past the one-lineage run's reloads before the client starts.
        std::thread::sleep(RELOAD_OVERLAP);
        let old: Vec<String> = names.iter().map(|l| current_fingerprint(&bed, l)).collect();
        let before: Vec<_> = (1..=NODES).map(|n| counts(&bed, n)).collect();
        let running = Arc::new(AtomicBool::new(true));
        let clients: Vec<_> = (1..=NODES)
            .map(|n| {
                let (addr, names, running) =
                    (format!("{}:443", bed.ip(n)), names.clone(), running.clone());
                std::thread::spawn(move || handshakes(addr, names, running))
            })
            .collect();
        let began = Instant::now();
        renew(&bed, &[]).run();
        all.push(began.elapsed());
        // The client goes on past the reloads' overlap, then stops.
        std::thread::sleep(Duration::from_secs(1));
        running.store(false, Ordering::Relaxed);
        let seen: Vec<Seen> = clients.into_iter().map(|c| c.join().unwrap()).collect();
        let new: Vec<String> = names.iter().map(|l| current_fingerprint(&bed, l)).collect();
        let took = began.elapsed().as_secs_f64() + 1.0;
        for (i, s) in seen.iter().enumerate() {
            let n = i + 1;
            wait_until(Duration::from_secs(10), || counts(&bed, n).1 > before[i].1);
            let (t, r) = counts(&bed, n);
            let mut foreign = Vec::new();
            for (k, l) in names.iter().enumerate() {
                for fp in s.fingerprints.get(l).into_iter().flatten() {
                    if *fp != old[k] && *fp != new[k] {
                        foreign.push(format!("{l}: {fp}"));
                    }
                }
            }
            eprintln!(
                "round {round} node {n}: config tests {}, reloads {}; {} handshakes ({:.0}/s), {} failed {:?}, {} answered with neither the old nor the new certificate {:?}",
                t - before[i].0,
                r - before[i].1,
                s.handshakes,
                s.handshakes as f64 / took,
                s.failed,
                s.errors,
                foreign.len(),
                foreign.iter().take(3).collect::<Vec<_>>()
            );
        }
    }
    let (o, a) = (median(one.clone()), median(all.clone()));
    eprintln!(
        "renewal of 1 lineage: median {o:?} (all {one:?}); of {lineages}: median {a:?} (all {all:?}); ratio {:.2}",
        a.as_secs_f64() / o.as_secs_f64()
    );
}
