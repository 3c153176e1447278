//! Apache httpd on a node of a bed instead of nginx, so a test can mix nginx and Apache nodes.
//!
//! Production's shape: Debian's apache2 package, run by root, children as `www-data`; the tree a
//! node's Apache reads is its own `<node>/apache2/` (what production keeps in `/etc/apache2/`:
//! `apache2.conf`, `envvars`, `conf-available/`, `conf-enabled/`, `sites-enabled/`), listening
//! only on the node's own address. The ACME snippet is `contrib/apache/certherd-acme.conf` with
//! the node's webroot substituted, put in `conf-available/` and enabled with Debian's `a2enconf`
//! (pointed at the tree by `APACHE_CONFDIR`, as `apache2ctl` is); the TLS vhost is
//! `contrib/apache/certherd-tls.conf.example` with the node's address and `live/<lineage>/`.
//!
//! The agent tests and reloads it through sudo with the shipped `contrib/sudoers/certherd-apache`
//! lines and docs/APACHE.md's `[reload]`: `apache2ctl configtest` and `apache2ctl graceful`,
//! the real script. Only one thing differs: production's apache2ctl reads `/etc/apache2`, the
//! bed's the node's tree, so both the sudoers lines and `[reload]` run it as
//! `/usr/bin/env APACHE_CONFDIR=<tree> /usr/sbin/apache2ctl …` (sudo resets the environment;
//! the whole command line is what sudo matches, so the account still cannot name another tree).
//!
//! The daemon runs in the foreground (`-DFOREGROUND`), started and stopped by the bed by PID;
//! `graceful` is apache2ctl's `apache2 -k graceful`, SIGUSR1 to the PID in the tree's pid file.

use crate::BedError;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::account::read_contrib;
use crate::node::{mkdir, write, NodePaths};
use crate::proc::{run_ok, Daemon};
use crate::{key_nginx, sa, Bed, START_TIMEOUT};

const APACHE2: &str = "/usr/sbin/apache2";
const APACHE2CTL: &str = "/usr/sbin/apache2ctl";
const MODULES: &str = "/usr/lib/apache2/modules";
/// What `[reload]` and the sudoers lines run for `apache2ctl` on a node of the bed.
const ENV: &str = "/usr/bin/env";

/// `<node>/apache2`: the node's Apache tree (APACHE_CONFDIR).
pub(crate) fn tree(n: &NodePaths) -> PathBuf {
    n.dir.join("apache2")
}

/// Whether the node runs Apache (its tree has been written).
pub(crate) fn uses_apache(n: &NodePaths) -> bool {
    tree(n).join("apache2.conf").exists()
}

/// The bed's sudoers file for its Apache nodes (removed in the bed's Drop).
pub(crate) fn sudoers_path(index: u8) -> PathBuf {
    PathBuf::from(format!("/etc/sudoers.d/certherd-bed-{index}-apache"))
}

/// docs/APACHE.md's `[reload]` section with `apache2ctl` run on the node's tree.
pub(crate) fn reload_section(n: &NodePaths) -> Result<String, BedError> {
    let doc = read_contrib("../docs/APACHE.md")?;
    let start = doc
        .find("\n[reload]")
        .ok_or("docs/APACHE.md has no [reload] section")?;
    let section: String = doc[start + 1..]
        .lines()
        .take_while(|l| !l.trim().is_empty() && !l.starts_with("```"))
        .filter(|l| !l.trim_start().starts_with('#'))
        .map(|l| format!("{}\n", l.split(" #").next().unwrap_or(l).trim_end()))
        .collect();
    if !section.contains(&format!("\"{APACHE2CTL}\"")) {
        return Err(BedError::Setup(format!(
            "docs/APACHE.md's [reload] does not run {APACHE2CTL}:\n{section}"
        )));
    }
    Ok(section.replace(
        &format!("\"{APACHE2CTL}\""),
        &format!(
            "\"{ENV}\", \"APACHE_CONFDIR={}\", \"{APACHE2CTL}\"",
            tree(n).display()
        ),
    ))
}

/// The main config: what Debian's apache2.conf sets up, reduced to what a node needs, every
/// path in the node's tree; `conf-enabled/` and `sites-enabled/` included as Debian does.
fn apache2_conf(n: &NodePaths) -> String {
    let t = tree(n);
    let t = t.display();
    let mods: String = [
        ("mpm_event", "mpm_event"),
        ("authz_core", "authz_core"),
        ("alias", "alias"),
        ("mime", "mime"),
        ("ssl", "ssl"),
        ("socache_shmcb", "socache_shmcb"),
        ("rewrite", "rewrite"),
    ]
    .iter()
    .map(|(m, f)| format!("LoadModule {m}_module {MODULES}/mod_{f}.so\n"))
    .collect();
    format!(
        "# certherd test bed, node{i} ({ip}): Apache httpd with its own tree (APACHE_CONFDIR)\n\
         ServerRoot {t}\n\
         ServerName node{i}\n\
         DefaultRuntimeDir {t}/run\n\
         PidFile {t}/run/apache2.pid\n\
         User www-data\n\
         Group www-data\n\
         ErrorLog {t}/error.log\n\
         LogLevel warn\n\
         ServerTokens Prod\n\
         {mods}\
         TypesConfig /etc/mime.types\n\
         LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b\" common\n\
         CustomLog {t}/access.log common\n\
         SSLSessionCache shmcb:{t}/run/ssl_scache(512000)\n\
         Listen {ip}:80\n\
         <Directory />\n\
         \x20   Options FollowSymLinks\n\
         \x20   AllowOverride None\n\
         \x20   Require all denied\n\
         </Directory>\n\
         DocumentRoot {t}/htdocs\n\
         IncludeOptional {t}/conf-enabled/*.conf\n\
         <VirtualHost {ip}:80>\n\
         \x20   ServerName node{i}\n\
         </VirtualHost>\n\
         IncludeOptional {t}/sites-enabled/*.conf\n",
        i = n.i,
        ip = n.ip,
    )
}

/// contrib/apache/certherd-acme.conf with the node's webroot for `/var/lib/certherd/webroot`.
fn acme_snippet(n: &NodePaths) -> Result<String, BedError> {
    let shipped = read_contrib("apache/certherd-acme.conf")?;
    if !shipped.contains("/var/lib/certherd/webroot") {
        return Err("contrib/apache/certherd-acme.conf names no /var/lib/certherd/webroot".into());
    }
    Ok(shipped.replace("/var/lib/certherd/webroot", &n.webroot.to_string_lossy()))
}

/// `<program>` with the node's tree as Debian's scripts' APACHE_CONFDIR (and a2enconf's state
/// dir in it too: the machine's `/var/lib/apache2` is not the bed's).
fn debian_script(n: &NodePaths, program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("APACHE_CONFDIR", tree(n))
        .env("APACHE_STATE_DIRECTORY", tree(n).join("state"));
    cmd
}

fn spawn(n: &NodePaths) -> Result<Daemon, BedError> {
    Daemon::spawn(
        &format!("apache2 node{}", n.i),
        n.command(APACHE2)
            .arg("-d")
            .arg(tree(n))
            .arg("-DFOREGROUND")
            .env("LANG", "C"),
        &tree(n).join("stderr.log"),
    )
}

fn key_apache(i: usize) -> String {
    format!("apache{i}")
}

impl Bed {
    /// Node `node` runs Apache instead of nginx from now on: its nginx stopped (by PID), its
    /// tree written (see the module docs), the ACME snippet enabled with `a2enconf`, Apache
    /// started and answering on the node's :80, the bed's Apache sudoers lines written and the
    /// node's certherd.toml given docs/APACHE.md's `[reload]`.
    pub fn use_apache(&self, node: usize) -> Result<(), BedError> {
        self.apache_node(node, true)
    }

    /// [`Bed::use_apache`] without the ACME snippet and without the bed's Apache sudoers lines:
    /// a fresh Apache node before docs/APACHE.md's block ran on it (which installs both: as
    /// root, with `APACHE_CONFDIR` = [`Bed::apache_dir`] for `/etc/apache2`, and the sudoers
    /// file at [`Bed::apache_sudoers`], which the bed removes when it drops).
    pub fn use_fresh_apache(&self, node: usize) -> Result<(), BedError> {
        self.apache_node(node, false)
    }

    /// The bed's sudoers file for its Apache nodes (`/etc/sudoers.d/certherd-bed-B-apache`).
    pub fn apache_sudoers(&self) -> PathBuf {
        sudoers_path(self.index)
    }

    /// A line of contrib/sudoers/certherd-apache for node `node`: the bed's account, and
    /// `apache2ctl` run on the node's tree.
    pub fn apache_sudoers_line(&self, node: usize, shipped: &str) -> String {
        shipped
            .replacen("certherd ", &format!("{} ", self.agent_user()), 1)
            .replace(
                &format!("{APACHE2CTL} "),
                // `=` is special in a sudoers command's arguments
                &format!(
                    "{ENV} APACHE_CONFDIR\\={} {APACHE2CTL} ",
                    tree(self.node(node)).display()
                ),
            )
    }

    fn apache_node(&self, node: usize, configured: bool) -> Result<(), BedError> {
        let n = self.node(node).clone();
        let t = tree(&n);
        for d in [
            "",
            "conf-available",
            "conf-enabled",
            "sites-enabled",
            "run",
            "htdocs",
        ] {
            mkdir(&t.join(d), 0o755)?;
        }
        write(
            &t.join("envvars"),
            "# certherd test bed: what apache2ctl sources (Debian's envvars, paths in the tree)\nexport LANG=C\n",
        )?;
        write(&t.join("apache2.conf"), &apache2_conf(&n))?;
        if configured {
            write(
                &t.join("conf-available/certherd-acme.conf"),
                &acme_snippet(&n)?,
            )?;
            run_ok(
                debian_script(&n, "/usr/sbin/a2enconf")
                    .arg("-q")
                    .arg("certherd-acme"),
                Duration::from_secs(30),
            )?;
            self.write_apache_sudoers()?;
        }
        self.stop_key(&key_nginx(n.i));
        self.start_apache(node)?;
        // The node's [reload]: the config already written names nginx; it gets Apache's.
        let config = fs::read_to_string(&n.config).map_err(BedError::io("read", &n.config))?;
        let nginx = self.nginx_reload_section(node)?;
        if config.contains(&nginx) {
            write(&n.config, &config.replacen(&nginx, &reload_section(&n)?, 1))?;
        }
        Ok(())
    }

    /// Node `node`'s Apache answers the ACME path with contrib/apache/certherd-acme-fallback.conf
    /// (the local token, else a 302 to `primary`) instead of certherd-acme.conf, switched with
    /// Debian's `a2disconf`/`a2enconf` as docs/APACHE.md does; then graceful.
    pub fn apache_acme_fallback(&self, node: usize, primary: &str) -> Result<(), BedError> {
        let n = self.node(node);
        let shipped = read_contrib("apache/certherd-acme-fallback.conf")?;
        write(
            &tree(n).join("conf-available/certherd-acme-fallback.conf"),
            &shipped
                .replace("/var/lib/certherd/webroot", &n.webroot.to_string_lossy())
                .replace("primary.example.com", primary),
        )?;
        for (script, conf) in [
            ("/usr/sbin/a2disconf", "certherd-acme"),
            ("/usr/sbin/a2enconf", "certherd-acme-fallback"),
        ] {
            run_ok(
                debian_script(n, script).arg("-q").arg(conf),
                Duration::from_secs(30),
            )?;
        }
        self.apache_graceful(node)
    }

    /// The node's Apache tree (`APACHE_CONFDIR`); its `sites-enabled/*.conf` are included.
    pub fn apache_dir(&self, node: usize) -> PathBuf {
        tree(self.node(node))
    }

    /// The node's Apache error log.
    pub fn apache_error_log(&self, node: usize) -> PathBuf {
        self.apache_dir(node).join("error.log")
    }

    /// Stops the node's Apache (by PID); a no-op when it does not run.
    pub fn stop_apache(&self, node: usize) {
        self.stop_key(&key_apache(node));
    }

    /// Starts the node's Apache again (no-op if running); waits until port 80 accepts.
    pub fn start_apache(&self, node: usize) -> Result<(), BedError> {
        let n = self.node(node).clone();
        let key = key_apache(n.i);
        if self.running(&key) {
            return Ok(());
        }
        self.insert(&key, spawn(&n)?);
        self.wait_daemon(&key, sa(n.ip, 80), Instant::now() + START_TIMEOUT)
    }

    /// Node `node`'s TLS vhost: contrib/apache/certherd-tls.conf.example for `lineage` on the
    /// node's :443 (with its `Listen`) in `sites-enabled/certherd-tls.conf`. Apache refuses to
    /// start without the pair, so call it once `live/<lineage>/` is there; then graceful.
    pub fn apache_tls(&self, node: usize, lineage: &str) -> Result<(), BedError> {
        let n = self.node(node);
        let shipped = read_contrib("apache/certherd-tls.conf.example")?;
        let live = n.letsencrypt.join("live").join(lineage);
        let vhost = shipped
            .replace("192.0.2.11", &n.ip.to_string())
            .replace("/etc/letsencrypt/live/example.com", &live.to_string_lossy())
            .replace("ServerName example.com", &format!("ServerName {lineage}"))
            .replace("/var/www/html", &tree(n).join("htdocs").to_string_lossy());
        write(
            &tree(n).join("sites-enabled/certherd-tls.conf"),
            &format!("Listen {}:443\n{vhost}", n.ip),
        )?;
        self.apache_graceful(node)
    }

    /// `apache2ctl graceful` on the node's tree, as root (what the agent runs through sudo).
    pub fn apache_graceful(&self, node: usize) -> Result<(), BedError> {
        run_ok(
            debian_script(self.node(node), APACHE2CTL).arg("graceful"),
            Duration::from_secs(30),
        )
        .map(|_| ())
    }

    /// The shipped lines once per Apache node: the bed's account, `apache2ctl` on the node's
    /// tree; `visudo -c` before sudo sees them.
    fn write_apache_sudoers(&self) -> Result<(), BedError> {
        let shipped = read_contrib("sudoers/certherd-apache")?;
        let mut text =
            String::from("# certherd test bed: contrib/sudoers/certherd-apache per Apache node\n");
        for n in self.nodes.iter() {
            if !uses_apache(n) {
                continue;
            }
            for line in shipped
                .lines()
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            {
                text.push_str(&self.apache_sudoers_line(n.i, line));
                text.push('\n');
            }
        }
        let path = sudoers_path(self.index);
        let tmp = path.with_file_name(format!(".certherd-bed-{}-apache.tmp", self.index));
        fs::write(&tmp, &text).map_err(BedError::io("write", &tmp))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o440))
            .map_err(BedError::io("chmod", &tmp))?;
        if let Err(e) = run_ok(
            Command::new("/usr/sbin/visudo").arg("-cqf").arg(&tmp),
            Duration::from_secs(30),
        ) {
            let _ = fs::remove_file(&tmp);
            return Err(BedError::Setup(format!(
                "visudo -c on the bed's Apache sudoers:\n{text}{e}"
            )));
        }
        fs::rename(&tmp, &path).map_err(BedError::io("rename to", &path))
    }
}

/// Removes the bed's Apache sudoers file, if any (the bed's Drop).
pub(crate) fn remove_sudoers(index: u8) {
    let _ = fs::remove_file(sudoers_path(index));
}
