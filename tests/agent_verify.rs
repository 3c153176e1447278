//! Issue 9, "a peer runs nothing it is sent": attacks by whoever holds the primary's restricted
//! key, sent as raw requests through each peer's real sshd and forced command. Standby is the
//! peer's own decision; a standby rebuilds certbot's renewal config from an allow-list; `install`
//! verifies the pair before writing; a refused or failed request leaves nothing behind; the
//! letsencrypt dir is never walked through a planted symlink.

mod common;
mod security;

use std::os::unix::fs::PermissionsExt;

use common::*;
use security::*;
use serde_json::{json, Value};

const ACCOUNT: &str = "967c71e7cc769155b4da8367ac79b436";

/// The hostile renewal config of the issue: every hook certbot would run as root, paths into
/// /etc/cron.d and /root, and the primary's own paths.
fn hostile_conf(server: &str) -> String {
    format!(
        "version = 2.1.0\narchive_dir = /etc/cron.d\ncert = /root/.bashrc\n\
         privkey = /etc/letsencrypt/live/{LINEAGE}/privkey.pem\n\n[renewalparams]\n\
         account = {ACCOUNT}\nserver = {server}\nauthenticator = manual\npref_challs = http-01,\n\
         pre_hook = touch /tmp/certherd-pwned-pre\npost_hook = touch /tmp/certherd-pwned-post\n\
         renew_hook = touch /tmp/certherd-pwned-renew\ndeploy_hook = id\n\
         manual_auth_hook = touch /tmp/certherd-pwned-auth\nmanual_cleanup_hook = id\n\
         config_dir = /etc/cron.d\nwork_dir = /root\nkey_type = ecdsa\n"
    )
}

fn put_renewal(lineage: &str, server: &str) -> Value {
    json!({
        "op": "put_renewal",
        "lineage": lineage,
        "bundle": {
            "conf": hostile_conf(server),
            "primary_root": "/etc/letsencrypt",
            "primary_config": "/etc/certherd/certherd.toml",
            "account_dir": format!("accounts/acme.example/dir/{ACCOUNT}"),
            "account_files": {
                "meta.json": "{}",
                "private_key.json": "{\"kty\":\"RSA\"}",
                "regr.json": "{}",
            },
        },
    })
}

fn make_standby(bed: &Bed, n: usize) {
    let name = format!("name = \"node{n}\"\n");
    edit_config(
        bed,
        n,
        &name,
        &format!("{name}standby = true\nacme_servers = [\"https://acme.example/dir\"]\n"),
    );
}

#[test]
fn put_renewal_is_refused_by_a_non_standby_and_rebuilt_by_a_standby() {
    let bed = bed(3, false);
    make_standby(&bed, 3);
    let before = snapshot(&bed);

    // Node 2's own config does not make it a standby: refused, not a byte written.
    let answers = agent_session(&bed, 2, &[put_renewal(LINEAGE, "https://acme.example/dir")]);
    assert_eq!(answers[0]["kind"], "not_standby", "{}", answers[0]);
    assert!(answers[0]["message"]
        .as_str()
        .unwrap()
        .contains("standby = true"));

    // A 251-character lineage, even on a standby: refused before the account is written.
    let long = format!(
        "{}.test",
        [
            "a".repeat(61),
            "a".repeat(61),
            "a".repeat(61),
            "a".repeat(60)
        ]
        .join(".")
    );
    assert_eq!(long.len(), 251);
    let answers = agent_session(&bed, 3, &[put_renewal(&long, "https://acme.example/dir")]);
    assert_eq!(answers[0]["kind"], "invalid", "{}", answers[0]);
    assert!(answers[0]["message"]
        .as_str()
        .unwrap()
        .contains("file name"));
    assert_eq!(
        snapshot(&bed),
        before,
        "a refused put_renewal changed files"
    );

    // Node 3 is a standby by its own config: written, without a hook or a foreign path.
    let answers = agent_session(&bed, 3, &[put_renewal(LINEAGE, "https://acme.example/dir")]);
    assert_eq!(answers[0]["result"], "done", "{}", answers[0]);
    let dropped: Vec<&str> = answers[0]["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for key in [
        "pre_hook",
        "post_hook",
        "renew_hook",
        "deploy_hook",
        "manual_auth_hook",
        "manual_cleanup_hook",
        "archive_dir",
        "cert",
        "config_dir",
        "work_dir",
    ] {
        assert!(dropped.contains(&key), "{key} not reported: {dropped:?}");
    }
    let le = bed.letsencrypt_dir(3);
    let conf = std::fs::read_to_string(le.join(format!("renewal/{LINEAGE}.conf"))).unwrap();
    assert!(!conf.contains("pwned") && !conf.contains("cron") && !conf.contains("/root"));
    assert!(
        !conf.contains("= id") && !conf.contains("/etc/letsencrypt"),
        "{conf}"
    );
    let own_hook = format!(
        "= {} --config {} ",
        std::fs::canonicalize(bed.certherd_bin()).unwrap().display(),
        bed.config_path(3).display()
    );
    let hooks: Vec<&str> = conf
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains("hook"))
        .collect();
    assert_eq!(hooks.len(), 3, "{conf}");
    assert!(hooks.iter().all(|h| h.contains(&own_hook)), "{conf}");
    for line in conf.lines().filter(|l| {
        !l.starts_with('#') && !l.contains("hook") && !l.starts_with("server") && l.contains('/')
    }) {
        assert!(line.contains(&format!("= {}/", le.display())), "{line}");
    }
    let key = le.join(format!(
        "accounts/acme.example/dir/{ACCOUNT}/private_key.json"
    ));
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o400
    );

    // A server the standby does not allow is dropped and named.
    let answers = agent_session(&bed, 3, &[put_renewal(LINEAGE, "https://evil.example/dir")]);
    assert!(answers[0]["dropped"]
        .as_array()
        .unwrap()
        .contains(&json!("server")));
    let conf = std::fs::read_to_string(le.join(format!("renewal/{LINEAGE}.conf"))).unwrap();
    assert!(!conf.contains("evil"), "{conf}");
}

/// Planted symlinks at `renewal` and `accounts` on a standby are refused, naming the path.
#[test]
fn put_renewal_refuses_planted_symlinks() {
    let bed = bed(2, false);
    make_standby(&bed, 2);
    let le = bed.letsencrypt_dir(2);
    for planted in ["renewal", "accounts"] {
        let decoy = bed.node_dir(2).join(format!("decoy-{planted}"));
        std::fs::create_dir_all(&decoy).unwrap();
        let _ = std::fs::remove_dir_all(le.join(planted));
        std::os::unix::fs::symlink(&decoy, le.join(planted)).unwrap();
        let answers = agent_session(&bed, 2, &[put_renewal(LINEAGE, "https://acme.example/dir")]);
        let message = answers[0]["message"].as_str().unwrap_or_default();
        assert_eq!(answers[0]["result"], "error", "{planted}: {}", answers[0]);
        assert!(
            message.contains(planted) && message.contains("symlink"),
            "{planted}: {message}"
        );
        assert_eq!(
            std::fs::read_dir(&decoy).unwrap().count(),
            0,
            "{planted}: written through the planted link"
        );
        std::fs::remove_file(le.join(planted)).unwrap();
    }
}

fn install(version: u32, files: Value) -> Value {
    json!({"op": "install", "lineage": LINEAGE, "version": version, "files": files})
}

/// `install` of a mismatched pair, of non-PEM files, of an expired leaf and of cert ≠ first of
/// fullchain: refused as `unverified`, node 2's links and archive byte-for-byte unchanged, even
/// with an empty `[reload] test` (nothing would have caught it after the write).
#[test]
fn install_refuses_unverified_pairs_and_changes_nothing() {
    let bed = tls_bed(2);
    set_reload_line(&bed, 2, "test", "test = []");
    new_version(&bed, 2);
    let v1 = version_files(&bed, 1);
    let v2 = version_files(&bed, 2);
    let (expired_cert, expired_key) = expired_pair(&bed);
    let mut mismatched = v2.clone();
    mismatched["privkey"] = v1["privkey"].clone();
    let mut not_pem = v2.clone();
    for k in ["cert", "chain", "fullchain", "privkey"] {
        not_pem[k] = json!("#!/bin/sh\nid\n");
    }
    let mut key_as_cert = v2.clone();
    key_as_cert["cert"] = v2["privkey"].clone();
    let mut other_fullchain = v2.clone();
    other_fullchain["fullchain"] = v1["fullchain"].clone();
    let expired = json!({
        "cert": expired_cert,
        "chain": expired_cert,
        "fullchain": format!("{expired_cert}{expired_cert}"),
        "privkey": expired_key,
    });
    let cases = [
        ("mismatched key", mismatched, "does not match"),
        ("not PEM", not_pem, "no PEM section"),
        ("a key as the certificate", key_as_cert, "cert"),
        ("cert not first in fullchain", other_fullchain, "fullchain"),
        ("expired leaf", expired, "expired"),
    ];
    let before = snapshot(&bed);
    for (name, files, expect) in cases {
        for version in [2, 1] {
            let answers = agent_session(&bed, 2, &[install(version, files.clone())]);
            assert_eq!(
                answers[0]["kind"], "unverified",
                "{name} v{version}: {}",
                answers[0]
            );
            let message = answers[0]["message"].as_str().unwrap();
            assert!(message.contains(expect), "{name}: {message}");
            assert!(
                !message.contains("PRIVATE KEY"),
                "{name}: key material in {message}"
            );
        }
        assert_eq!(
            snapshot(&bed),
            before,
            "{name}: the refused install changed files"
        );
    }
    assert_eq!(served_serial(&bed, 2, LINEAGE), serial_of(&bed, 1));
    // The honest version still installs.
    let answers = agent_session(&bed, 2, &[install(2, v2)]);
    assert_eq!(answers[0]["result"], "installed", "{}", answers[0]);
}

/// The 18 MB case: many installs whose config test fails leave nothing they created
/// (archive files of the version, directories); the node stays on version 1.
#[test]
fn failed_installs_leave_nothing_behind() {
    let bed = tls_bed(2);
    set_reload_line(&bed, 2, "test", "test = [\"false\"]");
    let before = snapshot(&bed);
    let le2 = bed.letsencrypt_dir(2);
    for v in 2..=6 {
        new_version(&bed, v);
        let answers = agent_session(&bed, 2, &[install(v, version_files(&bed, v))]);
        assert_eq!(answers[0]["kind"], "test_failed", "{}", answers[0]);
    }
    let after = snapshot(&bed);
    let node2 = |m: &std::collections::BTreeMap<std::path::PathBuf, String>| {
        m.iter()
            .filter(|(p, _)| p.starts_with(&le2))
            .map(|(p, v)| (p.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        node2(&after),
        node2(&before),
        "a failed install left files on node 2"
    );
    assert_consistent(&bed, 2, 1, "after the failed installs");
}

/// A key file left 0644 with the same content is 0600 after the next install (a no-op one), and
/// a planted symlink at live/<lineage> or at the lock file is refused, naming the path.
#[test]
fn keys_are_0600_and_planted_symlinks_are_refused() {
    let bed = tls_bed(2);
    let le2 = bed.letsencrypt_dir(2);
    let key = le2.join(format!("archive/{LINEAGE}/privkey1.pem"));
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let answers = agent_session(&bed, 2, &[install(1, version_files(&bed, 1))]);
    assert_eq!(answers[0]["result"], "installed", "{}", answers[0]);
    assert_eq!(answers[0]["changed"], false);
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode, 0o600,
        "a 0644 key with the same content stayed {mode:o}"
    );

    new_version(&bed, 2);
    let decoy = bed.node_dir(2).join("decoy-live");
    std::fs::create_dir_all(&decoy).unwrap();
    let live = le2.join(format!("live/{LINEAGE}"));
    std::fs::rename(&live, bed.node_dir(2).join("live-saved")).unwrap();
    std::os::unix::fs::symlink(&decoy, &live).unwrap();
    let answers = agent_session(&bed, 2, &[install(2, version_files(&bed, 2))]);
    let message = answers[0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("live/{LINEAGE}")) && message.contains("symlink"),
        "{}",
        answers[0]
    );
    assert_eq!(
        std::fs::read_dir(&decoy).unwrap().count(),
        0,
        "written through live/"
    );
    std::fs::remove_file(&live).unwrap();
    std::fs::rename(bed.node_dir(2).join("live-saved"), &live).unwrap();

    let lock = le2.join(format!("archive/{LINEAGE}/.certherd.lock"));
    let _ = std::fs::remove_file(&lock);
    let target = decoy.join("lock-target");
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let answers = agent_session(&bed, 2, &[install(2, version_files(&bed, 2))]);
    let message = answers[0]["message"].as_str().unwrap_or_default();
    assert!(message.contains(".certherd.lock"), "{}", answers[0]);
    assert!(!target.exists(), "the planted lock link was followed");
    std::fs::remove_file(&lock).unwrap();
    assert_consistent(&bed, 2, 1, "after the refusals");
}

/// `deploy` names a standby mismatch: node 2 marked standby here, not by its own config.
#[test]
fn deploy_names_a_standby_mismatch() {
    let bed = tls_bed(2);
    edit_config(
        &bed,
        1,
        "name = \"node2\"\n",
        "name = \"node2\"\nstandby = true\n",
    );
    // The renewal config deploy sends to standbys (node 1 made version 1 without certbot).
    let le1 = bed.letsencrypt_dir(1);
    std::fs::create_dir_all(le1.join("renewal")).unwrap();
    std::fs::write(
        le1.join(format!("renewal/{LINEAGE}.conf")),
        format!("[renewalparams]\naccount = {ACCOUNT}\nserver = https://acme.example/dir\n"),
    )
    .unwrap();
    let account = le1.join(format!("accounts/acme.example/dir/{ACCOUNT}"));
    std::fs::create_dir_all(&account).unwrap();
    for f in ["meta.json", "private_key.json", "regr.json"] {
        std::fs::write(account.join(f), "{}").unwrap();
    }
    new_version(&bed, 2);
    let ran = bed
        .node(1)
        .certherd(["deploy", "--lineage", LINEAGE])
        .expect_status(1)
        .run();
    ran.ensure(
        ran.stderr()
            .lines()
            .any(|l| l.contains("node2") && l.contains("standby mismatch")),
        "a stderr line names node2 and the standby mismatch",
    );
    ran.ensure(
        !bed.letsencrypt_dir(2).join("renewal").exists(),
        "node 2 has no renewal dir",
    );
    // Whatever doctor's exit status, its report must name the mismatch.
    let doctor = bed.node(1).certherd(["doctor"]).any_status().run();
    doctor.ensure(
        doctor.stdout().contains("node2: standby")
            && doctor.stdout().contains("own config does not say"),
        "doctor's stdout names node2's standby mismatch",
    );
}
