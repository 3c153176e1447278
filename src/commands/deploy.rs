//! `certherd deploy` (certbot's deploy hook) and `certherd sync`: the certificate engine
//! ([`crate::fanout::certs`]) for one lineage or every lineage, reported as a table or JSON
//! ([`crate::report::deploy`]), with an alert on failure.

use crate::cli::{DeployFlags, SyncFlags};
use crate::config::Config;
use crate::error::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::fanout::certs;
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
    let lineage = lineage_from(config, options.lineage.as_deref())?;
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
    let deployments = crate::fanout::batch::push_with(config, &lineages, rollout).await?;
    if options.format == Format::Table && crate::log::enabled(0) {
        for d in &deployments {
            print!("{}", report::table(d));
        }
    }
    let ok = deployments.is_empty() || report::publish_batch(config, &deployments, "sync").await;
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
