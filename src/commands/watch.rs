//! `certherd watch`: deploy lineages that change by any means (a certbot run without the deploy
//! hook, a restore from backup, a hand edit) — the incron replacement.
//!
//! inotify watches the letsencrypt dir, `live/`, `archive/` and every lineage directory in them
//! (new ones are added as they appear). Events only mark the tree dirty; once nothing has moved
//! for `--settle`, every lineage's (version, fingerprint) is compared with the last one deployed
//! and only changed lineages are deployed. certbot writes new archive files and then moves the
//! symlinks one by one, so a scan mid-write sees links that disagree and simply waits for the
//! next quiet moment. Deploying writes nothing in `live/` or `archive/` (only its record under
//! `.certherd/`), so watch never triggers itself; a version the deploy hook already deployed
//! everywhere is not deployed again (one renewal, one deploy). The lineages of one scan go out
//! as one batch ([`coalesce::push_once_all`]: one config test and one reload per node), and
//! while a `certherd renew`/`issue` run is on, watch waits for it: that run pushes what its
//! certbot renews (see [`crate::lineage::deferred`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{Inotify, WatchMask};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::error::{Error, Result, EXIT_OK};
use crate::fanout::coalesce;
use crate::lineage::deferred::Deferred;
use crate::lineage::Layout;
use crate::names::LineageName;
use crate::report::deploy as report;

type Seen = HashMap<LineageName, (u32, Option<String>)>;

fn scan(layout: &Layout) -> Seen {
    let mut seen = HashMap::new();
    for lineage in layout.lineages().unwrap_or_default() {
        if let Ok(version) = layout.current_version(&lineage) {
            let fingerprint = layout.status(&lineage).fingerprint;
            seen.insert(lineage, (version, fingerprint));
        }
    }
    seen
}

fn names(lineages: &[LineageName]) -> String {
    let names: Vec<&str> = lineages.iter().map(|l| l.as_str()).collect();
    names.join(", ")
}

/// Runs until SIGTERM or SIGINT; returns 0.
pub async fn run(config: &Config, settle: Duration) -> Result<i32> {
    let root = config.letsencrypt_dir.clone();
    let layout = Layout::new(&root);
    let mut deployed = scan(&layout);
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel::<()>();
    let inotify = Inotify::init().map_err(|e| Error::Failed(format!("inotify: {e}")))?;
    std::thread::spawn(move || watch_tree(inotify, root, tx));
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| Error::Failed(format!("signal: {e}")))?;
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| Error::Failed(format!("signal: {e}")))?;
    crate::info!(
        "watching {} ({} lineages), settle {}",
        config.letsencrypt_dir.display(),
        deployed.len(),
        humantime::format_duration(settle)
    );
    let deferred = Deferred::new(&config.letsencrypt_dir);
    let mut dirty = false;
    'watching: loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            event = events.recv() => match event {
                Some(()) => dirty = true,
                None => return Err(Error::Failed("inotify watcher stopped".into())),
            },
            _ = tokio::time::sleep(settle), if dirty => {
                // A renew/issue run pushes what its certbot renews when certbot ends: wait for
                // it (then the scan finds those versions recorded as deployed, and sends nothing).
                if deferred.run_active() {
                    crate::verbose!("a certherd renew/issue run is in progress: waiting for it to deploy");
                    continue;
                }
                dirty = false;
                let now = scan(&layout);
                let changed: Vec<LineageName> = now
                    .iter()
                    .filter(|(lineage, state)| deployed.get(*lineage) != Some(*state))
                    .map(|(lineage, _)| lineage.clone())
                    .collect();
                // What a killed run left queued goes in the same push.
                let queued = deferred.list().unwrap_or_else(|e| {
                    crate::warn!("{e}");
                    Vec::new()
                });
                if changed.is_empty() && queued.is_empty() {
                    continue;
                }
                for lineage in &changed {
                    crate::info!("{lineage} is now version {}: deploying", now[lineage].0);
                }
                let mut all = changed.clone();
                all.extend(queued.iter().cloned());
                // A stop request does not wait for the push: every agent commit is atomic on
                // its own, and what is cut short here is finished by the next sync.
                tokio::select! {
                    result = coalesce::push_once_all(config, &all) => match result {
                        Ok(pushed) => {
                            for d in &pushed.deployments {
                                print!("{}", report::table(d));
                            }
                            if !pushed.deployments.is_empty() {
                                report::publish_batch(config, &pushed.deployments, "watch").await;
                            }
                            for lineage in &pushed.already {
                                crate::info!(
                                    "{lineage} version {} was already deployed to every node (by certbot's deploy hook or a certherd run): nothing to do",
                                    now.get(lineage).map_or(0, |s| s.0)
                                );
                            }
                            for (lineage, why) in &pushed.skipped {
                                crate::error!("{lineage}: not deployed: {why}");
                            }
                            let done = pushed.taken(&queued);
                            if !done.is_empty() {
                                if let Err(e) = deferred.remove(&done) {
                                    crate::warn!("{e}");
                                }
                            }
                        }
                        Err(e) => crate::error!("deploying {}: {e}", names(&all)),
                    },
                    _ = term.recv() => break 'watching,
                    _ = int.recv() => break 'watching,
                }
                for lineage in changed {
                    let state = now[&lineage].clone();
                    deployed.insert(lineage, state);
                }
            }
        }
    }
    crate::info!("stopped");
    Ok(EXIT_OK)
}

/// The blocking inotify loop: adds watches for new directories and signals every change.
fn watch_tree(mut inotify: Inotify, root: PathBuf, tx: tokio::sync::mpsc::UnboundedSender<()>) {
    let mask = WatchMask::CREATE
        | WatchMask::MOVED_TO
        | WatchMask::MOVED_FROM
        | WatchMask::DELETE
        | WatchMask::CLOSE_WRITE
        | WatchMask::ATTRIB;
    let mut dirs: HashMap<inotify::WatchDescriptor, PathBuf> = HashMap::new();
    let add = |inotify: &mut Inotify, dirs: &mut HashMap<_, _>, path: &Path| {
        if let Ok(wd) = inotify.watches().add(path, mask) {
            dirs.insert(wd, path.to_path_buf());
        }
    };
    add(&mut inotify, &mut dirs, &root);
    for top in ["live", "archive"] {
        let dir = root.join(top);
        add(&mut inotify, &mut dirs, &dir);
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                add(&mut inotify, &mut dirs, &entry.path());
            }
        }
    }
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let events = match inotify.read_events_blocking(&mut buffer) {
            Ok(events) => events,
            Err(_) => return,
        };
        let mut new_dirs = Vec::new();
        for event in events {
            if event.mask.contains(inotify::EventMask::ISDIR) {
                if let (Some(parent), Some(name)) = (dirs.get(&event.wd), event.name) {
                    new_dirs.push(parent.join(name));
                }
            }
        }
        for dir in new_dirs {
            // live/ or archive/ appearing, or a lineage directory inside them.
            let depth_ok = dir.parent() == Some(root.as_path())
                || dir
                    .parent()
                    .is_some_and(|p| p == root.join("live") || p == root.join("archive"));
            if depth_ok {
                add(&mut inotify, &mut dirs, &dir);
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if entry.file_type().is_ok_and(|t| t.is_dir()) {
                        add(&mut inotify, &mut dirs, &entry.path());
                    }
                }
            }
        }
        if tx.send(()).is_err() {
            return;
        }
    }
}
