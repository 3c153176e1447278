//! What a doctor check yields (a [`Finding`] with its [`Verdict`] and fix) and where it looks for
//! system files ([`System`]). Its own module so that every check module — local.rs, which also
//! runs the others, schedulers.rs, renewal_confs.rs, includes.rs — imports it from below.

use std::path::{Path, PathBuf};

/// What one check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Fine.
    Ok,
    /// Works now, but a likely mistake: why, and the fix.
    Warn(String, String),
    /// Broken: why, and the fix.
    Fail(String, String),
}

/// One check's subject and verdict.
#[derive(Debug, Clone)]
pub struct Finding {
    /// What was checked (`identity /etc/certherd/id_ed25519`).
    pub what: String,
    /// What was found.
    pub verdict: Verdict,
}

/// Where system files are looked up: `/` on a real node.
#[derive(Debug, Clone)]
pub struct System {
    root: PathBuf,
}

impl Default for System {
    fn default() -> Self {
        System { root: "/".into() }
    }
}

impl System {
    /// System files under `root` instead of `/` (tests).
    pub fn under(root: impl Into<PathBuf>) -> Self {
        System { root: root.into() }
    }

    /// The root itself (`/` on a node).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `absolute` under the root.
    pub(super) fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }
}
