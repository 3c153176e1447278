//! Kills at named crash points (src/crashpoint.rs), not at guessed delays: a certherd built with
//! the `crashpoints` feature stops dead (SIGKILL to itself) at the point a test names, and writes
//! the point's name first, so each round knows where the install was when the kill landed.
//!
//! Every round installs a version whose files differ from what the node has (a fresh key and
//! certificate), kills at one point, asserts the node is in an allowed state — the old pair, the
//! new pair, or a state marked pending (`.certherd-pending`, naming the old links) — with every
//! archive file present complete, then that `sync` brings every node to a consistent new pair,
//! served, with no temp file or marker left, and that `status` said "pending" (exit 1) before and
//! exit 0 after.
//!
//! The long walks are cut into slices, each a test on its own bed, so they run side by side
//! (cargo runs a binary's tests in threads; scripts/run-tests.sh gives this binary more of them):
//! `every_crash_point_is_walked_once` checks that the slices together are every point exactly
//! once, 47 in all.
//!
//! Proves Guarantee 6 of docs/GUARANTEES.md (the list there names each test).

mod common;
mod security;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use common::*;
use security::split_brain::*;
use security::*;

/// The agent's points, in the order an install meets them: the four files staged and verified,
/// the pending marker, the staged files renamed in, the links, the test and reload.
const AGENT_POINTS: [&str; 14] = [
    "after-staged",
    "after-pending-marker",
    "after-archive-cert",
    "after-archive-chain",
    "after-archive-fullchain",
    "after-archive-privkey",
    "after-link-cert",
    "after-link-chain",
    "after-link-fullchain",
    "after-link-privkey",
    "before-test",
    "after-test",
    "after-reload",
    "after-pending-removed",
];

/// The agent's points when `sync` resolves a split brain (Guarantee 2), in order: the node's own
/// version kept aside, the primary's staged, the marker, the links moved to the kept copy, the
/// clashing names taken away, then the install's own points.
const SPLIT_BRAIN_POINTS: [&str; 22] = [
    "split-brain-after-keep",
    "after-staged",
    "after-pending-marker",
    "split-brain-after-links-kept",
    "split-brain-after-remove-privkey",
    "split-brain-after-remove-chain",
    "split-brain-after-remove-fullchain",
    "split-brain-after-remove-cert",
    "after-archive-cert",
    "after-archive-chain",
    "after-archive-fullchain",
    "after-archive-privkey",
    "after-link-cert",
    "after-link-chain",
    "after-link-fullchain",
    "after-link-privkey",
    "before-test",
    "after-test",
    "after-reload",
    "after-pending-removed",
    "rollback-after-link-cert",
    "rollback-before-marker-removed",
];

/// The agent's rollback points (the config test failed), in order.
const ROLLBACK_POINTS: [&str; 5] = [
    "rollback-after-link-cert",
    "rollback-after-link-chain",
    "rollback-after-link-fullchain",
    "rollback-after-link-privkey",
    "rollback-before-marker-removed",
];

/// The primary's points in `deploy` (its own test and reload run beside the peers' installs).
const PRIMARY_POINTS: [&str; 3] = [
    "primary-before-test",
    "primary-before-reload",
    "primary-after-installs",
];

/// Makes node `n`'s forced command the crash build's agent with `point` armed.
fn arm_agent(bed: &Bed, n: usize, point: &str, hits: &Path) -> String {
    force_command(
        bed,
        n,
        "crash",
        &format!(
            "export CERTHERD_CRASHPOINT={point} CERTHERD_CRASHPOINT_HIT={}\n{}",
            hits.display(),
            agent_command(bed, n)
        ),
    )
}

/// Asserts (with `ran`'s transcript) that the crash build stopped at `point` last.
fn stopped_at(ran: &Ran, hits: &Path, point: &str) {
    let last = last_hit(hits);
    ran.ensure(
        last.as_deref() == Some(point),
        format!("the crash build did not stop at {point} (last point hit: {last:?})"),
    );
}

/// The last point a crash build stopped at.
fn last_hit(hits: &Path) -> Option<String> {
    std::fs::read_to_string(hits)
        .ok()?
        .lines()
        .last()
        .map(str::to_owned)
}

/// Asserts node `n` is in one of the allowed states after a kill during the install of `new`
/// over `old`, and names it. Allowed: the old pair, the new pair, or pending (a marker naming the
/// old links, whatever the links say). In every state: no temp file, every archive file of
/// either version that exists equals the primary's byte for byte, and the old version is whole.
fn observe(bed: &Bed, n: usize, old: u32, new: u32, context: &str) -> String {
    let le = bed.letsencrypt_dir(n);
    let temps = temp_files(&le);
    assert!(temps.is_empty(), "{context}: node {n} temp files {temps:?}");
    for v in [old, new] {
        for kind in ["cert", "chain", "fullchain", "privkey"] {
            let rel = format!("archive/{LINEAGE}/{kind}{v}.pem");
            let path = le.join(&rel);
            if v == new && std::fs::symlink_metadata(&path).is_err() {
                continue;
            }
            let got = std::fs::read(&path)
                .unwrap_or_else(|e| panic!("{context}: node {n} {rel} unreadable: {e}"));
            let want = std::fs::read(bed.letsencrypt_dir(1).join(&rel)).unwrap();
            assert_eq!(
                got, want,
                "{context}: node {n} {rel} is not the primary's (truncated?)"
            );
        }
    }
    let name = |v: u32| {
        ["cert", "chain", "fullchain", "privkey"]
            .map(|k| format!("../../archive/{LINEAGE}/{k}{v}.pem"))
            .to_vec()
    };
    let links = live_links(bed, n, LINEAGE);
    let words: Vec<&str> = links
        .iter()
        .zip(name(old).iter().zip(name(new)))
        .map(|(l, (o, nw))| {
            if l == o {
                "old"
            } else if *l == nw {
                "new"
            } else {
                "OTHER"
            }
        })
        .collect();
    assert!(
        !words.contains(&"OTHER"),
        "{context}: node {n} links {links:?}"
    );
    let marker = le.join("live").join(LINEAGE).join(".certherd-pending");
    if let Ok(bytes) = std::fs::read(&marker) {
        let recorded: Vec<Option<String>> = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{context}: node {n} marker unreadable: {e}"));
        let recorded: Vec<String> = recorded
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        assert_eq!(
            recorded,
            name(old),
            "{context}: node {n}'s marker must name the old links to roll back to"
        );
        return format!("pending, links {}", words.join("/"));
    }
    if links == name(old) {
        let want = serial_of(bed, old);
        let served = settled_serial(bed, n, LINEAGE, &want);
        assert_eq!(served, want, "{context}: node {n} old pair");
        "old pair, serves old".into()
    } else if links == name(new) {
        let want = serial_of(bed, new);
        let served = settled_serial(bed, n, LINEAGE, &want);
        assert_eq!(served, want, "{context}: node {n} new pair");
        "new pair, serves new".into()
    } else {
        panic!("{context}: node {n} links {links:?} are mixed and no marker says pending")
    }
}

/// `certherd status --format json` from node 1: the run, and whether node `n`'s row says
/// (pending, drift).
fn status_of(bed: &Bed, n: usize) -> (Ran, bool, bool) {
    let (ran, report) = status_report(bed);
    let row = report.row(&format!("node{n}"), LINEAGE);
    let (pending, drift) = (row.pending, row.drift);
    (ran, pending, drift)
}

/// `sync` from node 1 repairs everything: every node consistent on `v` and serving it, no marker
/// anywhere, `status` exit 0.
fn sync_repairs(bed: &Bed, v: u32, context: &str) {
    let sync = bed.node(1).certherd(["sync"]).any_status().run();
    let code = sync.code();
    sync.ensure(
        code == Some(0),
        format!("{context}: sync exited {code:?}, expected 0"),
    );
    assert_all_consistent(bed, &[v, v, v], &format!("{context}, after sync"));
    // sync reloaded nodes: asked once nginx's overlap is over (see `settled_serial`), one wait
    // for all three. 20 s, not settled_serial's 5: the walks' slices run side by side, eight
    // beds on two cores, and a reload's new workers can take seconds to start there; the limit
    // only matters when the node never serves `v`, which the check after it then names. The
    // wait polls with the probe (no process started); the check is openssl's.
    let want = serial_of(bed, v);
    for n in 1..=3 {
        wait_until(Duration::from_secs(20), || {
            probe::probe_serial(bed, n, LINEAGE).as_deref() == Some(want.as_str())
        });
    }
    std::thread::sleep(RELOAD_OVERLAP);
    for n in 1..=3 {
        assert_eq!(
            served_serial(bed, n, LINEAGE),
            want,
            "{context}: node {n} after sync serves"
        );
        let markers = pending_markers(&bed.letsencrypt_dir(n));
        assert!(markers.is_empty(), "{context}: node {n} {markers:?}");
    }
    for n in 1..=3 {
        let staged = staged_files(&bed.letsencrypt_dir(n));
        assert!(
            staged.is_empty(),
            "{context}: node {n} staged files {staged:?}"
        );
    }
    let (status, pending, _) = status_of(bed, 2);
    status.ensure(
        status.code() == Some(0),
        format!("{context}: status after sync, expected exit 0"),
    );
    status.ensure(
        !pending,
        format!("{context}: node 2 still pending after sync"),
    );
}

/// How many tests each long walk is cut into: each slice runs on its own bed, beside the others.
const AGENT_SLICES: usize = 2;
const SPLIT_BRAIN_SLICES: usize = 3;

/// Slice `i` (0-based) of `of` nearly equal, consecutive slices of `points`: together the slices
/// are `points`, in order, each point once.
fn slice<'a>(points: &'a [&'a str], i: usize, of: usize) -> &'a [&'a str] {
    let size = points.len().div_ceil(of);
    let start = (i * size).min(points.len());
    &points[start..((i + 1) * size).min(points.len())]
}

/// The kill rounds a test makes its deploys or syncs meet: every point of every walk, walked by
/// exactly one test (a point left out here would be a crash point no test kills at).
#[test]
fn every_crash_point_is_walked_once() {
    let mut walked: Vec<&str> = Vec::new();
    for i in 0..AGENT_SLICES {
        walked.extend(slice(&AGENT_POINTS, i, AGENT_SLICES));
    }
    walked.extend(ROLLBACK_POINTS);
    walked.extend(BATCH_POINTS);
    for i in 0..SPLIT_BRAIN_SLICES {
        walked.extend(slice(&SPLIT_BRAIN_POINTS, i, SPLIT_BRAIN_SLICES));
    }
    walked.extend(PRIMARY_POINTS);
    let all: Vec<&str> = AGENT_POINTS
        .iter()
        .chain(&ROLLBACK_POINTS)
        .chain(&BATCH_POINTS)
        .chain(&SPLIT_BRAIN_POINTS)
        .chain(&PRIMARY_POINTS)
        .copied()
        .collect();
    eprintln!("crash points walked: {} of {}", walked.len(), all.len());
    assert_eq!(
        walked, all,
        "the slices must be every point, in order, once"
    );
    assert_eq!(
        all.len(),
        47,
        "14 install + 5 rollback + 3 batch + 22 split brain + 3 primary"
    );
}

/// Guarantee 6: node 2's agent killed at each of its install points, first half.
#[test]
fn agent_killed_at_every_crash_point_is_repaired_by_sync_1_of_2() {
    agent_walk(slice(&AGENT_POINTS, 0, AGENT_SLICES));
}

/// Guarantee 6: node 2's agent killed at each of its install points, second half.
#[test]
fn agent_killed_at_every_crash_point_is_repaired_by_sync_2_of_2() {
    agent_walk(slice(&AGENT_POINTS, 1, AGENT_SLICES));
}

/// Guarantee 6: node 2's agent killed at each of its rollback points (the config test failed).
#[test]
fn agent_killed_at_every_rollback_point_is_repaired_by_sync() {
    agent_walk(&ROLLBACK_POINTS);
}

/// One bed; node 2's agent killed at each of `points` (install or rollback points) in turn.
fn agent_walk(points: &[&str]) {
    let bed = tls_bed_with(3, &crashpoint_bin());
    let hits = bed.root().join("crash-hits");
    // The agent runs as its own account: it must be able to record where it stopped (it aborts
    // loudly when it cannot, which the test would read as "did not stop there").
    std::fs::write(&hits, "").unwrap();
    bed.chown_to_agent(&hits).unwrap();
    let nginx_test = bed
        .config(2)
        .get("reload.test")
        .unwrap()
        .expect("the README's [reload] has a test command");
    walk(&bed, points, |point, v| {
        let rollback = point.starts_with("rollback-");
        let original = arm_agent(&bed, 2, point, &hits);
        if rollback {
            bed.config(2)
                .set("reload.test", vec!["/bin/false"])
                .unwrap();
        }

        // Any status here: the forced command and the config test are put back before a
        // failed expectation can leave them armed for the next round.
        let deploy = bed
            .node(1)
            .certherd(["deploy", "--lineage", LINEAGE])
            .any_status()
            .run();

        restore_forced_command(&bed, 2, &original);
        if rollback {
            bed.config(2)
                .set("reload.test", nginx_test.clone())
                .unwrap();
        }
        stopped_at(&deploy, &hits, point);
        deploy.ensure(
            deploy.code() == Some(1),
            format!("{point}: exit {:?}, expected 1", deploy.code()),
        );
        deploy.ensure(
            deploy.stderr().contains("node2"),
            format!("{point}: stderr does not name node2"),
        );
        let state = observe(&bed, 2, v - 1, v, point);
        assert_consistent(&bed, 3, v, &format!("{point}: the others move on"));
        if state.starts_with("pending") {
            let (status, pending, drift) = status_of(&bed, 2);
            let code = status.code();
            status.ensure(
                code == Some(1),
                format!("{point}: status with a pending install: exit {code:?}, expected 1"),
            );
            status.ensure(pending, format!("{point}: node 2's row is not pending"));
            status.ensure(drift, format!("{point}: node 2's row shows no drift"));
        }
        sync_repairs(&bed, v, point);
        state
    });
}

/// The agent's points inside a batch commit (issue 19), in order: after the first lineage's links
/// moved, before the one config test, before the one reload.
const BATCH_POINTS: [&str; 3] = [
    "batch-after-first-switch",
    "batch-before-test",
    "batch-before-reload",
];

/// Guarantee 6 for batches: node 2's agent killed inside `sync`'s commit. The lineage is old,
/// new or pending (its marker naming the old links), the other nodes move on, and one more
/// `sync` repairs node 2.
#[test]
fn agent_killed_inside_a_batch_commit_is_repaired_by_sync() {
    let bed = tls_bed_with(3, &crashpoint_bin());
    let hits = bed.root().join("crash-hits");
    std::fs::write(&hits, "").unwrap();
    bed.chown_to_agent(&hits).unwrap();
    walk(&bed, &BATCH_POINTS, |point, v| {
        let original = arm_agent(&bed, 2, point, &hits);
        let sync = bed.node(1).certherd(["sync"]).any_status().run();
        restore_forced_command(&bed, 2, &original);
        stopped_at(&sync, &hits, point);
        sync.ensure(
            sync.code() == Some(1),
            format!("{point}: exit {:?}, expected 1", sync.code()),
        );
        sync.ensure(
            sync.stderr().contains("node2"),
            format!("{point}: stderr does not name node2"),
        );
        let state = observe(&bed, 2, v - 1, v, point);
        assert!(
            state.starts_with("pending"),
            "{point}: a kill inside the commit leaves the marker: {state}"
        );
        assert_consistent(&bed, 3, v, &format!("{point}: the others move on"));
        sync_repairs(&bed, v, point);
        state
    });
}

/// Guarantee 2 under the crash walk: node 2 renewed on its own (its own version N, another key)
/// while the primary did too. `deploy` refuses it as a split brain naming both leaf fingerprints
/// and changes nothing there; `sync` resolving it is killed at each of its points (and, with a
/// failing config test, at the rollback's). After every kill no name on node 2 pairs a
/// certificate with another key and node 2's own key is still on disk; one more `sync` brings
/// every node to the primary's version N, node 2's own kept whole aside, its certbot counting
/// from N like the primary's.
#[test]
fn agent_killed_while_resolving_a_split_brain_never_mismatches_a_pair_1_of_3() {
    split_brain_walk(slice(&SPLIT_BRAIN_POINTS, 0, SPLIT_BRAIN_SLICES));
}

/// [`agent_killed_while_resolving_a_split_brain_never_mismatches_a_pair_1_of_3`], the next slice.
#[test]
fn agent_killed_while_resolving_a_split_brain_never_mismatches_a_pair_2_of_3() {
    split_brain_walk(slice(&SPLIT_BRAIN_POINTS, 1, SPLIT_BRAIN_SLICES));
}

/// [`agent_killed_while_resolving_a_split_brain_never_mismatches_a_pair_1_of_3`], the last slice.
#[test]
fn agent_killed_while_resolving_a_split_brain_never_mismatches_a_pair_3_of_3() {
    split_brain_walk(slice(&SPLIT_BRAIN_POINTS, 2, SPLIT_BRAIN_SLICES));
}

/// One bed; `sync` resolving node 2's split brain killed at each of `points` in turn.
fn split_brain_walk(points: &[&str]) {
    let bed = tls_bed_with(3, &crashpoint_bin());
    let hits = bed.root().join("crash-hits");
    std::fs::write(&hits, "").unwrap();
    bed.chown_to_agent(&hits).unwrap();
    let nginx_test = bed
        .config(2)
        .get("reload.test")
        .unwrap()
        .expect("the README's [reload] has a test command");
    walk(&bed, points, |point, v| {
        let own_key = peer_own_version(&bed, 2, v);
        let own_serial = installed_serial(&bed, 2, LINEAGE);
        let fp = |n: usize| {
            let mut openssl = std::process::Command::new("openssl");
            openssl
                .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
                .arg(
                    bed.letsencrypt_dir(n)
                        .join(format!("archive/{LINEAGE}/cert{v}.pem")),
                );
            exec(openssl)
                .run()
                .stdout()
                .trim()
                .rsplit('=')
                .next()
                .unwrap()
                .replace(':', "")
                .to_ascii_lowercase()
        };
        let (primary_fp, own_fp) = (fp(1), fp(2));

        let deploy = bed
            .node(1)
            .certherd(["deploy", "--lineage", LINEAGE])
            .expect_status(1)
            .run();
        let said = deploy.both();
        for word in ["node2", "split brain", LINEAGE, &primary_fp, &own_fp] {
            deploy.ensure(
                said.contains(word),
                format!("{point}: deploy does not say {word:?}"),
            );
        }
        assert_eq!(
            served_serial(&bed, 2, LINEAGE),
            own_serial,
            "{point}: the refused deploy changed what node 2 serves"
        );
        assert_key_kept(&bed, 2, v, &own_key, &format!("{point}: after deploy"));
        assert_no_mismatched_pair(&bed, 2, &format!("{point}: after deploy"));

        let rollback = point.starts_with("rollback-");
        let original = arm_agent(&bed, 2, point, &hits);
        if rollback {
            bed.config(2)
                .set("reload.test", vec!["/bin/false"])
                .unwrap();
        }
        let sync = bed.node(1).certherd(["sync"]).any_status().run();
        restore_forced_command(&bed, 2, &original);
        if rollback {
            bed.config(2)
                .set("reload.test", nginx_test.clone())
                .unwrap();
        }
        stopped_at(&sync, &hits, point);
        sync.ensure(
            sync.code() == Some(1),
            format!("{point}: exit {:?}, expected 1", sync.code()),
        );
        let pairs = assert_no_mismatched_pair(&bed, 2, point);
        let kept = assert_key_kept(&bed, 2, v, &own_key, point);
        assert_consistent(&bed, 3, v, &format!("{point}: the others move on"));

        sync_repairs(&bed, v, point);
        assert_no_mismatched_pair(&bed, 2, &format!("{point}: after sync"));
        let kept_after = assert_key_kept(&bed, 2, v, &own_key, &format!("{point}: after sync"));
        assert!(
            kept_after.to_string_lossy().contains("/split-brain-"),
            "{point}: node 2's own key is not kept aside: {}",
            kept_after.display()
        );
        assert_eq!(
            certbot_max_version(&bed, 2),
            certbot_max_version(&bed, 1),
            "{point}: node 2's certbot would number its next version apart from the primary's"
        );
        format!(
            "{pairs} pairs match, own key at {}",
            kept.strip_prefix(bed.letsencrypt_dir(2)).unwrap().display()
        )
    });
}

/// Runs one round per point, each on a new version (files that differ from every node's), and
/// prints the table of states observed after each kill. A failing round does not hide the
/// rounds after it: the panic is caught, the nodes are put back on the primary's version by the
/// test itself (not by certherd), and the test fails at the end naming every failed point.
fn walk(bed: &Bed, points: &[&str], round: impl Fn(&str, u32) -> String) {
    let mut v = 1;
    let mut table = Vec::new();
    let mut failed = Vec::new();
    for point in points {
        v += 1;
        new_version(bed, v);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| round(point, v)));
        match result {
            Ok(state) => table.push(format!("{point:<32} {state}")),
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let why = why.lines().next().unwrap_or_default().to_owned();
                table.push(format!("{point:<32} FAILED: {why:.200}"));
                failed.push(*point);
                reset_nodes(bed, v);
            }
        }
    }
    eprintln!("crash points, state after the kill:\n{}", table.join("\n"));
    assert!(
        failed.is_empty(),
        "failed at {failed:?}:\n{}",
        table.join("\n")
    );
}

/// Puts every peer on the primary's version `v` by hand (copies, links, no marker, no temp file,
/// nginx reloaded on every node), so the next round starts clean after a failed one.
fn reset_nodes(bed: &Bed, v: u32) {
    bed.close_control_masters();
    for n in 2..=bed.nodes() {
        let le = bed.letsencrypt_dir(n);
        let archive = le.join("archive").join(LINEAGE);
        let live = le.join("live").join(LINEAGE);
        std::fs::create_dir_all(&archive).unwrap();
        std::fs::create_dir_all(&live).unwrap();
        for kind in ["cert", "chain", "fullchain", "privkey"] {
            let name = format!("{kind}{v}.pem");
            let from = bed
                .letsencrypt_dir(1)
                .join("archive")
                .join(LINEAGE)
                .join(&name);
            std::fs::copy(&from, archive.join(&name)).unwrap();
            let link = live.join(format!("{kind}.pem"));
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(format!("../../archive/{LINEAGE}/{name}"), &link).unwrap();
        }
        let _ = std::fs::remove_file(live.join(".certherd-pending"));
        for t in temp_files(&le) {
            let _ = std::fs::remove_file(t);
        }
    }
    for n in 1..=bed.nodes() {
        reload_nginx(bed, n);
    }
}

/// Whether an agent process of this bed is still running (one a killed primary left).
fn agents_running(bed: &Bed) -> bool {
    let root = bed.root().display().to_string();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .any(|c| c.contains(" agent --config ") && c.contains(&root))
}

/// Guarantee 6: the primary's `deploy` killed at each of its points; `sync` (not only `deploy`)
/// finishes the primary's own test and reload and catches the peers up.
#[test]
fn primary_killed_at_every_crash_point_is_repaired_by_sync() {
    let bed = tls_bed_with(3, &crashpoint_bin());
    let hits = bed.root().join("crash-hits");
    // The primary's certherd, started as root, runs as the letsencrypt dir's owner.
    std::fs::write(&hits, "").unwrap();
    bed.chown_to_agent(&hits).unwrap();
    walk(&bed, &PRIMARY_POINTS, |point, v| {
        let deploy = bed
            .node(1)
            .certherd(["deploy", "--lineage", LINEAGE])
            .env("CERTHERD_CRASHPOINT", point)
            .env("CERTHERD_CRASHPOINT_HIT", &hits)
            .any_status()
            .run();

        let signal = deploy.output.status.signal();
        deploy.ensure(
            signal == Some(9),
            format!("{point}: ended by {signal:?}, expected SIGKILL"),
        );
        stopped_at(&deploy, &hits, point);
        // The agents the dead primary started finish (or give up) on their own.
        assert!(
            wait_until(Duration::from_secs(30), || !agents_running(&bed)),
            "{point}: agents still running 30 s after the primary died"
        );
        // Killed before its reload, the primary still serves the old version: `sync` must see
        // that and reload it; killed after, it serves the new one.
        let reloaded = point == "primary-after-installs";
        let primary = if reloaded {
            "primary serves new"
        } else {
            "primary serves old"
        };
        let expected = serial_of(&bed, if reloaded { v } else { v - 1 });
        // Killed right after its reload, the primary's nginx may still be swapping its workers
        // (a graceful reload): asked once that is over. Killed before, nothing was reloaded, so
        // the old version must be what it serves, also after the same wait.
        assert_eq!(
            settled_serial(&bed, 1, LINEAGE, &expected),
            expected,
            "{point}: {primary}"
        );
        assert_consistent(&bed, 1, v, point);
        let peers: Vec<String> = (2..=3)
            .map(|n| format!("node{n}: {}", observe(&bed, n, v - 1, v, point)))
            .collect();
        sync_repairs(&bed, v, point);
        format!("{primary}; {}", peers.join("; "))
    });
}
