//! certbot's lineages on one node: [`layout`] reads the directories and links certbot keeps,
//! [`install`] is the agent's verified, atomic install and rollback, [`batch`] stages many
//! lineages and switches them under one config test and one reload, [`stage`] writes a version
//! under temp names first, [`split_brain`] keeps a clashing version on disk aside, never
//! overwritten; [`deployed`] is the primary's record that makes one renewal one deploy.

pub mod batch;
pub mod deferred;
pub mod deployed;
pub mod install;
pub mod layout;
pub mod split_brain;
pub mod stage;

pub use install::{InstallError, OnSplitBrain};
pub use layout::{Layout, KINDS, PENDING, SPLIT_BRAIN_PREFIX};
