//! DNS-01 for the bed: certbot's `--manual --preferred-challenges dns` with a small auth/cleanup
//! hook that puts the TXT record into pebble-challtestsrv (pebble's DNS) over its management
//! API (`/set-txt`, `/clear-txt`). certherd is then only the deploy hook, as it is for users
//! who obtain wildcard certificates through their DNS provider.

use crate::BedError;
use std::path::PathBuf;

use super::node::write;
use super::{pebble, Bed};

/// The hook: `dns01-hook auth|cleanup`, reading certbot's `CERTBOT_DOMAIN` (for `*.zone` certbot
/// passes `zone`) and `CERTBOT_VALIDATION`. No proxy: the bed's addresses are loopback.
const HOOK: &str = r#"#!/usr/bin/python3
# certherd test bed: DNS-01 TXT records through pebble-challtestsrv's management API.
import json, os, sys, urllib.request
mode = sys.argv[1]
host = "_acme-challenge." + os.environ["CERTBOT_DOMAIN"].rstrip(".") + "."
body = {"host": host}
if mode == "auth":
    body["value"] = os.environ["CERTBOT_VALIDATION"]
path = "/set-txt" if mode == "auth" else "/clear-txt"
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
req = urllib.request.Request(URL + path, data=json.dumps(body).encode(), method="POST")
opener.open(req, timeout=5).read()
"#;

impl Bed {
    /// Writes the DNS-01 hook script (once) and returns its path.
    pub fn dns01_hook(&self) -> Result<PathBuf, BedError> {
        let path = self.root.join("dns01-hook.py");
        let url = format!("http://{}:{}", self.ca_ip(), pebble::CHALL_MGMT_PORT);
        write(
            &path,
            &HOOK.replacen("import json", &format!("URL = {url:?}\nimport json"), 1),
        )?;
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .map_err(BedError::io("chmod", &path))?;
        Ok(path)
    }

    /// certbot arguments for `certonly` through DNS-01 with the bed's hook, and certherd (node
    /// 1's config) as the deploy hook: append `-d NAME…` and pass to [`Bed::certbot`].
    pub fn dns01_certonly_args(&self) -> Result<Vec<String>, BedError> {
        let hook = self.dns01_hook()?;
        Ok(vec![
            "certonly".into(),
            "--manual".into(),
            "--preferred-challenges".into(),
            "dns".into(),
            "--manual-auth-hook".into(),
            format!("{} auth", hook.display()),
            "--manual-cleanup-hook".into(),
            format!("{} cleanup", hook.display()),
            "--deploy-hook".into(),
            format!(
                "{} --config {} deploy",
                self.certherd_bin().display(),
                self.config_path(1).display()
            ),
        ])
    }

    /// Sets a TXT record in challtestsrv directly (`name` without the trailing dot).
    pub fn set_txt(&self, name: &str, value: &str) -> Result<(), BedError> {
        pebble::mgmt_post(
            self.ca_ip(),
            "/set-txt",
            &serde_json::json!({ "host": format!("{}.", name.trim_end_matches('.')), "value": value }),
        )
    }

    /// Removes every TXT record of `name` from challtestsrv.
    pub fn clear_txt(&self, name: &str) -> Result<(), BedError> {
        pebble::mgmt_post(
            self.ca_ip(),
            "/clear-txt",
            &serde_json::json!({ "host": format!("{}.", name.trim_end_matches('.')) }),
        )
    }
}
