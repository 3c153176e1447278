//! One module per subcommand, each with a `run` that takes its own clap flags ([`crate::cli`]).
//! This file loads the config and dispatches; under `status`, a monitoring plugin, it turns any
//! error into UNKNOWN ([`Error::StatusFailed`]) with its report for stdout.

use std::path::Path;

use crate::cli::{Cli, Command};
use crate::config::Config;
use crate::error::{Error, Result};

pub mod agent;
pub mod auth;
pub mod cleanup;
pub mod deploy;
pub mod doctor;
pub mod issue;
pub mod renew;
pub mod stateless;
pub mod status;
pub mod warm;
pub mod watch;

/// Loads the config and runs the command; the exit code of a command that ran, or its error.
pub fn run(cli: Cli) -> Result<i32> {
    let status_format = match &cli.command {
        Command::Status(flags) => Some(flags.format),
        _ => None,
    };
    let result = load_and_run(cli);
    match status_format {
        Some(format) => result.map_err(|e| status::unknown(e, format)),
        None => result,
    }
}

fn load_and_run(cli: Cli) -> Result<i32> {
    // Completions come from the clap definitions alone: no config needed.
    if let Some(result) = crate::manual::run(&cli.command) {
        return result;
    }
    let path = Config::resolve_path(cli.config.as_deref());
    let config = Config::load(&path)?;
    match cli.command {
        // The agent is synchronous: no runtime, so sshd's forced command starts fast.
        Command::Agent => Ok(agent::run(&config)),
        command => {
            // Before the runtime's threads: root becomes the letsencrypt dir's owner for good.
            as_letsencrypt_owner(&config, &command)?;
            runtime()?.block_on(dispatch(&config, &path, command))
        }
    }
}

/// Runs the warm holder (docs/HOLDER.md) until the run it watches ends; `warm` starts it.
pub fn hold(config: Option<std::path::PathBuf>, flags: crate::cli::HoldFlags) -> Result<i32> {
    let config = Config::load(&Config::resolve_path(config.as_deref()))?;
    let watched = crate::holder::start::Watched {
        pid: flags.watch_pid,
        start: flags.watch_start,
    };
    runtime()?.block_on(crate::holder::serve::run(&config, watched))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the async runtime: {e}")))
}

/// Runs an async subcommand; returns the process exit code.
async fn dispatch(config: &Config, config_path: &Path, command: Command) -> Result<i32> {
    match command {
        Command::Auth(flags) => auth::run(config, &flags.challenge, flags.format).await,
        Command::Cleanup(flags) => cleanup::run(config, &flags).await,
        Command::Issue(flags) => issue::run(config, config_path, &flags).await,
        Command::Agent => Ok(agent::run(config)),
        Command::Deploy(flags) => deploy::run(config, &flags).await,
        Command::Renew(flags) => renew::run(config, &flags).await,
        Command::Sync(flags) => deploy::sync(config, &flags).await,
        Command::Watch(flags) => watch::run(config, flags.settle).await,
        Command::Status(flags) => status::run(config, &flags).await,
        Command::Stateless => stateless::run(config),
        Command::Doctor(flags) => doctor::run(config, &flags.domains).await,
        Command::Warm => warm::run(config).await,
        // load_and_run answers these before loading a config; here only for completeness.
        command @ Command::Completions(_) => {
            crate::manual::run(&command).unwrap_or(Ok(crate::error::EXIT_OK))
        }
    }
}

/// Started as root, every command that works on this node's letsencrypt dir — certbot and its
/// hooks (`issue`, `renew`, `auth`, `cleanup`, `deploy`, `warm`), `sync`, `watch`, and the
/// read-only `status`, `doctor`, `stateless` — first becomes the dir's owner (the agent's
/// account), so root never runs certbot, nor anything certbot finds there, over files that
/// account can write ([`crate::privdrop`]). The agent itself is left alone: sshd starts it as its
/// account already. Must run before the async runtime starts any thread.
pub fn as_letsencrypt_owner(config: &Config, command: &Command) -> Result<()> {
    if matches!(command, Command::Agent | Command::Completions(_)) {
        return Ok(());
    }
    let dir = &config.letsencrypt_dir;
    match crate::privdrop::become_owner_of(dir)? {
        crate::privdrop::Outcome::Became {
            account,
            uid,
            gid,
            owns,
        } => {
            let line = format!(
                "started as root: running as {account} (uid {uid}, gid {gid}), the owner of {}",
                owns.display()
            );
            // certbot's hooks (certbot runs them as the account already, so this only shows when
            // someone runs one as root by hand), `status` (a monitoring plugin) and `stateless`
            // keep their output as it is: one line on bad input, nothing when all is well.
            if matches!(
                command,
                Command::Auth(_)
                    | Command::Cleanup(_)
                    | Command::Deploy(_)
                    | Command::Warm
                    | Command::Status(_)
                    | Command::Stateless
            ) {
                crate::verbose!("{line}");
            } else {
                crate::info!("{line}");
            }
        }
        crate::privdrop::Outcome::RootOwned => crate::verbose!(
            "{} belongs to root: running as root (certherd doctor explains)",
            dir.display()
        ),
        crate::privdrop::Outcome::NotRoot | crate::privdrop::Outcome::Missing => {}
    }
    Ok(())
}
