//! `certherd cleanup`: certbot's manual cleanup hook. Removes the token everywhere; a peer that
//! cannot be reached is a warning and never fails certbot's run.

use crate::certbot_env::{Challenge, ChallengeArgs};
use crate::config::Config;
use crate::error::{Result, EXIT_OK};
use crate::fanout::tokens as publish;

/// Runs the hook; returns the exit code.
pub async fn run(config: &Config, args: &ChallengeArgs) -> Result<i32> {
    let challenge = Challenge::from_env(args, false)?;
    publish::remove_everywhere(config, &challenge.token).await;
    Ok(EXIT_OK)
}
