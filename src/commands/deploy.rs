//! `certherd deploy` (certbot's deploy hook) and `certherd sync`: the certificate engine
//! ([`crate::fanout::certs`]) for one lineage or every lineage, reported as a table or JSON
//! ([`crate::report::deploy`]), with an alert on failure.

use crate::cli::{DeployFlags, SyncFlags};
use crate::config::Config;
use crate::error::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::fanout::{certs, coalesce};
use crate::lineage::deferred::{Deferred, DEFER_ENV};
use crate::lineage::Layout;
use crate::names::LineageName;
use crate::report::deploy::{self as report, DeploymentJson, Format};
use crate::report::nodes::print_json;

/// Warns, on every run, about each file of this node's web server config that root reads and a
/// non-root account may change (issue 20): the `[reload]` test this deploy runs through sudo
/// would read it as root. Only this node's files can be seen from here.
fn warn_exposed(config: &Config) {
    for (server, e) in crate::webconf::exposed_here(&[&config.reload.test, &config.reload.reload]) {
        crate::warn!(
            "{} (root-equivalent: run certherd doctor for the fix)",
            e.describe(server)
        );
    }
}

/// `certherd deploy`.
pub async fn run(config: &Config, options: &DeployFlags) -> Result<i32> {
    if options.flush {
        warn_exposed(config);
        return flush_deferred(config, "deploy", options.format).await;
    }
    let lineage = lineage_from(config, options.lineage.as_deref())?;
    if defer(config, options, &lineage)? {
        return Ok(EXIT_OK);
    }
    warn_exposed(config);
    // As certbot's hook (no --lineage) a renewal is deployed once, whichever of the stored
    // hook, the hook directory and watch comes first; by hand (--lineage) it always runs.
    let d = if options.lineage.is_some() {
        certs::push(config, &lineage, true).await?
    } else {
        match certs::push_once(config, &lineage).await? {
            Some(d) => d,
            None => {
                crate::info!(
                    "{lineage}: this version was already deployed to every node (by another deploy hook or watch): nothing to do"
                );
                return Ok(EXIT_OK);
            }
        }
    };
    match options.format {
        // -q: errors only; the table is not one.
        Format::Table if crate::log::enabled(0) => print!("{}", report::table(&d)),
        Format::Table => {}
        Format::Json => print_json(&DeploymentJson::of(&d)),
    }
    let ok = report::publish(config, &d, "deploy").await;
    Ok(if ok { EXIT_OK } else { EXIT_FAILED })
}

/// Queues the lineage instead of pushing it (see [`crate::lineage::deferred`]) when asked to
/// (`--defer`), or when certbot runs under `certherd renew`/`issue` ([`DEFER_ENV`]) and that
/// run is still on to push the queue when its certbot ends. A hook left with the variable but
/// no run (the run was killed) deploys at once. By hand (`--lineage` without `--defer`) a deploy
/// always runs.
fn defer(config: &Config, options: &DeployFlags, lineage: &LineageName) -> Result<bool> {
    let deferred = Deferred::new(&config.letsencrypt_dir);
    let under_run =
        options.lineage.is_none() && std::env::var_os(DEFER_ENV).is_some_and(|v| v == "1");
    if !options.defer && !under_run {
        return Ok(false);
    }
    if !options.defer && !deferred.run_active() {
        crate::warn!(
            "{lineage}: {DEFER_ENV} is set but no certherd renew/issue run is in progress: deploying now"
        );
        return Ok(false);
    }
    deferred.add(lineage)?;
    crate::info!(
        "{lineage}: queued; {} pushes every queued lineage at once (one config test and one reload per node)",
        if options.defer {
            "certherd deploy --flush (certbot's --post-hook)"
        } else {
            "the certherd run, when certbot ends,"
        }
    );
    Ok(true)
}

/// Pushes every queued lineage in one batch ([`coalesce::push_once_all`]: each renewal once),
/// reports it like `sync` and takes what it handled off the queue. A lineage that failed on a
/// node is taken off too: the alert names it, `status` shows the drift and `sync` repairs it
/// (retrying it on every flush would only repeat the alert). `event` names the caller in logs,
/// receipts and the alert.
pub async fn flush_deferred(config: &Config, event: &'static str, format: Format) -> Result<i32> {
    let deferred = Deferred::new(&config.letsencrypt_dir);
    let queued = deferred.list()?;
    if queued.is_empty() {
        crate::verbose!("no deferred deploys");
        if format == Format::Json {
            print_json(&serde_json::json!({ "ok": true, "lineages": [] }));
        }
        return Ok(EXIT_OK);
    }
    let pushed = coalesce::push_once_all(config, &queued).await?;
    if format == Format::Table && crate::log::enabled(0) {
        for d in &pushed.deployments {
            print!("{}", report::table(d));
        }
    }
    for lineage in &pushed.already {
        crate::info!(
            "{lineage}: this version was already deployed to every node (by another deploy or watch): nothing to do"
        );
    }
    for (lineage, why) in &pushed.skipped {
        crate::error!("{lineage}: not deployed, left queued: {why}");
    }
    let ok = pushed.deployments.is_empty()
        || report::publish_batch(config, &pushed.deployments, event).await;
    deferred.remove(&pushed.taken(&queued))?;
    if format == Format::Json {
        let rows: Vec<DeploymentJson> = pushed.deployments.iter().map(DeploymentJson::of).collect();
        print_json(&serde_json::json!({ "ok": ok, "lineages": rows }));
    }
    Ok(if ok && pushed.skipped.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

/// [`flush_deferred`] for `renew` and `issue` once their certbot ended. Their exit code stays
/// certbot's, as when certbot ran the deploy hook itself (certbot ignores a hook's exit code):
/// a failed push is logged and alerted here, and `status` shows the drift.
pub async fn flush_after_certbot(config: &Config, event: &'static str) {
    if let Err(e) = flush_deferred(config, event, Format::Table).await {
        crate::error!("deploying what certbot renewed: {e}");
    }
}

/// `certherd sync [LINEAGE…]`: every lineage (or the named ones) to every peer that lacks it.
/// As JSON: one object, `{"ok": …, "lineages": [<deploy object>…]}`.
pub async fn sync(config: &Config, options: &SyncFlags) -> Result<i32> {
    warn_exposed(config);
    let layout = Layout::new(&config.letsencrypt_dir);
    let lineages = if options.lineages.is_empty() {
        layout.lineages()?
    } else {
        options
            .lineages
            .iter()
            .map(|n| LineageName::parse(n))
            .collect::<std::result::Result<Vec<_>, _>>()?
    };
    // One agent session per peer carrying every lineage, one test and one reload per node
    // (issue 19), one alert for the run.
    let rollout = crate::fanout::rollout::Rollout {
        canary: options.canary.unwrap_or(config.rollout.canary),
    };
    let deployments = crate::fanout::batch::push_with(config, &lineages, rollout, true).await?;
    if options.format == Format::Table && crate::log::enabled(0) {
        for d in &deployments {
            print!("{}", report::table(d));
        }
    }
    let ok = deployments.is_empty() || report::publish_batch(config, &deployments, "sync").await;
    // A queued deploy (a run killed before its flush) is done once sync put its version
    // everywhere.
    let everywhere: Vec<LineageName> = deployments
        .iter()
        .filter(|d| d.everywhere())
        .map(|d| d.lineage.clone())
        .collect();
    let deferred = Deferred::new(&config.letsencrypt_dir);
    if !deferred.list()?.is_empty() {
        deferred.remove(&everywhere)?;
    }
    let pushed: Vec<DeploymentJson> = deployments.iter().map(DeploymentJson::of).collect();
    if lineages.is_empty() {
        crate::info!(
            "no lineages under {}",
            config.letsencrypt_dir.join("live").display()
        );
    }
    if options.format == Format::Json {
        print_json(&serde_json::json!({ "ok": ok, "lineages": pushed }));
    }
    Ok(if ok { EXIT_OK } else { EXIT_FAILED })
}

/// The lineage to deploy: `--lineage`, else certbot's `$RENEWED_LINEAGE`, which must be exactly
/// `<letsencrypt_dir>/live/<name>` — a real directory, not a symlink, no `..` — so that a
/// hostile value (`../../etc`, a path elsewhere, a planted link) is refused as input (exit 2)
/// before anything is read or sent.
fn lineage_from(config: &Config, flag: Option<&str>) -> Result<LineageName> {
    if let Some(name) = flag {
        return Ok(LineageName::parse(name)?);
    }
    let dir = std::env::var("RENEWED_LINEAGE").map_err(|_| {
        Error::Input(
            "missing lineage: expected $RENEWED_LINEAGE (set by certbot) or --lineage NAME".into(),
        )
    })?;
    let live = config.letsencrypt_dir.join("live");
    let refuse = |why: &str| {
        Error::Input(format!(
            "RENEWED_LINEAGE {} {why}: expected {}/NAME, a lineage directory",
            crate::text::printable(&dir),
            live.display()
        ))
    };
    let name = std::path::Path::new(&dir)
        .strip_prefix(&live)
        .ok()
        .and_then(|rest| {
            let mut parts = rest.components();
            match (parts.next(), parts.next()) {
                (Some(std::path::Component::Normal(n)), None) => n.to_str(),
                _ => None,
            }
        })
        .ok_or_else(|| refuse("is not a directory directly under live/"))?;
    let lineage = LineageName::parse(name)?;
    match std::fs::symlink_metadata(live.join(name)) {
        Ok(m) if m.is_dir() => Ok(lineage),
        Ok(_) => Err(refuse("is a symlink or a file")),
        Err(_) => Err(refuse("does not exist")),
    }
}
