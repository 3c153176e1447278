//! certherd: one certbot on a primary node, many web servers that must all answer ACME HTTP-01
//! challenges and serve the current certificate.
//!
//! The crate is a table of contents: each module has one job, and data flows one way —
//! a command builds a plan, [`fleet`] runs it on every node concurrently through [`ssh`] and the
//! peer [`agent`], and the per-node results are reported.

pub mod agent;
pub mod alert;
pub mod certbot_env;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crashpoint;
pub mod error;
pub mod fleet;
pub mod lineage;
pub mod lockfile;
pub mod log;
pub mod names;
pub mod nofollow;
pub mod pem;
pub mod protocol;
pub mod served;
pub mod ssh;
pub mod standby;
pub mod tls;
pub mod tokens;

pub use config::Config;
pub use error::{Error, Result};
pub use names::{Domain, KeyAuthorization, LineageName, Token};
