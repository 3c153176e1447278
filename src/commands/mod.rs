//! One module per subcommand, each with a `run`.

use std::path::Path;

use crate::cli::Command;
use crate::config::Config;
use crate::error::{Error, Result};

pub mod agent;
pub mod auth;
pub mod cleanup;
pub mod deploy;
pub mod issue;
pub mod publish;

/// Runs an async subcommand; returns the process exit code.
pub async fn dispatch(config: &Config, config_path: &Path, command: Command) -> Result<i32> {
    match command {
        Command::Auth(flags) => auth::run(config, &flags).await,
        Command::Cleanup(flags) => cleanup::run(config, &flags).await,
        Command::Issue(flags) => issue::run(config, config_path, &flags).await,
        Command::Agent => Ok(agent::run(config)),
        Command::Deploy(flags) => deploy::run(config, &flags).await,
        Command::Renew => Err(Error::NotImplemented("certherd renew")),
        Command::Sync(flags) => deploy::sync(config, &flags.lineages).await,
        Command::Watch => Err(Error::NotImplemented("certherd watch")),
        Command::Status => Err(Error::NotImplemented("certherd status")),
        Command::Doctor => Err(Error::NotImplemented("certherd doctor")),
    }
}
