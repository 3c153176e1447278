//! Bed option `netns`: every node is its own network namespace, as every web server is its own
//! machine in production.
//!
//! Node I of bed B is the namespace `certherd-bB-nI` (with `lo` up) holding one end of a veth
//! pair, `eth0`, with the address 198.18.B.I/24; the other end, `chvB-I`, is a port of the bridge
//! `chbrB` that the bed creates in the root namespace with 198.18.B.254/24 (where pebble and
//! challtestsrv listen). 198.18.0.0/15 is RFC 2544's benchmarking range, never routed anywhere,
//! and the bridge has no other port and no route out: nothing leaves the namespaces the bed made.
//! Addresses 198.18.B.100..=253 are left free for test VIPs (at most [`MAX_NETNS_NODES`] nodes).
//!
//! Taking a node's link down (`ip link set chvB-I down`) is pulling its cable: its daemons keep
//! running, but nothing reaches it and its `eth0` loses carrier (keepalived goes FAULT).
//!
//! Every name is derived from the bed index B, which the bed holds exclusively (its flock), so
//! whatever carries those names when a bed starts is a leftover of a crashed run and is removed
//! first; [`Net`]'s Drop removes veths, namespaces and the bridge, also when a test panicked.

use crate::BedError;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::proc::{run_bounded, run_ok};
use super::Bed;

/// `ip` of iproute2.
pub(crate) const IP: &str = "/usr/bin/ip";
/// Every `ip` call is bounded.
const IP_TIMEOUT: Duration = Duration::from_secs(10);
/// Highest node number on a namespaced bed (198.18.B.100 and up are for VIPs).
pub const MAX_NETNS_NODES: usize = 99;

/// The namespace of node `i` of bed `b`.
pub(crate) fn ns_name(b: u8, i: usize) -> String {
    format!("certherd-b{b}-n{i}")
}

/// The root-namespace end of node `i`'s veth pair (a port of the bridge).
fn veth_name(b: u8, i: usize) -> String {
    format!("chv{b}-{i}")
}

fn bridge_name(b: u8) -> String {
    format!("chbr{b}")
}

/// 198.18.B.I.
pub(crate) fn node_ip(b: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, b, i as u8)
}

/// 198.18.B.254: the bridge's address in the root namespace (CA, DNS, the tests' own checks).
pub(crate) fn bridge_ip(b: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, b, 254)
}

/// `ip netns exec <ns> <program>`: `ip` enters the namespace and execs the program, so the PID
/// the caller gets is the program's own (daemons are still stopped by PID).
pub(crate) fn command_in(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(IP);
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

fn ip(args: &[&str]) -> Result<(), BedError> {
    run_ok(Command::new(IP).args(args), IP_TIMEOUT).map(drop)
}

/// `ip <args>` whose failure does not matter (removing what may not exist).
fn ip_quiet(args: &[&str]) {
    let _ = run_bounded(Command::new(IP).args(args), IP_TIMEOUT);
}

/// One bed's namespaces, veths and bridge; removed on Drop.
#[derive(Debug)]
pub(crate) struct Net {
    index: u8,
    nodes: usize,
}

impl Net {
    /// Removes leftovers of bed `b` from a crashed run, then creates the bridge and one
    /// namespace + veth pair per node. On error, what was made is removed again (Drop).
    pub fn create(b: u8, nodes: usize) -> Result<Net, BedError> {
        if nodes == 0 || nodes > MAX_NETNS_NODES {
            return Err(BedError::Setup(format!(
                "a namespaced bed has 1..={MAX_NETNS_NODES} nodes, got {nodes}"
            )));
        }
        remove_all(b);
        let net = Net { index: b, nodes };
        let br = bridge_name(b);
        ip(&["link", "add", &br, "type", "bridge"])?;
        ip(&["link", "set", &br, "up"])?;
        ip(&["addr", "add", &format!("{}/24", bridge_ip(b)), "dev", &br])?;
        for i in 1..=nodes {
            let ns = ns_name(b, i);
            let veth = veth_name(b, i);
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &br])?;
            ip(&["link", "set", &veth, "up"])?;
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/24", node_ip(b, i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    fn node_ns(&self, i: usize) -> String {
        ns_name(self.index, i)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 1..=self.nodes {
            ip_quiet(&["link", "del", &veth_name(self.index, i)]);
            ip_quiet(&["netns", "del", &self.node_ns(i)]);
            let _ = std::fs::remove_dir_all(etc_dir(&self.node_ns(i)));
        }
        ip_quiet(&["link", "del", &bridge_name(self.index)]);
    }
}

/// Removes every namespace, veth and bridge named for bed `b` (a crashed run's leftovers).
fn remove_all(b: u8) {
    let ns_prefix = format!("certherd-b{b}-n");
    let veth_prefix = format!("chv{b}-");
    if let Ok(out) = run_bounded(Command::new(IP).args(["netns", "list"]), IP_TIMEOUT) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            if name.starts_with(&ns_prefix) {
                eprintln!("testbed: removing namespace {name} of a dead bed");
                ip_quiet(&["netns", "del", name]);
                let _ = std::fs::remove_dir_all(etc_dir(name));
            }
        }
    }
    if let Ok(out) = run_bounded(Command::new(IP).args(["-o", "link", "show"]), IP_TIMEOUT) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            // "12: chv3-1@if2: <...>"
            let name = line.split(':').nth(1).unwrap_or("").trim();
            let name = name.split('@').next().unwrap_or("");
            if name.starts_with(&veth_prefix) || name == bridge_name(b) {
                eprintln!("testbed: removing link {name} of a dead bed");
                ip_quiet(&["link", "del", name]);
            }
        }
    }
}

/// `/etc/netns/<ns>`: `ip netns exec` bind-mounts each file in it over the same name in `/etc`.
fn etc_dir(ns: &str) -> std::path::PathBuf {
    std::path::Path::new("/etc/netns").join(ns)
}

/// Namespaced beds only (`BedOptions.netns`): links and namespaces of nodes.
impl Bed {
    /// What `/etc/hosts` says inside node `node`'s namespace (for every command the bed starts
    /// there, certherd's self-check and doctor included): localhost, then each `(name, node)` as
    /// that node's address. For redirects to a host name (the fallback to the primary, a ring)
    /// that the self-check resolves as production does, through the system's resolver. Removed
    /// with the namespace.
    pub fn hosts_on(&self, node: usize, names: &[(&str, usize)]) -> Result<(), BedError> {
        let ns = self.netns(node)?;
        let dir = etc_dir(&ns);
        std::fs::create_dir_all(&dir).map_err(BedError::io("mkdir", &dir))?;
        let mut text = String::from("127.0.0.1 localhost\n");
        for (name, n) in names {
            text.push_str(&format!("{} {name}\n", self.ip(*n)));
        }
        super::node::write(&dir.join("hosts"), &text)
    }

    /// Whether every node is its own network namespace.
    pub fn is_netns(&self) -> bool {
        self.net.is_some()
    }

    /// Node `node`'s network namespace (`certherd-bB-nI`), for `ip -n` / `ip netns exec`.
    pub fn netns(&self, node: usize) -> Result<String, BedError> {
        let i = self.node(node).i;
        self.net
            .as_ref()
            .map(|n| n.node_ns(i))
            .ok_or_else(|| "netns(): this bed has no namespaces (BedOptions.netns = false)".into())
    }

    /// Pulls node `node`'s cable: its bridge port goes down, its `eth0` loses carrier.
    pub fn link_down(&self, node: usize) -> Result<(), BedError> {
        self.set_link(node, "down")
    }

    /// Plugs node `node`'s cable back in.
    pub fn link_up(&self, node: usize) -> Result<(), BedError> {
        self.set_link(node, "up")
    }

    fn set_link(&self, node: usize, state: &str) -> Result<(), BedError> {
        let i = self.node(node).i;
        if self.net.is_none() {
            return Err("link_up/link_down: this bed has no namespaces".into());
        }
        ip(&["link", "set", &veth_name(self.index, i), state])
    }

    /// The IPv4 addresses on node `node`'s `eth0`, as `ip -n NS -4 -o addr show dev eth0` lists them.
    pub fn node_addrs(&self, node: usize) -> Result<Vec<Ipv4Addr>, BedError> {
        let ns = self.netns(node)?;
        let out = run_ok(
            Command::new(IP).args(["-n", &ns, "-4", "-o", "addr", "show", "dev", "eth0"]),
            IP_TIMEOUT,
        )?;
        Ok(parse_inet(&String::from_utf8_lossy(&out.stdout)))
    }

    /// A command that runs `program` in node `node`'s namespace (or directly on a plain bed).
    pub fn command_on(&self, node: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.net {
            Some(n) => command_in(&n.node_ns(self.node(node).i), program),
            None => Command::new(program),
        }
    }
}

/// The addresses of `inet A.B.C.D/N` in `ip -o addr` output.
fn parse_inet(text: &str) -> Vec<Ipv4Addr> {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "inet")
        .filter_map(|w| w[1].split('/').next()?.parse().ok())
        .collect()
}

/// Whether `path` is where certherd's per-node SSH control directory goes on a namespaced bed:
/// each node is its own machine, so a master opened in one node's namespace is never reused from
/// another's (its TCP connection runs over the first node's link).
pub(crate) fn control_dir(ssh_dir: &Path, i: usize) -> std::path::PathBuf {
    ssh_dir.join("cm").join(format!("node{i}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_two_beds_never_share_a_prefix() {
        assert!(!ns_name(12, 1).starts_with("certherd-b1-n"));
        assert!(!veth_name(12, 1).starts_with("chv1-"));
        assert!(veth_name(250, 99).len() <= 15, "IFNAMSIZ");
    }

    fn names_present(b: u8) -> Vec<String> {
        let mut found = Vec::new();
        for args in [&["netns", "list"][..], &["-o", "link", "show"][..]] {
            let out = run_ok(Command::new(IP).args(args), IP_TIMEOUT).unwrap();
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                for w in line.split([' ', ':', '@']) {
                    if w.starts_with(&format!("certherd-b{b}-n"))
                        || w.starts_with(&format!("chv{b}-"))
                        || w == bridge_name(b)
                    {
                        found.push(w.to_owned());
                    }
                }
            }
        }
        found
    }

    /// A crashed run (no Drop) leaves namespaces, veths and the bridge; the next bed with that
    /// index removes them and starts; its Drop leaves nothing. Needs root (as the whole bed).
    #[test]
    fn stale_leftovers_are_removed_and_drop_removes_everything() {
        let slot = crate::slot::Slot::acquire(2, false).unwrap();
        let b = slot.index;
        let crashed = Net::create(b, 2).unwrap();
        std::mem::forget(crashed);
        assert!(names_present(b).len() >= 5, "{:?}", names_present(b));
        let net = Net::create(b, 2).expect("leftovers of a crashed run are removed first");
        // Nothing leaves the namespaces: a node's only route is the bridge's /24, no default.
        for i in 1..=2 {
            let out = run_ok(
                Command::new(IP).args(["-n", &ns_name(b, i), "-4", "route", "show"]),
                IP_TIMEOUT,
            )
            .unwrap();
            let routes = String::from_utf8_lossy(&out.stdout).into_owned();
            let only = format!("198.18.{b}.0/24 dev eth0");
            assert!(
                routes.lines().count() == 1 && routes.starts_with(&only),
                "node {i} routes: {routes}"
            );
        }
        drop(net);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !names_present(b).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(names_present(b), Vec::<String>::new(), "left after Drop");
    }

    #[test]
    fn parses_ip_o_addr() {
        let t = "2: eth0    inet 198.18.3.1/24 scope global eth0\\       valid_lft forever\n\
                 2: eth0    inet 198.18.3.100/24 scope global secondary eth0\\ valid_lft forever\n";
        assert_eq!(
            parse_inet(t),
            vec![Ipv4Addr::new(198, 18, 3, 1), Ipv4Addr::new(198, 18, 3, 100)]
        );
    }
}
