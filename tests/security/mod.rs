//! Helpers shared by the security tests (`agent_verify.rs`, `crash.rs`, `hostile_agent.rs`,
//! `permissions.rs`): certificate versions made with openssl (deploy does not care which CA
//! signed them, so these tests need no pebble), config edits and forced-command swaps. The
//! guards that undo a fault (mounts, stopped daemons) are `tests/common/fault.rs`'s.
#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::exec::{exec, Nodes};
use crate::common::*;

pub mod split_brain;

/// The lineage every security test deploys.
pub const LINEAGE: &str = "site.test";

/// Makes version `v` of `site.test` on node 1 — a fresh P-256 key and a self-signed certificate
/// for site.test, in certbot's layout and modes — and points node 1's live links at it, the way
/// certbot does on renewal.
pub fn new_version(bed: &Bed, v: u32) {
    crate::common::cluster::make_version(bed, LINEAGE, v);
}

/// A bed of `nodes` nodes where every node serves version 1 of site.test over TLS (installed on
/// the peers by `certherd sync`), without a CA.
pub fn tls_bed(nodes: usize) -> Bed {
    tls_bed_with(nodes, Path::new(env!("CARGO_BIN_EXE_certherd")))
}

/// [`tls_bed`] running another certherd binary (the crash tests' build).
pub fn tls_bed_with(nodes: usize, certherd: &Path) -> Bed {
    let bed = bed_with(nodes, false, certherd);
    new_version(&bed, 1);
    enable_tls(&bed, LINEAGE);
    bed.node(1).certherd(["sync"]).run();
    let serial = current_serial(&bed, LINEAGE);
    for n in 1..=nodes {
        assert_eq!(
            served_serial(&bed, n, LINEAGE),
            serial,
            "node {n} after the initial sync"
        );
    }
    bed
}

/// Replaces node `n`'s `[reload]` line starting with `key = [` by `line`.
pub fn set_reload_line(bed: &Bed, n: usize, key: &str, line: &str) {
    let path = bed.config_path(n);
    let text = std::fs::read_to_string(&path).unwrap();
    let prefix = format!("{key} = [");
    let mut found = false;
    let new: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with(&prefix) && !found {
                found = true;
                line.to_owned()
            } else {
                l.to_owned()
            }
        })
        .collect();
    assert!(found, "no `{key} = [` line in {}", path.display());
    std::fs::write(&path, new.join("\n") + "\n").unwrap();
}

/// Node `n`'s authorized_keys file (one line, `restrict,command="..." KEY`).
pub fn authorized_keys(bed: &Bed, n: usize) -> PathBuf {
    bed.node_dir(n).join("sshd/authorized_keys")
}

/// Makes node `n`'s sshd run `script` (a shell script body) instead of `certherd agent` as the
/// forced command, and closes the primary's shared connections so the next one uses it (sshd
/// fixes the forced command of a connection when it authenticates). Returns the original line.
pub fn force_command(bed: &Bed, n: usize, name: &str, script: &str) -> String {
    let path = bed.node_dir(n).join(format!("forced-{name}.sh"));
    std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let keys = authorized_keys(bed, n);
    let line = std::fs::read_to_string(&keys).unwrap();
    let start = line.find("command=\"").expect("forced command") + "command=\"".len();
    let end = start + line[start..].find('"').unwrap();
    std::fs::write(
        &keys,
        format!("{}{}{}", &line[..start], path.display(), &line[end..]),
    )
    .unwrap();
    bed.close_control_masters();
    line
}

/// Puts back the authorized_keys line `force_command` returned.
pub fn restore_forced_command(bed: &Bed, n: usize, original: &str) {
    std::fs::write(authorized_keys(bed, n), original).unwrap();
    bed.close_control_masters();
}

/// The shell command line of the real agent on node `n` (for wrappers).
pub fn agent_command(bed: &Bed, n: usize) -> String {
    format!(
        "exec {} agent --config {}",
        bed.certherd_bin().display(),
        bed.config_path(n).display()
    )
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    crate::common::fault::alive(pid)
}

/// Every path under `dir` whose name contains certherd's temp marker.
pub fn temp_files(dir: &Path) -> Vec<PathBuf> {
    certherd_temp_files(dir)
}

/// Asserts node `n` is on one consistent version `v` (the shared assertion in tests/common).
pub fn assert_consistent(bed: &Bed, n: usize, v: u32, context: &str) {
    assert_node_consistent(bed, LINEAGE, n, v, context);
}

/// Asserts every node is consistent, node `n` on `versions[n - 1]`.
pub fn assert_all_consistent(bed: &Bed, versions: &[u32], context: &str) {
    assert_every_node_consistent(bed, LINEAGE, versions, context);
}

/// The serial of archive version `v` on node 1.
pub fn serial_of(bed: &Bed, v: u32) -> String {
    file_serial(
        &bed.letsencrypt_dir(1)
            .join(format!("archive/{LINEAGE}/cert{v}.pem")),
    )
}

/// Sends raw request lines to node `n`'s agent through its real sshd, the forced command and the
/// bed's restricted key (what whoever holds the primary's key can do), and returns the answers.
pub fn agent_session(bed: &Bed, n: usize, lines: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut input = String::from("{\"op\":\"hello\",\"protocol\":1}\n");
    for l in lines {
        input.push_str(&l.to_string());
        input.push('\n');
    }
    let (answers, out) = agent_exchange(bed, n, input.as_bytes());
    assert_eq!(
        answers.len(),
        lines.len() + 1,
        "{answers:?}, exit {:?}, stderr {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(answers[0]["result"], "hello", "{}", answers[0]);
    answers[1..].to_vec()
}

/// Node 1's archive version `v` of the lineage as the `files` of an install request.
pub fn version_files(bed: &Bed, v: u32) -> serde_json::Value {
    let dir = bed.letsencrypt_dir(1).join("archive").join(LINEAGE);
    let read = |k: &str| std::fs::read_to_string(dir.join(format!("{k}{v}.pem"))).unwrap();
    serde_json::json!({
        "cert": read("cert"),
        "chain": read("chain"),
        "fullchain": read("fullchain"),
        "privkey": read("privkey"),
    })
}

/// A P-256 key and a certificate for site.test that expired in 2020, signed by that key
/// (`openssl ca -selfsign`: `req -x509` cannot back-date): (cert PEM, key PEM).
pub fn expired_pair(bed: &Bed) -> (String, String) {
    let dir = bed.root().join("expired-ca");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    std::fs::write(dir.join("serial"), "01\n").unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[ca]\ndefault_ca = d\n[d]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\ndefault_md = sha256\npolicy = p\n[p]\ncommonName = supplied\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut openssl = Command::new("openssl");
        openssl.args(args).current_dir(&dir);
        exec(openssl).run();
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "k.pem",
        "-out",
        "r.csr",
        "-subj",
        "/CN=site.test",
    ]);
    run(&[
        "ca",
        "-batch",
        "-notext",
        "-config",
        "ca.cnf",
        "-selfsign",
        "-keyfile",
        "k.pem",
        "-in",
        "r.csr",
        "-out",
        "c.pem",
        "-startdate",
        "20200101000000Z",
        "-enddate",
        "20200201000000Z",
    ]);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    (read("c.pem"), read("k.pem"))
}
