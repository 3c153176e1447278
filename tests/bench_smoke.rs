//! The benchmark runner works: `certherd-bench --smoke` (N = 3, 2 repetitions, 0 and 20 ms RTT)
//! on its own test bed writes a report with every table. It checks that the runner works, never
//! how fast anything is: the figures of a smoke run are not asserted.
//!
//! Proves no guarantee of docs/GUARANTEES.md (it checks the benchmark runner, not the product).

mod common;
use common::exec;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The bench is its own workspace member (`bench/`), so Cargo hands this test only `certherd`'s
/// path: build `certherd-bench` into the same target directory and profile (a no-op when it is
/// up to date) and run it from there. `--workspace` resolves features as `cargo test
/// --workspace` (scripts/test.sh) does, so after that build nothing is compiled again.
fn bench_binary() -> PathBuf {
    let certherd = Path::new(env!("CARGO_BIN_EXE_certherd"));
    let profile_dir = certherd.parent().expect("certherd has a directory");
    let target_dir = profile_dir
        .parent()
        .expect("the profile has a target directory");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--workspace", "--bin", "certherd-bench"])
        .arg("--target-dir")
        .arg(target_dir);
    if profile_dir.file_name() == Some("release".as_ref()) {
        build.arg("--release");
    }
    exec(build).run();
    profile_dir.join("certherd-bench")
}

#[test]
fn bench_smoke_writes_every_table() {
    let dir = std::env::temp_dir().join(format!("certherd-bench-smoke-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("BENCHMARKS.md");
    let json = dir.join("bench.json");
    let mut bench = Command::new(bench_binary());
    bench
        .arg("--smoke")
        .arg("--certherd")
        .arg(env!("CARGO_BIN_EXE_certherd"))
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .arg(&json);
    exec(bench).run();
    let report = std::fs::read_to_string(&out).expect("the report was written");

    for heading in [
        "## Targets (issue 5)",
        "## auth: one token to every peer",
        "## deploy: a new certificate version to every peer",
        "## renewal: certbot writes the lineage → every node serves it",
        "## start-up and memory",
        "## Where one connection's time goes",
        "## Targets (issue 12: warm-up, 100 peers)",
        "### auth after `certherd warm` (certbot's `--pre-hook`)",
        "### Growth from 3 to 3 peers",
        "### Memory and CPU of certherd and its ssh processes",
        "## Key exchange: what `[ssh] kex_algorithms` costs per peer",
        "### A real renewal at 3 peers, with and without `warm`",
    ] {
        assert!(
            report.contains(heading),
            "missing {heading:?} in:\n{report}"
        );
    }
    for row in [
        "| 3 | 0 ms | ",
        "| 3 | 20 ms | ",
        "| warm `auth` at 3 peers ≤ 0.1× the sequential ssh loop | ",
        "| cold `auth` at 3 peers ≤ 1.0× the naive parallel loop | ",
        "| `deploy` (cold) at 3 peers ≥ 10× faster than the rsync script | ",
        "| renewal written → all 3 nodes serve it ≤ 2 s (deploy hook path) | ",
        "| start-up (`certherd --version`) ≤ 10 ms | ",
        "| peak RSS ≤ 30 MiB at 3 peers | ",
        "| **all 3 nodes serve the new certificate** (poller) | ",
        "| new connection, defaults (kex sntrup761x25519) | ",
        "| first `auth` after `certherd warm` at 3 peers ≤ 0.1× the naive parallel loop | ",
        "| certherd's own peak RSS ≤ 30 MiB at 3 peers | ",
        "| `curve25519-sha256` | 3 | 20 ms | ",
        "| `sntrup761x25519-sha512@openssh.com` | 3 | 0 ms | ",
        "| with `--pre-hook 'certherd warm'` | ",
        "| `certherd renew` (warm-up concurrent with certbot) | ",
        "| auth cold, 20 ms | 3 | ",
        "| `warm` + auth, 0 ms | 3 | ",
        "| deploy cold, 0 ms | 3 | ",
    ] {
        let line = report
            .lines()
            .find(|l| l.starts_with(row))
            .unwrap_or_else(|| panic!("no row starting {row:?} in:\n{report}"));
        // Every measured cell has a figure, not a dash or a failure.
        assert!(
            !line.contains("FAILED") && !line.contains("| – |"),
            "row without a figure: {line}\n{report}"
        );
    }
    // The deploy row for N = 3 has all three variants and both ratios.
    let deploy_section = report
        .split("## deploy:")
        .nth(1)
        .and_then(|s| s.split("## renewal").next())
        .unwrap_or("");
    let deploy = deploy_section
        .lines()
        .find(|l| l.starts_with("| 3 | "))
        .unwrap_or_else(|| panic!("no deploy row for 3 peers in:\n{report}"));
    assert!(
        !deploy.contains("| – |") && !deploy.contains("FAILED") && deploy.matches('×').count() == 2,
        "deploy row incomplete: {deploy}"
    );
    assert!(
        !report.contains("## Failed runs"),
        "some runs failed:\n{report}"
    );
    // The raw samples are valid JSON with the keys the report is made of.
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).expect("valid JSON");
    for key in [
        "auth/seq/n3/rtt0",
        "auth/par/n3/rtt0",
        "auth/cold/n3/rtt0",
        "auth/warm/n3/rtt20",
        "deploy/rsync/n3",
        "renew/serving",
        "startup/certherd",
        "auth/warmup/n3/rtt20",
        "auth/warmed/n3/rtt0",
        "kex/curve25519/n3/rtt20",
        "renew3/warm/serving",
        "renew3/renew/serving",
        "sampled/auth_cold/n3/rtt0",
    ] {
        let samples = raw[key]["samples_s"]
            .as_array()
            .unwrap_or_else(|| panic!("no samples for {key}"));
        assert!(!samples.is_empty(), "no samples for {key}");
    }
    // The sampled runs saw certherd itself and its ssh processes.
    for key in ["sampled/auth_cold/n3/rtt0", "sampled/deploy_cold/n3"] {
        for field in ["own_peak_rss_kib", "ssh_rss_kib", "ssh_pss_end_kib"] {
            let v = raw[key][field][0].as_u64().unwrap_or(0);
            assert!(v > 0, "{key}: {field} is {v}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
