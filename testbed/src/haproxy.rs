//! HAProxy on every node of a bed, for certherd's `[[deploy]]` actions (the combined-PEM layout).
//!
//! Production's shape: HAProxy (Debian's package, `/usr/sbin/haproxy`) runs as root in
//! master-worker mode (`-W`, what Debian's unit runs), its workers drop to the `haproxy` user;
//! it serves every combined PEM of `<node>/haproxy/certs/` (`bind … ssl crt <dir>/`), a
//! directory the agent's account owns (mode 0750), plus a self-signed default certificate. The
//! agent checks and reloads it through sudo with the shipped `contrib/sudoers/certherd-haproxy`
//! lines, the node's haproxy.cfg substituted, and — there is no systemd in the bed —
//! `systemctl reload haproxy` replaced by what Debian's unit's `ExecReload` runs after its check:
//! `kill -USR2 <master pid>` (the master re-reads the config and every certificate, same PID).

use crate::BedError;
use std::fs;
use std::net::{SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::account::read_contrib;
use crate::node::{mkdir, q, qp, write};
use crate::proc::{run_ok, Daemon};
use crate::Bed;

/// The port every node's HAProxy listens on (TLS), on the node's own address.
pub const HAPROXY_PORT: u16 = 8443;

/// The HAProxys of one bed: the daemons belong to the bed (stopped, by PID, when it drops); this
/// holds their master PIDs and the bed's HAProxy sudoers file, removed when this drops.
#[derive(Debug)]
pub struct Haproxies {
    /// Master PID per node (index 0 is node 1).
    pids: Vec<u32>,
    sudoers: PathBuf,
}

impl Drop for Haproxies {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.sudoers);
    }
}

impl Haproxies {
    /// The master process of node `node`'s HAProxy.
    pub fn pid(&self, node: usize) -> u32 {
        self.pids[node - 1]
    }

    /// A `[[deploy]]` table for node `node`'s certherd.toml: the combined PEM in its certs
    /// directory for these lineage globs, owned by the agent's account and group, mode 0640,
    /// the config check and the reload through sudo (exactly the bed's sudoers lines).
    pub fn deploy_section(&self, bed: &Bed, node: usize, globs: &[&str]) -> String {
        let conf = bed.haproxy_conf(node);
        let list: Vec<String> = globs.iter().map(q).collect();
        let (_, gid) = bed.agent_uid_gid();
        let group = nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid))
            .ok()
            .flatten()
            .map_or_else(|| bed.agent_user().to_owned(), |g| g.name);
        format!(
            "[[deploy]]\nlineages = [{}]\ncombined_pem = {}\nowner = {}\ngroup = {}\nmode = \"0640\"\n\
             test = [\"sudo\", \"-n\", \"/usr/sbin/haproxy\", \"-c\", \"-q\", \"-f\", {}]\n\
             reload = [\"sudo\", \"-n\", \"/bin/kill\", \"-USR2\", \"{}\"]\n",
            list.join(", "),
            qp(&bed.haproxy_certs(node)),
            q(bed.agent_user()),
            q(group),
            qp(&conf),
            self.pid(node)
        )
    }
}

impl Bed {
    /// `<node>/haproxy`: haproxy.cfg, the default certificate, the log.
    pub fn haproxy_dir(&self, node: usize) -> PathBuf {
        self.node(node).dir.join("haproxy")
    }

    /// The directory of combined PEMs HAProxy serves (owned by the agent's account).
    pub fn haproxy_certs(&self, node: usize) -> PathBuf {
        self.haproxy_dir(node).join("certs")
    }

    /// The node's haproxy.cfg (`haproxy -c -f` argument).
    pub fn haproxy_conf(&self, node: usize) -> PathBuf {
        self.haproxy_dir(node).join("haproxy.cfg")
    }

    /// `127.0.B.<node>:8443`.
    pub fn haproxy_addr(&self, node: usize) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(self.ip(node), HAPROXY_PORT))
    }

    /// Starts one HAProxy per node (see the module docs) and writes the bed's HAProxy sudoers
    /// file; waits until each accepts connections. Fails loudly when haproxy is missing.
    pub fn start_haproxy(&self) -> Result<Haproxies, BedError> {
        let mut pids = Vec::new();
        for n in 1..=self.nodes() {
            let dir = self.haproxy_dir(n);
            mkdir(&dir, 0o755)?;
            let certs = self.haproxy_certs(n);
            mkdir(&certs, 0o750)?;
            self.account.chown(&certs)?;
            let default = dir.join("default.pem");
            let (key, crt) = (dir.join("default.key"), dir.join("default.crt"));
            run_ok(
                Command::new("/usr/bin/openssl")
                    .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                    .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"])
                    .args(["-subj", "/CN=haproxy-default", "-keyout"])
                    .arg(&key)
                    .arg("-out")
                    .arg(&crt),
                Duration::from_secs(20),
            )?;
            let read = |p: &PathBuf| fs::read_to_string(p).map_err(BedError::io("read", &p));
            write(&default, &format!("{}{}", read(&crt)?, read(&key)?))?;
            fs::set_permissions(&default, fs::Permissions::from_mode(0o600))
                .map_err(BedError::io("chmod", &default))?;
            write(
                &self.haproxy_conf(n),
                &format!(
                    "global\n  user haproxy\n  group haproxy\n\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 5s\n  timeout server 5s\n\n\
                     frontend tls\n  bind {addr} ssl crt {default} crt {certs}/\n  http-request return status 200 content-type text/plain string node{n}\n",
                    addr = self.haproxy_addr(n),
                    default = default.display(),
                    certs = certs.display(),
                ),
            )?;
            let key = format!("haproxy{n}");
            let daemon = Daemon::spawn(
                &format!("haproxy node{n}"),
                Command::new("/usr/sbin/haproxy")
                    .args(["-W", "-db", "-f"])
                    .arg(self.haproxy_conf(n)),
                &dir.join("haproxy.log"),
            )?;
            pids.push(daemon.pid());
            self.insert(&key, daemon);
        }
        let deadline = Instant::now() + crate::START_TIMEOUT;
        for n in 1..=self.nodes() {
            self.wait_daemon(&format!("haproxy{n}"), self.haproxy_addr(n), deadline)?;
        }
        let sudoers = PathBuf::from(format!(
            "/etc/sudoers.d/certherd-bed-{}-haproxy",
            self.index
        ));
        let haproxies = Haproxies { pids, sudoers };
        self.write_haproxy_sudoers(&haproxies)?;
        Ok(haproxies)
    }

    /// The shipped lines once per node: the bed's account, the node's haproxy.cfg, and the
    /// master's SIGUSR2 for `systemctl reload haproxy`; `visudo -c` before sudo sees them.
    fn write_haproxy_sudoers(&self, h: &Haproxies) -> Result<(), BedError> {
        let shipped = read_contrib("sudoers/certherd-haproxy")?;
        let mut text =
            String::from("# certherd test bed: contrib/sudoers/certherd-haproxy per node\n");
        for n in 1..=self.nodes() {
            for line in shipped
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            {
                text.push_str(
                    &line
                        .replacen("certherd ", &format!("{} ", self.agent_user()), 1)
                        .replace(
                            "/etc/haproxy/haproxy.cfg",
                            &self.haproxy_conf(n).to_string_lossy(),
                        )
                        .replace(
                            "/usr/bin/systemctl reload haproxy",
                            &format!("/bin/kill -USR2 {}", h.pid(n)),
                        ),
                );
                text.push('\n');
            }
        }
        let tmp = h
            .sudoers
            .with_file_name(format!(".certherd-bed-{}-haproxy.tmp", self.index));
        fs::write(&tmp, &text).map_err(BedError::io("write", &tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o440))
            .map_err(BedError::io("chmod", &tmp))?;
        if let Err(e) = run_ok(
            Command::new("/usr/sbin/visudo").arg("-cqf").arg(&tmp),
            Duration::from_secs(30),
        ) {
            let _ = fs::remove_file(&tmp);
            return Err(BedError::Setup(format!(
                "visudo -c on the bed's HAProxy sudoers:\n{text}{e}"
            )));
        }
        fs::rename(&tmp, &h.sudoers).map_err(BedError::io("rename to", &h.sudoers))
    }

    /// The serial of the certificate node `node`'s HAProxy serves for `sni`, read independently
    /// with `openssl s_client` (empty when nothing is served).
    pub fn haproxy_serial(&self, node: usize, sni: &str) -> String {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "timeout 10 openssl s_client -connect {} -servername {sni} </dev/null 2>/dev/null | openssl x509 -noout -serial",
                self.haproxy_addr(node)
            ))
            .output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .trim_start_matches("serial=")
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
    }
}
