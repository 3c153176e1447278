//! `certherd auth`: certbot's manual auth hook. Puts the token on every node, then self-checks
//! every node until each required one serves the key authorization or `[check] timeout` passes.
//! What it prints on stdout reaches `cleanup` as `$CERTBOT_AUTH_OUTPUT`.

use crate::certbot_env::{Challenge, ChallengeArgs};
use crate::check::Expectation;
use crate::config::Config;
use crate::error::{Result, EXIT_FAILED, EXIT_OK};
use crate::fanout::tokens as publish;
use crate::report::auth as report;
use crate::report::nodes::{log_timings, print_json, Format};

/// Runs the hook; returns the exit code. `format`: the one-line summary (what certbot hands to
/// cleanup; not printed under `-q`) or the JSON report with a row per node.
pub async fn run(config: &Config, args: &ChallengeArgs, format: Format) -> Result<i32> {
    let challenge = Challenge::from_env(args, true)?;
    let Some(key_authorization) = challenge.key_authorization else {
        unreachable!("from_env(.., true) always reads the validation")
    };
    let expectation = Expectation {
        domain: challenge.domain.clone(),
        token: challenge.token.clone(),
        key_authorization,
    };
    let published =
        publish::publish_and_check_routed(config, std::slice::from_ref(&expectation)).await;
    let (domain, token) = (challenge.domain.to_string(), challenge.token.to_string());
    match format {
        Format::Json => print_json(&report::json(config, &domain, &token, &published)),
        Format::Table if crate::log::enabled(0) => {
            println!("{}", report::summary_line(&domain, &token, &published))
        }
        Format::Table => {}
    }
    log_timings(&published.writes, "token write");
    let ok = published.ok;
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
