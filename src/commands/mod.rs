//! One module per subcommand, each with a `run` and, where it takes flags, its `Options`.
//! This file is the dispatcher: the only module that sees [`crate::cli`], it maps each command's
//! flags to its options.

use std::path::Path;

use crate::certbot_env::ChallengeArgs;
use crate::cli::{ChallengeFlags, Command};
use crate::config::Config;
use crate::error::Result;

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

/// Runs an async subcommand; returns the process exit code.
pub async fn dispatch(config: &Config, config_path: &Path, command: Command) -> Result<i32> {
    match command {
        Command::Auth(flags) => auth::run(config, &challenge(flags.challenge), flags.format).await,
        Command::Cleanup(flags) => cleanup::run(config, &challenge(flags)).await,
        Command::Issue(flags) => {
            let options = issue::Options {
                domains: flags.domains,
                skip_preflight: flags.skip_preflight,
                preflight_only: flags.preflight_only,
                certbot: flags.certbot,
                profile: issue::Profile::from_flags(
                    flags.preferred_profile,
                    flags.required_profile,
                )?,
                certbot_args: flags.certbot_args,
            };
            issue::run(config, config_path, &options).await
        }
        Command::Agent => Ok(agent::run(config)),
        Command::Deploy(flags) => {
            let options = deploy::Options {
                lineage: flags.lineage,
                format: flags.format,
            };
            deploy::run(config, &options).await
        }
        Command::Renew(flags) => {
            let options = renew::Options {
                jitter: flags.jitter,
                certbot_args: flags.certbot_args,
            };
            renew::run(config, &options).await
        }
        Command::Sync(flags) => {
            let options = deploy::SyncOptions {
                lineages: flags.lineages,
                format: flags.format,
            };
            deploy::sync(config, &options).await
        }
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

/// certbot's challenge flags to the shared parser's arguments.
fn challenge(flags: ChallengeFlags) -> ChallengeArgs {
    ChallengeArgs {
        domain: flags.domain,
        token: flags.token,
        validation: flags.validation,
    }
}
