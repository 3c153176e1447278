//! The fault matrix (SECURITY.md): each case breaks one thing on a real bed — a full disk, a
//! read-only webroot, a missing nginx, a hung reload, a cut SSH connection, two primaries at once,
//! a planted symlink, a changed host key — and asserts the outcome written above it: the command
//! fails (or not) naming the node, nothing is lost, and every node ends on a consistent pair:
//! each row checks that promise on EVERY node through one shared assertion
//! (`assert_every_node_consistent` in tests/common), not only on the node it broke.
//!
//! Proves Guarantees 2, 3, 5, 6 and 7 of docs/GUARANTEES.md (the list there names each test).

mod common;
mod security;

use std::time::{Duration, Instant};

use common::*;
use security::*;

/// A peer's disk fills up during an install (a tmpfs over its letsencrypt dir with one page
/// left): deploy exits 1 naming node2 and "No space left on device"; node2's live links still
/// name version 1 and it still serves it; no temp file is left behind; the other nodes move to
/// version 2. Once there is room again, `sync` brings node2 to a consistent version 2.
#[test]
fn disk_full_on_a_peer_keeps_its_previous_pair() {
    let bed = tls_bed(3);
    let le = bed.letsencrypt_dir(2);
    let saved = bed.node_dir(2).join("letsencrypt.saved");
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(&le)
        .arg(&saved)
        .output()
        .unwrap();
    assert!(cp.status.success(), "{}", text(&cp));
    let _mount = Mount::new(&le, &["-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs"]);
    let cp = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", saved.display()))
        .arg(&le)
        .output()
        .unwrap();
    assert!(cp.status.success(), "{}", text(&cp));
    // Fill the tmpfs, then give one page back: the first new archive file fits, the next does not.
    let filler = le.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let page = [0u8; 4096];
        while f.write_all(&page).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len - (len % 4096) - 4096).unwrap();
    }
    let free = nix::sys::statvfs::statvfs(&le).unwrap();
    assert_eq!(
        free.blocks_available() * free.fragment_size(),
        4096,
        "exactly one page left"
    );
    new_version(&bed, 2);

    let out = bed
        .certherd(1, &["deploy", "--lineage", LINEAGE])
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("node2") && err.contains("No space left on device"),
        "{}",
        text(&out)
    );
    assert_eq!(
        install_column(&String::from_utf8_lossy(&out.stdout), "node2").as_deref(),
        Some("FAILED"),
        "{}",
        text(&out)
    );
    assert_all_consistent(&bed, &[2, 1, 2], "disk full");
    assert_eq!(served_serial(&bed, 2, LINEAGE), serial_of(&bed, 1));
    assert_eq!(
        temp_files(&le),
        Vec::<std::path::PathBuf>::new(),
        "temp files left on a full disk"
    );
    for n in [1, 3] {
        assert_eq!(
            served_serial(&bed, n, LINEAGE),
            serial_of(&bed, 2),
            "node {n}"
        );
    }

    std::fs::remove_file(&filler).unwrap();
    let out = bed.certherd(1, &["sync"]).output().unwrap();
    assert!(
        out.status.success(),
        "sync after freeing space: {}",
        text(&out)
    );
    assert_all_consistent(&bed, &[2, 2, 2], "after sync");
    assert_eq!(served_serial(&bed, 2, LINEAGE), serial_of(&bed, 2));
}

/// A peer's webroot is read-only (a read-only bind mount: root ignores permission bits): auth
/// exits 1 naming node2 and "Read-only file system"; nodes 1 and 3 hold the token; nothing on
/// node2 changed. cleanup then removes the token where it was and only warns about node2.
#[test]
fn read_only_webroot_fails_only_that_node() {
    let bed = tls_bed(3);
    let webroot = bed.webroot(2);
    let mount = Mount::new(&webroot, &["--bind", webroot.to_str().unwrap()]);
    mount.remount("remount,bind,ro");
    assert!(
        std::fs::write(webroot.join("probe"), "x").is_err(),
        "the bind mount is not read-only"
    );
    let before = snapshot(&bed);

    let out = auth(&bed, 1, "site.test", "rotok", "rotok.thumb");

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("node2") && err.contains("Read-only file system"),
        "{}",
        text(&out)
    );
    assert!(has_token(&bed, 1, "rotok", "rotok.thumb"));
    assert!(has_token(&bed, 3, "rotok", "rotok.thumb"));
    let after = snapshot(&bed);
    let node2 = |m: &std::collections::BTreeMap<std::path::PathBuf, String>| {
        m.iter()
            .filter(|(p, _)| p.starts_with(&webroot))
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(node2(&after), node2(&before), "node2's webroot changed");

    let out = cleanup(&bed, 1, "site.test", "rotok");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stderr(&out).contains("node2"), "{}", text(&out));
    assert!(token_files(&bed).is_empty(), "{:?}", token_files(&bed));
    assert_all_consistent(&bed, &[1, 1, 1], "read-only webroot");
}

/// Node 3's nginx binary is gone (its [reload] commands name a path that does not exist): the
/// config test cannot run, which counts as a failed test: node3 is TEST-FAIL, its links are put
/// back on version 1 exactly and it keeps serving version 1; nodes 1 and 2 move to version 2;
/// deploy exits 1 naming node3 and the missing program. With nginx back, `sync` finishes node3.
#[test]
fn missing_nginx_binary_rolls_the_node_back() {
    let bed = tls_bed(3);
    let path = bed.config_path(3);
    let good = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        good.replace("/usr/sbin/nginx", "/nonexistent/sbin/nginx"),
    )
    .unwrap();
    let links_before = live_links(&bed, 3, LINEAGE);
    new_version(&bed, 2);

    let out = bed
        .certherd(1, &["deploy", "--lineage", LINEAGE])
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.contains("node3") && err.contains("/nonexistent/sbin/nginx"),
        "{}",
        text(&out)
    );
    assert_eq!(
        install_column(&String::from_utf8_lossy(&out.stdout), "node3").as_deref(),
        Some("TEST-FAIL"),
        "{}",
        text(&out)
    );
    assert_eq!(
        live_links(&bed, 3, LINEAGE),
        links_before,
        "links restored exactly"
    );
    assert_all_consistent(&bed, &[2, 2, 1], "nginx missing");
    assert_eq!(served_serial(&bed, 3, LINEAGE), serial_of(&bed, 1));
    for n in [1, 2] {
        assert_eq!(
            served_serial(&bed, n, LINEAGE),
            serial_of(&bed, 2),
            "node {n}"
        );
    }

    std::fs::write(&path, good).unwrap();
    let out = bed.certherd(1, &["sync"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_all_consistent(&bed, &[2, 2, 2], "after sync");
    assert_eq!(served_serial(&bed, 3, LINEAGE), serial_of(&bed, 2));
}

/// Node 3's reload hangs (a shell that starts a background `sleep 600` and waits for it) with
/// `[reload] timeout = "2s"`: the agent kills it — the shell *and* its child — and reports;
/// deploy exits 1 within seconds, node3 is RELOAD-FAIL naming the timeout; node3 is on a
/// consistent version 2 on disk (its test passed) while nginx still serves version 1. Once the
/// reload works again, `sync` reloads node3 (the interrupted install is finished, not skipped).
#[test]
fn hung_reload_is_killed_with_its_children_and_reported() {
    let bed = tls_bed(3);
    let pids = PidFile(bed.node_dir(3).join("reload.pids"));
    // The reload runs as the agent's account: it may append to this file only.
    std::fs::write(&pids.0, "").unwrap();
    bed.chown_to_agent(&pids.0).unwrap();
    let good = std::fs::read_to_string(bed.config_path(3)).unwrap();
    set_reload_line(
        &bed,
        3,
        "reload",
        &format!(
            "reload = [\"sh\", \"-c\", \"echo $$ >> {p}; sleep 600 & echo $! >> {p}; wait\"]\ntimeout = \"2s\"",
            p = pids.0.display()
        ),
    );
    new_version(&bed, 2);

    let start = Instant::now();
    let out = bed
        .certherd(1, &["deploy", "--lineage", LINEAGE])
        .output()
        .unwrap();
    let took = start.elapsed();

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(took < Duration::from_secs(20), "deploy took {took:?}");
    let err = stderr(&out);
    assert!(
        err.contains("node3") && err.contains("killed after") && err.contains("timeout"),
        "{}",
        text(&out)
    );
    assert_eq!(
        install_column(&String::from_utf8_lossy(&out.stdout), "node3").as_deref(),
        Some("RELOAD-FAIL"),
        "{}",
        text(&out)
    );
    let started = pids.pids();
    assert_eq!(started.len(), 2, "the reload script ran once: {started:?}");
    let survivors: Vec<i32> = started.iter().copied().filter(|p| alive(*p)).collect();
    assert!(
        survivors.is_empty(),
        "reload processes survived the kill: {survivors:?}"
    );
    assert_all_consistent(&bed, &[2, 2, 2], "hung reload");
    assert_eq!(
        served_serial(&bed, 3, LINEAGE),
        serial_of(&bed, 1),
        "node3 was never reloaded"
    );

    std::fs::write(bed.config_path(3), good).unwrap();
    let out = bed.certherd(1, &["sync"]).output().unwrap();
    assert!(
        out.status.success(),
        "sync after fixing the reload: {}",
        text(&out)
    );
    assert_eq!(served_serial(&bed, 3, LINEAGE), serial_of(&bed, 2));
    assert_all_consistent(&bed, &[2, 2, 2], "after sync");
    assert!(pending_markers(&bed.letsencrypt_dir(3)).is_empty());
}

/// The SSH connection to node 2 is cut mid-install (its sshd and every process under it — the
/// agent and its slow config test — are stopped while the test runs): deploy exits 1 naming
/// node2 within its deadline; node 3 gets version 2. node2 is left with version 2's links in
/// place but never tested or reloaded; with sshd back, `sync` finishes the install there: links,
/// archive and served certificate all on version 2. Then the other side of a cut: the primary
/// killed (by its PID) mid-install; node2's agent finishes on its own, and `sync` finds node2
/// `unchanged` and brings the rest, the primary's own reload included, to version 3.
#[test]
fn ssh_cut_mid_install_is_finished_by_sync() {
    let bed = tls_bed(3);
    set_reload_line(&bed, 2, "test", &slow_test_line(&bed, 2, 3));
    new_version(&bed, 2);
    let v2_link = format!("../../archive/{LINEAGE}/cert2.pem");

    let start = Instant::now();
    let deploy = bed
        .certherd(1, &["deploy", "--lineage", LINEAGE])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let swapped = wait_until(Duration::from_secs(15), || {
        live_links(&bed, 2, LINEAGE)[0] == v2_link
    });
    assert!(swapped, "node2's install never reached the link swap");
    bed.stop_sshd(2);
    let out = deploy.wait_with_output().unwrap();
    let took = start.elapsed();

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(took < Duration::from_secs(30), "deploy took {took:?}");
    assert!(stderr(&out).contains("node2"), "{}", text(&out));
    assert_eq!(served_serial(&bed, 3, LINEAGE), serial_of(&bed, 2));
    assert_eq!(
        served_serial(&bed, 2, LINEAGE),
        serial_of(&bed, 1),
        "node2 not reloaded yet"
    );

    bed.start_sshd(2).unwrap();
    let out = bed.certherd(1, &["sync"]).output().unwrap();
    assert!(out.status.success(), "sync after the cut: {}", text(&out));
    assert_all_consistent(&bed, &[2, 2, 2], "after sync");
    assert_eq!(served_serial(&bed, 2, LINEAGE), serial_of(&bed, 2));
    assert!(temp_files(&bed.letsencrypt_dir(2)).is_empty());

    // The primary dies instead: the agent does not need it to finish what it started.
    new_version(&bed, 3);
    let v3_link = format!("../../archive/{LINEAGE}/cert3.pem");
    let mut deploy = bed
        .certherd(1, &["deploy", "--lineage", LINEAGE])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let swapped = wait_until(Duration::from_secs(15), || {
        live_links(&bed, 2, LINEAGE)[0] == v3_link
    });
    deploy.kill().unwrap();
    deploy.wait().unwrap();
    assert!(swapped, "node2's install never reached the link swap");
    let served = wait_until(Duration::from_secs(15), || {
        served_serial(&bed, 2, LINEAGE) == serial_of(&bed, 3)
    });
    assert!(
        served,
        "node2's agent did not finish after the primary died"
    );
    // `sync` repairs the rest, the primary's own reload included (it reloads the primary when
    // the primary does not serve the current version).
    let out = bed.certherd(1, &["sync"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        install_column(&String::from_utf8_lossy(&out.stdout), "node2").as_deref(),
        Some("unchanged"),
        "{}",
        text(&out)
    );
    assert_all_consistent(&bed, &[3, 3, 3], "after the primary was killed");
    for n in 1..=3 {
        assert_eq!(served_serial(&bed, n, LINEAGE), serial_of(&bed, 3));
    }
}

/// Two primaries (two configs, two sets of SSH connections) deploy the same version at once
/// while each peer's config test takes a second: the per-lineage lock on each peer serialises the
/// two installs, so for each peer exactly one deploy reports `ok` and the other `unchanged`; both
/// exit 0 and every node ends on version 2.
#[test]
fn two_primaries_deploying_at_once_serialise_on_each_peer() {
    let bed = tls_bed(3);
    for n in 2..=3 {
        set_reload_line(&bed, n, "test", &slow_test_line(&bed, n, 1));
    }
    let second = bed.root().join("primary-b.toml");
    let text_b = std::fs::read_to_string(bed.config_path(1))
        .unwrap()
        .replace("name = \"node1\"", "name = \"node1b\"")
        .replace(
            &bed.root().join("ssh/cm").display().to_string(),
            &bed.root().join("ssh/cm-b").display().to_string(),
        )
        // The bed closes only its own shared connections; B's must not outlive the test.
        .replace(
            "connect_timeout = \"5s\"\n",
            "connect_timeout = \"5s\"\npersist = \"1s\"\n",
        );
    std::fs::write(&second, text_b).unwrap();
    new_version(&bed, 2);

    let spawn = |config: &std::path::Path| {
        std::process::Command::new(bed.certherd_bin())
            .arg("--config")
            .arg(config)
            .args(["deploy", "--lineage", LINEAGE])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let a = spawn(&bed.config_path(1));
    let b = spawn(&second);
    let a = a.wait_with_output().unwrap();
    let b = b.wait_with_output().unwrap();

    assert!(a.status.success(), "primary A: {}", text(&a));
    assert!(b.status.success(), "primary B: {}", text(&b));
    for node in ["node2", "node3"] {
        let mut columns = vec![
            install_column(&String::from_utf8_lossy(&a.stdout), node).unwrap_or_default(),
            install_column(&String::from_utf8_lossy(&b.stdout), node).unwrap_or_default(),
        ];
        columns.sort();
        assert_eq!(
            columns,
            ["ok", "unchanged"],
            "{node}:\nA {}\nB {}",
            text(&a),
            text(&b)
        );
    }
    assert_all_consistent(&bed, &[2, 2, 2], "after two deploys");
    for n in 1..=3 {
        assert_eq!(
            served_serial(&bed, n, LINEAGE),
            serial_of(&bed, 2),
            "node {n}"
        );
        assert!(temp_files(&bed.letsencrypt_dir(n)).is_empty());
    }
}

/// Someone planted symlinks in the token directories: node2's `acme-challenge` points at /etc,
/// node3's `.well-known` at a decoy directory holding a file named like the token. auth exits 1
/// naming both nodes ("symlink"); nothing new appears anywhere under /etc (no entry in /etc
/// itself, no file named after the token or certherd's temp marker at any depth) or the decoy
/// (its whole tree, contents and modes, unchanged); cleanup removes nothing through either link.
/// Node 1 is unaffected, and every node keeps its consistent pair.
#[test]
fn planted_symlink_in_the_token_directory_is_refused() {
    let bed = tls_bed(3);
    let token = format!("certherdfault{}", std::process::id());
    let validation = format!("{token}.thumb");
    let acme2 = bed.webroot(2).join(".well-known/acme-challenge");
    std::fs::remove_dir(&acme2).unwrap();
    std::os::unix::fs::symlink("/etc", &acme2).unwrap();
    let decoy = bed.root().join("decoy");
    std::fs::create_dir_all(decoy.join("acme-challenge")).unwrap();
    std::fs::write(decoy.join("acme-challenge").join(&token), "precious").unwrap();
    let wk3 = bed.webroot(3).join(".well-known");
    std::fs::remove_dir_all(&wk3).unwrap();
    std::os::unix::fs::symlink(&decoy, &wk3).unwrap();
    let etc_before = dir_entries(std::path::Path::new("/etc"));
    let decoy_before = tree(&decoy);

    let out = auth(&bed, 1, "site.test", &token, &validation);

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    for node in ["node2", "node3"] {
        assert!(
            err.lines()
                .any(|l| l.contains(node) && l.contains("symlink")),
            "{node} not refused: {}",
            text(&out)
        );
    }
    assert_nothing_new_in_etc(&etc_before, &token);
    assert_eq!(tree(&decoy), decoy_before, "the decoy changed");
    assert!(has_token(&bed, 1, &token, &validation));

    let out = cleanup(&bed, 1, "site.test", &token);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(stderr(&out).contains("node3"), "{}", text(&out));
    assert_eq!(
        tree(&decoy),
        decoy_before,
        "cleanup changed the decoy through a planted symlink"
    );
    assert_nothing_new_in_etc(&etc_before, &token);
    assert!(std::fs::symlink_metadata(&acme2).unwrap().is_symlink());
    assert!(!has_token(&bed, 1, &token, &validation));
    assert_all_consistent(&bed, &[1, 1, 1], "planted symlink");
}

/// The names directly in `dir`.
fn dir_entries(dir: &std::path::Path) -> std::collections::BTreeSet<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect()
}

/// Every path under `dir` with its type, mode, content or link target.
fn tree(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let what = if meta.is_symlink() {
                format!("link {:?}", std::fs::read_link(&p).unwrap())
            } else if meta.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else {
                format!("file {:?}", std::fs::read(&p).unwrap())
            };
            out.push((p, format!("{:o} {what}", meta.permissions().mode())));
        }
    }
    out.sort();
    out
}

/// /etc has no new entry, and nowhere under it is a file named after the token or a certherd
/// temp file (a write through the link would leave one of those).
fn assert_nothing_new_in_etc(before: &std::collections::BTreeSet<std::ffi::OsString>, token: &str) {
    let etc = std::path::Path::new("/etc");
    let now = dir_entries(etc);
    let new: Vec<_> = now.difference(before).collect();
    assert!(new.is_empty(), "new entries in /etc: {new:?}");
    let mut stack = vec![etc.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            assert!(
                !name.contains(token) && !name.contains("certherd-tmp"),
                "written under /etc: {}",
                e.path().display()
            );
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
}

/// Node 3's host key changed (a new key, sshd restarted: what a machine-in-the-middle looks
/// like): deploy refuses it before anything is sent — exit 1, node3 named with "host key" — and
/// not a byte of node 3's letsencrypt dir changes; node 2 still gets version 2.
#[test]
fn changed_host_key_is_refused_before_the_key_travels() {
    let bed = tls_bed(3);
    bed.stop_sshd(3);
    let host_key = bed.node_dir(3).join("sshd/ssh_host_ed25519_key");
    std::fs::remove_file(&host_key).unwrap();
    std::fs::remove_file(host_key.with_extension("pub")).unwrap();
    let out = std::process::Command::new("/usr/bin/ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&host_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    bed.start_sshd(3).unwrap();
    bed.close_control_masters();
    let le3 = bed.letsencrypt_dir(3);
    let before: Vec<_> = snapshot(&bed)
        .into_iter()
        .filter(|(p, _)| p.starts_with(&le3))
        .collect();
    new_version(&bed, 2);

    let out = bed
        .certherd(1, &["deploy", "--lineage", LINEAGE])
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let err = stderr(&out);
    assert!(
        err.lines()
            .any(|l| l.contains("node3") && l.to_lowercase().contains("host key")),
        "{}",
        text(&out)
    );
    let after: Vec<_> = snapshot(&bed)
        .into_iter()
        .filter(|(p, _)| p.starts_with(&le3))
        .collect();
    assert_eq!(after, before, "node3's letsencrypt dir changed");
    assert_all_consistent(&bed, &[2, 2, 1], "changed host key");
    assert_eq!(served_serial(&bed, 2, LINEAGE), serial_of(&bed, 2));
    assert_eq!(served_serial(&bed, 3, LINEAGE), serial_of(&bed, 1));
}
