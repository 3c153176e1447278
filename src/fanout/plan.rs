//! What the primary knows about each lineage of a batch push ([`Planned`], read once from this
//! node's files) and the bounded concurrency its served checks run with: shared by the push
//! ([`super::batch`]) and its fleet-wide gate ([`super::rollout`]).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::lineage::Layout;
use crate::names::LineageName;
use crate::pem;
use crate::served::{self, Versions};

/// Served checks in flight at once (TLS handshakes to the nodes).
pub(super) const CHECKS_AT_ONCE: usize = 64;

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

/// Runs `f` on every item, at most [`CHECKS_AT_ONCE`] at a time; results in item order (None:
/// its task panicked).
pub(super) async fn bounded<I, T, F, Fut>(items: Vec<I>, f: F) -> Vec<Option<T>>
where
    I: Send + 'static,
    T: Send + 'static,
    F: Fn(I) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(CHECKS_AT_ONCE));
    let mut tasks = JoinSet::new();
    let n = items.len();
    for (index, item) in items.into_iter().enumerate() {
        let limit = limit.clone();
        let job = f(item);
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            (index, job.await)
        });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, value)) = joined {
            out[index] = Some(value);
        }
    }
    out
}
