//! doctor's checks of this node itself, run before any peer is asked: a missing identity, a
//! peer absent from known_hosts or a letsencrypt dir the agent may not write makes every peer
//! fail later with a less helpful message. Each check yields a verdict with the exact fix — the
//! README checklist's own line where there is one.
//!
//! The system files (certbot's timers and cron entries, `schedulers`) are looked up under a
//! [`System`] root, `/` in production, so that tests can point it at a directory they made.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;
use crate::exec::{run_bounded, ExecError};

/// Any helper program doctor runs (ssh-keygen, sudo) answers in far less.
const HELPER_TIMEOUT: Duration = Duration::from_secs(10);

pub use super::finding::{Finding, System, Verdict};

/// Every local check, in the order a new node is set up.
pub fn check(config: &Config, system: &System) -> Vec<Finding> {
    let mut out = Vec::new();
    if config.managed_peers().next().is_some() {
        out.push(identity(&config.ssh.identity));
        out.extend(known_hosts(config));
    }
    let agent = nix::unistd::User::from_name(&config.ssh.user)
        .ok()
        .flatten();
    out.push(directory(
        "webroot",
        &config.webroot,
        &config.ssh.user,
        agent.as_ref(),
    ));
    out.push(directory(
        "letsencrypt_dir",
        &config.letsencrypt_dir,
        &config.ssh.user,
        agent.as_ref(),
    ));
    // certbot runs as the letsencrypt dir's owner (certherd leaves root for it first); a tree
    // that root owns (or none yet) runs it as root, which can write anywhere.
    let certbot_runs_as = crate::privdrop::certbot_account(&config.letsencrypt_dir);
    if let (true, Some(uid)) = (may_run_certbot(config), certbot_runs_as) {
        for (flag, default) in CERTBOT_DIRS {
            let dir = certbot_dir(&config.renew.certbot, flag, default);
            out.push(certbot_dir_owner(flag, &dir, uid, &config.ssh.user));
        }
    }
    for (key, argv) in [
        ("reload.test", &config.reload.test),
        ("reload.reload", &config.reload.reload),
    ] {
        if let Some(f) = reload_sudo(key, argv, &config.ssh.user, agent.as_ref()) {
            out.push(f);
        }
    }
    out.extend(super::schedulers::findings(config, system));
    out.extend(super::renewal_confs::check(&config.letsencrypt_dir));
    out
}

fn finding(what: String, verdict: Verdict) -> Finding {
    Finding { what, verdict }
}

fn fail(what: String, why: impl Into<String>, fix: impl Into<String>) -> Finding {
    finding(what, Verdict::Fail(why.into(), fix.into()))
}

/// The identity must exist, be readable by whoever runs certherd, and be readable by nobody
/// else (ssh itself refuses a private key that others may read).
fn identity(path: &Path) -> Finding {
    let what = format!("[ssh] identity {}", path.display());
    let unreadable = |e: &dyn std::fmt::Display, owner: String| {
        fail(
            what.clone(),
            format!(
                "not readable by this account (uid {}): {e}",
                nix::unistd::geteuid()
            ),
            format!("run certherd as the account that owns it ({owner}), or chown it to the account that runs certherd"),
        )
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(
                what,
                "does not exist",
                format!(
                    "ssh-keygen -q -t ed25519 -N '' -f {}, then put its .pub into every peer's authorized_keys line (docs/SETUP.md, step 3)",
                    path.display()
                ),
            )
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return unreadable(&e, "root, as docs/SETUP.md makes it".into())
        }
        Err(e) => return fail(what, e.to_string(), "check the directories above it"),
    };
    if let Err(e) = nix::unistd::access(path, nix::unistd::AccessFlags::R_OK) {
        return unreadable(&e, format!("uid {}", meta.uid()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return fail(
            what,
            format!("mode {mode:04o}: others may read the private key, and ssh refuses it"),
            format!("chmod 600 {}", path.display()),
        );
    }
    finding(what, Verdict::Ok)
}

/// ssh-keygen's name for a host in known_hosts: `host`, or `[host]:port` off port 22.
fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Every managed peer needs an entry under exactly its configured `host` (and port): ssh looks
/// the key up by that name, never by another name of the same machine.
fn known_hosts(config: &Config) -> Vec<Finding> {
    let file = &config.ssh.known_hosts;
    if let Err(e) = std::fs::File::open(file) {
        return vec![fail(
            format!("[ssh] known_hosts {}", file.display()),
            e.to_string(),
            format!(
                "ssh-keyscan -t ed25519 {} > {} and compare the fingerprints (docs/SETUP.md, step 2)",
                config
                    .managed_peers()
                    .map(|p| p.host.as_str())
                    .collect::<Vec<_>>()
                    .join(" "),
                file.display()
            ),
        )];
    }
    config
        .managed_peers()
        .map(|peer| {
            let name = known_hosts_name(&peer.host, peer.port);
            let what = format!("{}: known_hosts entry {name}", peer.name);
            let argv = [
                "ssh-keygen".to_owned(),
                "-F".to_owned(),
                name.clone(),
                "-f".to_owned(),
                file.to_string_lossy().into_owned(),
            ];
            let port = if peer.port == 22 {
                String::new()
            } else {
                format!("-p {} ", peer.port)
            };
            let fix = format!(
                "ssh-keyscan -t ed25519 {port}{} >> {}, after comparing the fingerprint with the peer's `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`",
                peer.host,
                file.display()
            );
            match run_bounded(&argv, HELPER_TIMEOUT) {
                Ok(()) => finding(what, Verdict::Ok),
                Err(ExecError::Failed { .. }) => fail(
                    what,
                    format!(
                        "no host key for {name} in {} (ssh looks it up by the configured `host` exactly)",
                        file.display()
                    ),
                    fix,
                ),
                Err(e) => fail(what, e.to_string(), "install openssh-client"),
            }
        })
        .collect()
}

/// The webroot and the letsencrypt dir: present, owned by the agent's account (it writes
/// tokens and installs certificates there), mode 0755 as the checklist makes them (nginx reads
/// the webroot as another user; nobody else may write either).
fn directory(key: &str, path: &Path, user: &str, agent: Option<&nix::unistd::User>) -> Finding {
    let what = format!("{key} {}", path.display());
    let create = format!("install -d -o {user} -g {user} -m 0755 {}", path.display());
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => return fail(what, "not a directory", create),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(what, "does not exist", create)
        }
        Err(e) => return fail(what, e.to_string(), "check the directories above it"),
    };
    let Some(agent) = agent else {
        return fail(
            what,
            format!("the agent's account {user:?} ([ssh] user) does not exist on this node"),
            format!("useradd --system --user-group --home-dir /var/lib/certherd --shell /bin/sh {user} (docs/SETUP.md, step 1)"),
        );
    };
    if meta.uid() != agent.uid.as_raw() {
        let recursive = if key == "letsencrypt_dir" { "-R " } else { "" };
        return fail(
            what,
            format!(
                "owned by uid {}, not by the agent's account {user} (uid {}): it cannot write there",
                meta.uid(),
                agent.uid
            ),
            format!("chown {recursive}{user}:{user} {}", path.display()),
        );
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode != 0o755 {
        return fail(
            what,
            format!("mode {mode:04o}, documented 0755 (others read, only the agent writes)"),
            format!("chmod 0755 {}", path.display()),
        );
    }
    finding(what, Verdict::Ok)
}

/// certbot's own directories besides the config dir, with Debian's defaults.
const CERTBOT_DIRS: [(&str, &str); 2] = [
    ("--work-dir", "/var/lib/letsencrypt"),
    ("--logs-dir", "/var/log/letsencrypt"),
];

/// Whether `certherd renew` may run certbot here: a standby, a node that renews where the VIP
/// is, the named primary, or — with neither `primary` nor `vip` set — every node.
fn may_run_certbot(config: &Config) -> bool {
    let renew = &config.renew;
    config.standby
        || renew.vip.is_some()
        || renew
            .primary
            .as_deref()
            .map_or(true, |p| p == config.node_name())
}

/// The directory certbot uses for `flag` (`--work-dir DIR` or `--work-dir=DIR` in
/// `[renew] certbot`), else its default.
fn certbot_dir(argv: &[String], flag: &str, default: &str) -> PathBuf {
    let mut args = argv.iter();
    while let Some(a) = args.next() {
        if a == flag {
            if let Some(dir) = args.next() {
                return PathBuf::from(dir);
            }
        } else if let Some(dir) = a.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            return PathBuf::from(dir);
        }
    }
    PathBuf::from(default)
}

/// certbot runs as the letsencrypt dir's owner `uid` (certherd leaves root first), so its work
/// and log directories must exist and be that account's: certbot cannot create
/// `/var/log/letsencrypt` itself, and a root-owned one fails every renewal.
fn certbot_dir_owner(flag: &str, path: &Path, uid: u32, user: &str) -> Finding {
    let what = format!("certbot {flag} {}", path.display());
    let fix = format!(
        "install -d -o {user} -g {user} -m 0755 {0} && chown -R {user}:{user} {0}",
        path.display()
    );
    match std::fs::metadata(path) {
        Ok(m) if !m.is_dir() => fail(what, "not a directory", fix),
        Ok(m) if m.uid() != uid => fail(
            what,
            format!(
                "owned by uid {}, not by uid {uid} (the letsencrypt dir's owner, whom certbot runs as here)",
                m.uid()
            ),
            fix,
        ),
        Ok(_) => finding(what, Verdict::Ok),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fail(
            what,
            "does not exist, and certbot (as the letsencrypt dir's owner) cannot create it",
            fix,
        ),
        Err(e) => fail(what, e.to_string(), "check the directories above it"),
    }
}

/// `[reload]` through sudo: the agent's account must be allowed exactly this command line
/// without a password (`sudo -n -l ARGV` as that account, which asks sudo without running it).
/// None when the command does not go through sudo.
fn reload_sudo(
    key: &str,
    argv: &[String],
    user: &str,
    agent: Option<&nix::unistd::User>,
) -> Option<Finding> {
    let (program, rest) = argv.split_first()?;
    if Path::new(program).file_name()? != "sudo" {
        return None;
    }
    // sudo's own options up to the command: -n is ours anyway; -u/-g carry a value.
    let mut options = Vec::new();
    let mut i = 0;
    while i < rest.len() && rest[i].starts_with('-') {
        match rest[i].as_str() {
            "-u" | "-g" if i + 1 < rest.len() => {
                options.extend_from_slice(&rest[i..i + 2]);
                i += 2;
            }
            "-n" | "--non-interactive" => i += 1,
            other => {
                options.push(other.to_owned());
                i += 1;
            }
        }
    }
    let command = &rest[i..];
    let what = format!("{key} as {user} through sudo: {}", command.join(" "));
    let agent = agent?;
    let mut probe: Vec<String> = Vec::new();
    let me = nix::unistd::geteuid();
    if me == agent.uid {
        // Already the agent's account.
    } else if me.is_root() {
        probe.extend(["runuser", "-u", user, "--"].map(String::from));
    } else {
        return Some(finding(
            what,
            Verdict::Warn(
                format!("not checked: this runs as uid {me}, neither root nor {user}"),
                "run certherd doctor as root".into(),
            ),
        ));
    }
    probe.push(program.clone());
    probe.extend(["-n", "-l"].map(String::from));
    probe.extend(options);
    probe.extend(command.iter().cloned());
    Some(match run_bounded(&probe, HELPER_TIMEOUT) {
        Ok(()) => finding(what, Verdict::Ok),
        Err(ExecError::Failed { output, .. }) => fail(
            what,
            format!("sudo does not let {user} run it without a password ({output})"),
            format!(
                "install contrib/sudoers/certherd as /etc/sudoers.d/certherd (root:root 0440, `visudo -cf` it), its command lines exactly as in [reload], account {user}"
            ),
        ),
        Err(e) => fail(what, e.to_string(), "install sudo (and util-linux's runuser)"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_hosts_names_follow_ssh_keygen() {
        assert_eq!(known_hosts_name("192.0.2.12", 22), "192.0.2.12");
        assert_eq!(known_hosts_name("web2", 2222), "[web2]:2222");
    }

    #[test]
    fn certbot_dirs_come_from_the_renew_argv_else_debians() {
        let argv: Vec<String> = ["certbot", "--work-dir", "/w", "--logs-dir=/l"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(certbot_dir(&argv, "--work-dir", "/d"), PathBuf::from("/w"));
        assert_eq!(certbot_dir(&argv, "--logs-dir", "/d"), PathBuf::from("/l"));
        assert_eq!(
            certbot_dir(&argv[..1], "--work-dir", "/d"),
            PathBuf::from("/d")
        );
    }
}
