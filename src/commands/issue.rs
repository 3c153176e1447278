//! `certherd issue -d DOMAIN…`: a pre-flight fan-out and self-check with a throwaway token for
//! every name, then `certbot certonly --manual` with certherd's hooks filled in.
//!
//! The pre-flight exists because certbot asks the CA to validate even when the auth hook fails
//! (certbot issue #7990), and every failed validation spends the CA's failure rate limit.

use std::path::Path;

use crate::certbot_env::HOOKS;
use crate::certbot_version::{CertbotVersion, PROFILE_KEPT_SINCE, PROFILE_SINCE};
use crate::check::Expectation;
use crate::cli::IssueFlags;
use crate::commands::{deploy, warm};
use crate::config::{self, Config};
use crate::error::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::fanout::tokens as publish;
use crate::lineage::deferred::{Deferred, DEFER_ENV};
use crate::names::{Domain, KeyAuthorization, Token};

/// An ACME profile for certbot (`--preferred-profile` or `--required-profile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    /// Asked for; the CA's default if it has no such profile.
    Preferred(String),
    /// Required: certbot fails when the CA does not offer it.
    Required(String),
}

impl Profile {
    /// The flags as given (clap refuses both at once); a name that is not a profile name is
    /// bad input naming the value.
    pub fn from_flags(preferred: Option<String>, required: Option<String>) -> Result<Option<Self>> {
        let (flag, profile) = match (preferred, required) {
            (Some(p), _) => ("--preferred-profile", Profile::Preferred(p)),
            (None, Some(r)) => ("--required-profile", Profile::Required(r)),
            (None, None) => return Ok(None),
        };
        if !crate::standby::is_profile_name(profile.name()) {
            return Err(Error::Input(format!(
                "{flag} {:?}: expected an ACME profile name (letters, digits, '.', '_', '-'; e.g. classic, tlsserver, shortlived)",
                profile.name()
            )));
        }
        Ok(Some(profile))
    }

    fn name(&self) -> &str {
        match self {
            Profile::Preferred(n) | Profile::Required(n) => n,
        }
    }

    fn flag(&self) -> &'static str {
        match self {
            Profile::Preferred(_) => "--preferred-profile",
            Profile::Required(_) => "--required-profile",
        }
    }
}

/// Refuses a profile with a certbot too old to ask for one; warns when it cannot keep it.
fn check_profile_support(certbot: &str, profile: &Profile) -> Result<()> {
    let v = CertbotVersion::query(&[certbot.to_owned()]).map_err(Error::Input)?;
    let version = &v.text;
    if v.major_minor < PROFILE_SINCE {
        return Err(Error::Input(format!(
            "{} {}: certbot {version} ({certbot}) cannot ask for an ACME profile: expected certbot {}.{} or later (Debian 13's, or certbot from PyPI)",
            profile.flag(),
            profile.name(),
            PROFILE_SINCE.0,
            PROFILE_SINCE.1
        )));
    }
    if !v.keeps_profiles() {
        crate::warn!(
            "certbot {version} asks for profile {} but does not store it: its renewals will use the CA's default profile (certbot {}.{} or later keeps it)",
            profile.name(),
            PROFILE_KEPT_SINCE.0,
            PROFILE_KEPT_SINCE.1
        );
    }
    Ok(())
}

/// Runs the pre-flight, then certbot; returns certbot's exit code.
pub async fn run(config: &Config, config_path: &Path, flags: &IssueFlags) -> Result<i32> {
    let profile = Profile::from_flags(
        flags.preferred_profile.clone(),
        flags.required_profile.clone(),
    )?;
    let domains = flags
        .domains
        .iter()
        .map(|d| Domain::parse(d))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let exe = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot find my own path: {e}")))?;
    runnable_by_me(&exe, config_path)?;
    if let Some(profile) = &profile {
        check_profile_support(&flags.certbot, profile)?;
    }
    if !flags.skip_preflight {
        let ok = preflight(config, &domains).await?;
        if !ok {
            crate::error!("pre-flight failed: not calling certbot (fix the nodes above, or pass --skip-preflight)");
            return Ok(EXIT_FAILED);
        }
        crate::info!(
            "pre-flight passed: every node serves tokens for {}",
            names(&domains)
        );
        if flags.preflight_only {
            return Ok(EXIT_OK);
        }
    }
    let argv = certbot_argv(config_path, flags, profile.as_ref(), &domains)?;
    crate::verbose!("running {}", argv.join(" "));
    // Connections open before (up to warm::HEAD_START) and while certbot talks to the CA (the
    // pre-flight opened them already unless
    // skipped; then this only restarts their idle timers). certbot's own `warm` pre-hook sees
    // WARMING_ENV and returns at once instead of holding certbot up.
    // certbot's deploy hooks (the stored one, and certbot 5.3+'s renewal-hooks/deploy/) only
    // queue the lineage while `run` lives; it is pushed once certbot ends (see `renew`).
    let run = Deferred::new(&config.letsencrypt_dir).begin_run()?;
    let warming = warm::spawn_with_head_start(config).await;
    let status = tokio::process::Command::new(&flags.certbot)
        .args(&argv)
        .env(warm::WARMING_ENV, "1")
        .env(DEFER_ENV, "1")
        .status()
        .await;
    warm::stop(warming).await;
    deploy::flush_after_certbot(config, "deploy").await;
    drop(run);
    let status = status.map_err(|e| Error::Failed(format!("cannot run {}: {e}", flags.certbot)))?;
    // certbot's exit code, as when certbot ran the deploy hook itself: a failed push is alerted
    // and logged (a first issuance often precedes the vhost that will serve it).
    Ok(status.code().unwrap_or(EXIT_FAILED))
}

fn names(domains: &[Domain]) -> String {
    domains
        .iter()
        .map(|d| d.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Puts one throwaway token everywhere, checks it for every name on every node, removes it.
pub async fn preflight(config: &Config, domains: &[Domain]) -> Result<bool> {
    let token = Token::parse(&format!("certherd-preflight-{}", random_suffix()?))?;
    let key_authorization = KeyAuthorization::parse(&format!("{token}.certherd-preflight"))?;
    let expectations: Vec<_> = domains
        .iter()
        .map(|d| Expectation {
            domain: d.clone(),
            token: token.clone(),
            key_authorization: key_authorization.clone(),
        })
        .collect();
    let (ok, _) = publish::publish_and_check(config, &expectations).await;
    publish::remove_everywhere(config, &token).await;
    Ok(ok)
}

fn random_suffix() -> Result<String> {
    let bytes: [u8; 12] = crate::fsx::random_bytes()?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// certbot's arguments: the manual plugin with certherd's hooks (certbot stores them in the
/// lineage's renewal config, so `certbot renew` reuses them), the names, then pass-through.
/// The `warm` pre-hook is for a plain `certbot renew` (e.g. Debian's certbot.timer): there it
/// opens the connections before the first order; under `certherd issue`/`renew` it is a no-op.
pub fn certbot_argv(
    config_path: &Path,
    flags: &IssueFlags,
    profile: Option<&Profile>,
    domains: &[Domain],
) -> Result<Vec<String>> {
    let exe = std::env::current_exe()
        .map_err(|e| Error::Failed(format!("cannot find my own path: {e}")))?;
    let mut hook = shell_quote(&exe.to_string_lossy());
    if config_path != Path::new(config::DEFAULT_PATH) {
        // certbot keeps the hooks in the renewal config, and its timer runs them from `/`: a
        // relative --config would then name another file, or none.
        let absolute = std::path::absolute(config_path)
            .map_err(|e| Error::io("cannot make absolute", config_path, e))?;
        hook.push_str(" --config ");
        hook.push_str(&shell_quote(&absolute.to_string_lossy()));
    }
    let mut argv: Vec<String> = ["certonly", "--manual", "--preferred-challenges", "http"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for h in HOOKS {
        argv.push(h.flag.to_owned());
        argv.push(format!("{hook} {}", h.role));
    }
    for d in domains {
        argv.push("-d".into());
        argv.push(d.to_string());
    }
    if let Some(profile) = profile {
        argv.push(profile.flag().into());
        argv.push(profile.name().into());
    }
    argv.extend(flags.certbot_args.iter().cloned());
    Ok(argv)
}

/// certbot runs the hooks as this process's account (the letsencrypt dir's owner, after the
/// switch in `commands::as_letsencrypt_owner`), so that account must be able to run this binary
/// and read the config: a build under root's 0700 home is out of its reach, and certbot would
/// only say "Unable to find manual-auth-hook command" deep in its log, after talking to the CA.
/// Checked first, before the pre-flight sends anything anywhere.
fn runnable_by_me(exe: &Path, config_path: &Path) -> Result<()> {
    use nix::unistd::{access, AccessFlags};
    let who = || {
        let uid = nix::unistd::geteuid();
        nix::unistd::User::from_uid(uid).ok().flatten().map_or_else(
            || format!("uid {uid}"),
            |u| format!("{} (uid {uid})", u.name),
        )
    };
    if let Err(e) = access(exe, AccessFlags::X_OK) {
        return Err(Error::Input(format!(
            "certbot would run the hooks as {}, who cannot run {}: {e}: a directory above it is closed to that account (a build under /root?); install the package (/usr/bin/certherd) or build where that account can enter",
            who(),
            exe.display()
        )));
    }
    if let Err(e) = access(config_path, AccessFlags::R_OK) {
        return Err(Error::Input(format!(
            "certbot would run the hooks as {}, who cannot read the config {}: {e}: give that account read access (e.g. /etc/certherd/certherd.toml, mode 0644)",
            who(),
            config_path.display()
        )));
    }
    Ok(())
}

/// Quotes a string for `sh` (certbot runs hooks through a shell).
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@".contains(&b))
    {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A relative `--config` reaches the hooks as an absolute path (issue 11).
    #[test]
    fn hooks_name_an_absolute_config() {
        let flags = IssueFlags {
            domains: vec![],
            skip_preflight: true,
            preflight_only: false,
            certbot: "certbot".into(),
            preferred_profile: None,
            required_profile: None,
            certbot_args: vec![],
        };
        let argv = certbot_argv(Path::new("c.toml"), &flags, None, &[]).unwrap();
        let cwd = std::env::current_dir().unwrap();
        let expected = format!(" --config {} auth", cwd.join("c.toml").display());
        let auth = &argv[argv.iter().position(|a| a == "--manual-auth-hook").unwrap() + 1];
        assert!(auth.ends_with(&expected), "{auth}");
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/usr/bin/certherd"), "/usr/bin/certherd");
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(id)"), "'$(id)'");
    }
}
