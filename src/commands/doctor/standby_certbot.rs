//! doctor's check of every standby's certbot against the ACME profiles lineages here ask for:
//! a standby renews after a failover with its own certbot, and one older than 4.1 drops the
//! stored profile in silence (a `shortlived` lineage would come back as a 90-day one).

use crate::config::Config;
use crate::fleet;
use crate::wire::{Request, Response};

use super::{fail, ok, warn};
/// When lineages here ask for an ACME profile: every standby's certbot must keep it (4.1 or
/// later), or a failover renews them with the CA's default profile, in silence. Asks each
/// standby which certbot its `certherd renew` runs; false when one is too old.
pub async fn check(config: &Config, peers: &[crate::config::Peer]) -> bool {
    use crate::certbot_version::{CertbotVersion, PROFILE_KEPT_SINCE};
    let standbys: Vec<_> = peers.iter().filter(|p| p.standby).cloned().collect();
    let profiles = super::renewal_confs::profiles(&config.letsencrypt_dir);
    let Some((lineage, profile)) = profiles.first() else {
        return true;
    };
    if standbys.is_empty() {
        return true;
    }
    let asks = format!(
        "{} lineage(s) ask for an ACME profile (e.g. {lineage}: {profile})",
        profiles.len()
    );
    let requests = [
        Request::Hello {
            protocol: crate::wire::PROTOCOL_VERSION,
        },
        Request::CertbotVersion {},
    ];
    let mut healthy = true;
    for outcome in fleet::run(&config.ssh, &standbys, &requests).await {
        let name = &outcome.peer.name;
        let what = format!("{name}: standby certbot");
        let answer = match &outcome.result {
            Ok(r) => r.last().cloned(),
            Err(_) => continue, // the ssh/agent line above already failed it
        };
        match answer {
            Some(Response::CertbotVersion { version }) => {
                match CertbotVersion::parse(&format!("certbot {version}")) {
                    Some(v) if v.keeps_profiles() => {
                        ok(&format!("{what} {version} keeps the profiles: {asks}"))
                    }
                    _ => {
                        healthy &= outcome.peer.optional;
                        fail(
                            &format!("{what} {version}"),
                            &format!("{asks}; certbot before {}.{} does not keep a profile, so after a failover {name} renews them with the CA's default profile", PROFILE_KEPT_SINCE.0, PROFILE_KEPT_SINCE.1),
                            &format!("install certbot {}.{} or later on {name} (from PyPI in a virtualenv) and name it in {name}'s `[renew] certbot`", PROFILE_KEPT_SINCE.0, PROFILE_KEPT_SINCE.1),
                        );
                    }
                }
            }
            Some(Response::Error { message, .. }) => warn(
                &what,
                &format!("{asks}, and {name} cannot say which certbot it runs: {message}"),
                &format!("check `[renew] certbot` in {name}'s config"),
            ),
            other => warn(
                &what,
                &format!("{asks}; {name}'s agent answered {other:?} (an agent older than this certherd?)"),
                &format!("upgrade certherd on {name}"),
            ),
        }
    }
    healthy
}
