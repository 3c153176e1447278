//! The config's defaults and its duration fields: what a key means when it is left out, and how
//! `"5s"` becomes a `Duration` (with an error that says what was expected).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserializer;

/// Let's Encrypt's production and staging directories.
pub const LETS_ENCRYPT_SERVERS: [&str; 2] = [
    "https://acme-v02.api.letsencrypt.org/directory",
    "https://acme-staging-v02.api.letsencrypt.org/directory",
];

pub(super) fn default_acme_servers() -> Vec<String> {
    LETS_ENCRYPT_SERVERS.iter().map(|s| s.to_string()).collect()
}

pub(super) fn default_letsencrypt_dir() -> PathBuf {
    "/etc/letsencrypt".into()
}
pub(super) fn default_webroot() -> PathBuf {
    "/var/lib/certherd/webroot".into()
}
pub(super) fn default_http() -> String {
    "127.0.0.1:80".into()
}
pub(super) fn default_https() -> String {
    "127.0.0.1:443".into()
}
pub(super) fn default_ssh_user() -> String {
    "certherd".into()
}
pub(super) fn default_identity() -> PathBuf {
    "/etc/certherd/id_ed25519".into()
}
pub(super) fn default_known_hosts() -> PathBuf {
    "/etc/certherd/known_hosts".into()
}
pub(super) fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
/// Two minutes: ControlPersist is an idle timeout, restarted by every use (a hook call, or
/// `certherd warm` finding the master alive). The longest idle gap inside one certbot run is the
/// CA's work between two hooks: from the pre-hook's `warm` to the first `auth` (account, order,
/// authorizations: seconds), and from the last `cleanup` to `deploy` (finalize, which certbot
/// polls for up to 90 s). 120 s covers both with a margin; an idle master costs one `ssh` on this
/// node and one `sshd` on the peer.
pub(super) fn default_persist() -> Duration {
    Duration::from_secs(120)
}
pub(super) fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_concurrency() -> usize {
    32
}
pub(super) fn default_check_timeout() -> Duration {
    Duration::from_secs(30)
}
pub(super) fn default_command_timeout() -> Duration {
    Duration::from_secs(60)
}
pub(super) fn default_ssh_port() -> u16 {
    22
}

/// A duration string (`"5s"`, `"2m"`): any other type is refused with serde's "invalid type"
/// message, which then says what was expected instead of "a string".
pub(super) fn duration<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Duration, D::Error> {
    struct Visitor;
    impl serde::de::Visitor<'_> for Visitor {
        type Value = Duration;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration string, e.g. \"5s\", \"2m\", \"1h\"")
        }
        fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<Duration, E> {
            humantime::parse_duration(s).map_err(|e| {
                E::custom(format!(
                    "invalid duration {s:?} ({e}): expected e.g. \"5s\", \"2m\", \"1h\""
                ))
            })
        }
    }
    d.deserialize_str(Visitor)
}

pub(super) fn opt_duration<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}
