//! What certbot hands its hooks, read from the environment (or from flags, for manual use) and
//! validated into typed names before anything is touched.

use crate::error::{Error, Result};
use crate::names::{Domain, KeyAuthorization, Token};

/// One HTTP-01 challenge, as given to `auth` and `cleanup`.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// The name being validated.
    pub domain: Domain,
    /// The token (file name).
    pub token: Token,
    /// The key authorization (file content). `None` for `cleanup`, which does not need it.
    pub key_authorization: Option<KeyAuthorization>,
}

/// certherd's hooks as certbot knows them: the certherd subcommand, certbot's flag, and the key
/// certbot keeps it under in a renewal config (the pre-hook is not kept: a standby drops it).
/// `issue` passes them as flags; a standby writes, and accepts, exactly these keys.
pub const HOOKS: [Hook; 4] = [
    Hook {
        role: "auth",
        flag: "--manual-auth-hook",
        conf_key: Some("manual_auth_hook"),
    },
    Hook {
        role: "cleanup",
        flag: "--manual-cleanup-hook",
        conf_key: Some("manual_cleanup_hook"),
    },
    Hook {
        role: "deploy",
        flag: "--deploy-hook",
        conf_key: Some("renew_hook"),
    },
    Hook {
        role: "warm",
        flag: "--pre-hook",
        conf_key: None,
    },
];

/// One certbot hook certherd fills.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    /// The certherd subcommand it runs.
    pub role: &'static str,
    /// certbot's command-line flag.
    pub flag: &'static str,
    /// certbot's renewal-config key, when certbot keeps it there.
    pub conf_key: Option<&'static str>,
}

/// Manual overrides for certbot's CERTBOT_* variables: `auth`'s and `cleanup`'s flags, parsed by
/// clap straight into this (the doc comments are their `--help`).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ChallengeArgs {
    /// The name being validated, a domain or an IPv4 address (default: $CERTBOT_IDENTIFIER, or
    /// $CERTBOT_DOMAIN from certbot before 5.3).
    #[arg(long)]
    pub domain: Option<String>,
    /// The challenge token (default: $CERTBOT_TOKEN).
    #[arg(long)]
    pub token: Option<String>,
    /// The key authorization to serve (default: $CERTBOT_VALIDATION). Ignored by cleanup.
    #[arg(long)]
    pub validation: Option<String>,
}

fn from_flag_or_env(flag: &Option<String>, vars: &[&str], what: &str) -> Result<String> {
    if let Some(v) = flag {
        return Ok(v.clone());
    }
    for var in vars {
        if let Ok(v) = std::env::var(var) {
            return Ok(v);
        }
    }
    let vars: Vec<String> = vars.iter().map(|v| format!("${v}")).collect();
    Err(Error::Input(format!(
        "missing {what}: expected {} (set by certbot) or the --{what} flag",
        vars.join(" or ")
    )))
}

impl Challenge {
    /// Reads a challenge; `need_validation` is true for `auth`.
    pub fn from_env(args: &ChallengeArgs, need_validation: bool) -> Result<Challenge> {
        // certbot 5.3+ names the identifier (a DNS name or an IP address) CERTBOT_IDENTIFIER
        // and keeps CERTBOT_DOMAIN equal to it; older ones pass only CERTBOT_DOMAIN.
        let domain = from_flag_or_env(
            &args.domain,
            &["CERTBOT_IDENTIFIER", "CERTBOT_DOMAIN"],
            "domain",
        )?;
        let domain = Domain::parse(&domain)?;
        let token = Token::parse(&from_flag_or_env(&args.token, &["CERTBOT_TOKEN"], "token")?)?;
        let key_authorization = if need_validation {
            let v = from_flag_or_env(&args.validation, &["CERTBOT_VALIDATION"], "validation")?;
            Some(KeyAuthorization::for_token(&token, &v)?)
        } else {
            None
        };
        Ok(Challenge {
            domain,
            token,
            key_authorization,
        })
    }
}
