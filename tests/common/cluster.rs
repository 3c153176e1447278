//! A cluster builder, so an e2e test reads like the guarantee it proves (in the spirit of the
//! `Test` helper of the `just` command runner's integration tests):
//!
//! ```ignore
//! let cluster = Cluster::new(3).issued("site.test");      // every node serves version 1
//! let _cut = cluster.fault(Fault::StopSshd(3));           // undone on drop, even on panic
//! cluster.renew();                                        // version 2 on the primary
//! let deploy = cluster.deploy();                          // typed rows from `--format json`
//! assert_eq!(deploy.row("node3").install, Install::Failed);
//! cluster.assert_node(2).serves_version(2).is_consistent_on(2);
//! ```
//!
//! Versions are made with openssl on node 1 in certbot's layout (deploy does not care which CA
//! signed them, so no pebble is needed); `deploy` and `sync` are read through their JSON report,
//! never by scraping the table; faults are guards (tests/common/fault.rs).

use std::cell::Cell;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde::Deserialize;

use super::fault::{Fault, FaultGuard};
use super::*;

/// A bed whose nodes share one lineage, with the version the primary (node 1) holds.
pub struct Cluster {
    bed: Bed,
    lineage: String,
    version: Cell<u32>,
}

/// A started bed with no lineage yet: call [`Started::issued`].
pub struct Started {
    bed: Bed,
}

impl Cluster {
    /// A bed of `nodes` nodes without a CA, running the cargo-built certherd (or `$CERTHERD_BIN`).
    #[allow(clippy::new_ret_no_self)]
    pub fn new(nodes: usize) -> Started {
        Cluster::with_bin(nodes, certherd_bin())
    }

    /// [`Cluster::new`] running another certherd binary everywhere (the crash tests' build).
    pub fn with_bin(nodes: usize, certherd: &Path) -> Started {
        Started {
            bed: bed_with(nodes, false, certherd),
        }
    }

    /// The bed, for anything the builder does not cover (also reachable through `Deref`).
    pub fn bed(&self) -> &Bed {
        &self.bed
    }

    /// The lineage every step works on.
    pub fn lineage(&self) -> &str {
        &self.lineage
    }

    /// The newest version on the primary.
    pub fn version(&self) -> u32 {
        self.version.get()
    }

    /// What certbot's renewal writes: the next version on the primary (node 1), its live links
    /// moved to it. Nothing is deployed. Returns the new version.
    pub fn renew(&self) -> u32 {
        let v = self.version.get() + 1;
        make_version(&self.bed, &self.lineage, v);
        self.version.set(v);
        v
    }

    /// Breaks one thing; the guard puts it back when dropped (see tests/common/fault.rs).
    pub fn fault(&self, fault: Fault) -> FaultGuard<'_> {
        FaultGuard::apply(&self.bed, fault)
    }

    /// `certherd deploy --lineage L --format json` on the primary, to its end.
    pub fn deploy(&self) -> Run<Deployment> {
        let cmd = self.deploy_command(&self.bed.config_path(1));
        Run::of(self.bed.node(1).command(cmd).any_status().run())
    }

    /// The same deploy started in the background (a test acts while it runs).
    pub fn spawn_deploy(&self) -> Running<'_> {
        self.spawn_deploy_with(&self.bed.config_path(1))
    }

    /// A background deploy with another primary's config file (e.g. a second primary).
    pub fn spawn_deploy_with(&self, config: &Path) -> Running<'_> {
        let mut command = self.deploy_command(config);
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Running {
            bed: &self.bed,
            command,
            child,
        }
    }

    fn deploy_command(&self, config: &Path) -> Command {
        let mut cmd = Command::new(self.bed.certherd_bin());
        cmd.arg("--config").arg(config).args([
            "deploy",
            "--lineage",
            &self.lineage,
            "--format",
            "json",
        ]);
        cmd
    }

    /// `certherd sync --format json` on the primary.
    pub fn sync(&self) -> Run<SyncReport> {
        let sync = self.bed.node(1).certherd(["sync", "--format", "json"]);
        Run::of(sync.any_status().run())
    }

    /// The serial of version `v` (node 1's archive).
    pub fn serial_of(&self, v: u32) -> String {
        file_serial(
            &self
                .bed
                .letsencrypt_dir(1)
                .join(format!("archive/{}/cert{v}.pem", self.lineage)),
        )
    }

    /// Assertions about node `n`.
    pub fn assert_node(&self, n: usize) -> NodeAssert<'_> {
        NodeAssert { cluster: self, n }
    }

    /// The fault matrix's promise on EVERY node: node `n` is consistent on `versions[n - 1]`
    /// (links, archive bytes equal to the primary's, key matches certificate, `nginx -t`, no
    /// temp file; `assert_every_node_consistent` in tests/common).
    pub fn assert_versions(&self, versions: &[u32], context: &str) -> &Self {
        assert_every_node_consistent(&self.bed, &self.lineage, versions, context);
        self
    }
}

impl Started {
    /// Version 1 of `lineage` on the primary, TLS on every node, `certherd sync`: every node
    /// serves version 1 (asserted) before the test starts.
    pub fn issued(self, lineage: &str) -> Cluster {
        let cluster = Cluster {
            bed: self.bed,
            lineage: lineage.to_owned(),
            version: Cell::new(0),
        };
        cluster.renew();
        enable_tls(&cluster.bed, lineage);
        cluster.sync().succeeds();
        for n in 1..=cluster.bed.nodes() {
            cluster.assert_node(n).serves_version(1);
        }
        cluster
    }
}

impl std::ops::Deref for Cluster {
    type Target = Bed;
    fn deref(&self) -> &Bed {
        &self.bed
    }
}

/// Assertions about one node of a [`Cluster`], chainable.
pub struct NodeAssert<'a> {
    cluster: &'a Cluster,
    n: usize,
}

impl NodeAssert<'_> {
    /// Its TLS server (read with `openssl s_client`) presents version `v`, once a reload it may
    /// just have had is over ([`settled_serial`]).
    pub fn serves_version(&self, v: u32) -> &Self {
        let c = self.cluster;
        let want = c.serial_of(v);
        assert_eq!(
            settled_serial(&c.bed, self.n, &c.lineage, &want),
            want,
            "node {} does not serve version {v}",
            self.n
        );
        self
    }

    /// It is consistent on version `v` (see [`Cluster::assert_versions`]).
    pub fn is_consistent_on(&self, v: u32) -> &Self {
        let c = self.cluster;
        assert_node_consistent(&c.bed, &c.lineage, self.n, v, &format!("node {}", self.n));
        self
    }

    /// No certherd temp file anywhere under its letsencrypt dir.
    pub fn has_no_temp_files(&self) -> &Self {
        let temps = certherd_temp_files(&self.cluster.bed.letsencrypt_dir(self.n));
        assert!(temps.is_empty(), "node {} temp files {temps:?}", self.n);
        self
    }

    /// No unfinished-install marker under its letsencrypt dir.
    pub fn has_no_pending_install(&self) -> &Self {
        let markers = pending_markers(&self.cluster.bed.letsencrypt_dir(self.n));
        assert!(markers.is_empty(), "node {} markers {markers:?}", self.n);
        self
    }
}

/// A finished `deploy`/`sync`: its [`Ran`] (the transcript every failure prints: command, exit
/// status, stdout, stderr, the primary's logs) and the typed report parsed from its stdout.
/// Derefs to the `Ran`, so `code()`, `stderr()`, `ensure()`, `fail()` and `.output` read as on
/// any run.
pub struct Run<T> {
    pub ran: Ran,
    pub report: T,
}

impl<T: serde::de::DeserializeOwned> Run<T> {
    /// Parses stdout as the JSON report; panics with the whole transcript when it is not.
    pub fn of(ran: Ran) -> Run<T> {
        let report = ran.json();
        Run { ran, report }
    }
}

impl<T> std::ops::Deref for Run<T> {
    type Target = Ran;
    fn deref(&self) -> &Ran {
        &self.ran
    }
}

impl<T> std::fmt::Display for Run<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.ran.fmt(f)
    }
}

impl<T> Run<T> {
    /// Asserts exit 0; panics with the transcript otherwise.
    #[track_caller]
    pub fn succeeds(&self) -> &Self {
        let code = self.code();
        self.ensure(code == Some(0), format!("exit status {code:?}, expected 0"));
        self
    }

    /// Asserts exit 1 (some node failed) and that stderr names every one of `words`; panics
    /// with the transcript naming what was missing.
    #[track_caller]
    pub fn fails_naming(&self, words: &[&str]) -> &Self {
        let code = self.code();
        self.ensure(code == Some(1), format!("exit status {code:?}, expected 1"));
        let err = self.stderr();
        let missing: Vec<&&str> = words.iter().filter(|w| !err.contains(**w)).collect();
        self.ensure(missing.is_empty(), format!("stderr lacks {missing:?}"));
        self
    }
}

/// A deploy running in the background, on the primary (node 1) of `bed`.
pub struct Running<'a> {
    bed: &'a Bed,
    command: Command,
    child: Child,
}

impl Running<'_> {
    /// Waits for its end and parses its report (the transcript shows the primary's logs).
    pub fn finish(self) -> Run<Deployment> {
        let output = self.child.wait_with_output().unwrap();
        Run::of(Ran::of_output(self.bed, 1, &self.command, output))
    }

    /// Kills it (by its PID, which this test started) and reaps it.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// `deploy --format json` (README, "deploy and sync as JSON").
#[derive(Debug, Deserialize)]
pub struct Deployment {
    pub lineage: String,
    pub version: u32,
    pub not_after: i64,
    pub ok: bool,
    pub nodes: Vec<Row>,
}

/// `sync --format json`: one deployment per lineage.
#[derive(Debug, Deserialize)]
pub struct SyncReport {
    pub ok: bool,
    pub lineages: Vec<Deployment>,
}

/// One node's row.
#[derive(Debug, Deserialize)]
pub struct Row {
    pub node: String,
    pub optional: bool,
    pub ok: bool,
    pub before: Option<u32>,
    pub after: Option<u32>,
    pub install: Install,
    pub error_kind: Option<String>,
    pub served: String,
    pub checked: Option<String>,
    pub served_fingerprint: Option<String>,
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

/// The install step of a row (the table's `ok`, `unchanged`, `TEST-FAIL`, `RELOAD-FAIL`, `FAILED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Install {
    Ok,
    Unchanged,
    TestFailed,
    ReloadFailed,
    Failed,
}

impl Deployment {
    /// The row of `node`; panics naming it when there is none.
    pub fn row(&self, node: &str) -> &Row {
        self.nodes
            .iter()
            .find(|r| r.node == node)
            .unwrap_or_else(|| panic!("no row for {node} in {self:?}"))
    }
}

impl Run<Deployment> {
    /// The row of `node`.
    pub fn row(&self, node: &str) -> &Row {
        self.report.row(node)
    }
}

impl Run<SyncReport> {
    /// The row of `node` in the (only) lineage's deployment.
    pub fn row(&self, node: &str) -> &Row {
        assert_eq!(
            self.report.lineages.len(),
            1,
            "one lineage expected: {:?}",
            self.report
        );
        self.report.lineages[0].row(node)
    }
}

/// A new version `v` of every lineage in `lineages` on node 1, as certbot renews: their
/// serials, in order.
pub fn renew_all<S: AsRef<str>>(bed: &Bed, lineages: &[S], v: u32) -> Vec<String> {
    lineages
        .iter()
        .map(|l| {
            make_version(bed, l.as_ref(), v);
            current_serial(bed, l.as_ref())
        })
        .collect()
}

/// A bed of `nodes` nodes on which every node serves each of `lineages` on a vhost of its own,
/// all on version 1 (made on node 1 and sent to fresh peers by one `sync`, before any vhost
/// names them): the bed and version 1's serials.
pub fn serving_bed<S: AsRef<str>>(nodes: usize, lineages: &[S]) -> (Bed, Vec<String>) {
    let bed = bed(nodes, false);
    default_tls_everywhere(&bed);
    let v1 = renew_all(&bed, lineages, 1);
    let (code, json, err) = super::sync_report::sync(&bed, &[]);
    assert_eq!(code, Some(0), "first sync: {err}\n{json:#}");
    for n in 1..=nodes {
        for l in lineages {
            bed.add_tls_vhost(n, l.as_ref(), l.as_ref()).unwrap();
        }
        reload_nginx(&bed, n);
    }
    (bed, v1)
}

/// Makes version `v` of `lineage` on node 1 — a fresh P-256 key and a self-signed certificate
/// for the name, valid for 30 days from now, in certbot's layout and modes — and points node
/// 1's live links at it, the way certbot does on renewal.
pub fn make_version(bed: &Bed, lineage: &str, v: u32) {
    make_version_valid(bed, lineage, v, None);
}

/// [`make_version`] with the certificate valid from `valid.0` to `valid.1` (Unix seconds), for
/// the lifetimes CAs issue now (160 hours, 45 or 90 days) at any point of their life.
pub fn make_version_valid(bed: &Bed, lineage: &str, v: u32, valid: Option<(i64, i64)>) {
    make_version_for(bed, lineage, lineage, v, valid);
}

/// [`make_version_valid`] for a certificate whose one name is `name` (e.g. an IP address),
/// which need not be the lineage's.
pub fn make_version_for(bed: &Bed, lineage: &str, name: &str, v: u32, valid: Option<(i64, i64)>) {
    let le = bed.letsencrypt_dir(1);
    let archive = le.join("archive").join(lineage);
    let live = le.join("live").join(lineage);
    for (dir, mode) in [
        (le.join("archive"), 0o700),
        (le.join("live"), 0o700),
        (archive.clone(), 0o755),
        (live.clone(), 0o755),
    ] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let key = archive.join(format!("privkey{v}.pem"));
    let cert = archive.join(format!("cert{v}.pem"));
    match valid {
        None => {
            let mut openssl = Command::new("openssl");
            openssl
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "30"])
                .arg("-subj")
                .arg(format!("/CN={name}"))
                .arg("-addext")
                .arg(format!("subjectAltName=DNS:{name}"))
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&cert);
            super::exec::exec(openssl).run();
        }
        Some((not_before, not_after)) => {
            self_signed(name, not_before, not_after, &cert, &key);
        }
    }
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let pem = std::fs::read_to_string(&cert).unwrap();
    std::fs::write(archive.join(format!("chain{v}.pem")), &pem).unwrap();
    std::fs::write(
        archive.join(format!("fullchain{v}.pem")),
        format!("{pem}{pem}"),
    )
    .unwrap();
    for kind in ["cert", "chain", "fullchain", "privkey"] {
        let link = live.join(format!("{kind}.pem"));
        let tmp = live.join(format!(".{kind}.pem.test-tmp"));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(format!("../../archive/{lineage}/{kind}{v}.pem"), &tmp).unwrap();
        std::fs::rename(&tmp, &link).unwrap();
    }
    // certbot runs as the agent's account (certherd leaves root before it starts certbot), so
    // everything it writes is the account's.
    let mut owned = vec![
        le.join("archive"),
        le.join("live"),
        archive.clone(),
        live.clone(),
    ];
    for kind in ["cert", "chain", "fullchain", "privkey"] {
        owned.push(archive.join(format!("{kind}{v}.pem")));
        owned.push(live.join(format!("{kind}.pem")));
    }
    for path in owned {
        bed.chown_to_agent(&path).unwrap();
    }
}

/// A self-signed P-256 certificate for `name` (a DNS name, or an IP address: then its only
/// subjectAltName is that address) valid from `not_before` to `not_after` (Unix seconds,
/// either may lie in the past), written as PEM to `cert` and its key to `key`:
/// openssl 3.0 (Debian 12) cannot set a past notBefore, python3-cryptography (certbot's own
/// dependency) can.
pub fn self_signed(name: &str, not_before: i64, not_after: i64, cert: &Path, key: &Path) {
    const SCRIPT: &str = r#"
import sys, datetime, ipaddress
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
name, nb, na, cert_path, key_path = sys.argv[1:]
utc = datetime.timezone.utc
key = ec.generate_private_key(ec.SECP256R1())
subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
try:
    san = x509.IPAddress(ipaddress.ip_address(name))
except ValueError:
    san = x509.DNSName(name)
cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(datetime.datetime.fromtimestamp(int(nb), utc))
        .not_valid_after(datetime.datetime.fromtimestamp(int(na), utc))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .sign(key, hashes.SHA256()))
open(cert_path, "wb").write(cert.public_bytes(serialization.Encoding.PEM))
open(key_path, "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
"#;
    // Debian's python3-cryptography.
    let mut python = Command::new("/usr/bin/python3");
    python
        .args(["-c", SCRIPT, name])
        .arg(not_before.to_string())
        .arg(not_after.to_string())
        .arg(cert)
        .arg(key);
    super::exec::exec(python).run();
}

/// On node `n`, a vhost that pins `lineage`'s certificate to a copy of its current key: the
/// node's config test passes as it is and fails once `lineage`'s live links name a new pair (a
/// vhost option that rejects one lineage's new certificate), which only a halving search of a
/// batch finds. The vhost is written, not loaded: the caller reloads when it needs to.
pub fn pin_current_key(bed: &Bed, n: usize, lineage: &str) {
    let live = bed.letsencrypt_dir(n).join("live").join(lineage);
    let pinned = bed.node_dir(n).join("pinned-key.pem");
    std::fs::copy(live.join("privkey.pem"), &pinned).unwrap();
    let conf = std::fs::read_to_string(bed.nginx_tls_conf(n)).unwrap();
    std::fs::write(
        bed.nginx_tls_conf(n),
        format!(
            "{conf}server {{\n  listen {ip}:443 ssl;\n  server_name pinned.test;\n  ssl_certificate {l}/fullchain.pem;\n  ssl_certificate_key {k};\n}}\n",
            ip = bed.ip(n),
            l = live.display(),
            k = pinned.display()
        ),
    )
    .unwrap();
}
