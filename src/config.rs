//! The one TOML config file, the same shape on every node. Loaded once at start-up; an unknown key
//! or a bad value is an error naming the file, the line and the dotted key path ([`locate`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::pattern::LineagePattern;

mod defaults;
mod deploy_action;
mod locate;
mod receipts;
mod rollout;

pub use defaults::LETS_ENCRYPT_SERVERS;
use defaults::*;
pub use deploy_action::{DeployAction, ModeError, DEFAULT_PEM_MODE};
pub use receipts::ReceiptsConfig;
pub use rollout::RolloutConfig;

/// Where the config is read from when neither `--config` nor `$CERTHERD_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/certherd/certherd.toml";

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's name; default: the host name.
    #[serde(default)]
    pub name: Option<String>,
    /// certbot's config directory (`live/`, `archive/`, `renewal/`).
    #[serde(default = "default_letsencrypt_dir")]
    pub letsencrypt_dir: PathBuf,
    /// Tokens live in `<webroot>/.well-known/acme-challenge/<token>`.
    #[serde(default = "default_webroot")]
    pub webroot: PathBuf,
    /// Where checks reach this node's own web server over HTTP.
    #[serde(default = "default_http")]
    pub http: String,
    /// Where checks reach this node's own web server over HTTPS; `""` when it serves none (a
    /// dedicated certbot box as the primary: its deploy row says `no-https`, not a failure).
    #[serde(default = "default_https")]
    pub https: String,
    /// `fanout` (default): tokens are written on every node. `stateless`: nodes answer tokens
    /// themselves from the account thumbprint; `auth` only self-checks.
    #[serde(default)]
    pub mode: Mode,
    /// How certherd reaches its peers.
    #[serde(default)]
    pub ssh: SshConfig,
    /// The self-check.
    #[serde(default)]
    pub check: CheckConfig,
    /// This node's own test and reload commands.
    #[serde(default)]
    pub reload: ReloadConfig,
    /// Where failures are reported.
    #[serde(default)]
    pub alert: AlertConfig,
    /// `certherd renew` settings.
    #[serde(default)]
    pub renew: RenewConfig,
    /// The deploy log: one JSON line per node per push.
    #[serde(default)]
    pub receipts: ReceiptsConfig,
    /// How a batch push switches the fleet: canaries first.
    #[serde(default)]
    pub rollout: RolloutConfig,
    /// The other nodes.
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// This node's own decision to be a standby: only then does its agent accept `put_renewal`
    /// (certbot's renewal config and ACME account) from the primary. A primary's
    /// `[[peers]] standby` is only the sender's intent; a peer never becomes a standby because
    /// a request says so.
    #[serde(default)]
    pub standby: bool,
    /// ACME directory URLs a standby accepts as `server` in a renewal config it receives; any
    /// other server is dropped from the config it writes (default: Let's Encrypt production and
    /// staging).
    #[serde(default = "default_acme_servers")]
    pub acme_servers: Vec<String>,
    /// This node's own per-lineage deploy actions (`[[deploy]]`), run after a lineage is
    /// installed here; see [`crate::actions`]. Nothing in them ever comes from a request.
    #[serde(default)]
    pub deploy: Vec<DeployAction>,
    /// Set after loading: the file this came from, for error messages.
    #[serde(skip)]
    pub path: PathBuf,
}

/// How tokens reach the nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Write every token on every node (default).
    #[default]
    Fanout,
    /// Nodes answer any token from the account thumbprint; nothing is sent.
    Stateless,
}

/// `[ssh]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfig {
    /// Remote user the agent runs as.
    #[serde(default = "default_ssh_user")]
    pub user: String,
    /// Private key that authenticates to the peers (its path; the key is never read by certherd).
    #[serde(default = "default_identity")]
    pub identity: PathBuf,
    /// The only known_hosts file consulted; host keys are checked strictly, never added.
    #[serde(default = "default_known_hosts")]
    pub known_hosts: PathBuf,
    /// How long to wait for a TCP connection and the SSH handshake.
    #[serde(default = "default_connect_timeout", deserialize_with = "duration")]
    pub connect_timeout: Duration,
    /// How long an idle shared connection stays open for the next hook call (`0s`: close at exit).
    #[serde(default = "default_persist", deserialize_with = "duration")]
    pub persist: Duration,
    /// Where control sockets of shared connections live (a 0700 directory owned by this user).
    #[serde(default)]
    pub control_dir: Option<PathBuf>,
    /// How long one agent request may take, answer included.
    #[serde(default = "default_request_timeout", deserialize_with = "duration")]
    pub request_timeout: Duration,
    /// How many peers are worked on at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Key exchange algorithms offered, in order (`-o KexAlgorithms=…`). Unset: OpenSSH's own
    /// default, which leads with a post-quantum hybrid (sntrup761x25519 on OpenSSH 9.x) — kept
    /// as the default because deploy sends private keys, and recorded traffic must not become
    /// readable later.
    #[serde(default)]
    pub kex_algorithms: Option<Vec<String>>,
}

/// `[check]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// How long the self-check keeps retrying before it reports failure.
    #[serde(default = "default_check_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

/// `[reload]`: argv arrays, run without a shell.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReloadConfig {
    /// Config test, e.g. `["nginx", "-t"]`.
    #[serde(default)]
    pub test: Vec<String>,
    /// Reload, e.g. `["systemctl", "reload", "nginx"]`.
    #[serde(default)]
    pub reload: Vec<String>,
    /// How long either command may run before it is killed.
    #[serde(default = "default_command_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
}

/// `[alert]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// URLs that receive a JSON POST.
    #[serde(default)]
    pub webhook: Vec<String>,
    /// InfluxDB line-protocol write URL (Telegraf listener).
    #[serde(default)]
    pub influx: Option<String>,
    /// Also alert on success.
    #[serde(default)]
    pub on_success: bool,
}

/// `[renew]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewConfig {
    /// The node name that renews.
    #[serde(default)]
    pub primary: Option<String>,
    /// Or: whichever node holds this address renews.
    #[serde(default)]
    pub vip: Option<String>,
    /// Random delay before renewing.
    #[serde(default, deserialize_with = "opt_duration")]
    pub jitter: Option<Duration>,
    /// The certbot command (argv prefix; `renew` and the flags follow), e.g.
    /// `["certbot", "--config-dir", "/etc/letsencrypt"]`. Default `["certbot"]`.
    #[serde(default)]
    pub certbot: Vec<String>,
}

impl RenewConfig {
    /// The certbot command, `["certbot"]` when none is configured.
    pub fn certbot_argv(&self) -> Vec<String> {
        if self.certbot.is_empty() {
            vec!["certbot".to_owned()]
        } else {
            self.certbot.clone()
        }
    }
}

/// `[[peers]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Name used in reports.
    pub name: String,
    /// SSH address (host name or IP).
    pub host: String,
    /// SSH port.
    #[serde(default = "default_ssh_port")]
    pub port: u16,
    /// Where the self-check fetches tokens (default `host:80`).
    #[serde(default)]
    pub http: Option<String>,
    /// Where served certificates are checked (default `host:443`).
    #[serde(default)]
    pub https: Option<String>,
    /// An unreachable optional peer warns instead of failing.
    #[serde(default)]
    pub optional: bool,
    /// certherd does not manage this node over SSH; it only checks that the node answers (for a
    /// web server that proxies or redirects the ACME path elsewhere).
    #[serde(default)]
    pub check_only: bool,
    /// Can take over as primary: also receives certbot's renewal config and account, so that
    /// `certherd renew` works there after failover. Only the sender's intent: the peer accepts
    /// them only when its own config says `standby = true` (a mismatch fails that node).
    #[serde(default)]
    pub standby: bool,
    /// The lineages this peer receives, as globs on the lineage name (`*`, `?`; see
    /// [`crate::pattern`]); unset: every lineage. A lineage not on the list is never sent there
    /// (deploy, sync, watch, a standby's renewal config) and `status` never expects it there.
    /// Tokens are not filtered: they are per domain, and a node DNS points at must answer.
    #[serde(default)]
    pub lineages: Option<Vec<String>>,
}

impl Peer {
    /// Whether this peer receives `lineage`: no `lineages` list, or a pattern on it matches.
    /// A pattern that does not parse matches nothing (validation refuses it at load, so this
    /// only fails closed for a config that skipped [`Config::parse`]).
    pub fn receives(&self, lineage: &str) -> bool {
        match &self.lineages {
            None => true,
            Some(patterns) => patterns
                .iter()
                .any(|p| LineagePattern::parse(p).is_ok_and(|p| p.matches(lineage))),
        }
    }

    /// HTTP address for the self-check.
    pub fn http_addr(&self) -> String {
        self.http
            .clone()
            .unwrap_or_else(|| join_host_port(&self.host, 80))
    }

    /// HTTPS address for the served-certificate check.
    pub fn https_addr(&self) -> String {
        self.https
            .clone()
            .unwrap_or_else(|| join_host_port(&self.host, 443))
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            user: default_ssh_user(),
            identity: default_identity(),
            known_hosts: default_known_hosts(),
            connect_timeout: default_connect_timeout(),
            persist: default_persist(),
            control_dir: None,
            request_timeout: default_request_timeout(),
            concurrency: default_concurrency(),
            kex_algorithms: None,
        }
    }
}

impl Default for CheckConfig {
    fn default() -> Self {
        CheckConfig {
            timeout: default_check_timeout(),
        }
    }
}

impl Config {
    /// Which file to read: `--config`, else `$CERTHERD_CONFIG`, else the default path.
    pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
        if let Some(p) = flag {
            return p.to_owned();
        }
        match std::env::var_os("CERTHERD_CONFIG") {
            Some(p) if !p.is_empty() => p.into(),
            _ => DEFAULT_PATH.into(),
        }
    }

    /// Reads and validates the config file. A missing file is its own error: it points to the
    /// shipped example.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::ConfigMissing {
                    path: path.to_owned(),
                }
            } else {
                Error::ConfigRead {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates config text; `path` is only used in messages. Every error names the
    /// line and the dotted key path (see [`locate`]) when the text tells them.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| {
            let message = crate::text::squash(e.message());
            match e.span() {
                Some(span) => Error::ConfigAt {
                    path: path.to_owned(),
                    line: locate::line_of(text, span.start),
                    key: locate::path_at(text, span.start),
                    message,
                },
                None => Error::Config {
                    path: path.to_owned(),
                    message,
                    key: None,
                },
            }
        })?;
        config.path = path.to_owned();
        config.validate().map_err(|e| match e {
            Error::Config {
                path,
                message,
                key: Some(key),
            } => match locate::line_of_path(text, &key) {
                Some(line) => Error::ConfigAt {
                    path,
                    line,
                    key: Some(key),
                    message,
                },
                None => Error::Config {
                    path,
                    message,
                    key: Some(key),
                },
            },
            other => other,
        })?;
        Ok(config)
    }

    /// `host:port` where host is a name, an IPv4 address or a bracketed IPv6 address.
    fn check_addr(&self, key: &str, s: &str) -> Result<()> {
        if s.parse::<SocketAddr>().is_ok() {
            return Ok(());
        }
        match s.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && !host.contains(['/', ' '])
                    && port.parse::<u16>().is_ok() =>
            {
                Ok(())
            }
            _ => Err(self.invalid(
                key,
                format!("{s:?} is not an address: expected host:port, e.g. 192.0.2.12:80"),
            )),
        }
    }

    /// Algorithm names as OpenSSH spells them (`curve25519-sha256`,
    /// `sntrup761x25519-sha512@openssh.com`): a letter or digit first (so no `+`/`-`/`^` list
    /// modifiers), then letters, digits and `.@_-`. Which names the installed ssh knows is its
    /// business (`ssh -Q kex`); a name it does not know fails the connection with ssh's own message.
    fn check_kex(&self, key: &str, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Err(self.invalid(key, "the list is empty: name at least one algorithm, or leave the key out for OpenSSH's default".into()));
        }
        for name in names {
            let ok = name.len() <= 64
                && name.starts_with(|c: char| c.is_ascii_alphanumeric())
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".@_-".contains(c));
            if !ok {
                return Err(self.invalid(key, format!(
                    "{} is not a key exchange algorithm name: expected e.g. \"sntrup761x25519-sha512@openssh.com\" or \"curve25519-sha256\" (letters, digits, .@_-)",
                    crate::text::printable(name)
                )));
            }
        }
        Ok(())
    }

    fn invalid(&self, key: &str, message: String) -> Error {
        Error::Config {
            path: self.path.clone(),
            message,
            key: Some(key.to_owned()),
        }
    }

    fn validate(&self) -> Result<()> {
        self.check_addr("http", &self.http)?;
        // "": this node serves no HTTPS (a dedicated certbot box); its served check is skipped.
        if !self.https.is_empty() {
            self.check_addr("https", &self.https)?;
        }
        if self.ssh.concurrency == 0 {
            return Err(self.invalid("ssh.concurrency", "must be at least 1".into()));
        }
        if let Some(kex) = &self.ssh.kex_algorithms {
            self.check_kex("ssh.kex_algorithms", kex)?;
        }
        let mut names = vec![self.node_name()];
        for (i, peer) in self.peers.iter().enumerate() {
            let key = |k: &str| format!("peers[{i}].{k}");
            if peer.name.is_empty() || names.contains(&peer.name) {
                return Err(self.invalid(
                    &key("name"),
                    format!("{:?} is empty or not unique among nodes", peer.name),
                ));
            }
            names.push(peer.name.clone());
            if peer.host.is_empty()
                || peer.host.starts_with('-')
                || peer.host.contains(char::is_whitespace)
            {
                return Err(self.invalid(
                    &key("host"),
                    format!("{:?} is not a host name or address", peer.host),
                ));
            }
            self.check_addr(&key("http"), &peer.http_addr())?;
            self.check_addr(&key("https"), &peer.https_addr())?;
            for (j, p) in peer.lineages.iter().flatten().enumerate() {
                LineagePattern::parse(p).map_err(|e| {
                    self.invalid(&format!("peers[{i}].lineages[{j}]"), e.to_string())
                })?;
            }
        }
        for (key, argv) in [
            ("reload.test", &self.reload.test),
            ("reload.reload", &self.reload.reload),
        ] {
            if argv.first().is_some_and(|a| a.is_empty()) {
                return Err(self.invalid(key, "the program name is empty".into()));
            }
        }
        for (i, server) in self.acme_servers.iter().enumerate() {
            if !crate::names::is_acme_server_url(server) {
                return Err(self.invalid(
                    &format!("acme_servers[{i}]"),
                    format!("{server:?} is not an https:// ACME directory URL"),
                ));
            }
        }
        for (i, action) in self.deploy.iter().enumerate() {
            self.check_deploy(i, action)?;
        }
        if self.renew.primary.is_some() && self.renew.vip.is_some() {
            return Err(self.invalid("renew", "set either primary or vip, not both".into()));
        }
        Ok(())
    }

    /// This node's name: the config's `name`, else the host name.
    pub fn node_name(&self) -> String {
        if let Some(n) = &self.name {
            return n.clone();
        }
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into())
    }

    /// This node's `[reload]` commands.
    pub fn commands(&self) -> crate::exec::Commands {
        crate::exec::Commands {
            test: self.reload.test.clone(),
            reload: self.reload.reload.clone(),
            timeout: self.reload.timeout,
        }
    }

    /// Peers that certherd talks to over SSH.
    pub fn managed_peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.iter().filter(|p| !p.check_only)
    }

    /// Managed peers whose `lineages` list admits `lineage`: the only ones it is sent to.
    pub fn peers_receiving<'a>(&'a self, lineage: &'a str) -> impl Iterator<Item = &'a Peer> {
        self.managed_peers().filter(move |p| p.receives(lineage))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::parse(s, Path::new("/x/certherd.toml"))
    }

    #[test]
    fn design_example_parses() {
        let c = parse(
            r#"
name = "web1"
letsencrypt_dir = "/etc/letsencrypt"
webroot = "/var/lib/certherd/webroot"
[ssh]
user = "certherd"
identity = "/etc/certherd/id_ed25519"
known_hosts = "/etc/certherd/known_hosts"
connect_timeout = "5s"
[[peers]]
name = "web2"
host = "192.0.2.12"
[reload]
test = ["nginx", "-t"]
reload = ["systemctl", "reload", "nginx"]
[alert]
webhook = ["https://hooks.example.com/T000/B000"]
influx = "http://127.0.0.1:8186/write?db=certherd"
[renew]
primary = "web1"
jitter = "1h"
"#,
        )
        .unwrap();
        assert_eq!(c.peers[0].http_addr(), "192.0.2.12:80");
        assert_eq!(c.ssh.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.renew.jitter, Some(Duration::from_secs(3600)));
    }

    #[test]
    fn kex_algorithms_are_checked() {
        let c = parse("[ssh]\nkex_algorithms = [\"curve25519-sha256\", \"sntrup761x25519-sha512@openssh.com\"]\n")
            .unwrap();
        assert_eq!(c.ssh.kex_algorithms.unwrap().len(), 2);
        assert!(parse("").unwrap().ssh.kex_algorithms.is_none());
        for bad in [
            "\"curve25519 sha256\"",
            "\"+curve25519-sha256\"",
            "\"a,b\"",
            "\"\"",
            "\"x\\n\"",
        ] {
            let e = parse(&format!("[ssh]\nkex_algorithms = [{bad}]\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("ssh.kex_algorithms"), "{bad}: {e}");
        }
        let e = parse("[ssh]\nkex_algorithms = []\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ssh.kex_algorithms") && e.contains("empty"),
            "{e}"
        );
    }

    #[test]
    fn peer_lineage_lists_are_globs_checked_at_load() {
        let c = parse(
            "[[peers]]\nname = \"a\"\nhost = \"h\"\n\
             [[peers]]\nname = \"b\"\nhost = \"h\"\nlineages = [\"example.com\", \"*.example.org\"]\n\
             [[peers]]\nname = \"c\"\nhost = \"h\"\nlineages = []\n",
        )
        .unwrap();
        let receiving = |l: &str| {
            c.peers_receiving(l)
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(receiving("example.com"), ["a", "b"]);
        assert_eq!(receiving("www.example.org"), ["a", "b"]);
        assert_eq!(receiving("example.org"), ["a"]);
        assert_eq!(receiving("example.com-0001"), ["a"]);
        for bad in ["a/b", "Example.com", "[ab].com", ""] {
            let e = parse(&format!(
                "[[peers]]\nname = \"a\"\nhost = \"h\"\n[[peers]]\nname = \"b\"\nhost = \"h\"\nlineages = [\"ok.com\", {bad:?}]\n"
            ))
            .unwrap_err();
            let shown = e.to_string();
            assert!(
                shown.contains(": peers[1].lineages[1]: ")
                    && shown.contains(&crate::text::printable(bad)),
                "{bad:?}: {shown}"
            );
            assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("name = \"a\"\nwebrot = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("webrot"), "{e}");
        assert!(e.contains("/x/certherd.toml"), "{e}");
        let e = parse("[ssh]\nuser = \"a\"\nidentty = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("identty"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("[ssh]\nconnect_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("soon"), "{e}");
        let e = parse("[[peers]]\nname = \"a\"\nhost = \"h\"\nhttp = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("peers[0].http") && e.contains("nope"), "{e}");
        let e = parse("name = \"a\"\n[[peers]]\nname = \"a\"\nhost = \"h\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("peers[0].name"), "{e}");
    }

    /// The line and the dotted key path, not the value serde saw (`key `5``) — issue 11.
    #[test]
    fn errors_name_line_and_key_path() {
        let padding = "# comment\n".repeat(10);
        let e = Config::parse(
            &format!("{padding}[ssh]\nconnect_timeout = 5\n"),
            Path::new("certherd.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("certherd.toml:12: ssh.connect_timeout: invalid type: integer `5`, expected a duration string"),
            "{e}"
        );
        let e = parse("name = \"a\"\n\n[[peers]]\nname = \"b\"\nhost = \"h\"\nhttp = \"nope\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/x/certherd.toml:6: peers[0].http: "), "{e}");
        let e = parse("name = \"a\"\n[ssh]\nuser = \"u\"\nidentty = \"/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/x/certherd.toml:4: ssh.identty: unknown field `identty`"),
            "{e}"
        );
        let e = parse("name = \"a\"\n[ssh\nuser = \"u\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/x/certherd.toml:2: "), "{e}");
        let e = parse("[[peers]]\nname = \"b\"\nhost = \"h\"\nport = \"22\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/x/certherd.toml:4: peers[0].port: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn a_missing_config_points_to_the_example() {
        let e = Config::load(Path::new("/nonexistent/certherd.toml")).unwrap_err();
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);
        let e = e.to_string();
        assert!(e.contains("/nonexistent/certherd.toml"), "{e}");
        assert!(
            e.contains("/usr/share/doc/certherd/examples/contrib/certherd.toml.example"),
            "{e}"
        );
        assert!(e.contains("contrib/certherd.toml.example"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}
