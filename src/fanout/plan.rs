//! What the primary knows about each lineage of a batch push ([`Planned`], read once from this
//! node's files) and the bounded concurrency served checks run with: shared by the push
//! ([`super::batch`]), its fleet-wide gate ([`super::rollout`]) and `status`.

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
const CHECKS_PER_NODE: usize = 32;

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

/// The threads served checks run on, one per core: a TLS handshake is mostly the client's key
/// exchange and signature check, and certherd's own runtime has one thread (measured: 4.9
/// CPU-seconds for the 11,000 handshakes of a `status` over 1,000 lineages × 11 nodes, all on
/// that thread). None on one core (or if the threads cannot start): the caller's runtime runs
/// them. Made on first use and kept for the process (its threads end with it).
fn check_pool() -> Option<&'static tokio::runtime::Runtime> {
    static POOL: std::sync::OnceLock<Option<tokio::runtime::Runtime>> = std::sync::OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores > 1)
            .then(|| {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(cores)
                    .thread_name("certherd-check")
                    .enable_all()
                    .build()
                    .ok()
            })
            .flatten()
    })
    .as_ref()
}

/// Runs `f` on every item, at most `at_once` at a time, on [`check_pool`]'s threads; results in
/// item order (None: its task panicked). Each item's future is made only when a slot frees: made
/// up front, 11,000 served checks (1,000 lineages × 11 nodes) held 11,000 TLS-handshake state
/// machines at once, tens of MiB before the first finished.
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
    let pool = check_pool();
    let mut spawn_next = |tasks: &mut JoinSet<(usize, T)>| {
        if let Some((index, item)) = queue.next() {
            let job = f(item);
            let task = async move { (index, job.await) };
            match pool {
                Some(pool) => tasks.spawn_on(task, pool.handle()),
                None => tasks.spawn(task),
            };
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
