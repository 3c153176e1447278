//! certherd: one certbot on a primary node, many web servers that must all answer ACME HTTP-01
//! challenges and serve the current certificate.
//!
//! The crate is a table of contents: each module has one job, and imports point down only. The
//! layers are described once, in `scripts/layers.sh`'s table, which checks them and draws them
//! in docs/ARCHITECTURE.md.
//!
//! A command takes its parsed flags ([`cli`]), a [`fanout`] engine runs the work on this node and every peer
//! through [`fleet`], [`ssh`] and the peer [`agent`] and returns typed per-node rows, and
//! [`report`] prints them.

pub mod actions;
pub mod agent;
pub mod alert;
pub mod certbot_env;
pub mod certbot_version;
pub mod check;
pub mod cli;
pub mod commands;
pub mod config;
pub mod crashpoint;
pub mod error;
pub mod exec;
pub mod fanout;
pub mod fleet;
pub mod fsx;
pub mod holder;
pub mod lineage;
pub mod lockfile;
pub mod log;
pub mod manual;
pub mod names;
pub mod pattern;
pub mod pem;
pub mod privdrop;
pub mod report;
#[cfg(test)]
pub mod scratch;

pub mod served;
pub mod ssh;
pub mod standby;
pub mod text;
pub mod tls;
pub mod tokens;
pub mod webconf;
pub mod wire;

pub use config::Config;
pub use error::{Error, Result};
pub use names::{Domain, KeyAuthorization, LineageName, Token};
