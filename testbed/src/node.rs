//! One node of the bed: directories, nginx and sshd configs, the certherd config file.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::account::{read_contrib, Account};
use super::proc::Daemon;
use crate::BedError;

pub(crate) const NGINX: &str = "/usr/sbin/nginx";
pub(crate) const SSHD: &str = "/usr/sbin/sshd";

/// Paths of one node, all under `<root>/node<i>/`.
#[derive(Clone, Debug)]
pub(crate) struct NodePaths {
    pub i: usize,
    pub ip: Ipv4Addr,
    pub dir: PathBuf,
    pub webroot: PathBuf,
    pub letsencrypt: PathBuf,
    pub nginx_dir: PathBuf,
    pub nginx_conf: PathBuf,
    pub sshd_dir: PathBuf,
    pub sshd_conf: PathBuf,
    pub host_key: PathBuf,
    pub config: PathBuf,
    /// The node's network namespace on a namespaced bed (its daemons start there).
    pub netns: Option<String>,
}

impl NodePaths {
    pub fn new(root: &Path, bed: u8, i: usize) -> NodePaths {
        let dir = root.join(format!("node{i}"));
        let nginx_dir = dir.join("nginx");
        let sshd_dir = dir.join("sshd");
        NodePaths {
            i,
            ip: Ipv4Addr::new(127, 0, bed, i as u8),
            webroot: dir.join("webroot"),
            letsencrypt: dir.join("letsencrypt"),
            nginx_conf: nginx_dir.join("nginx.conf"),
            sshd_conf: sshd_dir.join("sshd_config"),
            host_key: sshd_dir.join("ssh_host_ed25519_key"),
            config: dir.join("certherd.toml"),
            netns: None,
            nginx_dir,
            sshd_dir,
            dir,
        }
    }

    /// The same node as its own network namespace of bed `bed` (address 198.18.B.I).
    pub fn in_netns(mut self, bed: u8) -> NodePaths {
        self.ip = super::netns::node_ip(bed, self.i);
        self.netns = Some(super::netns::ns_name(bed, self.i));
        self
    }

    /// A command for `program` that runs in the node's namespace, if it has one.
    pub fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => super::netns::command_in(ns, program),
            None => Command::new(program),
        }
    }

    pub fn nginx_log(&self) -> PathBuf {
        self.nginx_dir.join("stderr.log")
    }
    pub fn access_log(&self) -> PathBuf {
        self.nginx_dir.join("access.log")
    }
    pub fn sshd_log(&self) -> PathBuf {
        self.sshd_dir.join("sshd.log")
    }
    /// The agent account's authorized_keys (root-owned, the shipped forced-command line).
    pub fn agent_keys(&self) -> PathBuf {
        self.sshd_dir.join("authorized_keys")
    }
    /// root's authorized_keys (empty unless the benchmarks enable a plain login).
    pub fn root_keys(&self) -> PathBuf {
        self.sshd_dir.join("authorized_keys_root")
    }
}

pub(crate) fn mkdir(path: &Path, mode: u32) -> Result<(), BedError> {
    fs::create_dir_all(path).map_err(BedError::io("mkdir", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(BedError::io("chmod", path))
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), BedError> {
    fs::write(path, text).map_err(BedError::io("write", path))
}

/// The address `from=` admits in the bed's authorized_keys line (the shipped example names the
/// primary's address): every connection on loopback comes from 127.0.0.1 or the bed's own; on a
/// namespaced bed, from the bed's own 198.18.B.0/24 (nodes, VIPs, the bridge).
fn primary_from(n: &NodePaths) -> String {
    match n.netns {
        Some(_) => {
            let o = n.ip.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        None => "127.0.0.0/8".into(),
    }
}

/// Creates the node's directories and its nginx and sshd config files (not the host key), with
/// the ownership the README's checklist gives a node: the agent's account owns the webroot and
/// the letsencrypt dir; everything else (configs, sshd's files) is root's.
pub(crate) fn prepare(
    n: &NodePaths,
    certherd: &Path,
    client_pubkey: &str,
    account: &Account,
) -> Result<(), BedError> {
    mkdir(&n.dir, 0o755)?;
    for d in [
        n.webroot.clone(),
        n.webroot.join(".well-known"),
        n.webroot.join(".well-known/acme-challenge"),
        n.letsencrypt.clone(),
    ] {
        mkdir(&d, 0o755)?;
        account.chown(&d)?;
    }
    mkdir(&n.nginx_dir, 0o755)?;
    // 0755: sshd reads authorized_keys as the account (the host key in here is 0600).
    mkdir(&n.sshd_dir, 0o755)?;
    write_nginx_conf(n)?;
    write_sshd_conf(n, &account.name)?;
    write_mode(
        &n.agent_keys(),
        &authorized_keys_line(certherd, &n.config, client_pubkey, &primary_from(n))?,
        0o644,
    )?;
    // 0644: `nobody` reads it for sshd (public keys only).
    write_mode(&n.root_keys(), "", 0o644)
}

/// contrib/ssh/authorized_keys.example's key line with the bed's binary, config, address and key.
fn authorized_keys_line(
    certherd: &Path,
    config: &Path,
    pubkey: &str,
    from: &str,
) -> Result<String, BedError> {
    let shipped = read_contrib("ssh/authorized_keys.example")?;
    let line = shipped
        .lines()
        .find(|l| l.starts_with("restrict,"))
        .ok_or("contrib/ssh/authorized_keys.example has no `restrict,` line")?;
    let options = line
        .split(" ssh-ed25519 ")
        .next()
        .unwrap_or(line)
        .replace("/usr/local/bin/certherd", &certherd.to_string_lossy())
        .replace("/etc/certherd/certherd.toml", &config.to_string_lossy())
        .replace("192.0.2.11", from);
    Ok(format!("{options} {}\n", pubkey.trim()))
}

pub(crate) fn write_mode(path: &Path, text: &str, mode: u32) -> Result<(), BedError> {
    write(path, text)?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(BedError::io("chmod", path))
}

/// contrib/nginx/acme-challenge.conf of this source tree (the workspace root, one up from this
/// crate): the bed tests the file users copy.
pub(crate) fn contrib_acme_snippet() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/nginx/acme-challenge.conf")
}

fn write_nginx_conf(n: &NodePaths) -> Result<(), BedError> {
    let d = n.nginx_dir.display();
    let acme = n.nginx_dir.join("acme.conf");
    let tls = n.nginx_dir.join("tls.conf");
    write(
        &acme,
        &format!(
            "# ACME HTTP-01 tokens: the snippet users copy from contrib/, included as shipped.\n\
             include {};\n\
             location / {{ return 404; }}\n",
            contrib_acme_snippet().display()
        ),
    )?;
    // TLS: the test bed's place for the :443 server of this node. Empty for now; a later version of
    // the bed (or a test) writes a `server { listen <ip>:443 ssl; ... }` block here that uses
    // `<letsencrypt>/live/<lineage>/{fullchain,privkey}.pem`, then reloads nginx.
    if !tls.exists() {
        write(
            &tls,
            &format!(
                "# TLS server for {ip}:443 goes here (included at http level by nginx.conf).\n",
                ip = n.ip
            ),
        )?;
    }
    write(
        &n.nginx_conf,
        &format!(
            "# certherd test bed, node{i} ({ip})\n\
             daemon off;\n\
             master_process on;\n\
             worker_processes 1;\n\
             pid {d}/nginx.pid;\n\
             error_log {d}/error.log warn;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20   access_log {d}/access.log;\n\
             \x20   client_body_temp_path {d}/client_body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   server_tokens off;\n\
             \x20   map $host $certherd_webroot {{ default {webroot}; }}\n\
             \x20   server {{\n\
             \x20       listen {ip}:80 default_server;\n\
             \x20       server_name _;\n\
             \x20       include {acme};\n\
             \x20   }}\n\
             \x20   # ---- TLS (:443) server of this node: see {tls} ----\n\
             \x20   include {tls};\n\
             }}\n",
            i = n.i,
            ip = n.ip,
            acme = acme.display(),
            tls = tls.display(),
            webroot = n.webroot.display(),
        ),
    )
}

/// sshd's own settings for the bed, then contrib/ssh/sshd-certherd.conf as shipped with the
/// account's name and the node's authorized_keys path substituted (a `Match` block, so last).
fn write_sshd_conf(n: &NodePaths, account: &str) -> Result<(), BedError> {
    let s = n.sshd_dir.display();
    let shipped = read_contrib("ssh/sshd-certherd.conf")?;
    let block = shipped
        .replace("Match User certherd", &format!("Match User {account}"))
        .replace(
            "/etc/ssh/authorized_keys/%u",
            &n.agent_keys().to_string_lossy(),
        );
    write(
        &n.sshd_conf,
        &format!(
            "# certherd test bed, node{i}\n\
             ListenAddress {ip}:22\n\
             AddressFamily inet\n\
             HostKey {hk}\n\
             PidFile {s}/sshd.pid\n\
             AuthorizedKeysFile none\n\
             UsePAM no\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             HostbasedAuthentication no\n\
             PermitRootLogin prohibit-password\n\
             UseDNS no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             X11Forwarding no\n\
             LogLevel ERROR\n\
             MaxStartups 500\n\
             MaxSessions 500\n\
             # bash sources ~/.bashrc for ssh commands when SHLVL < 2; root's may be slow (pyenv...).\n\
             SetEnv SHLVL=1\n\
             # what a test installs as /etc/ssh/sshd_config.d/*.conf (before any Match block)\n\
             Include {s}/sshd_config.d/*.conf\n\
             # ---- contrib/ssh/sshd-certherd.conf ----\n\
             {block}\n\
             # root (the benchmarks' plain login): its keys file is under /tmp, which StrictModes\n\
             # refuses for a file outside the user's home, so sshd reads it through a command\n\
             Match User root\n\
             \x20   AuthorizedKeysCommand /bin/cat {root_keys}\n\
             \x20   AuthorizedKeysCommandUser nobody\n",
            i = n.i,
            ip = n.ip,
            hk = n.host_key.display(),
            root_keys = n.root_keys().display(),
        ),
    )
}

pub(crate) fn spawn_sshd(n: &NodePaths) -> Result<Daemon, BedError> {
    Daemon::spawn(
        &format!("sshd node{}", n.i),
        n.command(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&n.sshd_conf),
        &n.sshd_log(),
    )
}

pub(crate) fn spawn_nginx(n: &NodePaths) -> Result<Daemon, BedError> {
    Daemon::spawn(
        &format!("nginx node{}", n.i),
        n.command(NGINX)
            .arg("-p")
            .arg(&n.nginx_dir)
            .arg("-c")
            .arg(&n.nginx_conf),
        &n.nginx_log(),
    )
}

/// A TOML basic string.
pub(crate) fn q(s: impl AsRef<str>) -> String {
    let mut out = String::from("\"");
    for c in s.as_ref().chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub(crate) fn qp(p: &Path) -> String {
    q(p.to_string_lossy())
}
