//! certbot's lineages on one node: [`layout`] reads the directories and links certbot keeps,
//! [`install`] is the agent's verified, atomic install and rollback.

pub mod install;
pub mod layout;

pub use install::InstallError;
pub use layout::{Layout, KINDS, PENDING};
