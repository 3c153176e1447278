//! Primary failover: a standby peer also holds certbot's `renewal/<lineage>.conf` and the ACME
//! account it names, so that after the VIP moves, `certherd renew` there renews with the same
//! account and the same lineage numbering.
//!
//! Being a standby is the peer's own decision (`standby = true` in its config), never the
//! request's. The standby never writes the renewal config it received: certbot runs the hooks of
//! that file as whoever runs `certbot renew` (root, usually), so a config from a compromised
//! primary would be a command. It builds the file itself from an allow-list of values — account,
//! an ACME server its own config allows, key type and size, `http-01` — with every path computed
//! from its own letsencrypt dir and the three hooks being its own `certherd auth/cleanup/deploy`;
//! every other key is dropped and named in the answer. The account's private key travels only
//! inside the SSH channel and is written 0400, like certbot does.
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use crate::certbot_env::HOOKS;
use crate::error::{Error, Result};
use crate::names::LineageName;
use crate::text::printable;
pub use crate::wire::RenewalBundle;

/// The account files certbot keeps per account.
pub const ACCOUNT_FILES: [&str; 3] = ["meta.json", "private_key.json", "regr.json"];

fn conf_value<'a>(conf: &'a str, key: &str) -> Option<&'a str> {
    conf.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim())
    })
}

/// Reads the bundle for `lineage` on the primary.
pub fn read(root: &Path, config_path: &Path, lineage: &LineageName) -> Result<RenewalBundle> {
    let conf_path = root.join("renewal").join(format!("{lineage}.conf"));
    let conf =
        fs::read_to_string(&conf_path).map_err(|e| Error::io("cannot read", &conf_path, e))?;
    let id = conf_value(&conf, "account")
        .ok_or_else(|| Error::Failed(format!("{}: no `account =` line", conf_path.display())))?;
    let accounts = root.join("accounts");
    let dir = find_account(&accounts, id, 0).ok_or_else(|| {
        Error::Failed(format!(
            "account {id} named by {} not found under {}",
            conf_path.display(),
            accounts.display()
        ))
    })?;
    let mut account_files = BTreeMap::new();
    for name in ACCOUNT_FILES {
        let p = dir.join(name);
        account_files.insert(
            name.to_owned(),
            fs::read_to_string(&p).map_err(|e| Error::io("cannot read", &p, e))?,
        );
    }
    Ok(RenewalBundle {
        conf,
        primary_root: root.to_string_lossy().into_owned(),
        primary_config: config_path.to_string_lossy().into_owned(),
        account_dir: dir
            .strip_prefix(root)
            .unwrap_or(&dir)
            .to_string_lossy()
            .into_owned(),
        account_files,
    })
}

fn find_account(dir: &Path, id: &str, depth: usize) -> Option<PathBuf> {
    for entry in fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            if entry.file_name() == id {
                return Some(path);
            }
            if depth < 6 {
                if let Some(found) = find_account(&path, id, depth + 1) {
                    return Some(found);
                }
            }
        }
    }
    None
}

/// Longest file name the kernel accepts (NAME_MAX on Linux).
const NAME_MAX: usize = 255;
/// Longest account file the agent accepts (certbot's are well under 4 KiB).
const MAX_ACCOUNT_FILE: usize = 64 * 1024;

/// `accounts/<server components…>/<hex id>`: no `..`, no absolute path, no odd characters,
/// every component a valid file name.
fn check_account_dir(rel: &str) -> std::result::Result<Vec<&str>, StandbyError> {
    let parts: Vec<&str> = rel.split('/').collect();
    let ok_part = |p: &&str| {
        !p.is_empty()
            && p.len() <= NAME_MAX
            && *p != "."
            && *p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    };
    let id_ok = parts.last().is_some_and(|id| {
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit())
    });
    if parts.len() < 3
        || parts.len() > 8
        || parts[0] != "accounts"
        || !parts.iter().all(ok_part)
        || !id_ok
    {
        return Err(StandbyError::Invalid(format!(
            "invalid account_dir {}: expected accounts/<server>/<hex id>",
            printable(rel)
        )));
    }
    Ok(parts)
}

/// What a standby takes from the primary: this node's own settings.
#[derive(Debug, Clone)]
pub struct Policy {
    /// `standby = true` in this node's config.
    pub standby: bool,
    /// This node's letsencrypt dir: every path in the written config is below it.
    pub root: PathBuf,
    /// This node's own config, absolute: carried into its hooks.
    pub own_config: PathBuf,
    /// This node's certherd binary, absolute: the program its hooks run.
    pub exe: PathBuf,
    /// `acme_servers` from this node's config.
    pub servers: Vec<String>,
}

/// Why `put_renewal` was refused. Nothing was written unless it is [`StandbyError::Io`].
#[derive(Debug, thiserror::Error)]
pub enum StandbyError {
    /// This node's config does not say `standby = true`.
    #[error("this node is not a standby (its own config has no `standby = true`): renewal config for {0} refused")]
    NotStandby(String),
    /// The request is invalid (message names the value).
    #[error("{0}")]
    Invalid(String),
    /// Writing failed part-way.
    #[error("{0}")]
    Io(Error),
}

/// What `put_renewal` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// Whether a file changed.
    pub changed: bool,
    /// Keys of the received config that are not in the written one, in order.
    pub dropped: Vec<String>,
}

/// Characters a value this node writes itself may hold (its own paths): nothing certbot's
/// config format or the shell running a hook would read as syntax.
fn plain_path(p: &Path) -> Option<&str> {
    let s = p.to_str()?;
    (p.is_absolute()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+@:".contains(&b)))
    .then_some(s)
}

fn all_bytes(s: &str, max: usize, ok: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(ok)
}

/// The `[renewalparams]` keys taken from the received config, each with its check; everything
/// else is dropped. `account` and `server` are checked separately.
fn allowed_param(key: &str, value: &str) -> bool {
    match key {
        "key_type" => matches!(value, "rsa" | "ecdsa"),
        "elliptic_curve" => matches!(value, "secp256r1" | "secp384r1" | "secp521r1"),
        "rsa_key_size" => value
            .parse::<u32>()
            .is_ok_and(|n| (2048..=8192).contains(&n)),
        "reuse_key" => matches!(value, "True" | "False" | "true" | "false"),
        // certbot 4.1+ stores the ACME profile asked for (`issue --preferred-profile`): a
        // standby that dropped it would renew with the CA's default profile after a failover.
        "preferred_profile" | "required_profile" => is_profile_name(value),
        _ => false,
    }
}

/// An ACME profile name as CAs publish them (`classic`, `tlsserver`, `shortlived`): a short
/// token of letters, digits, `.`, `_` and `-`, starting with a letter or digit.
pub fn is_profile_name(value: &str) -> bool {
    all_bytes(value, 64, |b| {
        b.is_ascii_alphanumeric() || b"._-".contains(&b)
    }) && value.starts_with(|c: char| c.is_ascii_alphanumeric())
}

/// certbot 5's `[acme_renewal_info] ari_retry_after`: a naive ISO 8601 date and time,
/// `YYYY-MM-DDTHH:MM:SS`, nothing else.
fn is_ari_time(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 19
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// A hook value an honest primary sends: its own certherd with this role.
fn is_certherd_hook(value: &str, role: &str) -> bool {
    let words: Vec<&str> = value.split_whitespace().collect();
    let program = words.first().map(|w| w.trim_matches('\''));
    words.last() == Some(&role)
        && program.is_some_and(|p| Path::new(p).file_name().is_some_and(|n| n == "certherd"))
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b" /._-+@:='".contains(&b))
}

/// The renewal config this standby writes for `lineage`, built from `conf` (as received) and
/// this node's own settings, with the keys it did not take.
pub fn build_conf(
    policy: &Policy,
    lineage: &LineageName,
    conf: &str,
    primary_root: &str,
    account_id: &str,
) -> std::result::Result<(String, Vec<String>), StandbyError> {
    let own = |what: &str, p: &Path| {
        plain_path(p).map(str::to_owned).ok_or_else(|| {
            StandbyError::Io(Error::Input(format!(
                "this node's {what} {} cannot be written into a renewal config (expected an absolute path of [A-Za-z0-9/._+@:-])",
                printable(&p.to_string_lossy())
            )))
        })
    };
    let root = own("letsencrypt_dir", &policy.root)?;
    let hook = format!(
        "{} --config {}",
        own("certherd binary", &policy.exe)?,
        own("config path", &policy.own_config)?
    );
    let mut dropped = Vec::new();
    let mut drop_key = |k: &str| {
        // Plain keys as they are; anything else escaped and cut short (it came from a request).
        let plain = k.len() <= 64
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-[]".contains(&b));
        let k = if plain { k.to_owned() } else { printable(k) };
        if !dropped.contains(&k) {
            dropped.push(k);
        }
    };
    let mut version = None;
    let mut params: Vec<(String, String)> = Vec::new();
    let mut account = None;
    let mut server = None;
    let mut ari_retry_after = None;
    let mut section = String::new();
    for line in conf.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') {
            continue;
        }
        if t.starts_with('[') {
            section = t.to_owned();
            if section != "[renewalparams]" && section != "[acme_renewal_info]" {
                drop_key(t);
            }
            continue;
        }
        let Some((k, v)) = t.split_once('=') else {
            drop_key(t);
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        let archive = format!("{primary_root}/archive/{lineage}");
        let live = |kind: &str| format!("{primary_root}/live/{lineage}/{kind}.pem");
        match (section.as_str(), k) {
            ("", "version")
                if all_bytes(v, 32, |b| b.is_ascii_alphanumeric() || b == b'.')
                    && v.starts_with(|c: char| c.is_ascii_digit()) =>
            {
                version = Some(v.to_owned())
            }
            // Paths this node computes itself; named only when they were not the primary's own.
            ("", "archive_dir") if v == archive => {}
            ("", kind @ ("cert" | "privkey" | "chain" | "fullchain")) if v == live(kind) => {}
            ("[renewalparams]", "account") => account = Some(v.to_owned()),
            ("[renewalparams]", "server") if policy.servers.iter().any(|s| s == v) => {
                server = Some(v.to_owned())
            }
            // This node's own hooks replace the primary's; another command is named.
            ("[renewalparams]", key)
                if HOOKS
                    .iter()
                    .any(|h| h.conf_key == Some(key) && is_certherd_hook(v, h.role)) => {}
            ("[renewalparams]", "authenticator") if v == "manual" => {}
            ("[renewalparams]", "pref_challs")
                if v.split(',').all(|c| matches!(c.trim(), "" | "http-01")) => {}
            ("[acme_renewal_info]", "ari_retry_after") if is_ari_time(v) => {
                ari_retry_after = Some(v.to_owned())
            }
            ("[renewalparams]", key) if allowed_param(key, v) => {
                if !params.iter().any(|(k, _)| k == key) {
                    params.push((key.to_owned(), v.to_owned()))
                }
            }
            _ => drop_key(k),
        }
    }
    if account.as_deref() != Some(account_id) {
        return Err(StandbyError::Invalid(
            "the renewal config names another account than the one sent (expected account = the id of account_dir)".into(),
        ));
    }
    let mut out = String::from("# renew_before_expiry = 30 days\n");
    out.push_str(
        "# Written by certherd on this standby from an allow-list (see SECURITY.md): paths and\n# hooks are this node's own; keys it was sent and did not take are dropped.\n",
    );
    if let Some(v) = version {
        out.push_str(&format!("version = {v}\n"));
    }
    out.push_str(&format!("archive_dir = {root}/archive/{lineage}\n"));
    for kind in ["cert", "privkey", "chain", "fullchain"] {
        out.push_str(&format!("{kind} = {root}/live/{lineage}/{kind}.pem\n"));
    }
    out.push_str("\n# Options used in the renewal process\n[renewalparams]\n");
    out.push_str(&format!("account = {account_id}\n"));
    if let Some(s) = server {
        out.push_str(&format!("server = {s}\n"));
    }
    out.push_str("authenticator = manual\npref_challs = http-01,\n");
    for h in HOOKS {
        if let Some(key) = h.conf_key {
            out.push_str(&format!("{key} = {hook} {}\n", h.role));
        }
    }
    for (k, v) in params {
        out.push_str(&format!("{k} = {v}\n"));
    }
    if let Some(t) = ari_retry_after {
        out.push_str(&format!("\n[acme_renewal_info]\nari_retry_after = {t}\n"));
    }
    Ok((out, dropped))
}

/// Checks the whole bundle and builds what will be written, before anything is.
fn plan(
    policy: &Policy,
    lineage: &LineageName,
    bundle: &RenewalBundle,
) -> std::result::Result<(Vec<String>, String, Vec<String>), StandbyError> {
    let invalid = StandbyError::Invalid;
    if !policy.standby {
        return Err(StandbyError::NotStandby(lineage.to_string()));
    }
    if lineage.as_str().len() + ".conf".len() > NAME_MAX {
        return Err(invalid(format!(
            "lineage {} is {} bytes: {lineage}.conf would not fit a file name (expected at most {} bytes)",
            printable(lineage.as_str()),
            lineage.as_str().len(),
            NAME_MAX - ".conf".len()
        )));
    }
    let parts = check_account_dir(&bundle.account_dir)?;
    for name in ACCOUNT_FILES {
        let Some(content) = bundle.account_files.get(name) else {
            return Err(invalid(format!(
                "account file {name} missing (expected all of {})",
                ACCOUNT_FILES.join(", ")
            )));
        };
        if content.len() > MAX_ACCOUNT_FILE
            || serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(content).is_err()
        {
            return Err(invalid(format!(
                "account file {name} is not a JSON object of at most {MAX_ACCOUNT_FILE} bytes"
            )));
        }
    }
    if let Some(name) = bundle
        .account_files
        .keys()
        .find(|n| !ACCOUNT_FILES.contains(&n.as_str()))
    {
        return Err(invalid(format!(
            "invalid account file name {}: expected one of {}",
            printable(name),
            ACCOUNT_FILES.join(", ")
        )));
    }
    if bundle.primary_root.len() < 2 || !bundle.primary_root.starts_with('/') {
        return Err(invalid(format!(
            "invalid primary_root {}: expected an absolute path",
            printable(&bundle.primary_root)
        )));
    }
    let id = parts.last().copied().unwrap_or_default();
    let (conf, dropped) = build_conf(
        policy,
        lineage,
        &bundle.conf,
        bundle.primary_root.trim_end_matches('/'),
        id,
    )?;
    Ok((parts.iter().map(|p| p.to_string()).collect(), conf, dropped))
}

/// Writes the account and the rebuilt renewal config on a standby (the agent side).
pub fn install(
    policy: &Policy,
    lineage: &LineageName,
    bundle: &RenewalBundle,
) -> std::result::Result<Written, StandbyError> {
    let (parts, conf, dropped) = plan(policy, lineage, bundle)?;
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let io = StandbyError::Io;
    let mut created = Vec::new();
    let mut changed = false;
    // Walked without following symlinks: a planted `accounts` or `renewal` link is refused.
    crate::fsx::walk(&policy.root, &parts, Some(0o700), &mut created).map_err(io)?;
    let dir = parts.iter().fold(policy.root.clone(), |d, p| d.join(p));
    for (name, content) in &bundle.account_files {
        let mode = if name == "private_key.json" {
            0o400
        } else {
            0o644
        };
        changed |= crate::fsx::write_file(&dir.join(name), content.as_bytes(), mode).map_err(io)?;
    }
    crate::fsx::walk(&policy.root, &["renewal"], Some(0o755), &mut created).map_err(io)?;
    changed |= crate::fsx::write_file(
        &policy.root.join("renewal").join(format!("{lineage}.conf")),
        conf.as_bytes(),
        0o644,
    )
    .map_err(io)?;
    Ok(Written { changed, dropped })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scratch::scratch;

    const ID: &str = "967c71e7cc769155b4da8367ac79b436";
    const SERVER: &str = "https://127.0.1.250:14000/dir";

    fn policy(root: &Path, standby: bool) -> Policy {
        Policy {
            standby,
            root: root.to_owned(),
            own_config: "/etc/certherd/standby.toml".into(),
            exe: "/usr/bin/certherd".into(),
            servers: vec![SERVER.into()],
        }
    }

    /// What certbot 2.1 writes for `certherd issue` on the primary, plus a hostile tail.
    fn hostile_conf() -> String {
        format!(
            "version = 2.1.0\narchive_dir = /etc/cron.d\ncert = /root/.bashrc\n\
             privkey = /p/live/site.test/privkey.pem\nchain = /p/live/site.test/chain.pem\n\
             fullchain = /p/live/site.test/fullchain.pem\n\n[renewalparams]\naccount = {ID}\n\
             pref_challs = http-01,\nmanual_auth_hook = /usr/bin/certherd --config /p.toml auth\n\
             manual_cleanup_hook = touch /tmp/pwned\nrenew_hook = /usr/bin/certherd deploy\n\
             pre_hook = touch /tmp/pwned\npost_hook = id\ndeploy_hook = id\nserver = {SERVER}\n\
             authenticator = manual\nkey_type = ecdsa\nconfig_dir = /etc/cron.d\n\
             work_dir = /tmp\n[[evil]]\nx = y\n"
        )
    }

    fn bundle(conf: String) -> RenewalBundle {
        RenewalBundle {
            conf,
            primary_root: "/p".into(),
            primary_config: "/p.toml".into(),
            account_dir: format!("accounts/127.0.1.250:14000/dir/{ID}"),
            account_files: ACCOUNT_FILES
                .iter()
                .map(|n| (n.to_string(), "{}".to_string()))
                .collect(),
        }
    }

    #[test]
    fn the_renewal_config_is_rebuilt_from_the_allow_list() {
        let root = scratch("rebuild");
        let lineage = LineageName::parse("site.test").unwrap();
        let w = install(&policy(&root, true), &lineage, &bundle(hostile_conf())).unwrap();
        let conf = fs::read_to_string(root.join("renewal/site.test.conf")).unwrap();
        for bad in [
            "pwned", "cron", "bashrc", "/p/", "/p.toml", "id\n", "evil", "work_dir",
        ] {
            assert!(!conf.contains(bad), "{bad:?} in\n{conf}");
        }
        let r = root.display();
        for good in [
            format!("archive_dir = {r}/archive/site.test\n"),
            format!("cert = {r}/live/site.test/cert.pem\n"),
            format!("account = {ID}\n"),
            format!("server = {SERVER}\n"),
            "manual_auth_hook = /usr/bin/certherd --config /etc/certherd/standby.toml auth\n"
                .into(),
            "manual_cleanup_hook = /usr/bin/certherd --config /etc/certherd/standby.toml cleanup\n"
                .into(),
            "renew_hook = /usr/bin/certherd --config /etc/certherd/standby.toml deploy\n".into(),
            "key_type = ecdsa\n".into(),
        ] {
            assert!(conf.contains(&good), "{good:?} missing in\n{conf}");
        }
        // Every line with a path names this node's letsencrypt dir or its own certherd.
        for line in conf
            .lines()
            .filter(|l| l.contains('/') && !l.starts_with('#'))
        {
            assert!(
                line.contains(&format!(" {r}/"))
                    || line.contains(" /usr/bin/certherd ")
                    || line.starts_with("server = "),
                "{line}"
            );
        }
        for key in [
            "archive_dir",
            "cert",
            "manual_cleanup_hook",
            "pre_hook",
            "post_hook",
            "deploy_hook",
            "config_dir",
            "work_dir",
            "[[evil]]",
        ] {
            assert!(
                w.dropped.contains(&key.to_string()),
                "{key} not reported in {:?}",
                w.dropped
            );
        }
        for kept in [
            "manual_auth_hook",
            "renew_hook",
            "server",
            "account",
            "privkey",
        ] {
            assert!(
                !w.dropped.contains(&kept.to_string()),
                "{kept} reported in {:?}",
                w.dropped
            );
        }
        let mode = |p: &str| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(
            mode(&format!(
                "accounts/127.0.1.250:14000/dir/{ID}/private_key.json"
            )),
            0o400
        );
        fs::remove_dir_all(&root).unwrap();
    }

    /// certbot 4.1+ keeps the ACME profile, certbot 5 the ARI retry time: a standby keeps
    /// valid values of both (so a failover renews with the same profile) and drops anything
    /// else in their place, hooks above all.
    #[test]
    fn profiles_and_the_ari_retry_time_are_kept_when_valid() {
        let policy = policy(Path::new("/s"), true);
        let lineage = LineageName::parse("site.test").unwrap();
        let certbot5 = format!(
            "version = 5.8.0\n[renewalparams]\naccount = {ID}\nserver = {SERVER}\n\
             authenticator = manual\npreferred_profile = shortlived\nrequired_profile = tlsserver\n\
             [acme_renewal_info]\nari_retry_after = 2026-12-03T00:38:31\n"
        );
        let (conf, dropped) = build_conf(&policy, &lineage, &certbot5, "/p", ID).unwrap();
        for good in [
            "preferred_profile = shortlived\n",
            "required_profile = tlsserver\n",
            "\n[acme_renewal_info]\nari_retry_after = 2026-12-03T00:38:31\n",
        ] {
            assert!(conf.contains(good), "{good:?} missing in\n{conf}");
        }
        assert!(dropped.is_empty(), "{dropped:?}");

        let hostile = format!(
            "[renewalparams]\naccount = {ID}\npreferred_profile = classic; touch /tmp/pwned\n\
             required_profile = -x\n[acme_renewal_info]\nari_retry_after = $(id)\n\
             pre_hook = touch /tmp/pwned\n"
        );
        let (conf, dropped) = build_conf(&policy, &lineage, &hostile, "/p", ID).unwrap();
        for bad in [
            "profile",
            "pwned",
            "acme_renewal_info",
            "ari_retry_after",
            "id)",
        ] {
            assert!(!conf.contains(bad), "{bad:?} in\n{conf}");
        }
        for key in [
            "preferred_profile",
            "required_profile",
            "ari_retry_after",
            "pre_hook",
        ] {
            assert!(
                dropped.contains(&key.to_string()),
                "{key} not in {dropped:?}"
            );
        }
    }

    #[test]
    fn a_server_the_standby_does_not_allow_is_dropped() {
        let root = scratch("server");
        let lineage = LineageName::parse("site.test").unwrap();
        let conf = hostile_conf().replace(SERVER, "https://evil.example/dir");
        let w = install(&policy(&root, true), &lineage, &bundle(conf)).unwrap();
        assert!(w.dropped.contains(&"server".to_string()), "{:?}", w.dropped);
        let conf = fs::read_to_string(root.join("renewal/site.test.conf")).unwrap();
        assert!(!conf.contains("evil"), "{conf}");
        fs::remove_dir_all(&root).unwrap();
    }

    /// Refusals write nothing at all: not a standby, a 251-byte lineage (whose `.conf` would not
    /// fit a file name), another account than the one sent, a bad account file.
    #[test]
    fn refusals_write_nothing() {
        let root = scratch("refuse");
        let lineage = LineageName::parse("site.test").unwrap();
        let r = install(&policy(&root, false), &lineage, &bundle(hostile_conf()));
        assert!(matches!(r, Err(StandbyError::NotStandby(_))), "{r:?}");
        let long = format!(
            "{}.test",
            [
                "a".repeat(61),
                "a".repeat(61),
                "a".repeat(61),
                "a".repeat(60)
            ]
            .join(".")
        );
        assert_eq!(long.len(), 251);
        // Too long for renewal/NAME.conf: refused as a name already, before any request.
        let e = LineageName::parse(&long).unwrap_err().to_string();
        assert!(e.contains("file name"), "{e}");
        let other = hostile_conf().replace(&format!("account = {ID}"), "account = 00");
        let r = install(&policy(&root, true), &lineage, &bundle(other));
        assert!(matches!(r, Err(StandbyError::Invalid(_))), "{r:?}");
        let mut b = bundle(hostile_conf());
        b.account_files
            .insert("regr.json".into(), "not json".into());
        let r = install(&policy(&root, true), &lineage, &b);
        assert!(matches!(r, Err(StandbyError::Invalid(_))), "{r:?}");
        assert_eq!(
            fs::read_dir(&root).unwrap().count(),
            0,
            "a refusal wrote something"
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn planted_symlinks_are_refused() {
        let lineage = LineageName::parse("site.test").unwrap();
        for planted in ["renewal", "accounts"] {
            let root = scratch(planted);
            let decoy = scratch(&format!("{planted}-decoy"));
            std::os::unix::fs::symlink(&decoy, root.join(planted)).unwrap();
            let r = install(&policy(&root, true), &lineage, &bundle(hostile_conf()));
            assert!(
                matches!(&r, Err(StandbyError::Io(e)) if e.to_string().contains(planted) && e.to_string().contains("symlink")),
                "{r:?}"
            );
            assert_eq!(
                fs::read_dir(&decoy).unwrap().count(),
                0,
                "{planted}: written through"
            );
            fs::remove_dir_all(&root).unwrap();
            fs::remove_dir_all(&decoy).unwrap();
        }
    }

    #[test]
    fn account_dirs_are_checked() {
        assert!(
            check_account_dir("accounts/acme-v02.api.letsencrypt.org/directory/0123abcd").is_ok()
        );
        assert!(check_account_dir(
            "accounts/127.0.1.250:14000/dir/967c71e7cc769155b4da8367ac79b436"
        )
        .is_ok());
        for bad in [
            "accounts/../../etc/x/00",
            "/etc/accounts/x/00",
            "accounts/x/notHex",
            "keys/x/00",
            "accounts/00",
            "accounts/a b/00",
        ] {
            assert!(check_account_dir(bad).is_err(), "{bad}");
        }
    }
}
