//! Primary failover: a standby peer also holds certbot's `renewal/<lineage>.conf` and the ACME
//! account it names, so that after the VIP moves, `certherd renew` there renews with the same
//! account and the same lineage numbering.
//!
//! The primary's paths inside the renewal config (its letsencrypt dir, its certherd config in the
//! hook commands) are rewritten by the agent to its own, from its own config. The account's
//! private key travels only inside the SSH channel and is written 0400, like certbot does.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::{printable, LineageName};

/// The account files certbot keeps per account.
pub const ACCOUNT_FILES: [&str; 3] = ["meta.json", "private_key.json", "regr.json"];

/// What a standby receives for one lineage.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewalBundle {
    /// `renewal/<lineage>.conf` as on the primary.
    pub conf: String,
    /// The primary's letsencrypt dir (rewritten to the standby's).
    pub primary_root: String,
    /// The primary's certherd config path (rewritten to the standby's).
    pub primary_config: String,
    /// `accounts/<server dir>/<id>/`, relative to the letsencrypt dir.
    pub account_dir: String,
    /// File name → content, names from [`ACCOUNT_FILES`].
    pub account_files: BTreeMap<String, String>,
}

impl std::fmt::Debug for RenewalBundle {
    // The account key must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenewalBundle")
            .field("account_dir", &self.account_dir)
            .finish_non_exhaustive()
    }
}

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

/// `accounts/<server components…>/<hex id>`: no `..`, no absolute path, no odd characters.
fn check_account_dir(rel: &str) -> std::result::Result<Vec<&str>, String> {
    let parts: Vec<&str> = rel.split('/').collect();
    let ok_part = |p: &&str| {
        !p.is_empty()
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
        return Err(format!(
            "invalid account_dir {}: expected accounts/<server>/<hex id>",
            printable(rel)
        ));
    }
    Ok(parts)
}

/// Installs the bundle on a standby (the agent side). Returns whether anything changed.
pub fn install(
    root: &Path,
    own_config: &Path,
    lineage: &LineageName,
    bundle: &RenewalBundle,
) -> std::result::Result<bool, String> {
    let parts = check_account_dir(&bundle.account_dir)?;
    if let Some(name) = bundle
        .account_files
        .keys()
        .find(|n| !ACCOUNT_FILES.contains(&n.as_str()))
    {
        return Err(format!(
            "invalid account file name {}: expected one of {}",
            printable(name),
            ACCOUNT_FILES.join(", ")
        ));
    }
    if bundle.primary_root.len() < 2 || !bundle.primary_root.starts_with('/') {
        return Err(format!(
            "invalid primary_root {}: expected an absolute path",
            printable(&bundle.primary_root)
        ));
    }
    let mut conf = bundle
        .conf
        .replace(&bundle.primary_root, &root.to_string_lossy());
    if !bundle.primary_config.is_empty() {
        conf = conf.replace(&bundle.primary_config, &own_config.to_string_lossy());
    }
    let conf_value_id = conf_value(&conf, "account").unwrap_or_default();
    if Some(&conf_value_id) != parts.last() {
        return Err("the renewal config names another account than the one sent".into());
    }
    let mut changed = false;
    let mut dir = root.to_path_buf();
    for part in &parts {
        dir.push(part);
        make_dir(&dir, 0o700).map_err(|e| e.to_string())?;
    }
    for (name, content) in &bundle.account_files {
        let mode = if name == "private_key.json" {
            0o400
        } else {
            0o644
        };
        changed |= crate::lineage::write_file(&dir.join(name), content.as_bytes(), mode)
            .map_err(|e| e.to_string())?;
    }
    let renewal = root.join("renewal");
    make_dir(&renewal, 0o755).map_err(|e| e.to_string())?;
    changed |= crate::lineage::write_file(
        &renewal.join(format!("{lineage}.conf")),
        conf.as_bytes(),
        0o644,
    )
    .map_err(|e| e.to_string())?;
    Ok(changed)
}

fn make_dir(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match fs::DirBuilder::new().mode(mode).create(path) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(Error::io("cannot create", path, e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
