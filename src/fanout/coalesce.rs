//! Many renewals, one push (issue 19, items 2 and 3): the lineages one certbot run renewed (or
//! one `watch` scan found changed) go out as ONE batch ([`super::batch::push_all`]): one agent
//! session, one config test and one reload per node, however many lineages — and each renewal
//! still once: under each lineage's deploy lock, a version already recorded as deployed
//! everywhere ([`crate::lineage::deployed`]) is left out, and what reached every required node
//! is recorded, exactly as [`super::certs::push_once`] does for one lineage.

use super::batch;
use super::certs::Deployment;
use crate::config::Config;
use crate::error::Result;
use crate::lineage::batch::staging_limit;
use crate::lineage::deployed::{Deployed, LOCK_WAIT};
use crate::lineage::Layout;
use crate::names::LineageName;

/// What [`push_once_all`] did with the lineages it was given.
#[derive(Debug, Default)]
pub struct Pushed {
    /// One per lineage pushed.
    pub deployments: Vec<Deployment>,
    /// Lineages whose current version was already deployed everywhere: nothing sent.
    pub already: Vec<LineageName>,
    /// Lineages left out: their lock was held past [`LOCK_WAIT`], or their files cannot be read
    /// (with why). They were not pushed; the caller keeps them queued.
    pub skipped: Vec<(LineageName, String)>,
}

impl Pushed {
    /// Of `queued`, the lineages a push has taken (deployed, failed and alerted, or already
    /// deployed): all but the skipped ones, which stay queued.
    pub fn taken(&self, queued: &[LineageName]) -> Vec<LineageName> {
        queued
            .iter()
            .filter(|l| !self.skipped.iter().any(|(s, _)| s == *l))
            .cloned()
            .collect()
    }
}

/// Pushes the current version of each lineage in `lineages` that is not deployed everywhere
/// yet, in batches of at most [`staging_limit`] (each holds its deploy lock, an open file, until
/// the push is done; a run renews a handful, a restore may change a thousand, which goes as
/// one batch where the file limit allows it).
pub async fn push_once_all(config: &Config, lineages: &[LineageName]) -> Result<Pushed> {
    let layout = Layout::new(&config.letsencrypt_dir);
    let deployed = Deployed::new(&config.letsencrypt_dir);
    let mut names = lineages.to_vec();
    names.sort();
    names.dedup();
    let mut pushed = Pushed::default();
    for chunk in names.chunks(staging_limit()) {
        let mut locks = Vec::with_capacity(chunk.len());
        let mut todo = Vec::with_capacity(chunk.len());
        for lineage in chunk {
            let Some(lock) = deployed.lock(lineage).await? else {
                pushed.skipped.push((
                    lineage.clone(),
                    format!(
                        "another deploy held its lock for {}",
                        humantime::format_duration(LOCK_WAIT)
                    ),
                ));
                continue;
            };
            let current = layout.status(lineage);
            match (current.version, current.fingerprint) {
                (Some(v), Some(fp)) if deployed.has(lineage, v, &fp) => {
                    pushed.already.push(lineage.clone());
                }
                (Some(v), Some(fp)) => {
                    locks.push(lock);
                    todo.push((lineage.clone(), v, fp));
                }
                _ => pushed.skipped.push((
                    lineage.clone(),
                    "its live/ links do not name one readable certificate".into(),
                )),
            }
        }
        if todo.is_empty() {
            continue;
        }
        let names: Vec<LineageName> = todo.iter().map(|(l, _, _)| l.clone()).collect();
        // A split brain is refused here and named, as a deploy does; `sync` resolves it.
        let ds = batch::push_all_with(config, &names, false).await?;
        for d in &ds {
            // Recorded only for the version read under the lock, and only when it reached
            // every required node.
            let read = todo
                .iter()
                .find(|(l, v, _)| *l == d.lineage && *v == d.version);
            if let (Some((_, _, fp)), true) = (read, d.everywhere()) {
                if let Err(e) = deployed.record(&d.lineage, d.version, fp) {
                    crate::warn!(
                        "{}: cannot record version {} as deployed: {e}",
                        d.lineage,
                        d.version
                    );
                }
            }
        }
        pushed.deployments.extend(ds);
        drop(locks);
    }
    Ok(pushed)
}
