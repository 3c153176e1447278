//! docs/APACHE.md's block for an Apache node (`<!-- quickstart: apache-node -->`), read from
//! the file (never re-typed here) and run with `/bin/sh -e` as root on a fresh Apache node of the
//! bed, with only paths substituted: `/etc/apache2` → the node's own tree (also what
//! `APACHE_CONFDIR` tells Debian's `a2enconf` and `apache2ctl`), `/etc/sudoers.d/certherd` → the
//! bed's Apache sudoers file; the contrib files it installs get the bed's account, the node's
//! webroot and `apache2ctl` on the node's tree. Before it, the node serves no token (403 from
//! Apache's `Require all denied`: the negative control); after it, it does, its agent's `[reload]` passes through sudo, and the CA validates
//! through it alone.

mod common;
use common::*;

use std::process::Command;

const DOC: &str = include_str!("../docs/APACHE.md");

/// The shell block right after `<!-- quickstart: ROLE -->` in docs/APACHE.md.
fn block(role: &str) -> String {
    let marker = format!("<!-- quickstart: {role} -->");
    let at = DOC
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/APACHE.md has no {marker}"));
    let rest = &DOC[at + marker.len()..];
    let start = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let end = rest[start..].find("\n```").expect("the block's end") + start;
    rest[start..end].to_owned()
}

fn shipped(rel: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// HTTP status and body of `path` on node `n`'s :80.
fn get(bed: &Bed, n: usize, path: &str) -> String {
    let out = Command::new("/usr/bin/curl")
        .args(["-sS", "-o", "-", "-w", " %{http_code}"])
        .arg(format!("http://{}{path}", bed.ip(n)))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_apache_block_sets_up_a_node_that_serves_tokens_and_reloads_through_sudo() {
    let bed = bed(3, true);
    bed.use_fresh_apache(2).unwrap();
    let probe = bed.webroot(2).join(".well-known/acme-challenge/probe");
    std::fs::write(&probe, "probe.thumbprint\n").unwrap();
    let before = get(&bed, 2, "/.well-known/acme-challenge/probe");
    assert!(
        !before.contains("probe.thumbprint") && !before.ends_with(" 200"),
        "a fresh node served the token: {before}"
    );

    // doctor names the missing snippet on node 2 (Apache's 403 for a path nothing allows).
    // Its exit status is not the claim: what it names is.
    let doctor = bed
        .node(1)
        .certherd(["doctor", "-d", "before.test"])
        .any_status()
        .run();
    let said = doctor.both();
    doctor.ensure(
        said.lines()
            .any(|l| l.starts_with("FAIL") && l.contains("node2") && l.contains("403"))
            && said.contains("a2enconf certherd-acme"),
        "doctor before the block: a FAIL line naming node2 and 403, and a2enconf certherd-acme",
    );

    // The contrib files as the block installs them, with the bed's names.
    let work = bed.root().join("apache-checklist");
    for d in ["contrib/sudoers", "contrib/apache"] {
        std::fs::create_dir_all(work.join(d)).unwrap();
    }
    let sudoers: String = shipped("sudoers/certherd-apache")
        .lines()
        .map(
            |l| match l.trim_start().starts_with('#') || l.trim().is_empty() {
                true => format!("{l}\n"),
                false => format!("{}\n", bed.apache_sudoers_line(2, l)),
            },
        )
        .collect();
    std::fs::write(work.join("contrib/sudoers/certherd-apache"), sudoers).unwrap();
    std::fs::write(
        work.join("contrib/apache/certherd-acme.conf"),
        shipped("apache/certherd-acme.conf").replace(
            "/var/lib/certherd/webroot",
            &bed.webroot(2).to_string_lossy(),
        ),
    )
    .unwrap();
    let tree = bed.apache_dir(2);
    let script = block("apache-node")
        .replace(
            "/etc/sudoers.d/certherd",
            &bed.apache_sudoers().to_string_lossy(),
        )
        .replace("/etc/apache2", &tree.to_string_lossy());
    let mut sh = Command::new("/bin/sh");
    sh.args(["-e", "-c", &script])
        .current_dir(&work)
        .env("APACHE_CONFDIR", &tree)
        .env("APACHE_STATE_DIRECTORY", tree.join("state"));
    // The transcript shows the block itself: it is sh's argument.
    bed.node(2).command(sh).run();

    let after = get(&bed, 2, "/.well-known/acme-challenge/probe");
    assert_eq!(
        after,
        "probe.thumbprint\n 200".trim(),
        "the token after the block"
    );
    let doctor = bed.node(2).certherd(["doctor"]).any_status().run();
    let said = doctor.both();
    for what in ["reload.test", "reload.reload"] {
        doctor.ensure(
            said.lines()
                .any(|l| l.starts_with(&format!("ok    {what} as ")) && l.contains("apache2ctl")),
            format!("node 2's {what} passes through sudo after the block"),
        );
    }
    bed.dns("checklist-apache.test", &[2]).unwrap();
    let issued = bed
        .node(1)
        .certbot_certonly_with_deploy(&["checklist-apache.test"])
        .run();
    // node 2's agent installed it (and its `[reload]` ran through sudo; no TLS vhost here)
    let lineage = "checklist-apache.test";
    issued.ensure(
        installed_serial(&bed, 2, lineage) == current_serial(&bed, lineage),
        "node 2 took the certificate",
    );
}
