//! `certherd`: parse, load config, dispatch. Each command lives in `commands/`; this file holds
//! the one rule that turns an outcome into the process exit code.

use certherd::cli::{Cli, Command, Invocation};
use certherd::commands;
use certherd::config::Config;
use certherd::report::status::Format as StatusFormat;

fn main() {
    let cli = match certherd::cli::parse() {
        Invocation::Run(cli) => cli,
        // Hidden, for packaging: pages come from the clap definitions, no config needed.
        Invocation::Manpages(flags) => std::process::exit(exit_code(
            certherd::manual::manpages(&flags.dir).map(|_| certherd::error::EXIT_OK),
            None,
        )),
        // Started by `warm` only, as the account `warm` runs as (it has left root already).
        Invocation::Hold(config, flags) => std::process::exit(exit_code(hold(config, flags), None)),
        // A plugin's bad usage is UNKNOWN: the same rule as status's own errors.
        Invocation::StatusUsage(usage) => std::process::exit(exit_code(
            Err(certherd::Error::Input(usage.message)),
            Some(usage.format.unwrap_or(StatusFormat::Table)),
        )),
    };
    certherd::log::set_level(if cli.quiet {
        -1
    } else {
        cli.verbose.min(2) as i8
    });
    let monitoring = match &cli.command {
        Command::Status(flags) => Some(flags.format),
        _ => None,
    };
    let result = run(cli);
    std::process::exit(exit_code(result, monitoring));
}

/// Loads the config and runs the command; the exit code of a command that ran, or its error.
fn run(cli: Cli) -> certherd::Result<i32> {
    // Completions come from the clap definitions alone: no config needed.
    if let Some(result) = certherd::manual::run(&cli.command) {
        return result;
    }
    let path = Config::resolve_path(cli.config.as_deref());
    let config = Config::load(&path)?;
    match cli.command {
        // The agent is synchronous: no runtime, so sshd's forced command starts fast.
        Command::Agent => Ok(commands::agent::run(&config)),
        command => {
            // Before the runtime's threads: root becomes the letsencrypt dir's owner for good.
            commands::as_letsencrypt_owner(&config, &command)?;
            runtime()?.block_on(commands::dispatch(&config, &path, command))
        }
    }
}

/// Runs the warm holder (docs/HOLDER.md) until the run it watches ends.
fn hold(
    config: Option<std::path::PathBuf>,
    flags: certherd::cli::HoldFlags,
) -> certherd::Result<i32> {
    let config = Config::load(&Config::resolve_path(config.as_deref()))?;
    let watched = certherd::holder::start::Watched {
        pid: flags.watch_pid,
        start: flags.watch_start,
    };
    runtime()?.block_on(certherd::holder::serve::run(&config, watched))
}

/// The one exit-code rule: a command that ran chose its code; an error is printed and mapped
/// by [`certherd::Error::exit_code`], except under `status` (`monitoring` is its format), a
/// monitoring plugin, where any error of its own, usage included, is UNKNOWN (3), not a usage
/// code, and is also its report on stdout in the format asked for (with `--format nagios` the
/// plugin's one UNKNOWN line): monitoring reads stdout, and UNKNOWN always says why.
fn exit_code(result: certherd::Result<i32>, monitoring: Option<StatusFormat>) -> i32 {
    match result {
        Ok(code) => code,
        Err(e) => {
            certherd::error!("{e}");
            match monitoring {
                Some(format) => {
                    let reason = e.to_string();
                    print!(
                        "{}",
                        certherd::report::status::render_failed(&reason, format)
                    );
                    certherd::error::EXIT_UNKNOWN
                }
                None => e.exit_code(),
            }
        }
    }
}

fn runtime() -> certherd::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| certherd::Error::Failed(format!("cannot start the async runtime: {e}")))
}
