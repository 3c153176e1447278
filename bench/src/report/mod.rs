//! The report (`BENCHMARKS.md`): tables built from the results, prose from
//! `bench/report-template.md`.

mod prose;
mod scale;
mod targets;
mod template;

use std::time::{Duration, SystemTime};

use crate::environment::{loadavg, Environment};
use crate::measure::{key_auth, key_deploy, Results, Series};
use crate::plan::{args_text, Cli, Plan, DOMAIN, LINEAGE};
use template::Values;

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
    let loaded = overload_mark(s.overloaded());
    match (s.median(), s.min(), s.max()) {
        (Some(m), Some(lo), Some(hi)) if s.samples.len() > 1 => {
            format!(
                "{} ({}–{}){failed}{loaded}",
                fmt_s(m),
                fmt_bare(lo),
                fmt_bare(hi)
            )
        }
        (Some(m), _, _) => format!("{} (1 run){failed}{loaded}", fmt_s(m)),
        _ if !s.failures.is_empty() => "**FAILED**".into(),
        _ => "–".into(),
    }
}

/// The red mark of a figure taken while the load average exceeded the cores, or nothing.
pub(crate) fn overload_mark(peak: Option<f64>) -> String {
    match peak {
        Some(l) => format!(" 🔴 load {l:.1}"),
        None => String::new(),
    }
}

/// The higher overload of two series (a ratio is as unfair as its worse side).
fn overload_of(r: &Results, a: &str, b: &str) -> Option<f64> {
    let of = |k: &str| r.series.get(k).and_then(Series::overloaded);
    match (of(a), of(b)) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, y) => x.or(y),
    }
}

/// One row per series: runs, the load before its first run and after its last, the peak, and
/// whether it exceeded the cores (the figures of such a series carry the red mark).
pub(crate) fn load_rows(r: &Results) -> Vec<String> {
    let cores = crate::measure::cores() as f64;
    r.series
        .iter()
        .filter(|(_, s)| !s.load.is_empty())
        .map(|(k, s)| {
            let first = s.load.first().map_or(0.0, |l| l.0);
            let last = s.load.last().map_or(0.0, |l| l.1);
            let peak = s.peak_load().unwrap_or(0.0);
            let over = if peak > cores { "🔴 yes" } else { "no" };
            format!(
                "| `{k}` | {} | {first:.2} | {last:.2} | {peak:.2} | {over} |",
                s.load.len()
            )
        })
        .collect()
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
    let loaded = overload_mark(overload_of(r, num, den));
    match (per.median(), per.min(), per.max()) {
        (Some(m), Some(lo), Some(hi)) if per.samples.len() > 1 => {
            format!("{} ({lo:.2}–{hi:.2}){loaded}", fmt_x(m))
        }
        (Some(m), _, _) => format!("{}{loaded}", fmt_x(m)),
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

/// The report's prose, with `{{placeholders}}` for the figures (see [`template`]).
const TEMPLATE: &str = include_str!("../../report-template.md");

/// The rows of the anatomy table: result keys under `anatomy/`, as the template names them.
const ANATOMY: [&str; 15] = [
    "new",
    "new_curve25519",
    "new_nodelay",
    "new_curve25519_nodelay",
    "new_via_proxy_0ms",
    "master",
    "mux_first",
    "mux_later",
    "mux_check",
    "master_forced",
    "agent_first",
    "master_session_agent",
    "agent_over_mux",
    "agent_local",
    "bash_local",
];

/// The report: this run's figures and tables in `bench/report-template.md`.
pub(crate) fn render(
    plan: &Plan,
    env: &Environment,
    r: &Results,
    started: SystemTime,
    elapsed: Duration,
    cli: &Cli,
) -> Result<String, String> {
    let mut v = Values::default();
    let rtt = plan.rtt_ms.round() as u32;
    let max_n = *plan.peers.last().unwrap_or(&1);

    // --- machine and run ---
    v.flag("smoke", plan.smoke);
    v.flag("full", !plan.smoke);
    v.set(
        "date",
        humantime::format_rfc3339_seconds(started).to_string(),
    );
    v.set("cores", env.cores.to_string());
    v.set("cpu", env.cpu.as_str());
    v.set("mem", env.mem.as_str());
    v.set("os", env.os.as_str());
    v.set("kernel", env.kernel.as_str());
    v.set("load_start", env.load_start.as_str());
    let versions: Vec<String> = env
        .versions
        .iter()
        .map(|(k, ver)| format!("| {k} | {ver} |"))
        .collect();
    v.set("versions", versions.join("\n"));
    v.set("commit", env.commit.as_str());
    v.set("args", args_text(cli));
    v.set(
        "wall",
        format!("{:.0?}", Duration::from_secs(elapsed.as_secs())),
    );
    v.set("load_end", loadavg());
    v.set("reps", plan.reps.to_string());
    v.set("peers", format!("{:?}", plan.peers));
    v.set("rtt", rtt.to_string());
    v.set("nodes", (max_n + 1).to_string());
    v.set("lineage", LINEAGE);
    v.set("domain", DOMAIN);

    // --- targets ---
    let targets = targets::targets(plan, r);
    let rows: Vec<String> = targets
        .iter()
        .map(|t| format!("| {} | {} | {} |", t.name, t.figure, yes_no(t.met)))
        .collect();
    v.set("target_rows", rows.join("\n"));
    let missed: Vec<String> = targets
        .iter()
        .filter(|t| t.met == Some(false))
        .map(|t| format!("- **{}** — {}\n", t.name, t.why_not))
        .collect();
    v.block("missed", missed.join("\n"));
    let caveats: Vec<String> = targets
        .iter()
        .filter_map(|t| Some(format!("- **{}** — {}\n", t.name, t.caveat.as_deref()?)))
        .collect();
    v.block("caveats", caveats.join("\n"));

    // --- auth ---
    let rtts: Vec<u32> = if plan.rtt_ms > 0.0 {
        vec![0, rtt]
    } else {
        vec![0]
    };
    let mut auth = Vec::new();
    let mut warmed = Vec::new();
    for &t in &rtts {
        for &n in &plan.peers {
            auth.push(format!(
                "| {n} | {t} ms | {} | {} | {} | {} | {} | {} | {} |",
                cell(r, &key_auth("seq", n, t)),
                cell(r, &key_auth("par", n, t)),
                cell(r, &key_auth("cold", n, t)),
                cell(r, &key_auth("warm", n, t)),
                cell(r, &key_auth("cleanup", n, t)),
                ratio_cell(r, &key_auth("warm", n, t), &key_auth("seq", n, t)),
                ratio_cell(r, &key_auth("cold", n, t), &key_auth("par", n, t)),
            ));
            warmed.push(format!(
                "| {n} | {t} ms | {} | {} | {} | {} | {} | {} | {} |",
                cell(r, &key_auth("warmup", n, t)),
                cell(r, &key_auth("warmed", n, t)),
                cell(r, &key_auth("warmed2", n, t)),
                cell(r, &key_auth("par", n, t)),
                ratio_cell(r, &key_auth("warmed", n, t), &key_auth("par", n, t)),
                ratio_cell(r, &key_auth("warmed", n, t), &key_auth("warmed2", n, t)),
                ratio_cell(r, &key_auth("warmed", n, t), &key_auth("warm", n, t)),
            ));
        }
    }
    v.set("auth_rows", auth.join("\n"));
    v.set("warmed_rows", warmed.join("\n"));
    v.set("load_rows", load_rows(r).join("\n"));
    v.set("growth_rows", scale::growth_rows(plan, r, &rtts).join("\n"));
    v.block(
        "resource_rows",
        scale::resource_rows(plan, r, &rtts).join("\n"),
    );
    v.block("kex_rows", scale::kex_rows(r, &rtts).join("\n"));
    let (renew_rows, renew_n) = scale::renewal_rows(r);
    v.block("renew_warm_rows", renew_rows.join("\n"));
    v.set("renew_n", renew_n.unwrap_or(0).to_string());
    v.set("kex_n", max_n.min(10).to_string());
    v.set("seq_full_max", plan.seq_full_max.to_string());
    let t12 = scale::targets(plan, r, &rtts);
    v.set(
        "target12_rows",
        t12.iter()
            .map(|t| format!("| {} | {} | {} |", t.name, t.figure, yes_no(t.met)))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    v.block(
        "missed12",
        t12.iter()
            .filter(|t| t.met == Some(false))
            .map(|t| format!("- **{}** — {}\n", t.name, t.why_not))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    let (lo, hi) = (
        *plan.peers.first().unwrap_or(&1),
        *plan.peers.last().unwrap_or(&1),
    );
    v.set("lo", lo.to_string());
    v.set("hi", hi.to_string());
    let flatness: Vec<String> = if lo == hi {
        Vec::new()
    } else {
        rtts.iter()
            .map(|&t| {
                format!(
                    "| {t} ms | {} | {} | {} | {} |",
                    ratio_cell(r, &key_auth("cold", hi, t), &key_auth("cold", lo, t)),
                    ratio_cell(r, &key_auth("warm", hi, t), &key_auth("warm", lo, t)),
                    ratio_cell(r, &key_auth("seq", hi, t), &key_auth("seq", lo, t)),
                    ratio_cell(r, &key_auth("par", hi, t), &key_auth("par", lo, t)),
                )
            })
            .collect()
    };
    v.block("flatness", flatness.join("\n"));

    // --- CPU ---
    v.set("cpu_rows", cpu_rows(plan, r, &rtts).join("\n"));

    // --- deploy ---
    let deploy: Vec<String> = plan
        .peers
        .iter()
        .map(|&n| {
            format!(
                "| {n} | {} | {} | {} | {} | {} |",
                cell(r, &key_deploy("cold", n)),
                cell(r, &key_deploy("warm", n)),
                cell(r, &key_deploy("rsync", n)),
                ratio_cell(r, &key_deploy("rsync", n), &key_deploy("cold", n)),
                ratio_cell(r, &key_deploy("rsync", n), &key_deploy("warm", n)),
            )
        })
        .collect();
    v.set("deploy_rows", deploy.join("\n"));
    v.opt(
        "rsync_capped_above",
        plan.peers
            .iter()
            .any(|&n| n > plan.rsync_full_max && n <= plan.rsync_max)
            .then(|| plan.rsync_full_max.to_string()),
    );
    v.opt(
        "rsync_skipped_above",
        plan.peers
            .iter()
            .any(|&n| n > plan.rsync_max)
            .then(|| plan.rsync_max.to_string()),
    );

    // --- renewal, start-up, anatomy: one cell per result key ---
    for key in [
        "renew/hook_start",
        "renew/hook_end",
        "renew/serving",
        "renew/certbot_total",
        "startup/certherd",
        "startup/true",
    ] {
        v.set(key, cell(r, key));
    }
    for key in ANATOMY {
        let key = format!("anatomy/{key}");
        v.set(&key, cell(r, &key));
    }
    v.opt(
        "deploy_after_serving",
        match (r.median("renew/hook_end"), r.median("renew/serving")) {
            (Some(end), Some(serve)) if end > serve => Some(fmt_s(end - serve)),
            _ => None,
        },
    );
    v.set("max_n", max_n.to_string());
    v.set("rss_auth_cold", rss_cell(r, &key_auth("cold", max_n, 0)));
    v.set("rss_auth_warm", rss_cell(r, &key_auth("warm", max_n, 0)));
    v.set("rss_deploy_cold", rss_cell(r, &key_deploy("cold", max_n)));
    v.set("rss_deploy_warm", rss_cell(r, &key_deploy("warm", max_n)));
    v.set("anatomy_reps", plan.anatomy_reps.to_string());
    prose::figures(r, &mut v);

    // --- notes, failures ---
    let notes: Vec<String> = r.notes.iter().map(|n| format!("- {n}")).collect();
    v.block("notes", notes.join("\n"));
    let failed: Vec<String> = r
        .series
        .iter()
        .flat_map(|(k, s)| {
            s.failures
                .iter()
                .map(move |f| format!("- `{k}`: {}", f.replace('\n', " ")))
        })
        .collect();
    v.block("failed", failed.join("\n"));

    template::fill(TEMPLATE, &v)
}

/// CPU per run for the parallel loop and certherd cold/warm, at the smallest and largest N.
fn cpu_rows(plan: &Plan, r: &Results, rtts: &[u32]) -> Vec<String> {
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
    let mut rows = Vec::new();
    for &t in rtts {
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
                rows.push(format!(
                    "| {label} | {n} | {t} ms | {} | {} | {} | {} | {:.2} | {} |",
                    fmt_s(wall),
                    fmt_s(cpu),
                    fmt_s(bed),
                    fmt_s(px),
                    if wall > 0.0 { ours / wall } else { 0.0 },
                    fmt_s((busy - ours).max(0.0)),
                ));
            }
        }
    }
    rows
}

pub(crate) fn rss_cell(r: &Results, key: &str) -> String {
    match r.series.get(key).and_then(|s| s.rss_kib.iter().max()) {
        Some(kib) => format!("{:.1} MiB", *kib as f64 / 1024.0),
        None => "–".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// Every name the template uses is set, with and without figures, so a run never ends in
    /// a template error; what was not measured shows as a dash or is left out.
    #[test]
    fn renders_every_section_from_any_results() {
        let cli = Cli::parse_from(["certherd-bench"]);
        let plan = Plan {
            reps: 1,
            peers: vec![1, 3],
            rtt_ms: 20.0,
            rsync_full_max: 1,
            rsync_max: 3,
            seq_full_max: 3,
            anatomy_reps: 1,
            startup_reps: 1,
            renew_reps: 1,
            smoke: false,
            only: Vec::new(),
        };
        let env = Environment {
            cpu: "cpu".into(),
            cores: 2,
            mem: "1 GiB".into(),
            kernel: "k".into(),
            os: "os".into(),
            versions: vec![("certherd".into(), "certherd 0.1.0".into())],
            load_start: "0 0 0".into(),
            commit: "abc".into(),
        };
        let mut r = Results::default();
        let report = render(&plan, &env, &r, SystemTime::now(), Duration::ZERO, &cli).unwrap();
        assert!(report.contains("| 3 | 20 ms | – |"), "{report}");
        assert!(report.contains("above 1 peers"), "{report}");
        assert!(
            !report.contains("### Findings\n\n- **Key exchange"),
            "{report}"
        );
        assert!(!report.contains("{{"), "{report}");

        for (k, s) in [("anatomy/new", 0.2), ("anatomy/new_curve25519", 0.1)] {
            r.sample(k, s);
        }
        r.fail("auth/cold/n3/rtt0", "boom\nline".into());
        let report = render(&plan, &env, &r, SystemTime::now(), Duration::ZERO, &cli).unwrap();
        assert!(
            report.contains("- **Key exchange: 100 ms of 200 ms per connection.**"),
            "{report}"
        );
        assert!(report.contains("## Failed runs\n\n- `auth/cold/n3/rtt0`: boom line"));
        assert!(!report.contains("\n\n\n"), "{report}");
    }
}
