//! One node of the bed: directories, nginx and sshd configs, the certherd config file.

use std::fmt::Write as _;
use std::fs;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::proc::Daemon;

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
            nginx_dir,
            sshd_dir,
            dir,
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
}

pub(crate) fn mkdir(path: &Path, mode: u32) -> Result<(), String> {
    fs::create_dir_all(path).map_err(|e| format!("mkdir {}: {e}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| format!("chmod {}: {e}", path.display()))
}

pub(crate) fn write(path: &Path, text: &str) -> Result<(), String> {
    fs::write(path, text).map_err(|e| format!("write {}: {e}", path.display()))
}

/// Creates the node's directories and its nginx and sshd config files (not the host key).
pub(crate) fn prepare(n: &NodePaths, certherd: &Path, client_pubkey: &str) -> Result<(), String> {
    mkdir(&n.dir, 0o755)?;
    mkdir(&n.webroot, 0o755)?;
    mkdir(&n.webroot.join(".well-known"), 0o755)?;
    mkdir(&n.webroot.join(".well-known/acme-challenge"), 0o755)?;
    mkdir(&n.letsencrypt, 0o755)?;
    mkdir(&n.nginx_dir, 0o755)?;
    mkdir(&n.sshd_dir, 0o700)?;
    write_nginx_conf(n)?;
    write_sshd_conf(n)?;
    write(
        &n.sshd_dir.join("authorized_keys"),
        &format!(
            "restrict,command=\"{} agent --config {}\" {}\n",
            certherd.display(),
            n.config.display(),
            client_pubkey.trim()
        ),
    )
}

/// contrib/nginx/acme-challenge.conf of this source tree (the workspace root, one up from this
/// crate): the bed tests the file users copy.
pub(crate) fn contrib_acme_snippet() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/nginx/acme-challenge.conf")
}

fn write_nginx_conf(n: &NodePaths) -> Result<(), String> {
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

fn write_sshd_conf(n: &NodePaths) -> Result<(), String> {
    let s = n.sshd_dir.display();
    write(
        &n.sshd_conf,
        &format!(
            "# certherd test bed, node{i}\n\
             ListenAddress {ip}:22\n\
             AddressFamily inet\n\
             HostKey {hk}\n\
             PidFile {s}/sshd.pid\n\
             AuthorizedKeysFile {s}/authorized_keys\n\
             StrictModes no\n\
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
             SetEnv SHLVL=1\n",
            i = n.i,
            ip = n.ip,
            hk = n.host_key.display(),
        ),
    )
}

pub(crate) fn spawn_sshd(n: &NodePaths) -> Result<Daemon, String> {
    Daemon::spawn(
        &format!("sshd node{}", n.i),
        Command::new(SSHD)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(&n.sshd_conf),
        &n.sshd_log(),
    )
}

pub(crate) fn spawn_nginx(n: &NodePaths) -> Result<Daemon, String> {
    Daemon::spawn(
        &format!("nginx node{}", n.i),
        Command::new(NGINX)
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
