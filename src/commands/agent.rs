//! `certherd agent`: serve the protocol on stdin/stdout (see [`crate::agent`]).

use crate::agent::Agent;
use crate::config::Config;

/// Serves until stdin closes; returns the exit code.
pub fn run(config: &Config) -> i32 {
    Agent::new(config).serve()
}
