//! One module per subcommand, each with a `run`.

use std::path::Path;

use crate::cli::Command;
use crate::config::Config;
use crate::error::Result;

pub mod agent;
pub mod auth;
pub mod cleanup;
pub mod deploy;
pub mod doctor;
pub mod issue;
pub mod publish;
pub mod renew;
pub mod stateless;
pub mod status;
pub mod warm;
pub mod watch;

/// Runs an async subcommand; returns the process exit code.
pub async fn dispatch(config: &Config, config_path: &Path, command: Command) -> Result<i32> {
    match command {
        Command::Auth(flags) => auth::run(config, &flags).await,
        Command::Cleanup(flags) => cleanup::run(config, &flags).await,
        Command::Issue(flags) => issue::run(config, config_path, &flags).await,
        Command::Agent => Ok(agent::run(config)),
        Command::Deploy(flags) => deploy::run(config, &flags).await,
        Command::Renew(flags) => {
            let options = renew::Options {
                jitter: flags.jitter,
                certbot_args: flags.certbot_args,
            };
            renew::run(config, &options).await
        }
        Command::Sync(flags) => deploy::sync(config, &flags.lineages).await,
        Command::Watch(flags) => watch::run(config, flags.settle).await,
        Command::Status(flags) => {
            let options = status::Options {
                format: flags.format,
                warn: flags.warn,
                crit: flags.crit,
            };
            status::run(config, &options).await
        }
        Command::Stateless => stateless::run(config),
        Command::Doctor(flags) => doctor::run(config, &flags.domains).await,
        Command::Warm => warm::run(config).await,
        // main runs these before loading a config; here only for completeness of the match.
        command @ Command::Completions(_) => {
            crate::manual::run(&command).unwrap_or(Ok(crate::error::EXIT_OK))
        }
    }
}
