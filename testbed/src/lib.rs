//! The test bed: N web "nodes" on loopback, each with its own sshd and nginx, plus (optionally) a
//! pebble ACME CA with pebble-challtestsrv as its DNS.
//!
//! Used by the end-to-end tests, the `certherd-bed` demo binary and the benchmarks. Synchronous
//! std code only. Needs root (sshd, ports 22/80/443) and the Debian packages that
//! `scripts/setup-debian.sh` installs.
//!
//! Production's shape: every node's agent runs as the bed's own non-root account `certherd-bB`
//! (see `account.rs`), through the shipped `contrib/ssh` sshd block and authorized_keys line and
//! the shipped `contrib/sudoers/certherd` line, with the README's `[reload]` (`sudo -n nginx …`);
//! the account owns each node's webroot and letsencrypt dir.
//!
//! Addresses: a bed takes a free index B in 1..=250 (an exclusive `flock` on
//! `/tmp/certherd-beds/B.lock`, held for the bed's lifetime); node i is `127.0.B.i`, the CA and
//! its DNS listen on `127.0.B.250`. Many beds can run at once, in threads or processes.
//!
//! ```no_run
//! use certherd_testbed::{Bed, BedOptions};
//! let bed = Bed::start(BedOptions { nodes: 3, ca: true, certherd: "target/debug/certherd".into() })?;
//! bed.dns("site.test", &[2, 3])?;
//! let out = bed.certbot(&["certonly", "--manual", "-d", "site.test"]);
//! # Ok::<(), certherd_testbed::BedError>(())
//! ```
//!
//! With `BedOptions.netns` every node is its own network namespace on a bridge the bed creates
//! instead (node i is `198.18.B.i`, the CA `198.18.B.254`; see `netns.rs`), and keepalived can
//! run in the nodes' namespaces (`keepalived.rs`).
//!
//! Environment: `CERTHERD_KEEP_BED=1` keeps the bed's directory (logs, configs) after `Drop`; the
//! daemons are stopped anyway.

mod account;
mod apache;
mod config_edit;
pub mod delay;
pub mod demo;
mod dns01;
mod error;
mod haproxy;
mod holders;
mod keepalived;
mod netns;
mod node;
mod pebble;
mod proc;
mod reach;
mod slot;
mod vhost;

pub use config_edit::{ConfigEditError, ConfigFile};
pub use error::BedError;
pub use haproxy::{Haproxies, HAPROXY_PORT};
pub use keepalived::Vrrp;
pub use netns::MAX_NETNS_NODES;
pub use proc::{run_measured, Measured};

use std::collections::HashMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use account::Account;
use node::{mkdir, q, qp, write, NodePaths};
use proc::{run_bounded, run_ok, stop_all, Daemon};
use slot::Slot;

/// How long a daemon gets to start listening. A ready daemon is seen within one poll, so this
/// only bounds a failure; 5 s was too short for pebble on the 2-core machine under a full run
/// beside other builds (load 20: "pebble not listening in time", tests/vrrp.rs).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a daemon gets to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// certbot runs are killed after this.
const CERTBOT_TIMEOUT: Duration = Duration::from_secs(120);
/// Highest node number (127.0.B.250 is the CA's).
pub const MAX_NODES: usize = 249;

/// The environment variable that makes the bed (and every test) run another certbot than
/// Debian's `/usr/bin/certbot`: scripts/test.sh runs the certbot e2e tests a second time with
/// the newest certbot from PyPI (`/opt/certherd-certbot5/bin/certbot`, installed by
/// scripts/setup-debian.sh), so both ends of the certbot versions users run are tested.
pub const CERTBOT_ENV: &str = "CERTHERD_BED_CERTBOT";

/// The certbot every certbot run of the bed uses: `$CERTHERD_BED_CERTBOT`, else Debian's. A
/// value that is not an absolute path to an executable panics with the reason: a test must
/// never silently fall back to another certbot than the one it was asked to test.
pub fn certbot_program() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let Some(chosen) = std::env::var_os(CERTBOT_ENV) else {
        return PathBuf::from("/usr/bin/certbot");
    };
    let path = PathBuf::from(&chosen);
    let executable =
        fs::metadata(&path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !path.is_absolute() || !executable {
        panic!(
            "{CERTBOT_ENV}={}: expected the absolute path of a certbot executable (e.g. /opt/certherd-certbot5/bin/certbot from scripts/setup-debian.sh)",
            path.display()
        );
    }
    path
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// One `[[peers]]` entry of a node's certherd config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerSpec {
    /// 1-based node number.
    pub node: usize,
    pub optional: bool,
    pub check_only: bool,
}

impl PeerSpec {
    /// A required, fully managed peer.
    pub fn new(node: usize) -> PeerSpec {
        PeerSpec {
            node,
            optional: false,
            check_only: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct BedOptions {
    /// Number of nodes (1..=249); node 1 is the primary.
    pub nodes: usize,
    /// Also start pebble and pebble-challtestsrv.
    pub ca: bool,
    /// Path to the built `certherd` binary (the peers' forced command and the hooks).
    pub certherd: PathBuf,
    /// Every node in its own network namespace on a bridge (198.18.B.I; see `netns.rs`).
    pub netns: bool,
}

impl Default for BedOptions {
    fn default() -> Self {
        BedOptions {
            nodes: 3,
            ca: false,
            certherd: PathBuf::from("certherd"),
            netns: false,
        }
    }
}

/// A running test bed. Dropping it stops every daemon (by PID) and removes its directory.
pub struct Bed {
    // Field order matters for Drop: the lock (in `slot`) is released last.
    root: PathBuf,
    index: u8,
    nodes: Vec<NodePaths>,
    ca: bool,
    certherd: PathBuf,
    daemons: Mutex<HashMap<String, Daemon>>,
    /// The namespaces, veths and bridge of a namespaced bed (removed in Drop, after the daemons).
    net: Option<netns::Net>,
    /// The agent's account on every node (removed in Drop, after the daemons stopped).
    account: Account,
    slot: Slot,
}

impl Bed {
    /// Starts a bed: directories, keys, configs, one sshd and one nginx per node, and the CA if
    /// asked. The error says what failed, with the failing daemon's log tail.
    pub fn start(opts: BedOptions) -> Result<Bed, BedError> {
        if opts.nodes == 0 || opts.nodes > MAX_NODES {
            return Err(BedError::Setup(format!(
                "nodes: {}: expected 1..={MAX_NODES}",
                opts.nodes
            )));
        }
        let certherd = if opts.certherd.is_absolute() {
            opts.certherd.clone()
        } else {
            std::env::current_dir()
                .map_err(BedError::io("read the current dir", "."))?
                .join(&opts.certherd)
        };
        let slot = Slot::acquire(opts.nodes, opts.ca)?;
        let b = slot.index;
        let root = PathBuf::from(format!(
            "/tmp/certherd-bed-{b}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        if root.exists() {
            let _ = fs::remove_dir_all(&root);
        }
        // The start-up time printed with CERTHERD_BED_VERBOSE counts the account, too.
        let t0 = Instant::now();
        let net = match opts.netns {
            true => Some(netns::Net::create(b, opts.nodes)?),
            false => None,
        };
        let account = Account::create(b, &root)?;
        // The account runs this binary (agents, certbot's hooks): from a checkout it cannot
        // enter, the bed runs a copy in its own directory (reach.rs).
        let certherd = reach::place(&certherd, &root.join("bin")).inspect_err(|_| {
            let _ = fs::remove_dir_all(&root);
        })?;
        let bed = Bed {
            nodes: (1..=opts.nodes)
                .map(|i| match net {
                    Some(_) => NodePaths::new(&root, b, i).in_netns(b),
                    None => NodePaths::new(&root, b, i),
                })
                .collect(),
            net,
            root,
            index: b,
            ca: opts.ca,
            certherd,
            daemons: Mutex::new(HashMap::new()),
            account,
            slot,
        };
        // From here on, an early return drops `bed`, which stops whatever was started.
        bed.setup(t0)?;
        Ok(bed)
    }

    fn setup(&self, t0: Instant) -> Result<(), BedError> {
        mkdir(&self.root, 0o755)?;
        mkdir(&self.root.join("ssh"), 0o700)?;
        mkdir(&self.ssh_dir().join("cm"), 0o700)?;
        if self.net.is_some() {
            for n in &self.nodes {
                mkdir(&netns::control_dir(&self.ssh_dir(), n.i), 0o700)?;
            }
        }
        mkdir(&self.root.join("certbot"), 0o755)?;
        fs::create_dir_all("/run/sshd").map_err(BedError::io("mkdir", "/run/sshd"))?;

        // Keys: the client key and every host key, generated in parallel.
        let t = Duration::from_secs(20);
        let mut keygens = vec![self.ssh_dir().join("id_ed25519")];
        keygens.extend(self.nodes.iter().map(|n| n.host_key.clone()));
        for n in &self.nodes {
            mkdir(&n.dir, 0o755)?;
            mkdir(&n.sshd_dir, 0o755)?;
        }
        std::thread::scope(|s| {
            let hs: Vec<_> = keygens
                .iter()
                .map(|k| {
                    s.spawn(move || {
                        run_ok(
                            Command::new("/usr/bin/ssh-keygen")
                                .args(["-q", "-t", "ed25519", "-N", "", "-C", "certherd-bed", "-f"])
                                .arg(k),
                            t,
                        )
                    })
                })
                .collect();
            hs.into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("ssh-keygen thread panicked".into()))
                })
                .collect::<Result<Vec<_>, BedError>>()
        })?;
        let read_pub = |k: &Path| -> Result<String, BedError> {
            let p = k.with_extension("pub");
            let text = fs::read_to_string(&p).map_err(BedError::io("read", &p))?;
            // "ssh-ed25519 AAAA... comment" -> "ssh-ed25519 AAAA..."
            Ok(text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" "))
        };
        let client_pub = read_pub(&self.ssh_dir().join("id_ed25519"))?;
        let mut known_hosts = String::new();
        for n in &self.nodes {
            known_hosts.push_str(&format!("{} {}\n", n.ip, read_pub(&n.host_key)?));
            node::prepare(
                n,
                &self.certherd,
                &format!("{client_pub} certherd-bed"),
                &self.account,
            )?;
        }
        self.account.write_sudoers(
            &self
                .nodes
                .iter()
                .map(|n| n.nginx_conf.clone())
                .collect::<Vec<_>>(),
        )?;
        write(&self.ssh_dir().join("known_hosts"), &known_hosts)?;
        // The primary's certbot and hooks run as the agent's account (certherd drops to the
        // letsencrypt dir's owner): its identity (0600), known_hosts, control sockets and
        // certbot's work/logs dirs are the account's, as the README's checklist has them.
        for p in [
            "ssh",
            "ssh/cm",
            "ssh/id_ed25519",
            "ssh/id_ed25519.pub",
            "ssh/known_hosts",
            "certbot",
        ] {
            self.account.chown(&self.root.join(p))?;
        }
        // A namespaced bed's per-node control dirs too: the primary's hooks open their masters
        // there as the account (root-owned, every hook failed: "control directory … must be a
        // directory owned by uid …").
        if self.net.is_some() {
            for n in &self.nodes {
                self.account
                    .chown(&netns::control_dir(&self.ssh_dir(), n.i))?;
            }
        }

        // Default certherd configs: node 1 lists all others as peers; the others list none.
        let all_peers: Vec<PeerSpec> = (2..=self.nodes.len()).map(PeerSpec::new).collect();
        for n in &self.nodes {
            let peers: &[PeerSpec] = if n.i == 1 { &all_peers } else { &[] };
            self.write_config(n.i, peers, "")?;
        }

        // Spawn everything, then wait for everything.
        let ca_ip = self.ca_ip();
        if self.ca {
            pebble::prepare(&self.root, ca_ip)?;
            self.insert(
                "challtestsrv",
                pebble::spawn_challtestsrv(&self.root, ca_ip)?,
            );
            self.insert("pebble", pebble::spawn_pebble(&self.root, ca_ip)?);
        }
        for n in &self.nodes {
            self.insert(&key_sshd(n.i), node::spawn_sshd(n)?);
            self.insert(&key_nginx(n.i), node::spawn_nginx(n)?);
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let mut waits: Vec<(String, SocketAddr)> = Vec::new();
        if self.ca {
            waits.push(("challtestsrv".into(), sa(ca_ip, pebble::CHALL_MGMT_PORT)));
            waits.push(("pebble".into(), sa(ca_ip, pebble::ACME_PORT)));
        }
        for n in &self.nodes {
            waits.push((key_sshd(n.i), sa(n.ip, 22)));
            waits.push((key_nginx(n.i), sa(n.ip, 80)));
        }
        for (key, addr) in waits {
            self.wait_daemon(&key, addr, deadline)?;
        }
        if std::env::var_os("CERTHERD_BED_VERBOSE").is_some() {
            eprintln!(
                "testbed: bed {} ({} nodes{}) up in {:?} at {}",
                self.index,
                self.nodes.len(),
                if self.ca { " + CA" } else { "" },
                t0.elapsed(),
                self.root.display()
            );
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Daemon>> {
        self.daemons.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, key: &str, d: Daemon) {
        self.slot.record(d.pid(), &self.root);
        if let Some(old) = self.lock().insert(key.to_string(), d) {
            stop_all(vec![old], STOP_GRACE);
        }
    }

    fn wait_daemon(&self, key: &str, addr: SocketAddr, deadline: Instant) -> Result<(), BedError> {
        let mut map = self.lock();
        let d = map
            .get_mut(key)
            .ok_or_else(|| format!("{key} was not started"))?;
        d.wait_tcp(addr, deadline)
    }

    fn stop_key(&self, key: &str) {
        let d = self.lock().remove(key);
        if let Some(d) = d {
            stop_all(vec![d], STOP_GRACE);
        }
    }

    /// How the daemon `key` ended, once it has (a daemon never started counts as running: the
    /// caller asks about one it just started).
    fn exit_status(&self, key: &str) -> Option<std::process::ExitStatus> {
        self.lock().get_mut(key).and_then(|d| d.exited())
    }

    fn running(&self, key: &str) -> bool {
        self.lock()
            .get_mut(key)
            .is_some_and(|d| d.exited().is_none())
    }

    fn node(&self, node: usize) -> &NodePaths {
        assert!(
            node >= 1 && node <= self.nodes.len(),
            "node {node} out of range 1..={}",
            self.nodes.len()
        );
        &self.nodes[node - 1]
    }

    fn ssh_dir(&self) -> PathBuf {
        self.root.join("ssh")
    }

    fn ca_ip(&self) -> Ipv4Addr {
        if self.net.is_some() {
            return netns::bridge_ip(self.index);
        }
        Ipv4Addr::new(127, 0, self.index, 250)
    }

    /// The bed's index B (node i is 127.0.B.i).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// Number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// `127.0.B.<node>` (`198.18.B.<node>` on a namespaced bed); `node` is 1-based.
    pub fn ip(&self, node: usize) -> Ipv4Addr {
        self.node(node).ip
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn node_dir(&self, node: usize) -> PathBuf {
        self.node(node).dir.clone()
    }

    /// Tokens live in `<webroot>/.well-known/acme-challenge/`.
    pub fn webroot(&self, node: usize) -> PathBuf {
        self.node(node).webroot.clone()
    }

    pub fn letsencrypt_dir(&self, node: usize) -> PathBuf {
        self.node(node).letsencrypt.clone()
    }

    /// The node's `certherd.toml`.
    pub fn config_path(&self, node: usize) -> PathBuf {
        self.node(node).config.clone()
    }

    /// The node's nginx config file (`nginx -c` argument).
    pub fn nginx_conf(&self, node: usize) -> PathBuf {
        self.node(node).nginx_conf.clone()
    }

    /// The file nginx.conf includes at http level for the node's TLS (:443) server; initially
    /// only a comment. Write a `server { listen <ip>:443 ssl; ... }` block there and reload.
    pub fn nginx_tls_conf(&self, node: usize) -> PathBuf {
        self.node(node).nginx_dir.join("tls.conf")
    }

    /// Gives every node a TLS server on its :443 that uses `live/<lineage>/`, and reloads the
    /// nodes that already hold the certificate; the others pick it up when certherd installs it
    /// (their `[reload]` runs `nginx -t` and the reload). Used by the demo, tests and benchmarks.
    pub fn enable_tls(&self, lineage: &str) -> Result<(), BedError> {
        for n in 1..=self.nodes() {
            let live = self.letsencrypt_dir(n).join("live").join(lineage);
            write(
                &self.nginx_tls_conf(n),
                &format!(
                    "server {{\n  listen {ip}:443 ssl;\n  server_name _;\n  ssl_certificate {l}/fullchain.pem;\n  ssl_certificate_key {l}/privkey.pem;\n  location / {{ return 200 \"node{n}\\n\"; }}\n}}\n",
                    ip = self.ip(n),
                    l = live.display()
                ),
            )?;
            if live.join("fullchain.pem").exists() {
                self.reload_nginx(n)?;
            }
        }
        Ok(())
    }

    /// `nginx -s reload` for one node's nginx.
    pub fn reload_nginx(&self, node: usize) -> Result<(), BedError> {
        let out = Command::new("/usr/sbin/nginx")
            .arg("-s")
            .arg("reload")
            .arg("-c")
            .arg(self.nginx_conf(node))
            .output()
            .map_err(|source| BedError::Spawn {
                what: format!("nginx -s reload on node {node}"),
                source,
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(BedError::Command {
                what: format!("nginx -s reload on node {node}"),
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            })
        }
    }

    /// The node's nginx access log (combined format).
    pub fn access_log(&self, node: usize) -> PathBuf {
        self.node(node).access_log()
    }

    /// The directory whose `*.conf` the node's sshd includes (what production keeps in
    /// `/etc/ssh/sshd_config.d/`); send the sshd SIGHUP ([`Bed::reload_sshd`]) after a change.
    pub fn sshd_conf_d(&self, node: usize) -> PathBuf {
        self.node(node).sshd_dir.join("sshd_config.d")
    }

    /// The node's sshd config file (`sshd -t -f` argument).
    pub fn sshd_conf(&self, node: usize) -> PathBuf {
        self.node(node).sshd_conf.clone()
    }

    /// The node's sshd pid file (SIGHUP makes sshd re-read its config).
    pub fn sshd_pid_file(&self, node: usize) -> PathBuf {
        self.node(node).sshd_dir.join("sshd.pid")
    }

    /// The node's sshd log (its stderr, LogLevel ERROR).
    pub fn sshd_log(&self, node: usize) -> PathBuf {
        self.node(node).sshd_log()
    }

    /// The client's private key (`<root>/ssh/id_ed25519`).
    pub fn ssh_identity(&self) -> PathBuf {
        self.ssh_dir().join("id_ed25519")
    }

    /// `<root>/ssh/known_hosts`, one line per node.
    pub fn known_hosts(&self) -> PathBuf {
        self.ssh_dir().join("known_hosts")
    }

    /// Rewrites a node's certherd.toml.
    ///
    /// Layout: top-level keys (`name`, `letsencrypt_dir`, `webroot`, `http`, `https`), then
    /// `[ssh]`, `[check]`, `[reload]`, then `extra` verbatim, then one `[[peers]]` table per
    /// `PeerSpec`. Because `extra` comes after `[reload]`, top-level keys in it would land inside
    /// `[reload]`: give `extra` its own section header(s) (e.g. `[alert]\n...` or `[renew]\n...`).
    pub fn write_config(
        &self,
        node: usize,
        peers: &[PeerSpec],
        extra: &str,
    ) -> Result<(), BedError> {
        let n = self.node(node);
        let ssh = self.ssh_dir();
        let mut t = String::new();
        t.push_str(&format!(
            "# certherd test bed {}, node{}\n",
            self.index, n.i
        ));
        t.push_str(&format!("name = {}\n", q(format!("node{}", n.i))));
        t.push_str(&format!("letsencrypt_dir = {}\n", qp(&n.letsencrypt)));
        t.push_str(&format!("webroot = {}\n", qp(&n.webroot)));
        t.push_str(&format!("http = {}\n", q(format!("{}:80", n.ip))));
        t.push_str(&format!("https = {}\n", q(format!("{}:443", n.ip))));
        t.push_str(&format!("\n[ssh]\nuser = {}\n", q(&self.account.name)));
        t.push_str(&format!("identity = {}\n", qp(&ssh.join("id_ed25519"))));
        t.push_str(&format!("known_hosts = {}\n", qp(&ssh.join("known_hosts"))));
        t.push_str("connect_timeout = \"5s\"\n");
        let cm = match self.net {
            Some(_) => netns::control_dir(&ssh, n.i),
            None => ssh.join("cm"),
        };
        t.push_str(&format!("control_dir = {}\n", qp(&cm)));
        t.push_str("\n[check]\ntimeout = \"10s\"\n");
        t.push_str(&format!("\n{}", self.reload_section(node)?));
        if !extra.trim().is_empty() {
            t.push('\n');
            t.push_str(extra);
            if !extra.ends_with('\n') {
                t.push('\n');
            }
        }
        for p in peers {
            if p.node < 1 || p.node > self.nodes.len() {
                return Err(BedError::Setup(format!(
                    "peer node {}: expected 1..={}",
                    p.node,
                    self.nodes.len()
                )));
            }
            let ip = self.ip(p.node);
            t.push_str(&format!(
                "\n[[peers]]\nname = {}\n",
                q(format!("node{}", p.node))
            ));
            t.push_str(&format!("host = {}\n", q(ip.to_string())));
            t.push_str(&format!("http = {}\n", q(format!("{ip}:80"))));
            t.push_str(&format!("https = {}\n", q(format!("{ip}:443"))));
            if p.optional {
                t.push_str("optional = true\n");
            }
            if p.check_only {
                t.push_str("check_only = true\n");
            }
        }
        write(&n.config, &t)
    }

    /// The README's `[reload]` section (`sudo -n nginx … -c /etc/nginx/nginx.conf`, the commands
    /// contrib/sudoers/certherd allows), with the node's nginx.conf substituted. The agent runs it
    /// as the bed's account, so only exactly the sudoers lines work.
    /// On a node that runs Apache ([`Bed::use_apache`]), docs/APACHE.md's instead.
    pub fn reload_section(&self, node: usize) -> Result<String, BedError> {
        if apache::uses_apache(self.node(node)) {
            return apache::reload_section(self.node(node));
        }
        self.nginx_reload_section(node)
    }

    fn nginx_reload_section(&self, node: usize) -> Result<String, BedError> {
        let readme = account::read_contrib("../README.md")?;
        let start = readme
            .find("\n[reload]")
            .ok_or("README.md has no [reload] section")?;
        let section: String = readme[start + 1..]
            .lines()
            .take_while(|l| !l.trim().is_empty() && !l.starts_with("```"))
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{}\n", l.split(" #").next().unwrap_or(l).trim_end()))
            .collect();
        Ok(section.replace(
            "/etc/nginx/nginx.conf",
            &self.node(node).nginx_conf.to_string_lossy(),
        ))
    }

    /// The agent's account on every node of this bed (`certherd-bB`: accounts are global to the
    /// machine, beds run in parallel).
    pub fn agent_user(&self) -> &str {
        &self.account.name
    }

    /// The agent account's uid and gid (e.g. for a tmpfs mounted over a node's directory).
    pub fn agent_uid_gid(&self) -> (u32, u32) {
        (self.account.uid, self.account.gid)
    }

    /// Makes `cmd` run as the agent's account (uid, gid, no supplementary groups; `HOME` and
    /// `USER` its own), as certherd runs certbot after dropping root.
    pub fn as_agent<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        use std::os::unix::process::CommandExt;
        cmd.uid(self.account.uid)
            .gid(self.account.gid)
            .env("HOME", &self.root)
            .env("USER", &self.account.name)
            .env("LOGNAME", &self.account.name)
            .env_remove("XDG_RUNTIME_DIR")
    }

    /// `program` on node `node` as the agent's account. On a namespaced bed `ip netns exec` must
    /// run as root (entering a namespace needs CAP_SYS_ADMIN), so the switch to the account is
    /// setpriv's, inside the namespace; elsewhere it is [`Bed::as_agent`]'s.
    pub fn agent_command_on(&self, node: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        if !self.is_netns() {
            let mut cmd = Command::new(program);
            self.as_agent(&mut cmd);
            return cmd;
        }
        let mut cmd = self.command_on(node, "/usr/bin/setpriv");
        cmd.arg(format!("--reuid={}", self.account.uid))
            .arg(format!("--regid={}", self.account.gid))
            .args(["--init-groups", "--"])
            .arg(program)
            .env("HOME", &self.root)
            .env("USER", &self.account.name)
            .env("LOGNAME", &self.account.name)
            .env_remove("XDG_RUNTIME_DIR");
        cmd
    }

    /// Gives a path the bed created as root (a directory a test made) to the agent's account,
    /// as the checklist does for the webroot and the letsencrypt dir.
    pub fn chown_to_agent(&self, path: &Path) -> Result<(), BedError> {
        self.account.chown(path)
    }

    /// Makes `name` resolve (in challtestsrv, pebble's DNS) to these nodes' IPs, in this order.
    /// pebble validates against the first address only.
    pub fn dns(&self, name: &str, nodes: &[usize]) -> Result<(), BedError> {
        if !self.ca {
            return Err(BedError::Setup(
                "dns(): this bed has no CA (BedOptions.ca = false)".into(),
            ));
        }
        let host = format!("{}.", name.trim_end_matches('.'));
        let addrs: Vec<String> = nodes.iter().map(|&i| self.ip(i).to_string()).collect();
        pebble::mgmt_post(
            self.ca_ip(),
            "/clear-a",
            &serde_json::json!({ "host": host }),
        )?;
        if !addrs.is_empty() {
            pebble::mgmt_post(
                self.ca_ip(),
                "/add-a",
                &serde_json::json!({ "host": host, "addresses": addrs }),
            )?;
        }
        Ok(())
    }

    /// `[renew] certbot` for node `n`: certbot with that node's own config dir and work and log
    /// dirs under the bed (`certbot/work{n}`, `certbot/logs{n}`), as `certherd renew` runs it.
    pub fn renew_certbot_argv(&self, n: usize) -> Vec<String> {
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        vec![
            s(certbot_program()),
            "--config-dir".into(),
            s(self.letsencrypt_dir(n)),
            "--work-dir".into(),
            s(self.root.join(format!("certbot/work{n}"))),
            "--logs-dir".into(),
            s(self.root.join(format!("certbot/logs{n}"))),
            "--non-interactive".into(),
        ]
    }

    /// The bed's common certbot arguments (appended after the caller's in `certbot()`).
    pub fn certbot_common_args(&self) -> Vec<String> {
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        vec![
            "--server".into(),
            self.pebble_url(),
            "--config-dir".into(),
            s(self.letsencrypt_dir(1)),
            "--work-dir".into(),
            s(self.root.join("certbot/work")),
            "--logs-dir".into(),
            s(self.root.join("certbot/logs")),
            "--non-interactive".into(),
            "--agree-tos".into(),
            "--register-unsafely-without-email".into(),
        ]
    }

    /// Runs `certbot <args> <common args>` ([`certbot_program`]) on node 1 (in its namespace on a namespaced
    /// bed) as the agent's account (as `certherd issue`/`renew` run it, never root over the
    /// account's files) with `REQUESTS_CA_BUNDLE` set to the bed's CA; killed after 120 s (then
    /// stderr ends with a `[testbed: killed ...]` note).
    pub fn certbot(&self, args: &[&str]) -> Output {
        let certbot = certbot_program();
        let mut cmd = self.agent_command_on(1, &certbot);
        cmd.args(args)
            .args(self.certbot_common_args())
            .env("REQUESTS_CA_BUNDLE", self.ca_bundle())
            .current_dir(&self.root);
        match run_bounded(&mut cmd, CERTBOT_TIMEOUT) {
            Ok(o) => o,
            Err(e) => Output {
                status: failed_status(),
                stdout: Vec::new(),
                stderr: format!("testbed: cannot run {}: {e}\n", certbot.display()).into_bytes(),
            },
        }
    }

    /// A certherd hook as certbot runs it on node 1 (the primary):
    /// `<certherd> --config <node 1's certherd.toml> <what>`.
    pub fn hook_command(&self, what: &str) -> String {
        format!(
            "{} --config {} {what}",
            self.certherd.display(),
            self.config_path(1).display()
        )
    }

    /// certbot's `certonly` arguments with certherd's auth and cleanup hooks on node 1 and, when
    /// given, `--deploy-hook`; the caller adds `-d NAME` and any other flags. The one copy for
    /// the tests, the demo and the benchmarks.
    pub fn certonly_args(&self, deploy_hook: Option<&str>) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "certonly".into(),
            "--manual".into(),
            "--preferred-challenges".into(),
            "http".into(),
            "--manual-auth-hook".into(),
            self.hook_command("auth"),
            "--manual-cleanup-hook".into(),
            self.hook_command("cleanup"),
        ];
        if let Some(hook) = deploy_hook {
            args.extend(["--deploy-hook".into(), hook.to_owned()]);
        }
        args
    }

    /// `<certherd> --config <node's certherd.toml> <args...>`, not yet run; on a namespaced bed
    /// it runs in the node's namespace (`ip netns exec`), where `[renew] vip` is looked up.
    pub fn certherd(&self, node: usize, args: &[&str]) -> Command {
        let mut cmd = self.command_on(node, &self.certherd);
        cmd.arg("--config").arg(self.config_path(node)).args(args);
        cmd
    }

    /// The certherd binary the bed runs: the one it was started with, or, when the agent's
    /// account cannot reach that one (a checkout under a 0700 directory), its copy in the bed's
    /// directory. Anything the account runs (hooks, forced commands) must name this path.
    pub fn certherd_bin(&self) -> &Path {
        &self.certherd
    }

    /// Plain `ssh` to the node's sshd with the bed's key and known_hosts (BatchMode, strict host
    /// key checking, no control master, no user ssh config). The forced command starts
    /// `certherd agent`; the caller sets stdin/stdout.
    pub fn ssh_agent_command(&self, node: usize) -> Command {
        let mut cmd = Command::new("/usr/bin/ssh");
        cmd.args(self.ssh_args()).arg(self.ip(node).to_string());
        cmd
    }

    /// The options `ssh_agent_command` uses, before the host (for baselines that run their own ssh).
    pub fn ssh_args(&self) -> Vec<String> {
        let ssh = self.ssh_dir();
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-T".into(),
            "-i".into(),
            s(ssh.join("id_ed25519")),
            "-l".into(),
            self.account.name.clone(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", s(ssh.join("known_hosts"))),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "ControlMaster=no".into(),
            "-o".into(),
            "ControlPath=none".into(),
            "-o".into(),
            "ConnectTimeout=5".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    pub fn stop_sshd(&self, node: usize) {
        self.stop_key(&key_sshd(self.node(node).i));
    }

    /// Starts the node's sshd again (no-op if running); waits until port 22 accepts.
    pub fn start_sshd(&self, node: usize) -> Result<(), BedError> {
        let n = self.node(node).clone();
        let key = key_sshd(n.i);
        if self.running(&key) {
            return Ok(());
        }
        self.insert(&key, node::spawn_sshd(&n)?);
        self.wait_daemon(&key, sa(n.ip, 22), Instant::now() + START_TIMEOUT)
    }

    pub fn stop_nginx(&self, node: usize) {
        self.stop_key(&key_nginx(self.node(node).i));
    }

    /// Starts the node's nginx again (no-op if running); waits until port 80 accepts.
    pub fn start_nginx(&self, node: usize) -> Result<(), BedError> {
        let n = self.node(node).clone();
        let key = key_nginx(n.i);
        if self.running(&key) {
            return Ok(());
        }
        self.insert(&key, node::spawn_nginx(&n)?);
        self.wait_daemon(&key, sa(n.ip, 80), Instant::now() + START_TIMEOUT)
    }

    /// `https://127.0.B.250:14000/dir`
    pub fn pebble_url(&self) -> String {
        format!("https://{}:{}/dir", self.ca_ip(), pebble::ACME_PORT)
    }

    /// pebble's management interface, e.g. `<url>/roots/0` for the issuing root.
    pub fn pebble_management_url(&self) -> String {
        format!("https://{}:{}", self.ca_ip(), pebble::PEBBLE_MGMT_PORT)
    }

    /// The PEM CA certificate that signs pebble's own HTTPS certificate (what certbot trusts).
    pub fn ca_bundle(&self) -> PathBuf {
        pebble::paths(&self.root).ca_pem
    }

    /// Asks every ssh control master under `<root>/ssh/cm` to exit (bounded, in parallel).
    pub fn close_control_masters(&self) {
        let mut socks = Vec::new();
        find_sockets(&self.ssh_dir().join("cm"), 0, &mut socks);
        let mut children = Vec::new();
        for s in socks {
            let c = Command::new("/usr/bin/ssh")
                .args(["-F", "/dev/null", "-o", "BatchMode=yes", "-S"])
                .arg(&s)
                .args(["-O", "exit", "x"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn();
            if let Ok(c) = c {
                children.push(c);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for mut c in children {
            loop {
                if c.try_wait().ok().flatten().is_some() {
                    break;
                }
                if Instant::now() >= deadline {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(proc::POLL);
            }
        }
        holders::stop(&self.ssh_dir().join("cm"));
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.close_control_masters();
        let daemons: Vec<Daemon> = self.lock().drain().map(|(_, d)| d).collect();
        stop_all(daemons, STOP_GRACE);
        keepalived::stop_watchers(self);
        apache::remove_sudoers(self.index);
        self.account.remove();
        self.slot.clear_record();
        if std::env::var_os("CERTHERD_KEEP_BED").is_some() {
            eprintln!(
                "testbed: keeping {} (CERTHERD_KEEP_BED)",
                self.root.display()
            );
        } else if self.root.starts_with("/tmp") && self.root.exists() {
            if let Err(e) = fs::remove_dir_all(&self.root) {
                eprintln!("testbed: cannot remove {}: {e}", self.root.display());
            }
        }
    }
}

fn key_sshd(i: usize) -> String {
    format!("sshd{i}")
}

fn key_nginx(i: usize) -> String {
    format!("nginx{i}")
}

fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

fn find_sockets(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    if depth > 3 {
        return;
    }
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_socket() {
            out.push(e.path());
        } else if ft.is_dir() {
            find_sockets(&e.path(), depth + 1, out);
        }
    }
}

fn failed_status() -> std::process::ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    std::process::ExitStatus::from_raw(1 << 8)
}

/// Where a node is reached when something (e.g. a [`delay::DelayProxy`]) stands in front of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddrs {
    /// sshd address (`host` and `port` in the peer's config).
    pub ssh: SocketAddr,
    /// Where the self-check fetches tokens.
    pub http: SocketAddr,
    /// Where the served certificate is checked.
    pub https: SocketAddr,
}

/// Additions for the benchmarks (`certherd-bench`): plain logins for the hand-made baselines and
/// peers reached through other addresses.
impl Bed {
    /// A second client key, `<root>/ssh/id_plain`, in root's `authorized_keys` on every node
    /// with no forced command: a plain root shell, for baselines (`ssh host cmd`, rsync) that run
    /// their own commands. Idempotent; returns the private key's path. Use with
    /// [`Bed::ssh_args`] after replacing its `-i` value with this key and its `-l` with `root`.
    pub fn enable_plain_login(&self) -> Result<PathBuf, BedError> {
        let key = self.ssh_dir().join("id_plain");
        if key.exists() {
            return Ok(key);
        }
        run_ok(
            Command::new("/usr/bin/ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "certherd-bed-plain",
                    "-f",
                ])
                .arg(&key),
            Duration::from_secs(20),
        )?;
        let pub_path = key.with_extension("pub");
        let public = fs::read_to_string(&pub_path).map_err(BedError::io("read", &pub_path))?;
        let line = format!("{}\n", public.trim());
        for n in &self.nodes {
            let ak = n.root_keys();
            let mut text = fs::read_to_string(&ak).map_err(BedError::io("read", &ak))?;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&line);
            write(&ak, &text)?;
        }
        Ok(key)
    }

    /// Adds a line to the bed's known_hosts naming `node`'s host key under `addr` (ssh checks the
    /// key by the address it connects to, so a proxy in front of a node needs its own line).
    pub fn add_known_host(&self, node: usize, addr: SocketAddr) -> Result<(), BedError> {
        let n = self.node(node);
        let p = n.host_key.with_extension("pub");
        let key = fs::read_to_string(&p).map_err(BedError::io("read", &p))?;
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        let host = if addr.port() == 22 {
            addr.ip().to_string()
        } else {
            format!("[{}]:{}", addr.ip(), addr.port())
        };
        let path = self.known_hosts();
        let mut text = fs::read_to_string(&path).map_err(BedError::io("read", &path))?;
        let line = format!("{host} {}\n", key.join(" "));
        if !text.lines().any(|l| format!("{l}\n") == line) {
            text.push_str(&line);
            write(&path, &text)?;
        }
        Ok(())
    }

    /// Like [`Bed::write_config`], but each peer is reached at the given addresses instead of
    /// its own `127.0.B.i` (e.g. through a delay proxy).
    pub fn write_config_addrs(
        &self,
        node: usize,
        peers: &[(PeerSpec, PeerAddrs)],
        extra: &str,
    ) -> Result<(), BedError> {
        self.write_config(node, &[], extra)?;
        let path = self.config_path(node);
        let mut t = fs::read_to_string(&path).map_err(BedError::io("read", &path))?;
        for (p, a) in peers {
            if p.node < 1 || p.node > self.nodes.len() {
                return Err(BedError::Setup(format!(
                    "peer node {}: expected 1..={}",
                    p.node,
                    self.nodes.len()
                )));
            }
            t.push_str(&format!(
                "\n[[peers]]\nname = {}\n",
                q(format!("node{}", p.node))
            ));
            t.push_str(&format!("host = {}\n", q(a.ssh.ip().to_string())));
            t.push_str(&format!("port = {}\n", a.ssh.port()));
            t.push_str(&format!("http = {}\n", q(a.http.to_string())));
            t.push_str(&format!("https = {}\n", q(a.https.to_string())));
            if p.optional {
                t.push_str("optional = true\n");
            }
            if p.check_only {
                t.push_str("check_only = true\n");
            }
        }
        write(&path, &t)
    }
}
