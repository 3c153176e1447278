//! `certherd`: parse, load config, dispatch. Each command lives in `commands/`.

use certherd::cli::{Command, Invocation};
use certherd::commands;
use certherd::config::Config;

fn main() {
    let cli = match certherd::cli::parse() {
        Invocation::Run(cli) => cli,
        Invocation::Manpages(flags) => match certherd::manual::manpages(&flags.dir) {
            Ok(_) => std::process::exit(certherd::error::EXIT_OK),
            Err(e) => {
                certherd::error!("{e}");
                std::process::exit(e.exit_code());
            }
        },
    };
    certherd::log::set_level(if cli.quiet {
        -1
    } else {
        cli.verbose.min(2) as i8
    });
    // `status` is a monitoring plugin: any error of its own is UNKNOWN (3), not a usage code.
    let exit_for = |e: &certherd::Error| match cli.command {
        Command::Status(_) => 3,
        _ => e.exit_code(),
    };
    // completions come from the clap definitions alone: no config needed.
    if let Some(result) = certherd::manual::run(&cli.command) {
        std::process::exit(result.unwrap_or_else(|e| {
            certherd::error!("{e}");
            e.exit_code()
        }));
    }
    let path = Config::resolve_path(cli.config.as_deref());
    let config = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => {
            certherd::error!("{e}");
            std::process::exit(exit_for(&e));
        }
    };
    let status_codes = matches!(cli.command, Command::Status(_));
    let result = match cli.command {
        // The agent is synchronous: no runtime, so sshd's forced command starts fast.
        Command::Agent => Ok(commands::agent::run(&config)),
        command => runtime().block_on(commands::dispatch(&config, &path, command)),
    };
    match result {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            certherd::error!("{e}");
            std::process::exit(if status_codes { 3 } else { e.exit_code() });
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| {
            certherd::error!("cannot start the async runtime: {e}");
            std::process::exit(certherd::error::EXIT_FAILED);
        })
}
