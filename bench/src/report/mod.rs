//! The report (`BENCHMARKS.md`): tables built from the results, prose from
//! `bench/report-template.md`.

mod prose;
mod targets;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::environment::{loadavg, Environment};
use crate::measure::{key_auth, key_deploy, Results, Series};
use crate::plan::{args_text, Cli, Plan, DOMAIN, LINEAGE};
use prose::{findings, proposals};

// ---------------------------------------------------------------------------------------------
// The report.

pub(crate) fn fmt_s(secs: f64) -> String {
    if secs.abs() < 0.0095 {
        format!("{:.1} ms", secs * 1000.0)
    } else if secs.abs() < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else {
        format!("{secs:.2} s")
    }
}

pub(crate) fn fmt_bare(secs: f64) -> String {
    if secs.abs() < 0.0095 {
        format!("{:.1}", secs * 1000.0)
    } else if secs.abs() < 1.0 {
        format!("{:.0}", secs * 1000.0)
    } else {
        format!("{secs:.2} s")
    }
}

/// `median (min–max)`, or `FAILED` / `–`.
pub(crate) fn cell(r: &Results, key: &str) -> String {
    let Some(s) = r.series.get(key) else {
        return "–".into();
    };
    let failed = if s.failures.is_empty() {
        String::new()
    } else {
        format!(" **{} failed**", s.failures.len())
    };
    match (s.median(), s.min(), s.max()) {
        (Some(m), Some(lo), Some(hi)) if s.samples.len() > 1 => {
            format!("{} ({}–{}){failed}", fmt_s(m), fmt_bare(lo), fmt_bare(hi))
        }
        (Some(m), _, _) => format!("{} (1 run){failed}", fmt_s(m)),
        _ if !s.failures.is_empty() => "**FAILED**".into(),
        _ => "–".into(),
    }
}

/// Per-repetition ratios `num / den`: the two series' samples paired by position, i.e. runs
/// made side by side in the same repetition (a series with fewer runs pairs with the first runs
/// of the other).
pub(crate) fn paired(r: &Results, num: &str, den: &str) -> Vec<f64> {
    match (r.get(num), r.get(den)) {
        (Some(a), Some(b)) => a
            .samples
            .iter()
            .zip(&b.samples)
            .map(|(x, y)| x / y)
            .collect(),
        _ => Vec::new(),
    }
}

/// The median of the per-repetition ratios.
pub(crate) fn ratio(r: &Results, num: &str, den: &str) -> Option<f64> {
    Series {
        samples: paired(r, num, den),
        ..Default::default()
    }
    .median()
}

/// `median (min–max)` of the per-repetition ratios.
pub(crate) fn ratio_cell(r: &Results, num: &str, den: &str) -> String {
    let per = Series {
        samples: paired(r, num, den),
        ..Default::default()
    };
    match (per.median(), per.min(), per.max()) {
        (Some(m), Some(lo), Some(hi)) if per.samples.len() > 1 => {
            format!("{} ({lo:.2}–{hi:.2})", fmt_x(m))
        }
        (Some(m), _, _) => fmt_x(m),
        _ => "–".into(),
    }
}

pub(crate) fn fmt_x(x: f64) -> String {
    if x < 0.1 {
        format!("{x:.3}×")
    } else {
        format!("{x:.2}×")
    }
}

pub(crate) struct Target {
    pub(crate) name: String,
    pub(crate) figure: String,
    pub(crate) met: Option<bool>,
    /// Said even when the target is met (e.g. other N or RTT fall short).
    pub(crate) caveat: Option<String>,
    pub(crate) why_not: String,
}

pub(crate) fn yes_no(m: Option<bool>) -> &'static str {
    match m {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

pub(crate) fn render(
    plan: &Plan,
    env: &Environment,
    r: &Results,
    started: SystemTime,
    elapsed: Duration,
    cli: &Cli,
) -> String {
    let mut o = String::new();
    let date = humantime::format_rfc3339_seconds(started);
    let rtt = plan.rtt_ms.round() as u32;
    let _ = writeln!(o, "# certherd benchmarks\n");
    let _ = writeln!(
        o,
        "Written by `certherd-bench` (`scripts/bench.sh`); do not edit by hand — re-run it. {}\n",
        if plan.smoke {
            "**Smoke run** (N = 3, 2 repetitions): checks that the runner works; the figures mean little."
        } else {
            "Every figure is the **median (min–max)** of the repetitions; ratios are computed from runs made side by side in the same repetition."
        }
    );
    let _ = writeln!(o, "## Machine and run\n");
    let _ = writeln!(o, "| | |\n|---|---|");
    let _ = writeln!(o, "| date | {date} |");
    let _ = writeln!(
        o,
        "| machine | {} × {}, {} RAM, {} (kernel {}); shared and noisy, load average at start {} |",
        env.cores, env.cpu, env.mem, env.os, env.kernel, env.load_start
    );
    for (k, v) in &env.versions {
        let _ = writeln!(o, "| {k} | {v} |");
    }
    let _ = writeln!(o, "| commit | {} |", env.commit);
    let _ = writeln!(
        o,
        "| command | `certherd-bench{}` (wall time {:.0?}, load average at end {}) |",
        args_text(cli),
        Duration::from_secs(elapsed.as_secs()),
        loadavg()
    );
    let _ = writeln!(
        o,
        "| plan | {} repetitions; peers {:?}; RTT 0 ms (direct) and {rtt} ms (delay proxy) |",
        plan.reps, plan.peers
    );
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "Set-up: one test bed (`certherd_testbed`) with {} loopback nodes, each its own sshd and nginx, and pebble as the CA. Node 1 is the primary; its certherd config lists peers 2..N+1. \
The delayed runs reach every peer's sshd, nginx :80 and :443 through `certherd_testbed::delay::DelayProxy` on `127.0.B.(100+i)`, which holds every chunk for RTT/2 in each direction and models the TCP handshake (the upstream connection opens 1.5 RTT after the client's). \
The baselines log in with a second key without a forced command (`Bed::enable_plain_login`), with the same ssh options certherd uses (`-F /dev/null`, BatchMode, strict known_hosts), no ControlMaster. \
Every run is verified (exit code, the token on every peer, the live links on every peer); a failed run is listed as failed, never timed.\n",
        plan.peers.last().unwrap_or(&1) + 1
    );

    // --- targets ---
    let targets = targets::targets(plan, r);
    let _ = writeln!(o, "## Targets (issue 5)\n");
    let _ = writeln!(o, "| target | measured | verdict |\n|---|---|---|");
    for t in &targets {
        let _ = writeln!(o, "| {} | {} | {} |", t.name, t.figure, yes_no(t.met));
    }
    let _ = writeln!(o);
    let missed: Vec<&Target> = targets.iter().filter(|t| t.met == Some(false)).collect();
    if !missed.is_empty() {
        let _ = writeln!(
            o,
            "### Why the missed targets are missed, and what would close them\n"
        );
        for t in missed {
            let _ = writeln!(o, "- **{}** — {}\n", t.name, t.why_not);
        }
    }
    let caveats: Vec<&Target> = targets.iter().filter(|t| t.caveat.is_some()).collect();
    if !caveats.is_empty() {
        let _ = writeln!(o, "### Caveats\n");
        for t in caveats {
            let _ = writeln!(
                o,
                "- **{}** — {}\n",
                t.name,
                t.caveat.as_deref().unwrap_or("")
            );
        }
    }

    // --- auth ---
    let _ = writeln!(o, "## auth: one token to every peer\n");
    let _ = writeln!(
        o,
        "Baselines: (a) `for p in $PEERS; do ssh \"$p\" \"cat > …/$TOKEN\" < token; done`; (b) the same with `&` and `wait`. \
certherd `auth` also writes the token locally and then self-checks every node over HTTP (the baselines do neither). \
*cold*: the first hook call of a certbot run, no control master yet (closed before); *warm*: a later call of the same run; *cleanup*: removal, warm.\n"
    );
    let _ = writeln!(
        o,
        "| peers | RTT | (a) sequential loop | (b) parallel loop | auth cold | auth warm | cleanup | warm ÷ (a) | cold ÷ (b) |"
    );
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    let rtts: Vec<u32> = if plan.rtt_ms > 0.0 {
        vec![0, rtt]
    } else {
        vec![0]
    };
    for &t in &rtts {
        for &n in &plan.peers {
            let _ = writeln!(
                o,
                "| {n} | {t} ms | {} | {} | {} | {} | {} | {} | {} |",
                cell(r, &key_auth("seq", n, t)),
                cell(r, &key_auth("par", n, t)),
                cell(r, &key_auth("cold", n, t)),
                cell(r, &key_auth("warm", n, t)),
                cell(r, &key_auth("cleanup", n, t)),
                ratio_cell(r, &key_auth("warm", n, t), &key_auth("seq", n, t)),
                ratio_cell(r, &key_auth("cold", n, t), &key_auth("par", n, t)),
            );
        }
    }
    let _ = writeln!(o);
    if let (Some(&lo), Some(&hi)) = (plan.peers.first(), plan.peers.last()) {
        if lo != hi {
            let _ = writeln!(
                o,
                "Flatness (auth at {hi} peers ÷ auth at {lo} peer(s), same RTT):\n"
            );
            let _ = writeln!(
                o,
                "| RTT | cold | warm | (a) sequential | (b) parallel |\n|---|---|---|---|---|"
            );
            for &t in &rtts {
                let _ = writeln!(
                    o,
                    "| {t} ms | {} | {} | {} | {} |",
                    ratio_cell(r, &key_auth("cold", hi, t), &key_auth("cold", lo, t)),
                    ratio_cell(r, &key_auth("warm", hi, t), &key_auth("warm", lo, t)),
                    ratio_cell(r, &key_auth("seq", hi, t), &key_auth("seq", lo, t)),
                    ratio_cell(r, &key_auth("par", hi, t), &key_auth("par", lo, t)),
                );
            }
            let _ = writeln!(o);
        }
    }

    // --- CPU ---
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(o, "### CPU: latency-bound or CPU-bound?\n");
    let _ = writeln!(
        o,
        "CPU seconds per run (medians). *client*: the measured process and the children it reaped (certherd or the shell, with their `ssh` clients — including the key exchange, which `ssh -M -f` does before it forks); *bed*: every process of the bed (each node's sshd with its connection and session processes, nginx, the ssh control masters; `/proc` before and after); *proxy*: the delay proxies' threads; *cores busy*: (client + bed + proxy) ÷ wall, out of {cores}; *other*: CPU the rest of the machine used meanwhile (this machine is shared).\n"
    );
    let _ = writeln!(o, "| run | peers | RTT | wall | client | bed | proxy | cores busy | other |\n|---|---|---|---|---|---|---|---|---|");
    let mut ns: Vec<usize> = vec![
        *plan.peers.first().unwrap_or(&1),
        *plan.peers.last().unwrap_or(&1),
    ];
    ns.dedup();
    let m = |v: &[f64]| {
        Series {
            samples: v.to_vec(),
            ..Default::default()
        }
        .median()
    };
    for &t in &rtts {
        for &n in &ns {
            for (what, label) in [
                ("par", "(b) parallel loop"),
                ("cold", "auth cold"),
                ("warm", "auth warm"),
            ] {
                let Some(s) = r.get(&key_auth(what, n, t)) else {
                    continue;
                };
                let (Some(wall), Some(cpu), Some(bed), Some(px), Some(busy)) = (
                    s.median(),
                    m(&s.cpu_s),
                    m(&s.bed_s),
                    m(&s.self_s),
                    m(&s.busy_s),
                ) else {
                    continue;
                };
                let ours = cpu + bed + px;
                let _ = writeln!(
                    o,
                    "| {label} | {n} | {t} ms | {} | {} | {} | {} | {:.2} | {} |",
                    fmt_s(wall),
                    fmt_s(cpu),
                    fmt_s(bed),
                    fmt_s(px),
                    if wall > 0.0 { ours / wall } else { 0.0 },
                    fmt_s((busy - ours).max(0.0)),
                );
            }
        }
    }
    let _ = writeln!(o);

    // --- deploy ---
    let _ = writeln!(o, "## deploy: a new certificate version to every peer\n");
    let _ = writeln!(
        o,
        "`certherd deploy --lineage {LINEAGE}` after node 1's live links were switched to the other of two versions, so every peer must install it (archive files, live links swapped by rename, `nginx -t`, reload; node 1 tests and reloads too; then a TLS handshake with SNI to every node confirms it serves the new leaf). \
Baseline: per peer, peer after peer, one `rsync -a` of `archive/{LINEAGE}/`, one `ssh` per live link (`rm -f` + `ln -s`), one `ssh nginx -t`, one `ssh nginx -s reload` (7 connections per peer; no TLS check). RTT 0 ms.\n"
    );
    let _ = writeln!(o, "| peers | deploy cold | deploy warm | rsync script | rsync ÷ cold | rsync ÷ warm |\n|---|---|---|---|---|---|");
    for &n in &plan.peers {
        let _ = writeln!(
            o,
            "| {n} | {} | {} | {} | {} | {} |",
            cell(r, &key_deploy("cold", n)),
            cell(r, &key_deploy("warm", n)),
            cell(r, &key_deploy("rsync", n)),
            ratio_cell(r, &key_deploy("rsync", n), &key_deploy("cold", n)),
            ratio_cell(r, &key_deploy("rsync", n), &key_deploy("warm", n)),
        );
    }
    let _ = writeln!(o);
    if plan.peers.iter().any(|&n| n > plan.rsync_full_max) {
        let _ = writeln!(
            o,
            "The rsync script runs at most twice above {} peers (it takes minutes there).\n",
            plan.rsync_full_max
        );
    }

    // --- renewal ---
    let _ = writeln!(
        o,
        "## renewal: certbot writes the lineage → every node serves it\n"
    );
    let _ = writeln!(
        o,
        "`certbot certonly --force-renewal` on node 1 with certherd's auth/cleanup hooks and `--deploy-hook 'certherd deploy'`; peers 2 and 3 (3 nodes). \
t = 0 is the newest mtime among node 1's `live/{LINEAGE}/*.pem` links and the archive files they name; a poller makes a fresh TLS handshake (SNI {DOMAIN}) with each node every 10 ms and records when it first serves the new leaf.\n"
    );
    let _ = writeln!(
        o,
        "| step | time after the lineage was written |\n|---|---|"
    );
    for (k, label) in [
        ("renew/hook_start", "certbot starts the deploy hook"),
        (
            "renew/hook_end",
            "`certherd deploy` exits (it has seen every node serve the new leaf)",
        ),
        (
            "renew/serving",
            "**all 3 nodes serve the new certificate** (poller)",
        ),
        ("renew/certbot_total", "(whole certbot run, for scale)"),
    ] {
        let _ = writeln!(o, "| {label} | {} |", cell(r, k));
    }
    let _ = writeln!(o);
    if let (Some(end), Some(serve)) = (r.median("renew/hook_end"), r.median("renew/serving")) {
        if end > serve {
            let _ = writeln!(
                o,
                "`certherd deploy` exits {} after the poller saw every node serve the new certificate: its served-certificate check (`deploy.rs`, `served()`) confirms each node with a second handshake 200 ms after the first one succeeded (against an nginx graceful-reload window in which an old worker may still accept).\n",
                fmt_s(end - serve)
            );
        }
    }

    // --- start-up, memory ---
    let _ = writeln!(o, "## start-up and memory\n");
    let _ = writeln!(o, "| what | figure |\n|---|---|");
    let _ = writeln!(
        o,
        "| `certherd --version`, spawn to exit | {} |",
        cell(r, "startup/certherd")
    );
    let _ = writeln!(
        o,
        "| `/bin/true`, spawn to exit (the floor) | {} |",
        cell(r, "startup/true")
    );
    let max_n = *plan.peers.last().unwrap_or(&1);
    for (what, key) in [
        ("auth cold", key_auth("cold", max_n, 0)),
        ("auth warm", key_auth("warm", max_n, 0)),
        ("deploy cold", key_deploy("cold", max_n)),
        ("deploy warm", key_deploy("warm", max_n)),
    ] {
        let _ = writeln!(
            o,
            "| peak RSS, {what} at {max_n} peers (`wait4` ru_maxrss, max of runs) | {} |",
            rss_cell(r, &key)
        );
    }
    let _ = writeln!(o);

    // --- anatomy ---
    let _ = writeln!(o, "## Where one connection's time goes\n");
    let _ = writeln!(
        o,
        "Plain OpenSSH to node 2 with the baseline key (`ssh host true`), RTT 0, {} repetitions each, spawn to exit:\n",
        plan.anatomy_reps
    );
    let _ = writeln!(o, "| what | time |\n|---|---|");
    for (k, label) in ANATOMY {
        let _ = writeln!(o, "| {label} | {} |", cell(r, &format!("anatomy/{k}")));
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "{}", findings(r));
    let _ = writeln!(o, "{}", proposals(r));

    // --- notes ---
    if !r.notes.is_empty() {
        let _ = writeln!(o, "## Notes\n");
        for n in &r.notes {
            let _ = writeln!(o, "- {n}");
        }
        let _ = writeln!(o);
    }
    let fails: Vec<(&String, &Series)> = r
        .series
        .iter()
        .filter(|(_, s)| !s.failures.is_empty())
        .collect();
    if !fails.is_empty() {
        let _ = writeln!(o, "## Failed runs\n");
        for (k, s) in fails {
            for f in &s.failures {
                let _ = writeln!(o, "- `{k}`: {}", f.replace('\n', " "));
            }
        }
        let _ = writeln!(o);
    }
    o
}

pub(crate) const ANATOMY: [(&str, &str); 15] = [
    ("new", "new connection, defaults (kex sntrup761x25519)"),
    ("new_curve25519", "new connection, `KexAlgorithms=curve25519-sha256`"),
    ("new_nodelay", "new connection, client socket with TCP_NODELAY from the first byte (`ProxyUseFdpass` helper)"),
    ("new_curve25519_nodelay", "new connection, curve25519 + TCP_NODELAY"),
    ("new_via_proxy_0ms", "new connection through the delay proxy set to 0 ms (proxy overhead)"),
    ("master", "`ssh -M -f -N` (master up and authenticated)"),
    ("mux_first", "first session over that master (`ssh -S sock host true`)"),
    ("mux_later", "a later session over the same master"),
    ("mux_check", "`ssh -S sock -O check`"),
    ("master_forced", "`ssh -M -f -N` with the forced-command key (what certherd starts)"),
    ("agent_first", "`certherd agent` session + `hello`, first session over a new master (forced command)"),
    ("master_session_agent", "`ssh -M -o ControlPersist=30 host certherd agent` + `hello`: master and agent session in one process"),
    ("agent_over_mux", "`certherd agent` session + `hello` over a warm master (forced command)"),
    ("agent_local", "`certherd agent` + `hello`, locally (no ssh)"),
    ("bash_local", "`bash -c true`, locally (sshd runs every command through the user's shell)"),
];

pub(crate) fn rss_cell(r: &Results, key: &str) -> String {
    match r.series.get(key).and_then(|s| s.rss_kib.iter().max()) {
        Some(kib) => format!("{:.1} MiB", *kib as f64 / 1024.0),
        None => "–".into(),
    }
}
