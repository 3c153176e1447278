//! `certherd warm`: opens (or refreshes) the shared SSH connection to every managed peer, so that
//! the hook calls that follow skip the key exchange. Meant as certbot's `--pre-hook`: certbot
//! runs pre-hooks once per run, only when something is due, and then spends seconds talking to
//! the CA before its first auth hook — the handshakes happen there, where nobody waits.
//!
//! It never fails its caller: a peer that cannot be reached is one warning line (the hook that
//! needs it will report it properly), and the exit code is 0. Only a bad config exits 2.
//! `issue` and `renew` run the same warm-up themselves, concurrently with certbot.
//!
//! The warm-up is the holder ([`crate::holder`]): a process of this account that opens one
//! agent session per peer (connection, agent, `hello`: whatever a first use costs is paid here)
//! and carries the token requests of this certbot run's hooks, then exits with the run. Should
//! it not start, the connections alone are warmed, each with one agent `hello` for the same
//! reason.

use std::time::Instant;

use tokio::task::JoinHandle;

use crate::config::Config;
use crate::error::{Result, EXIT_OK};
use crate::fleet;
use crate::holder::start::Watched;
use crate::ssh::Warmed;

/// Set by `issue` and `renew` on the certbot they run: they warm up themselves, concurrently
/// with certbot, so a `certherd warm` pre-hook inside that run returns at once instead of
/// holding certbot until every handshake is done.
pub const WARMING_ENV: &str = "CERTHERD_WARMING";

/// Runs the command; always exit 0 (a bad config never gets here: it exits 2 at load).
pub async fn run(config: &Config) -> Result<i32> {
    if std::env::var_os(WARMING_ENV).is_some_and(|v| v == "1") {
        crate::verbose!("warm: the certherd that runs this certbot is warming up already");
        return Ok(EXIT_OK);
    }
    let Some(certbot) = Watched::certbot_run() else {
        warm_up(config, true).await;
        return Ok(EXIT_OK);
    };
    match hold(config, certbot, true).await {
        Ok(()) => {}
        Err(why) => {
            crate::warn!("the warm holder did not start ({why}): warming connections only");
            warm_up(config, true).await;
        }
    }
    Ok(EXIT_OK)
}

/// Starts the holder watching `run`; Ok once it holds sessions (or another holder does). A
/// peer it could not open is one line, as in [`warm_up`] (a warning when `warn`).
async fn hold(config: &Config, run: Watched, warn: bool) -> std::result::Result<(), String> {
    let start = Instant::now();
    let started = crate::holder::start::start(config, run).await?;
    for (peer, why) in &started.down {
        let why = crate::text::one_line(why, 2000);
        if warn {
            crate::warn!("{peer}: warm-up failed: {why}");
        } else {
            crate::verbose!("{peer}: warm-up failed: {why}");
        }
    }
    crate::verbose!("warm: holder {} in {:.0?}", started.ready, start.elapsed());
    Ok(())
}

/// How long `issue` and `renew` give the warm-up before they start certbot. Without a head
/// start the holder (a process of its own: exec, config, one key exchange per peer) could still
/// be starting when a fast certbot calls its first auth hook, which then opens its own
/// connections beside it. With it, the hooks find the holder ready, at the cost of at most this
/// much more wall time for a cron job; a warm-up slower than this (many peers, one down) goes on
/// while certbot talks to the CA.
pub const HEAD_START: std::time::Duration = std::time::Duration::from_secs(3);

/// A warm-up started by `issue` or `renew`: the task that starts it, and the holder's
/// directory, so that [`stop`] ends the holder with the run.
pub struct Warming {
    task: JoinHandle<()>,
    holder: Option<std::path::PathBuf>,
}

/// [`spawn`], then waits until the warm-up is ready or [`HEAD_START`] has passed.
pub async fn spawn_with_head_start(config: &Config) -> Warming {
    let (ready, is_ready) = tokio::sync::oneshot::channel();
    let task = spawn(config, ready);
    if tokio::time::timeout(HEAD_START, is_ready).await.is_err() {
        crate::verbose!(
            "warm: not ready after {}: starting certbot while it goes on",
            humantime::format_duration(HEAD_START)
        );
    }
    let peers: Vec<_> = config.managed_peers().cloned().collect();
    let holder = crate::holder::dir(&config.ssh, &peers).ok();
    Warming { task, holder }
}

/// Starts the warm-up in the background (for `issue` and `renew`, right before certbot) and
/// says on `ready` when it is done. It only ever logs at `-v`: a peer that is down is reported
/// by the hook that needs it. The caller aborts it once certbot is done; every step in it is
/// bounded on its own (connect timeout, start-up lock wait), so it never outlives that either.
fn spawn(config: &Config, ready: tokio::sync::oneshot::Sender<()>) -> JoinHandle<()> {
    let config = config.clone();
    tokio::spawn(async move {
        // The holder watches this process: it ends with `issue`/`renew`, right after certbot.
        let me = Watched::of(std::process::id());
        let held = match me {
            Some(me) => hold(&config, me, false).await,
            None => Err("cannot read this process's start time".into()),
        };
        if let Err(why) = held {
            crate::verbose!("the warm holder did not start ({why}): warming connections only");
            warm_up(&config, false).await;
        }
        let _ = ready.send(());
    })
}

/// Warms every managed peer; one line per failed peer (a warning from the command, verbose
/// from the built-in warm-up) and, with `-v`, a summary.
async fn warm_up(config: &Config, warn: bool) {
    let peers: Vec<_> = config.managed_peers().cloned().collect();
    let start = Instant::now();
    let outcomes = fleet::warm(&config.ssh, &peers).await;
    let mut opened = 0;
    let mut reused = 0;
    for outcome in &outcomes {
        match &outcome.result {
            Ok(Warmed::Opened) => opened += 1,
            Ok(Warmed::Reused) => reused += 1,
            Err(why) if warn => crate::warn!("{}: warm-up failed: {why}", outcome.peer.name),
            Err(why) => crate::verbose!("{}: warm-up failed: {why}", outcome.peer.name),
        }
    }
    crate::verbose!(
        "warm: {} of {} peers ready ({opened} opened, {reused} already open) in {:.0?}",
        opened + reused,
        outcomes.len(),
        start.elapsed()
    );
}

/// Stops a background warm-up that is no longer useful (certbot has exited) and waits for the
/// abort to land, so no half-started `ssh` is left behind by this process. Then asks the
/// holder to exit and waits (bounded) until it has: it would notice this process's end within
/// half a second anyway, but this way `issue` and `renew` return with its sessions closed and
/// its probe token removed (docs/HOLDER.md), not shortly before.
pub async fn stop(warming: Warming) {
    warming.task.abort();
    let _ = warming.task.await;
    let Some(dir) = warming.holder else {
        return;
    };
    crate::holder::client::stop(&dir.join("sock")).await;
    // Bounded: 3 s in 50 ms steps; a holder still starting (its lock held while it opens
    // sessions) is left to notice our end itself.
    for _ in 0..60 {
        if matches!(
            crate::lockfile::try_lock(&dir.join("lock")),
            Ok(Some(_)) | Err(_)
        ) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
