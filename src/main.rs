//! `certherd`: parse, set the log level, hand the command to [`certherd::commands::run`] (which
//! loads the config and dispatches), and turn the outcome into the process exit code.

use certherd::cli::Invocation;

fn main() {
    let result = certherd::cli::parse().and_then(|invocation| match invocation {
        // Hidden, for packaging: pages come from the clap definitions, no config needed.
        Invocation::Manpages(flags) => {
            certherd::manual::manpages(&flags.dir).map(|_| certherd::error::EXIT_OK)
        }
        // Started by `warm` only, as the account `warm` runs as (it has left root already).
        Invocation::Hold(config, flags) => certherd::commands::hold(config, flags),
        Invocation::Run(cli) => {
            certherd::log::set_level(if cli.quiet {
                -1
            } else {
                cli.verbose.min(2) as i8
            });
            certherd::commands::run(cli)
        }
    });
    std::process::exit(exit_code(result));
}

/// The one exit-code rule: a command that ran chose its code; an error is printed on stderr and
/// carries its own code ([`certherd::Error::exit_code`]: `status`'s errors, usage included, are
/// UNKNOWN, 3), and a monitoring plugin's report for stdout when it has one.
fn exit_code(result: certherd::Result<i32>) -> i32 {
    result.unwrap_or_else(|e| {
        certherd::error!("{e}");
        if let Some(report) = e.stdout_report() {
            print!("{report}");
        }
        e.exit_code()
    })
}
