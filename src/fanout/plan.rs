//! What the primary knows about each lineage of a batch push ([`Planned`], read once from this
//! node's files) and the bounded concurrency its served checks run with: shared by the push
//! ([`super::batch`]) and its fleet-wide gate ([`super::rollout`]).

use std::time::Duration;

use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::lineage::Layout;
use crate::names::LineageName;
use crate::pem;
use crate::served::{self, Versions};

/// Served checks in flight at once per node checked (TLS handshakes): enough to hide a WAN
/// round trip, far below a web server's connection limit (nginx's default `worker_connections`
/// is 768 on Debian, the bed's 256).
pub const CHECKS_PER_NODE: usize = 32;

/// At most this many at once however many nodes: each in-flight handshake holds its buffers.
const CHECKS_AT_MOST: usize = 512;

/// How many served checks run at once over `nodes` nodes (callers order their checks node by
/// node in turn, so each node gets its share).
pub fn checks_at_once(nodes: usize) -> usize {
    (CHECKS_PER_NODE * nodes).clamp(CHECKS_PER_NODE, CHECKS_AT_MOST)
}

/// How long a node that does not answer at all gets to come back after its reload.
pub(super) const SERVE_DEADLINE: Duration = Duration::from_secs(10);

/// What the primary knows about one lineage it pushes (the files themselves are read again
/// when they go out, one at a time).
#[derive(Debug)]
pub(super) struct Planned {
    pub(super) lineage: LineageName,
    pub(super) version: u32,
    pub(super) not_after: i64,
    pub(super) sni: Option<String>,
    pub(super) versions: Versions,
}

/// The lineage's current version and what the served check needs, from this node's files.
pub(super) fn plan(layout: &Layout, lineage: &LineageName) -> Result<Planned> {
    let version = layout.current_version(lineage)?;
    let cert = std::fs::read_to_string(
        layout
            .archive_dir(lineage)
            .join(format!("cert{version}.pem")),
    )
    .map_err(|e| Error::Failed(format!("{lineage}: cannot read cert{version}.pem: {e}")))?;
    let info = pem::info_pem(&cert).ok_or_else(|| {
        Error::Failed(format!(
            "{lineage}: cert{version}.pem is not a readable certificate"
        ))
    })?;
    let sni = pem::first_cert_der(&cert).and_then(|der| served::check_name_for(&der));
    Ok(Planned {
        lineage: lineage.clone(),
        version,
        not_after: info.not_after,
        sni,
        versions: Versions::read(layout, lineage, version, &info.fingerprint),
    })
}

/// Runs `f` on every item, at most `at_once` at a time; results in item order (None:
/// its task panicked). Each item's future is made only when a slot frees: made up front, 11,000
/// served checks (1,000 lineages × 11 nodes) held 11,000 TLS-handshake state machines at once,
/// tens of MiB before the first finished.
pub async fn bounded<I, T, F, Fut>(items: Vec<I>, at_once: usize, f: F) -> Vec<Option<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let n = items.len();
    let mut queue = items.into_iter().enumerate();
    let mut tasks = JoinSet::new();
    let mut spawn_next = |tasks: &mut JoinSet<(usize, T)>| {
        if let Some((index, item)) = queue.next() {
            let job = f(item);
            tasks.spawn(async move { (index, job.await) });
        }
    };
    for _ in 0..at_once.max(1) {
        spawn_next(&mut tasks);
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, value)) = joined {
            out[index] = Some(value);
        }
        spawn_next(&mut tasks);
    }
    out
}
