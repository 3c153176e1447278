//! Permission audit (SECURITY.md): after real deploys, every file certherd created on a node has
//! the mode it must have — private keys 0600, the key directories 0700, nothing world-writable,
//! no token file executable — whatever umask the agent was started with.
//!
//! Proves Guarantee 4 of docs/GUARANTEES.md (the list there names each test).

mod common;
mod security;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::*;
use security::*;

/// One finding of the audit.
fn audit_tree(root: &Path, agent_uid: u32, findings: &mut Vec<String>) {
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.is_symlink() {
            continue; // a symlink's own mode is always 0777 and never used
        }
        let mode = meta.permissions().mode() & 0o7777;
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let mut bad = |why: &str| findings.push(format!("{} ({mode:o}): {why}", path.display()));
        if mode & 0o002 != 0 {
            bad("world-writable");
        }
        if mode & 0o020 != 0 {
            bad("group-writable");
        }
        if mode & 0o7000 != 0 {
            bad("setuid/setgid/sticky");
        }
        if meta.uid() != agent_uid {
            bad("not owned by the agent's user");
        }
        if meta.is_dir() {
            if (name == "archive" || name == "live") && mode != 0o700 {
                bad("key directory must be 0700");
            }
            for e in std::fs::read_dir(&path).unwrap().flatten() {
                stack.push(e.path());
            }
        } else {
            if mode & 0o111 != 0 {
                bad("executable");
            }
            if name.starts_with("privkey") && mode != 0o600 {
                bad("private key must be 0600");
            }
            if name == ".certherd.lock" && mode != 0o600 {
                bad("lock file must be 0600");
            }
        }
    }
}

/// Token files are exactly 0644 (readable by the web server, never executable); their
/// directories 0755 (the web server must traverse them, nobody else may write).
fn audit_tokens(bed: &Bed, n: usize, findings: &mut Vec<String>) {
    let webroot = bed.webroot(n);
    for (rel, want) in [
        (".well-known", 0o755),
        (".well-known/acme-challenge", 0o755),
    ] {
        let mode = std::fs::metadata(webroot.join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777;
        if mode != want {
            findings.push(format!("node{n} {rel}: {mode:o}, expected {want:o}"));
        }
    }
    let dir = webroot.join(".well-known/acme-challenge");
    let mut count = 0;
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        count += 1;
        let meta = std::fs::symlink_metadata(e.path()).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        if !meta.is_file() || mode != 0o644 {
            findings.push(format!(
                "node{n} token {}: {mode:o}, expected a 0644 file",
                e.path().display()
            ));
        }
    }
    if count == 0 {
        findings.push(format!("node{n}: no token file to audit"));
    }
}

/// The control directory of the primary's shared SSH connections: 0700, owned by the account
/// certherd runs as (`owner`: root's certherd becomes the agent's account), and every socket in
/// it unreachable for others (a socket there is a live login to every peer).
fn audit_control_dir(dir: &Path, owner: u32, findings: &mut Vec<String>) {
    let meta = std::fs::symlink_metadata(dir).unwrap();
    if meta.permissions().mode() & 0o777 != 0o700 || meta.uid() != owner {
        findings.push(format!(
            "{}: {:o}, expected our 0700 directory",
            dir.display(),
            meta.permissions().mode()
        ));
    }
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let mode = e.metadata().unwrap().permissions().mode();
        if mode & 0o077 != 0 {
            findings.push(format!("{}: {mode:o} open to others", e.path().display()));
        }
    }
}

fn modes_under(root: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        if !meta.is_symlink() {
            out.push((
                p.strip_prefix(root).unwrap().to_owned(),
                meta.permissions().mode() & 0o7777,
            ));
        }
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
    out.sort();
    out
}

/// Issuance and a renewal by the real certbot, deployed by certherd, plus a token: on every
/// peer the audit finds nothing, and each archive/live path has exactly the mode certbot gave it
/// on the primary.
#[test]
fn deploy_leaves_every_file_with_its_mode() {
    let bed = bed(3, true);
    bed.dns("site.test", &[2, 3]).unwrap();
    enable_tls(&bed, LINEAGE);
    let node1 = bed.node(1);
    node1.certbot_certonly_with_deploy(&["site.test"]).run();
    node1
        .certbot(["renew", "--force-renewal", "--no-random-sleep-on-renew"])
        .run();
    node1.auth("site.test", "permtok", "permtok.thumb").run();

    let mut findings = Vec::new();
    for n in 2..=3 {
        audit_tree(
            &bed.letsencrypt_dir(n),
            bed.agent_uid_gid().0,
            &mut findings,
        );
        let le = bed.letsencrypt_dir(n);
        for v in 1..=2 {
            let key = le.join(format!("archive/{LINEAGE}/privkey{v}.pem"));
            if !std::fs::symlink_metadata(&key).is_ok_and(|m| m.is_file()) {
                findings.push(format!("{}: missing", key.display()));
            }
        }
    }
    for n in 1..=3 {
        audit_tokens(&bed, n, &mut findings);
    }
    audit_control_dir(
        &bed.root().join("ssh/cm"),
        bed.agent_uid_gid().0,
        &mut findings,
    );
    assert!(
        findings.is_empty(),
        "permission audit:\n{}",
        findings.join("\n")
    );

    // The peers mirror certbot: same modes as the primary, path by path (certherd's lock file
    // exists only where an agent installed).
    let primary = modes_under(&bed.letsencrypt_dir(1));
    for n in 2..=3 {
        for (rel, mode) in modes_under(&bed.letsencrypt_dir(n)) {
            if !(rel.starts_with("archive") || rel.starts_with("live"))
                || rel.ends_with(".certherd.lock")
            {
                continue;
            }
            let want = primary.iter().find(|(p, _)| *p == rel).map(|(_, m)| *m);
            assert_eq!(
                Some(mode),
                want,
                "node{n} {} differs from certbot's",
                rel.display()
            );
        }
    }
}

/// The agent inherits sshd's umask, which certherd does not control: with umask 000 on node 2
/// nothing it creates may become world-writable, and with umask 077 on node 3 the token
/// directories it creates must still be traversable by the web server (auth's self-check passes)
/// while keys stay 0600.
#[test]
fn agent_umask_neither_loosens_nor_breaks_modes() {
    let bed = bed(3, false);
    for (n, umask) in [(2, "000"), (3, "077")] {
        let wrapper = format!("umask {umask}\n{}", agent_command(&bed, n));
        force_command(&bed, n, &format!("umask{umask}"), &wrapper);
        std::fs::remove_dir_all(bed.webroot(n).join(".well-known")).unwrap();
    }
    new_version(&bed, 1);
    enable_tls(&bed, LINEAGE);
    let node1 = bed.node(1);
    node1.certherd(["sync"]).run();
    new_version(&bed, 2);
    node1.certherd(["deploy", "--lineage", LINEAGE]).run();

    // auth with the agents' umasks.
    node1.auth("site.test", "umasktok", "umasktok.thumb").run();

    let mut findings = Vec::new();
    for n in 2..=3 {
        audit_tree(
            &bed.letsencrypt_dir(n),
            bed.agent_uid_gid().0,
            &mut findings,
        );
        audit_tokens(&bed, n, &mut findings);
    }
    assert!(
        findings.is_empty(),
        "permission audit:\n{}",
        findings.join("\n")
    );
}

/// The control directory holds live logins to every peer: certherd refuses one that others can
/// enter, or that is a symlink (someone else's directory), before connecting anywhere.
#[test]
fn control_dir_open_to_others_or_planted_is_refused() {
    let bed = bed(2, false);
    let cm = bed.root().join("ssh/cm");
    std::fs::set_permissions(&cm, std::fs::Permissions::from_mode(0o755)).unwrap();
    bed.node(1)
        .auth("site.test", "cmtok", "cmtok.thumb")
        .expect_status(1)
        .stderr_has(["node2", "mode 0700"])
        .run();
    assert!(!has_token(&bed, 2, "cmtok", "cmtok.thumb"));

    std::fs::remove_dir_all(&cm).unwrap();
    let elsewhere = bed.root().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &cm).unwrap();
    bed.node(1)
        .auth("site.test", "cmtok2", "cmtok2.thumb")
        .expect_status(1)
        .stderr_has(["control directory"])
        .run();
    assert!(!has_token(&bed, 2, "cmtok2", "cmtok2.thumb"));
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "a socket was made in the planted directory"
    );
}

/// Removes the account's default control directories when the test ends, pass or fail: they
/// live outside the bed (`/tmp`, `/run`), and the next bed may get the same uid.
struct DefaultControlDirs(Vec<PathBuf>);

impl Drop for DefaultControlDirs {
    fn drop(&mut self) {
        for d in &self.0 {
            let _ = std::fs::remove_dir_all(d);
            // And the fresh ones made beside it (`<name>-XXXXXX`).
            let (Some(parent), Some(name)) = (d.parent(), d.file_name()) else {
                continue;
            };
            let prefix = format!("{}-", name.to_string_lossy());
            for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

/// Guarantee 11. `/tmp/certherd-<uid>`, the old default control directory of the agent's
/// account, created first by another account (`nobody`, 0755): root's `certherd issue` (auth on
/// both peers that DNS names, then deploy) and `certherd renew` still reach every peer, through
/// `/run/certherd-<uid>`, which root makes when it drops to the account and which no other user
/// can create. The account running certherd itself (no `/run` directory, no
/// `XDG_RUNTIME_DIR`) gets a warning and a fresh private directory, and still reaches both peers.
/// The planted directory is never used. The configured `control_dir` keeps its refusal
/// (`control_dir_open_to_others_or_planted_is_refused`).
#[test]
fn a_control_dir_planted_in_tmp_does_not_stop_a_renewal() {
    let bed = bed(3, true);
    let (agent_uid, _) = bed.agent_uid_gid();
    bed.dns("site.test", &[2, 3]).unwrap();
    bed.config(1)
        .remove("ssh.control_dir")
        .unwrap()
        .set("renew.primary", "node1")
        .unwrap()
        .set("renew.certbot", bed.renew_certbot_argv(1))
        .unwrap();
    let planted = PathBuf::from(format!("/tmp/certherd-{agent_uid}"));
    let runtime = PathBuf::from(format!("/run/certherd-{agent_uid}"));
    let _cleanup = DefaultControlDirs(vec![planted.clone(), runtime.clone()]);
    let _ = std::fs::remove_dir_all(&planted);
    let _ = std::fs::remove_dir_all(&runtime);
    std::fs::create_dir(&planted).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();

    bed.node(1)
        .certherd(["issue", "-d", "site.test", "--"])
        .args(bed.certbot_common_args())
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .run();
    assert_every_node_consistent(&bed, "site.test", &[1, 1, 1], "issued as root");
    bed.node(1)
        .certherd(["renew", "--", "--force-renewal"])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .run();
    assert_every_node_consistent(&bed, "site.test", &[2, 2, 2], "renewed as root");
    let meta = std::fs::symlink_metadata(&runtime).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (agent_uid, 0o700),
        "{}",
        runtime.display()
    );
    assert_eq!(std::fs::read_dir(&planted).unwrap().count(), 0);

    // Without root's directory in /run: the account's own run falls back to a fresh one.
    std::fs::remove_dir_all(&runtime).unwrap();
    let mut cmd = std::process::Command::new(bed.certherd_bin());
    cmd.arg("--config")
        .arg(bed.config_path(1))
        .arg("auth")
        .env("CERTBOT_DOMAIN", "site.test")
        .env("CERTBOT_TOKEN", "plantedtok")
        .env("CERTBOT_VALIDATION", "plantedtok.thumb");
    bed.as_agent(&mut cmd);
    // auth as the account.
    bed.node(1)
        .command(cmd)
        .stderr_has([
            planted.display().to_string(),
            "fresh private directory".into(),
        ])
        .run();
    for n in [2, 3] {
        assert!(
            has_token(&bed, n, "plantedtok", "plantedtok.thumb"),
            "node{n}"
        );
    }
    assert_eq!(std::fs::read_dir(&planted).unwrap().count(), 0);
}
