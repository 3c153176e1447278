//! `certherd renew`: for cron or a systemd timer on every node. Only the primary — the node
//! named by `[renew] primary`, or the one holding `[renew] vip` on a local interface — runs
//! `certbot renew`; elsewhere it logs one line and exits 0. The deploy hook stored in certbot's
//! renewal config queues each renewed lineage (see [`crate::lineage::deferred`]), and when
//! certbot ends they all reach the other nodes in one push: one config test and one reload per
//! node for the whole run.
//!
//! Lock: a second `renew` while one runs does not wait; it logs that and exits 0 (the running
//! one does the work), so cron never stacks certbot runs.

use std::net::IpAddr;
use std::time::Duration;

use crate::alert::{self, DeployAlert, NodeAlert};
use crate::cli::RenewFlags;
use crate::commands::{deploy, warm};
use crate::config::Config;
use crate::error::{Error, Result, EXIT_FAILED, EXIT_OK};
use crate::lineage::deferred::{Deferred, DEFER_ENV};

/// Why this node is (not) the primary, as one line.
pub fn primary_reason(config: &Config) -> Result<(bool, String)> {
    let name = config.node_name();
    if let Some(primary) = &config.renew.primary {
        return Ok((
            primary == &name,
            format!("[renew] primary = {primary:?}, this node is {name:?}"),
        ));
    }
    if let Some(vip) = &config.renew.vip {
        let ip: IpAddr = vip.parse().map_err(|_| Error::Config {
            path: config.path.clone(),
            message: format!("{vip:?} is not an IP address"),
            key: Some("renew.vip".into()),
        })?;
        let held = local_addresses()?.contains(&ip);
        return Ok((
            held,
            format!(
                "[renew] vip = {vip} is {} a local interface",
                if held { "on" } else { "not on" }
            ),
        ));
    }
    Ok((
        true,
        "no [renew] primary or vip set: every node that runs renew is a primary".into(),
    ))
}

/// Addresses of the local interfaces (getifaddrs).
fn local_addresses() -> Result<Vec<IpAddr>> {
    let addrs =
        nix::ifaddrs::getifaddrs().map_err(|e| Error::Failed(format!("getifaddrs: {e}")))?;
    Ok(addrs
        .filter_map(|a| {
            let a = a.address?;
            if let Some(v4) = a.as_sockaddr_in() {
                return Some(IpAddr::V4(v4.ip()));
            }
            a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip()))
        })
        .collect())
}

/// Runs `renew`; returns certbot's exit code (0 where this node is not the primary).
pub async fn run(config: &Config, options: &RenewFlags) -> Result<i32> {
    let (primary, why) = primary_reason(config)?;
    if !primary {
        crate::info!("not the primary ({why}): nothing to do");
        return Ok(EXIT_OK);
    }
    let jitter = options.jitter.or(config.renew.jitter).unwrap_or_default();
    if !jitter.is_zero() {
        let delay = jitter.mul_f64(random_fraction()?);
        crate::verbose!(
            "sleeping {} of jitter",
            humantime::format_duration(Duration::from_secs(delay.as_secs()))
        );
        tokio::time::sleep(delay).await;
    }
    let lock_path = config.letsencrypt_dir.join(".certherd-renew.lock");
    let Some(_lock) = crate::lockfile::try_lock(&lock_path)? else {
        crate::info!(
            "another certherd renew is running ({} is locked): leaving it to that one",
            lock_path.display()
        );
        return Ok(EXIT_OK);
    };
    let mut argv = config.renew.certbot_argv();
    argv.push("renew".into());
    // certherd has its own jitter; certbot's would add up to 8 minutes more when not on a TTY.
    argv.push("--no-random-sleep-on-renew".into());
    argv.extend(options.certbot_args.iter().cloned());
    crate::verbose!("running {}", argv.join(" "));
    // Connections open before (up to warm::HEAD_START) and while certbot talks to the CA, so its
    // first auth hook finds them ready.
    // A `warm` pre-hook stored in the renewal config sees WARMING_ENV and returns at once.
    // The deploy hooks certbot runs see DEFER_ENV and only queue their lineage while this run
    // holds `run`; every renewed lineage is then pushed at once below (one reload per node).
    let run = Deferred::new(&config.letsencrypt_dir).begin_run()?;
    let warming = warm::spawn_with_head_start(config).await;
    let status = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env(warm::WARMING_ENV, "1")
        .env(DEFER_ENV, "1")
        .status()
        .await;
    warm::stop(warming).await;
    deploy::flush_after_certbot(config, "deploy").await;
    drop(run);
    let (code, failure) = match status {
        Ok(s) if s.success() => (EXIT_OK, None),
        Ok(s) => (
            s.code().unwrap_or(EXIT_FAILED),
            Some(format!("{} exited with {s}", argv[0])),
        ),
        Err(e) => (EXIT_FAILED, Some(format!("cannot run {}: {e}", argv[0]))),
    };
    if let Some(why) = failure {
        crate::error!("renew failed: {why}");
        let node = NodeAlert {
            node: config.node_name(),
            ok: false,
            required: true,
            before: None,
            version: None,
            duration_ms: 0,
            error: Some(why),
        };
        let alert = DeployAlert::new("renew", config.node_name(), "*".into(), 0, None, vec![node]);
        alert::send(&config.alert, &alert).await;
    }
    // The exit code stays certbot's, as when certbot ran the deploy hook itself (it ignores a
    // hook's exit code): a failed push is alerted and logged above, and `status` shows drift.
    Ok(code)
}

/// A uniform fraction in [0, 1) from /dev/urandom.
fn random_fraction() -> Result<f64> {
    let b = crate::fsx::random_bytes()?;
    Ok((u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64)
}
