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
//! everywhere is not deployed again (one renewal, one deploy: [`certs::push_once`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use inotify::{Inotify, WatchMask};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Config;
use crate::error::{Error, Result, EXIT_OK};
use crate::fanout::certs;
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
                dirty = false;
                for (lineage, state) in scan(&layout) {
                    if deployed.get(&lineage) == Some(&state) {
                        continue;
                    }
                    crate::info!("{lineage} is now version {}: deploying", state.0);
                    // A stop request does not wait for the deploy: every agent install is atomic
                    // on its own, and what is cut short here is finished by the next sync.
                    tokio::select! {
                        result = certs::push_once(config, &lineage) => match result {
                            Ok(Some(d)) => {
                                print!("{}", report::table(&d));
                                report::publish(config, &d, "watch").await;
                            }
                            Ok(None) => crate::info!(
                                "{lineage} version {} was already deployed to every node (by certbot's deploy hook): nothing to do",
                                state.0
                            ),
                            Err(e) => crate::error!("deploying {lineage}: {e}"),
                        },
                        _ = term.recv() => break 'watching,
                        _ = int.recv() => break 'watching,
                    }
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
