//! `certherd auth`: certbot's manual auth hook. Puts the token on every node, then self-checks
//! every node until each required one serves the key authorization or `[check] timeout` passes.
//! What it prints on stdout reaches `cleanup` as `$CERTBOT_AUTH_OUTPUT`.

use crate::certbot_env::{Challenge, ChallengeArgs};
use crate::check::Expectation;
use crate::cli::ChallengeFlags;
use crate::commands::publish;
use crate::config::Config;
use crate::error::{Result, EXIT_FAILED, EXIT_OK};

/// Runs the hook; returns the exit code.
pub async fn run(config: &Config, flags: &ChallengeFlags) -> Result<i32> {
    let challenge = Challenge::from_env(&args(flags), true)?;
    let Some(key_authorization) = challenge.key_authorization else {
        unreachable!("from_env(.., true) always reads the validation")
    };
    let expectation = Expectation {
        domain: challenge.domain.clone(),
        token: challenge.token.clone(),
        key_authorization,
    };
    let (ok, holders) =
        publish::publish_and_check(config, std::slice::from_ref(&expectation)).await;
    println!(
        "{}",
        serde_json::json!({ "domain": challenge.domain, "token": challenge.token, "nodes": holders, "ok": ok })
    );
    if ok {
        crate::info!("every node serves the token for {}", challenge.domain);
        Ok(EXIT_OK)
    } else {
        crate::error!(
            "not every node serves the token for {}: the CA's validation may fail",
            challenge.domain
        );
        Ok(EXIT_FAILED)
    }
}

/// Flags to the shared parser.
pub fn args(flags: &ChallengeFlags) -> ChallengeArgs {
    ChallengeArgs {
        domain: flags.domain.clone(),
        token: flags.token.clone(),
        validation: flags.validation.clone(),
    }
}
