//! Benchmark, not a check (`#[ignore]`d; run with `cargo test --release --test bench_batch --
//! --ignored --nocapture`): many lineages to fresh peers (issue 19). `certherd sync` against the
//! seed's way in the same bed, side by side: one `rsync -a` of `archive/` and `live/` per peer in
//! parallel over a plain root SSH login, then one `nginx -t` and one reload per node. Every round
//! starts from fresh peers (their `archive/` and `live/` removed); the medians go into
//! BENCHMARKS.md ("Many lineages"). `CERTHERD_BENCH_LINEAGES` (default 200),
//! `CERTHERD_BENCH_PEERS` (default 3) and `CERTHERD_BENCH_ROUNDS` (default 3) size it.
//!
//! Also measured: the peak RSS of `certherd sync` (its `ru_maxrss`, ssh children included) and
//! of every agent process on the peers (their `VmHWM`, sampled from /proc while sync runs), and
//! `certherd status` over every lineage × every node once the peers hold them all.

mod common;
use common::bench::{env_or, median};
use common::cluster::make_version;
use common::*;

use std::process::Command;
use std::time::{Duration, Instant};

use certherd_testbed::Bed;

fn peers() -> usize {
    env_or("CERTHERD_BENCH_PEERS", 3)
}

/// The peers back to fresh: no lineage at all, nginx reloaded onto its default server.
fn wipe_peers(bed: &Bed) {
    bed.close_control_masters();
    for n in 2..=peers() + 1 {
        for d in ["archive", "live"] {
            let _ = std::fs::remove_dir_all(bed.letsencrypt_dir(n).join(d));
        }
        reload_nginx(bed, n);
    }
}

/// The seed's script: per peer in parallel, one rsync of archive/ and live/ over a plain root
/// login, then that node's `nginx -t` and reload; and this node's test and reload.
fn seed_script(bed: &Bed, plain_key: &std::path::Path) -> Command {
    let mut ssh = bed.ssh_args();
    if let Some(i) = ssh.iter().position(|a| a == "-i") {
        ssh[i + 1] = plain_key.display().to_string();
    }
    if let Some(i) = ssh.iter().position(|a| a == "-l") {
        ssh[i + 1] = "root".into();
    }
    let ssh = ssh.join(" ");
    let src = bed.letsencrypt_dir(1);
    let mut script = String::from("set -e\n");
    for n in 2..=peers() + 1 {
        script.push_str(&format!(
            "( rsync -a -e \"ssh {ssh}\" {src}/archive {src}/live {ip}:{le}/ && ssh {ssh} {ip} '/usr/sbin/nginx -t -q -c {conf} && /usr/sbin/nginx -s reload -c {conf}' ) &\n",
            src = src.display(),
            ip = bed.ip(n),
            le = bed.letsencrypt_dir(n).display(),
            conf = bed.nginx_conf(n).display(),
        ));
    }
    script.push_str(&format!(
        "/usr/sbin/nginx -t -q -c {c} && /usr/sbin/nginx -s reload -c {c}\nwait\n",
        c = bed.nginx_conf(1).display()
    ));
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script);
    cmd
}

/// The highest `VmHWM` (peak RSS, KiB) of any `certherd agent` process and of the `certherd
/// sync` process seen while `running` is set, sampled every 20 ms from /proc (read only:
/// nothing is signalled).
fn sample_agents(running: std::sync::Arc<std::sync::atomic::AtomicBool>) -> (u64, u64) {
    use std::sync::atomic::Ordering;
    let (mut peak, mut sync_peak) = (0, 0);
    while running.load(Ordering::Relaxed) {
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let dir = entry.path();
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let agent = args.iter().any(|a| *a == b"agent");
            let sync = args.iter().any(|a| *a == b"sync");
            if !(agent || sync) || !args.iter().any(|a| a.ends_with(b"certherd")) {
                continue;
            }
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            if let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            {
                if agent {
                    peak = peak.max(kib);
                } else {
                    sync_peak = sync_peak.max(kib);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (peak, sync_peak)
}

/// Peak RSS (KiB) of the largest child this process has waited for so far (`RUSAGE_CHILDREN`:
/// a child's own descendants count in it once it has waited for them).
fn children_maxrss() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { nix::libc::getrusage(nix::libc::RUSAGE_CHILDREN, &mut usage) };
    assert_eq!(rc, 0, "getrusage");
    usage.ru_maxrss as u64
}

#[test]
#[ignore = "benchmark: minutes; run by hand, figures go into BENCHMARKS.md"]
fn many_lineages_sync_against_rsync() {
    let lineages = env_or("CERTHERD_BENCH_LINEAGES", 200);
    let rounds = env_or("CERTHERD_BENCH_ROUNDS", 3);
    let peers = peers();
    let bed = bed(peers + 1, false);
    let plain = bed.enable_plain_login().unwrap();
    default_tls_everywhere(&bed);
    let names: Vec<String> = (0..lineages).map(|i| format!("m{i:04}.test")).collect();
    for l in &names {
        make_version(&bed, l, 1);
    }
    let (mut ours, mut seed) = (Vec::new(), Vec::new());
    let (mut agent_peak, mut sync_sampled) = (0, 0);
    for round in 0..rounds {
        wipe_peers(&bed);
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sampler = {
            let running = running.clone();
            std::thread::spawn(move || sample_agents(running))
        };
        // exec (no node's logs read after the run): the timing is certherd's alone.
        let began = Instant::now();
        let ran = exec(bed.certherd(1, &["-v", "sync"])).any_status().run();
        ours.push(began.elapsed());
        running.store(false, std::sync::atomic::Ordering::Relaxed);
        let (a, p) = sampler.join().unwrap();
        agent_peak = agent_peak.max(a);
        sync_sampled = sync_sampled.max(p);
        // Where the time went: each node's session (connection, exchange) for one lineage.
        for line in ran
            .stderr()
            .lines()
            .filter(|l| l.contains("exchange") || l.contains("no ssh"))
            .take(4)
        {
            eprintln!("round {round}: {line}");
        }
        ran.ensure(
            ran.code() == Some(0),
            format!("round {round}: sync succeeds"),
        );
        for l in [&names[0], &names[lineages - 1]] {
            assert_eq!(
                installed_serial(&bed, peers + 1, l),
                current_serial(&bed, l),
                "{l}"
            );
        }

        wipe_peers(&bed);
        let began = Instant::now();
        let ran = exec(seed_script(&bed, &plain)).any_status().run();
        seed.push(began.elapsed());
        ran.ensure(
            ran.code() == Some(0),
            format!("round {round}: the rsync script succeeds"),
        );
        assert_eq!(
            installed_serial(&bed, peers + 1, &names[0]),
            current_serial(&bed, &names[0])
        );
    }
    if rounds > 0 {
        let (o, s) = (median(ours.clone()), median(seed.clone()));
        eprintln!(
            "{lineages} lineages x {peers} fresh peers, {rounds} rounds: certherd sync median \
             {o:?} (all {ours:?}); rsync script median {s:?} (all {seed:?}); ratio {:.2}",
            o.as_secs_f64() / s.as_secs_f64()
        );
    }
    // certherd's peak: RUSAGE_CHILDREN is the largest child waited for so far (the syncs, the
    // rsync scripts with their rsync and ssh, openssl...); printed before and after one more
    // full sync, so a reader sees whether certherd is that largest child.
    wipe_peers(&bed);
    let before = children_maxrss();
    exec(bed.certherd(1, &["sync"])).run();
    let sync_peak = children_maxrss();
    eprintln!(
        "peak RSS: certherd sync {} KiB (largest child so far: {} KiB before that sync; sampled VmHWM of sync {sync_sampled} KiB), every agent at most {agent_peak} KiB",
        sync_peak, before
    );
    // The bed's vhosts name no lineage (a default server only), so status says CRITICAL
    // (nothing served); what counts here is that it answered, with a row per lineage and node.
    let mut status_times = Vec::new();
    for _ in 0..3 {
        let began = Instant::now();
        let ran = exec(bed.certherd(1, &["status", "--format", "json"]))
            .any_status()
            .run();
        status_times.push(began.elapsed());
        let json: serde_json::Value = ran.json();
        ran.ensure(
            json.to_string().contains(&names[lineages - 1]),
            "status names every lineage",
        );
    }

    eprintln!(
        "status over {lineages} lineages x {} nodes: median {:?} (all {status_times:?})",
        peers + 1,
        median(status_times.clone())
    );
    hold(&bed);
}

/// `CERTHERD_BENCH_HOLD=FILE`: keeps the bed up while FILE exists (at most an hour), printing the
/// primary's config, so a profiler can run `certherd --config … status` (or sync) against it.
fn hold(bed: &Bed) {
    let Ok(file) = std::env::var("CERTHERD_BENCH_HOLD") else {
        return;
    };
    std::fs::write(&file, bed.config_path(1).to_string_lossy().as_bytes()).unwrap();
    eprintln!("holding the bed while {file} exists: its primary's config is in it");
    wait_until(Duration::from_secs(3600), || {
        !std::path::Path::new(&file).exists()
    });
}
