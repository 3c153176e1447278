//! `certherd doctor [-d DOMAIN…]`: explains what is misconfigured. Checks the config, this node
//! itself ([`local`]: identity, known_hosts, directories, sudo for `[reload]`, Debian's certbot
//! timer; [`includes`]: no web server config root reads is writable by a non-root account), SSH
//! and the agent on every peer, then — for each domain — puts a throwaway token on every node,
//! fetches it through every node as the CA would, and removes it. Every failure comes with its
//! likely cause and the fix.

use crate::check::{self, CheckFailure, Expectation, NoAnswer};
use crate::config::Config;
use crate::error::{Result, EXIT_FAILED, EXIT_OK};
use crate::fleet;
use crate::names::{Domain, KeyAuthorization, Token};
use crate::ssh::{ConnectCause, PeerError};
use crate::wire::{Request, Response};

use crate::fanout::tokens::{self as publish, TokenOp};

pub mod finding;
pub mod includes;
pub mod local;
pub mod renewal_confs;
mod schedulers;
mod standby_certbot;

fn ok(what: &str) {
    println!("ok    {what}");
}

fn fail(what: &str, why: &str, fix: &str) {
    println!("FAIL  {what}: {why}\n      fix: {fix}");
}

fn warn(what: &str, why: &str, fix: &str) {
    println!("WARN  {what}: {why}\n      fix: {fix}");
}

/// Explains an SSH/agent failure, by its type; only ssh's own output (a connection that failed
/// before any agent ran) is read, by [`ConnectCause::of`].
pub fn explain_peer(e: &PeerError) -> &'static str {
    match e {
        PeerError::Connect(output) => match ConnectCause::of(output) {
            ConnectCause::HostKey => "the peer's host key is not in [ssh] known_hosts (or changed): verify it and add it, e.g. ssh-keyscan -t ed25519 HOST >> KNOWN_HOSTS",
            ConnectCause::Denied => "the peer refused our key: add [ssh] identity's .pub to the agent user's authorized_keys with restrict,command=\"certherd agent\"",
            ConnectCause::Refused => "nothing listens on the peer's SSH port: is sshd running, is `port` right?",
            ConnectCause::TimedOut => "no answer: a firewall drops SSH, or the host is down",
            ConnectCause::NoRoute => "no route to the peer's address: check `host` (a typo, an old address?), that the peer is up and on the network, and that no firewall rejects it (icmp-host-prohibited)",
            ConnectCause::Unresolved => "the peer's `host` does not resolve: fix the name, or use its address",
            ConnectCause::Other => "ssh could not connect: run `ssh -v -i IDENTITY -o UserKnownHostsFile=KNOWN_HOSTS -p PORT USER@HOST` as this account to see why",
        },
        PeerError::Timeout(..) => "no answer: a firewall drops SSH, or the host is down",
        PeerError::Agent(_) => "the forced command did not start certherd agent: check the path in authorized_keys and that certherd is installed",
        PeerError::Protocol(_) => "the peer runs another certherd version: install the same version on every node",
        PeerError::Refused { .. } => "see the message; run with -v for more",
    }
}

/// Explains a self-check failure.
pub fn explain_check(f: &CheckFailure) -> &'static str {
    match f {
        CheckFailure::Unreachable { cause: NoAnswer::Refused, .. } => {
            "port closed: the web server does not listen on the node's http address (port 80)"
        }
        CheckFailure::Unreachable { cause: NoAnswer::Tls, .. } => {
            "a redirect to https with no working certificate yet: exempt /.well-known/acme-challenge/ from the https redirect"
        }
        CheckFailure::Unreachable { .. } => "the node's web server is not reachable: check its http address and firewall",
        CheckFailure::Status { status: 404, .. } => {
            "404: the acme location is missing or points elsewhere: include contrib/nginx/acme-challenge.conf and make $certherd_webroot the configured webroot (Apache: a2enconf certherd-acme, its Alias naming the configured webroot)"
        }
        CheckFailure::Status { status: 403, .. } => {
            "403: the web server cannot read the webroot: directories must be searchable (0755) by its user (Apache: without contrib/apache/certherd-acme.conf enabled, `Require all denied` refuses the path: a2enconf certherd-acme)"
        }
        CheckFailure::Status { .. } => "the web server answered with an error: see its error log",
        CheckFailure::WrongBody { .. } => {
            "another vhost or application answered: put the acme location in the server that handles this name (or the default server)"
        }
        CheckFailure::RedirectLoop(_) | CheckFailure::TooManyRedirects => {
            "redirect loop: exempt /.well-known/acme-challenge/ from redirects on every node"
        }
        CheckFailure::BadRedirect(_) => "a redirect the CA will not follow (only http/https on ports 80 and 443)",
    }
}

/// Compares this config's `[[peers]] standby` (the sender's intent) with the peer's own
/// `standby` (its decision, from `hello`): (what is wrong, the fix) when they differ.
pub fn standby_mismatch(
    peer: &str,
    here: bool,
    there: Option<bool>,
) -> Option<(String, &'static str)> {
    match (here, there) {
        (true, Some(false)) => Some((
            format!("marked `standby = true` in [[peers]] here, but {peer}'s own config does not say `standby = true`: it refuses the renewal config and account, so it could not renew after a failover"),
            "decide on the peer: add top-level `standby = true` (and its `acme_servers`) to its own certherd.toml, or remove `standby = true` from this [[peers]] entry",
        )),
        (false, Some(true)) => Some((
            format!("{peer}'s own config says `standby = true`, but this [[peers]] entry does not: it never receives the renewal config"),
            "add `standby = true` to this [[peers]] entry, or remove it from the peer's config",
        )),
        (true, None) => Some((
            format!("marked `standby = true` here, but {peer}'s agent is too old to say whether it is one"),
            "install this certherd version on the peer",
        )),
        _ => None,
    }
}

/// Runs every check; returns 0 when all pass.
pub async fn run(config: &Config, domains: &[String]) -> Result<i32> {
    let domains = domains
        .iter()
        .map(|d| Domain::parse(d))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut healthy = true;
    ok(&format!(
        "config {} ({} peers)",
        config.path.display(),
        config.peers.len()
    ));
    // This node first: a missing identity or known_hosts entry would fail every peer below.
    let system = local::System::default();
    for finding in local::check(config, &system)
        .into_iter()
        .chain(includes::check(config, &system))
    {
        match &finding.verdict {
            local::Verdict::Ok => ok(&finding.what),
            local::Verdict::Warn(why, fix) => warn(&finding.what, why, fix),
            local::Verdict::Fail(why, fix) => {
                healthy = false;
                fail(&finding.what, why, fix);
            }
        }
    }
    if let Some(why) = crate::privdrop::root_owned_warning(&config.letsencrypt_dir) {
        println!("WARN  {why}");
    }

    let peers: Vec<_> = config.managed_peers().cloned().collect();
    let hello = Request::Hello {
        protocol: crate::wire::PROTOCOL_VERSION,
    };
    for outcome in fleet::run(&config.ssh, &peers, &[hello]).await {
        let name = &outcome.peer.name;
        match outcome.result {
            Ok(r) => {
                if let Some(Response::Hello {
                    agent_version,
                    node,
                    standby,
                    ..
                }) = r.last()
                {
                    if let Some(why) = standby_mismatch(name, outcome.peer.standby, *standby) {
                        healthy = false;
                        fail(&format!("{name}: standby"), &why.0, why.1);
                    }
                    let same = agent_version == env!("CARGO_PKG_VERSION");
                    let what = format!("{name}: ssh and agent certherd {agent_version} (calls itself {node:?}, {:.1?})", outcome.elapsed);
                    if same {
                        ok(&what);
                    } else {
                        println!(
                            "WARN  {what}: this node runs certherd {}",
                            env!("CARGO_PKG_VERSION")
                        );
                    }
                }
            }
            Err(e) => {
                healthy &= outcome.peer.optional;
                fail(
                    &format!("{name}: ssh/agent"),
                    &e.to_string(),
                    explain_peer(&e),
                );
            }
        }
    }

    healthy &= standby_certbot::check(config, &peers).await;

    for domain in &domains {
        let token = Token::parse(&format!("certherd-doctor-{}", std::process::id()))?;
        let ka = KeyAuthorization::parse(&format!("{token}.certherd-doctor"))?;
        let mut skip = Vec::new();
        for report in publish::apply_everywhere(config, TokenOp::Put(&token, &ka)).await {
            if let Err(why) = &report.result {
                skip.push(report.node.clone());
                healthy &= report.optional;
                fail(
                    &format!("{}: writing a token", report.node),
                    &why.to_string(),
                    "see the ssh/agent line above, or the webroot's permissions",
                );
            }
        }
        let expectation = Expectation {
            domain: domain.clone(),
            token: token.clone(),
            key_authorization: ka,
        };
        // One attempt per node: doctor explains, it does not wait for propagation.
        let verdicts = check::check_all(
            &publish::targets(config, &skip),
            std::slice::from_ref(&expectation),
            std::time::Duration::from_secs(3),
        )
        .await;
        for v in verdicts {
            match &v.result {
                Ok(()) => ok(&format!("{}: serves tokens for {domain}", v.target.node)),
                Err(f) => {
                    healthy &= v.target.optional;
                    fail(
                        &format!(
                            "{}: token for {domain} via {}",
                            v.target.node, v.target.http
                        ),
                        &f.to_string(),
                        explain_check(f),
                    );
                }
            }
        }
        publish::remove_everywhere(config, &token).await;
    }
    if healthy {
        println!("doctor: everything checked is fine");
        Ok(EXIT_OK)
    } else {
        println!("doctor: found problems (see the FAIL lines)");
        Ok(EXIT_FAILED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_mismatches_are_explained() {
        assert!(standby_mismatch("web2", true, Some(true)).is_none());
        assert!(standby_mismatch("web2", false, Some(false)).is_none());
        assert!(standby_mismatch("web2", false, None).is_none());
        let (why, fix) = standby_mismatch("web2", true, Some(false)).unwrap();
        assert!(why.contains("web2's own config") && fix.contains("standby = true"));
        assert!(standby_mismatch("web2", false, Some(true)).is_some());
        assert!(standby_mismatch("web2", true, None).is_some());
    }

    /// A peer failure is explained by its type: a timeout whatever its words, an agent that
    /// speaks another protocol even when its message does not say "protocol".
    #[test]
    fn peer_failures_are_explained_by_type() {
        let timeout =
            PeerError::Timeout(std::time::Duration::from_secs(1), "waiting for the agent");
        assert!(explain_peer(&timeout).starts_with("no answer"));
        let bad = PeerError::Protocol("expected hello, got Done".into());
        assert!(explain_peer(&bad).contains("another certherd version"));
        let refused =
            PeerError::Connect("ssh: connect to host x port 22: Connection refused".into());
        assert!(explain_peer(&refused).contains("nothing listens"));
        let no_route =
            PeerError::Connect("ssh: connect to host x port 22: No route to host".into());
        assert!(explain_peer(&no_route).starts_with("no route"));
        let agent = PeerError::Agent("closed the connection without answering".into());
        assert!(explain_peer(&agent).contains("forced command"));
    }
}
