//! `certherd auth`: certbot's manual auth hook. Puts the token on every node, then self-checks
//! every node until each required one serves the key authorization or `[check] timeout` passes.
//! What it prints on stdout reaches `cleanup` as `$CERTBOT_AUTH_OUTPUT`.

use crate::certbot_env::{Challenge, ChallengeArgs};
use crate::check::Expectation;
use crate::config::Config;
use crate::error::{Result, EXIT_FAILED, EXIT_OK};
use crate::fanout::tokens as publish;

/// Runs the hook; returns the exit code.
pub async fn run(config: &Config, args: &ChallengeArgs) -> Result<i32> {
    let challenge = Challenge::from_env(args, true)?;
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
