//! Shared helpers for the e2e tests: each test starts its own bed (own loopback addresses, own
//! directories, own daemons) so tests run in parallel and never share state.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[allow(unused_imports)]
pub use certherd_testbed::{Bed, BedOptions, PeerSpec};

/// `certherd issue --certbot` for the certbot the bed runs (Debian's, or `$CERTHERD_BED_CERTBOT`):
/// without it `issue` would run whatever `certbot` is first on PATH.
pub fn certbot_program_arg() -> String {
    certherd_testbed::certbot_program().display().to_string()
}

/// Starts a bed with `nodes` nodes, with pebble when `ca`. Fails the test loudly when a daemon
/// is missing or does not start: that is an install bug, never a reason to skip.
pub fn bed(nodes: usize, ca: bool) -> Bed {
    bed_with(nodes, ca, certherd_bin())
}

/// [`bed`] running another certherd binary everywhere (the hooks and the peers' forced command):
/// the crash tests use the one built with the `crashpoints` feature ([`crashpoint_bin`]).
pub fn bed_with(nodes: usize, ca: bool, certherd: &Path) -> Bed {
    Bed::start(BedOptions {
        nodes,
        ca,
        certherd: certherd.into(),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("test bed did not start: {e}"))
}

/// The environment variable that makes the tests run another certherd binary than the one cargo
/// built: scripts/test.sh sets `CERTHERD_BIN=/usr/bin/certherd` after installing the .deb, so a
/// broken package fails CI. Unset, the tests run `CARGO_BIN_EXE_certherd`.
pub const BIN_ENV: &str = "CERTHERD_BIN";

/// The certherd binary every test runs (the peers' forced command and certbot's hooks too): the
/// cargo-built one, or `$CERTHERD_BIN`, which must exist and answer `--version` and
/// `completions bash` exactly as the cargo-built one does (same release, same command line);
/// anything else panics with the reason in every test, never a silent fallback.
pub fn certherd_bin() -> &'static Path {
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BIN.get_or_init(choose_bin) {
        Ok(path) => path,
        Err(e) => panic!("{e}"),
    }
}

/// The `$CERTHERD_BIN` the tests run, when set (then the package is installed, see scripts/test.sh).
pub fn installed_bin() -> Option<PathBuf> {
    std::env::var_os(BIN_ENV).map(|_| certherd_bin().to_owned())
}

fn choose_bin() -> Result<PathBuf, String> {
    let built = PathBuf::from(env!("CARGO_BIN_EXE_certherd"));
    let Some(chosen) = std::env::var_os(BIN_ENV) else {
        return Ok(built);
    };
    let chosen = PathBuf::from(chosen);
    if !chosen.is_absolute() || !chosen.is_file() {
        return Err(format!(
            "{BIN_ENV}={}: expected the absolute path of an installed certherd binary (e.g. /usr/bin/certherd from scripts/deb.sh's package)",
            chosen.display()
        ));
    }
    for args in [&["--version"][..], &["completions", "bash"][..]] {
        let ours = answer(&built, args)?;
        let theirs = answer(&chosen, args)?;
        if ours != theirs {
            return Err(format!(
                "{BIN_ENV}={}: `certherd {}` differs from the build's {} (stale package? rebuild with scripts/deb.sh and reinstall): {:?} vs {:?}",
                chosen.display(),
                args.join(" "),
                built.display(),
                first_line(&theirs),
                first_line(&ours),
            ));
        }
    }
    Ok(chosen)
}

fn answer(bin: &Path, args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(bin)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "`{} {}` failed, exit {:?}: {}",
            bin.display(),
            args.join(" "),
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The environment variable naming a prebuilt crash-point binary: scripts/test.sh builds it in
/// the shared target dir (its dependencies are the test build's, only certherd compiles again)
/// and copies it out before the test build puts the product binary back in `target/debug`.
pub const CRASHPOINT_BIN_ENV: &str = "CERTHERD_CRASHPOINT_BIN";

/// certherd built with the `crashpoints` feature (src/crashpoint.rs): `$CERTHERD_CRASHPOINT_BIN`
/// when set (it must answer `--version` as the build does and contain the crash points), else
/// built into its own target dir, `target/crashpoints`, so the product binary the other tests run
/// never contains them. Built once per test process. A build failure or a wrong binary fails the
/// test: the crash tests never silently skip.
pub fn crashpoint_bin() -> PathBuf {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os(CRASHPOINT_BIN_ENV) {
        Some(prebuilt) => prebuilt_crashpoint_bin(PathBuf::from(prebuilt)),
        None => build_crashpoint_bin(),
    })
    .clone()
}

fn prebuilt_crashpoint_bin(bin: PathBuf) -> PathBuf {
    let built = Path::new(env!("CARGO_BIN_EXE_certherd"));
    assert!(
        bin.is_absolute() && bin.is_file(),
        "{CRASHPOINT_BIN_ENV}={}: expected the absolute path of a certherd built with --features crashpoints",
        bin.display()
    );
    let contents = std::fs::read(&bin).unwrap_or_else(|e| panic!("read {}: {e}", bin.display()));
    assert!(
        contents.windows(19).any(|w| w == b"CERTHERD_CRASHPOINT"),
        "{CRASHPOINT_BIN_ENV}={}: expected a certherd built with --features crashpoints, this one has no crash points",
        bin.display()
    );
    let (ours, theirs) = (answer(built, &["--version"]), answer(&bin, &["--version"]));
    assert_eq!(
        theirs,
        ours,
        "{CRASHPOINT_BIN_ENV}={}: `--version` differs from the build's {} (stale? rebuild it)",
        bin.display(),
        built.display()
    );
    bin
}

fn build_crashpoint_bin() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = root.join("target/crashpoints");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build
        .current_dir(root)
        .args(["build", "--features", "crashpoints", "--bin", "certherd"])
        .arg("--target-dir")
        .arg(&target);
    exec::exec(build).run();
    let bin = target.join("debug/certherd");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

/// Every token file on every node.
pub fn token_files(bed: &Bed) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for n in 1..=bed.nodes() {
        let dir = bed.webroot(n).join(".well-known/acme-challenge");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            out.extend(entries.flatten().map(|e| e.path()));
        }
    }
    out
}

/// Whether node `n` holds token `t` with content `ka`.
pub fn has_token(bed: &Bed, n: usize, t: &str, ka: &str) -> bool {
    std::fs::read_to_string(bed.webroot(n).join(".well-known/acme-challenge").join(t))
        .is_ok_and(|c| c == ka)
}

/// Every file, directory and symlink under every node's webroot and letsencrypt dir, with
/// content, mode and link target: "changes nothing anywhere" is `snapshot` equal before and after.
pub fn snapshot(bed: &Bed) -> BTreeMap<PathBuf, String> {
    let mut map = BTreeMap::new();
    for n in 1..=bed.nodes() {
        walk(&bed.webroot(n), &mut map);
        walk(&bed.letsencrypt_dir(n), &mut map);
    }
    map
}

/// Every entry under `dir` with content, mode and link target (files byte for byte).
pub fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut map = BTreeMap::new();
    walk(dir, &mut map);
    map
}

fn walk(path: &Path, map: &mut BTreeMap<PathBuf, String>) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode();
    if meta.is_symlink() {
        map.insert(
            path.into(),
            format!("link {:?}", std::fs::read_link(path).ok()),
        );
    } else if meta.is_dir() {
        map.insert(path.into(), format!("dir {mode:o}"));
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            walk(&e.path(), map);
        }
    } else {
        map.insert(
            path.into(),
            format!("file {mode:o} {:?}", std::fs::read(path).ok()),
        );
    }
}

/// The certificate certbot wrote for a lineage on node 1, as `openssl x509 -text`.
pub fn cert_text(bed: &Bed, lineage: &str) -> Option<String> {
    let pem = bed
        .letsencrypt_dir(1)
        .join("live")
        .join(lineage)
        .join("cert.pem");
    if !pem.exists() {
        return None;
    }
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(&pem)
        .output()
        .ok()?;
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How many ACME challenge requests node `n`'s nginx has logged.
pub fn challenge_hits(bed: &Bed, n: usize) -> usize {
    std::fs::read_to_string(bed.access_log(n))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("/.well-known/acme-challenge/"))
        .count()
}

pub mod agent_filter;
pub mod bench;
pub mod cluster;
pub mod exec;
pub mod fault;
pub mod influx;
pub mod probe;
pub mod reloads;
pub mod status;
pub mod sync_report;

#[allow(unused_imports)]
pub use exec::{exec, Exec, Nodes, Ran};
#[allow(unused_imports)]
pub use status::{status_report, StatusReport, StatusRow};

/// Gives every node an nginx TLS server on :443 using `live/<lineage>/` (see `Bed::enable_tls`).
pub fn enable_tls(bed: &Bed, lineage: &str) {
    bed.enable_tls(lineage)
        .unwrap_or_else(|e| panic!("enable TLS: {e}"));
}

/// `nginx -s reload` for node `n`, asserting it worked.
pub fn reload_nginx(bed: &Bed, n: usize) {
    bed.reload_nginx(n).unwrap_or_else(|e| panic!("{e}"));
}

/// Every node of the bed answers TLS on :443 with the bed's default certificate (no lineage's
/// yet), loaded: where a first push's served checks start from.
pub fn default_tls_everywhere(bed: &Bed) {
    for n in 1..=bed.nodes() {
        bed.default_tls_server(n, false).unwrap();
        reload_nginx(bed, n);
    }
}

/// The serial of the certificate node `n` serves for `sni`, read independently with
/// `openssl s_client` (empty when nothing is served). The serial is taken from the PEM it
/// prints (x509-parser, as `openssl x509 -serial` prints it): a second OpenSSL process for that
/// cost as much CPU as the handshake. Every test compares it with a serial `openssl x509` read
/// from a file ([`file_serial`]), so the two formats are checked against each other all along.
pub fn served_serial(bed: &Bed, n: usize, sni: &str) -> String {
    let out = std::process::Command::new("openssl")
        .args(["s_client", "-connect"])
        .arg(format!("{}:443", bed.ip(n)))
        .args(["-servername", sni])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    probe::pem_serial(&out.stdout).unwrap_or_default()
}

/// How long after a reload nginx may still hand a new connection the old certificate: its
/// master starts the new workers and sleeps 100 ms before telling the old ones to stop accepting
/// (`ngx_msleep(100)` in `ngx_master_process_cycle`), so for that long either generation answers
/// (measured: the old certificate up to ~105 ms after `nginx -s reload` returned, nginx 1.22 and
/// 1.26 alike). A test that asks fast enough (seen on Debian 13) lands inside that window.
pub const RELOAD_OVERLAP: std::time::Duration = std::time::Duration::from_millis(300);

/// [`served_serial`] once a reload node `n` may just have had is over: waits (bounded, 5 s) for
/// `want`, then past nginx's [`RELOAD_OVERLAP`], and asks again. A node that did not reload when
/// it should have, or did when it should not have, still shows the other serial here.
///
/// The wait polls with [`probe::probe_serial`] (no process started); the answer is openssl's.
pub fn settled_serial(bed: &Bed, n: usize, sni: &str, want: &str) -> String {
    wait_until(std::time::Duration::from_secs(5), || {
        probe::probe_serial(bed, n, sni).as_deref() == Some(want)
    });
    std::thread::sleep(RELOAD_OVERLAP);
    served_serial(bed, n, sni)
}

/// Waits (bounded by `limit` in all) until every node of `nodes` serves `want` for `sni` as
/// [`served_serial`] (openssl) reads it, all of them in one pass: first polled with
/// [`probe::probe_serial`], which starts no process, then asked of openssl until it agrees.
/// Returns whether openssl saw it; a probe that never agrees only costs the wait, never the
/// verdict.
pub fn wait_served(
    bed: &Bed,
    nodes: std::ops::RangeInclusive<usize>,
    sni: &str,
    want: &str,
    limit: std::time::Duration,
) -> bool {
    let start = std::time::Instant::now();
    wait_until(limit, || {
        nodes
            .clone()
            .all(|n| probe::probe_serial(bed, n, sni).as_deref() == Some(want))
    });
    wait_until(limit.saturating_sub(start.elapsed()), || {
        nodes.clone().all(|n| served_serial(bed, n, sni) == want)
    })
}

/// The serial of node 1's current certificate for `lineage`.
pub fn current_serial(bed: &Bed, lineage: &str) -> String {
    installed_serial(bed, 1, lineage)
}

/// The serial of the certificate `live/<lineage>/cert.pem` names on node `n`.
pub fn installed_serial(bed: &Bed, n: usize, lineage: &str) -> String {
    file_serial(
        &bed.letsencrypt_dir(n)
            .join("live")
            .join(lineage)
            .join("cert.pem"),
    )
}

/// The serial of a PEM certificate file, read with `openssl x509`.
pub fn file_serial(pem: &Path) -> String {
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    serial_from(&out.stdout)
}

/// `serial=ABC…` as printed by `openssl x509 -serial`, lower-cased without the prefix.
fn serial_from(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .trim()
        .trim_start_matches("serial=")
        .to_ascii_lowercase()
}

/// Relative link targets of `live/<lineage>/*.pem` on node `n`.
pub fn live_links(bed: &Bed, n: usize, lineage: &str) -> Vec<String> {
    ["cert", "chain", "fullchain", "privkey"]
        .iter()
        .map(|k| {
            std::fs::read_link(
                bed.letsencrypt_dir(n)
                    .join("live")
                    .join(lineage)
                    .join(format!("{k}.pem")),
            )
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "<missing>".into())
        })
        .collect()
}

/// A bed where site.test (DNS: nodes 2 and 3) was issued with certherd's three hooks and every
/// node serves it over TLS.
pub fn issued_bed() -> Bed {
    let bed = bed(3, true);
    bed.dns("site.test", &[2, 3]).unwrap();
    enable_tls(&bed, "site.test");
    exec::Nodes::node(&bed, 1)
        .certbot_certonly_with_deploy(&["site.test"])
        .run();
    bed
}

/// Replaces the first `from` with `to` in node `n`'s certherd.toml (for keys write_config does
/// not set), asserting it was there.
pub fn edit_config(bed: &Bed, n: usize, from: &str, to: &str) {
    let path = bed.config_path(n);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(
        text.contains(from),
        "{from:?} not in {}:\n{text}",
        path.display()
    );
    std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
}

/// Sets `[ssh] request_timeout` in node `n`'s config.
pub fn set_request_timeout(bed: &Bed, n: usize, timeout: &str) {
    edit_config(
        bed,
        n,
        "connect_timeout = \"5s\"\n",
        &format!("connect_timeout = \"5s\"\nrequest_timeout = \"{timeout}\"\n"),
    );
}

/// Sends raw bytes to node `node`'s agent through its real sshd, the forced command and the
/// bed's restricted key (what whoever holds the primary's key can do); returns every answer line
/// parsed as JSON (a non-JSON line fails the test) and the session's output.
pub fn agent_exchange(
    bed: &Bed,
    node: usize,
    input: &[u8],
) -> (Vec<serde_json::Value>, std::process::Output) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = bed
        .ssh_agent_command(node)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // Write from a thread: the agent may hang up before reading all of a huge line.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    let answers = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("agent answered non-JSON {l:?}: {e}"))
        })
        .collect();
    (answers, out)
}

/// `certherd watch --settle SETTLE` started on node 1 in the background, its stdout and stderr
/// in `watch.out` and `watch.err` under the bed's root, once it says it is watching (bounded:
/// it must set up its inotify watches before the test changes anything). Stop it by its PID
/// with [`stop_on_sigterm`].
pub fn start_watch(bed: &Bed, settle: &str) -> (std::process::Child, PathBuf, PathBuf) {
    let (out, err) = (bed.root().join("watch.out"), bed.root().join("watch.err"));
    let child = bed
        .certherd(1, &["watch", "--settle", settle])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let read = || std::fs::read_to_string(&err).unwrap_or_default();
    assert!(
        wait_until(std::time::Duration::from_secs(10), || read()
            .contains("watching")),
        "watch did not start: {}",
        read()
    );
    (child, out, err)
}

/// Sends SIGTERM to a child the test started and waits up to `limit` for it to exit; kills and
/// reaps it if it did not. Returns whether it stopped on SIGTERM by itself.
pub fn stop_on_sigterm(child: &mut std::process::Child, limit: std::time::Duration) -> bool {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopped = wait_until(limit, || matches!(child.try_wait(), Ok(Some(_))));
    if !stopped {
        let _ = child.kill();
        let _ = child.wait();
    }
    stopped
}

/// Polls `cond` every 20 ms until it is true or `limit` has passed; returns whether it became
/// true (every wait in the tests is bounded).
pub fn wait_until(limit: std::time::Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The fault matrix's promise for one node (SECURITY.md): all four links of `lineage` name
/// version `v`, each of its archive files equals the primary's (node 1) byte for byte, the key
/// matches the certificate (openssl, independently of certherd), `nginx -t` passes, and no
/// certherd temp file is left anywhere under the node's letsencrypt dir.
pub fn assert_node_consistent(bed: &Bed, lineage: &str, n: usize, v: u32, context: &str) {
    let links = live_links(bed, n, lineage);
    for (kind, link) in ["cert", "chain", "fullchain", "privkey"].iter().zip(&links) {
        assert_eq!(
            link,
            &format!("../../archive/{lineage}/{kind}{v}.pem"),
            "{context}: node {n} links {links:?}"
        );
        let rel = format!("archive/{lineage}/{kind}{v}.pem");
        let want = std::fs::read(bed.letsencrypt_dir(1).join(&rel))
            .unwrap_or_else(|e| panic!("{context}: the primary's {rel}: {e}"));
        let got = std::fs::read(bed.letsencrypt_dir(n).join(&rel))
            .unwrap_or_else(|e| panic!("{context}: node {n} {rel}: {e}"));
        assert_eq!(
            got, want,
            "{context}: node {n} {rel} differs from the primary's"
        );
    }
    let live = bed.letsencrypt_dir(n).join("live").join(lineage);
    let public = |args: &[&str], file: &str| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .arg(live.join(file))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let from_cert = public(&["x509", "-noout", "-pubkey", "-in"], "cert.pem");
    let from_key = public(&["pkey", "-pubout", "-in"], "privkey.pem");
    assert!(
        from_cert.contains("PUBLIC KEY") && from_cert == from_key,
        "{context}: node {n}: the key does not match the certificate"
    );
    // In the node's own namespace on a namespaced bed (nginx -t binds its listen addresses).
    let mut test = bed.command_on(n, "/usr/sbin/nginx");
    test.args(["-t", "-q", "-c"]).arg(bed.nginx_conf(n));
    let ran = exec::Nodes::node(bed, n).command(test).any_status().run();
    ran.ensure(
        ran.code() == Some(0),
        format!("{context}: node {n} nginx -t"),
    );
    let temps = certherd_temp_files(&bed.letsencrypt_dir(n));
    assert!(temps.is_empty(), "{context}: node {n} temp files {temps:?}");
}

/// The promise on EVERY node: node `n` is consistent on `versions[n - 1]` (see
/// [`assert_node_consistent`]). Every fault-matrix row ends with this.
pub fn assert_every_node_consistent(bed: &Bed, lineage: &str, versions: &[u32], context: &str) {
    assert_eq!(
        versions.len(),
        bed.nodes(),
        "{context}: one expected version per node"
    );
    for (i, v) in versions.iter().enumerate() {
        assert_node_consistent(bed, lineage, i + 1, *v, context);
    }
}

/// Every path under `dir` whose name contains certherd's temp marker (`.NAME.certherd-tmp-PID`).
pub fn certherd_temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().contains("certherd-tmp") {
                out.push(p.clone());
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            }
        }
    }
    out
}

/// Every `.certherd-pending` marker under `dir` (an install that moved links and did not finish).
pub fn pending_markers(dir: &Path) -> Vec<PathBuf> {
    let live = dir.join("live");
    std::fs::read_dir(&live)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(".certherd-pending"))
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect()
}

/// The live SSH control masters under the bed's control directory: (socket, `ssh -O check`'s
/// "Master running (pid=N)"), sorted. A new master has a new PID even under the same socket name
/// (the names are a fixed hash per peer), so comparing these proves a connection was reused.
pub fn control_masters(bed: &Bed) -> Vec<(PathBuf, String)> {
    use std::os::unix::fs::FileTypeExt;
    let mut out: Vec<(PathBuf, String)> = std::fs::read_dir(bed.root().join("ssh/cm"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_socket()))
        .map(|e| {
            let check = std::process::Command::new("/usr/bin/ssh")
                .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-S"])
                .arg(e.path())
                .args(["-O", "check", "x"])
                .output()
                .unwrap();
            let said = String::from_utf8_lossy(&check.stderr).trim().to_owned();
            assert!(
                check.status.success() && said.contains("pid="),
                "master on {} not alive: {said}",
                e.path().display()
            );
            (e.path(), said)
        })
        .collect();
    out.sort();
    out
}
