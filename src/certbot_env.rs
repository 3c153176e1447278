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

/// Flags that override the environment.
#[derive(Debug, Default, Clone)]
pub struct ChallengeArgs {
    /// `--domain`
    pub domain: Option<String>,
    /// `--token`
    pub token: Option<String>,
    /// `--validation`
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
    Err(Error::Input(format!(
        "missing {what}: expected ${} (set by certbot) or the --{what} flag",
        vars[0]
    )))
}

impl Challenge {
    /// Reads a challenge; `need_validation` is true for `auth`.
    pub fn from_env(args: &ChallengeArgs, need_validation: bool) -> Result<Challenge> {
        // certbot >= 2.3 also passes CERTBOT_IDENTIFIER; older ones only CERTBOT_DOMAIN.
        let domain = from_flag_or_env(
            &args.domain,
            &["CERTBOT_DOMAIN", "CERTBOT_IDENTIFIER"],
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
