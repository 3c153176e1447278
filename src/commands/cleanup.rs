//! `certherd cleanup`: certbot's manual cleanup hook. Removes the token everywhere; a peer that
//! cannot be reached is a warning and never fails certbot's run.

use crate::certbot_env::Challenge;
use crate::cli::ChallengeFlags;
use crate::commands::{auth, publish};
use crate::config::Config;
use crate::error::{Result, EXIT_OK};

/// Runs the hook; returns the exit code.
pub async fn run(config: &Config, flags: &ChallengeFlags) -> Result<i32> {
    let challenge = Challenge::from_env(&auth::args(flags), false)?;
    publish::remove_everywhere(config, &challenge.token).await;
    Ok(EXIT_OK)
}
