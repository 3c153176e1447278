//! Renewal: certbot writes the lineage → every node serves it (deploy hook path), timed by a
//! poller that makes a fresh TLS handshake with each node every 10 ms.
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{read_stamp, Bench};
use crate::measure::{run, Run};
use crate::plan::{DOMAIN, KINDS, RUN_TIMEOUT};

impl Bench {
    pub(crate) fn renewal(&mut self) -> Result<(), String> {
        eprintln!("== renewal → served, 3 nodes (deploy hook path)");
        self.configure(self.small(), false)?;
        let stamps = self.bed.root().join("bench-hook");
        let _ = fs::create_dir_all(&stamps);
        // certbot and its deploy hook run as the agent's account (never root over its files).
        self.bed.chown_to_agent(&stamps)?;
        let (hs, he) = (stamps.join("start"), stamps.join("end"));
        let deploy_hook = format!(
            "date +%s%N > {hs}; {cmd}; rc=$?; date +%s%N > {he}; exit $rc",
            hs = hs.display(),
            he = he.display(),
            cmd = self.bed.hook_command("deploy"),
        );
        let nodes: Vec<String> = (1..=self.small() + 1)
            .map(|i| format!("{}:443", self.bed.ip(i)))
            .collect();
        for rep in 0..self.plan.renew_reps {
            eprintln!("  rep {}/{}", rep + 1, self.plan.renew_reps);
            let _ = fs::remove_file(&hs);
            let _ = fs::remove_file(&he);
            let poller = Poller::start(nodes.clone(), Duration::from_millis(10));
            let run = self.certbot_issue(&["--force-renewal"], &deploy_hook);
            // Give the poller a moment past certbot's exit (it polls every 10 ms).
            std::thread::sleep(Duration::from_millis(100));
            let seen = poller.stop();
            let run = match run {
                Ok(r) => r,
                Err(e) => {
                    self.results.fail("renew/serving", e);
                    continue;
                }
            };
            let Some(written) = self.lineage_written() else {
                self.results
                    .fail("renew/serving", "cannot read the lineage's mtimes".into());
                continue;
            };
            let new_der = fs::read_to_string(self.live_dir(1).join("cert.pem"))
                .ok()
                .and_then(|p| certherd::pem::first_cert_der(&p));
            let Some(new_der) = new_der else {
                self.results
                    .fail("renew/serving", "cannot read the new certificate".into());
                continue;
            };
            let mut last: Option<SystemTime> = None;
            let mut missing = Vec::new();
            for (i, node_seen) in seen.iter().enumerate() {
                match node_seen.iter().find(|(_, der)| *der == new_der) {
                    Some((t, _)) => last = Some(last.map_or(*t, |l| l.max(*t))),
                    None => missing.push(format!("node{}", i + 1)),
                }
            }
            if !missing.is_empty() {
                self.results.fail(
                    "renew/serving",
                    format!("never saw the new certificate on {}", missing.join(", ")),
                );
                continue;
            }
            let secs = |t: SystemTime| {
                t.duration_since(written)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or_else(|e| -e.duration().as_secs_f64())
            };
            if let Some(last) = last {
                self.results.sample("renew/serving", secs(last));
            }
            if let Some(t) = read_stamp(&hs) {
                self.results.sample("renew/hook_start", secs(t));
            }
            if let Some(t) = read_stamp(&he) {
                self.results.sample("renew/hook_end", secs(t));
            }
            self.results
                .sample("renew/certbot_total", run.wall.as_secs_f64());
        }
        Ok(())
    }

    /// A real renewal at up to 10 peers: `certbot certonly --force-renewal` with certherd's
    /// auth, cleanup and deploy hooks, without and with `--pre-hook 'certherd warm'`, and
    /// `certherd renew` (certbot renew, warm-up started concurrently); no master up before it
    /// starts, timed from the start until every node serves the new certificate (the poller,
    /// every 25 ms per node). The peers are reached at the plan's RTT; pebble validates node 2
    /// directly.
    pub(crate) fn renewal_warm(&mut self) -> Result<(), String> {
        let n = self.kex_peers();
        let rtt = *self.rtts().last().unwrap_or(&0);
        eprintln!("== renewal with and without warm, {n} peers, RTT {rtt} ms");
        self.proxy
            .set_delay(Duration::from_secs_f64(f64::from(rtt) / 2000.0));
        let nodes: Vec<String> = (1..=n + 1)
            .map(|i| format!("{}:443", self.bed.ip(i)))
            .collect();
        let deploy_hook = self.bed.hook_command("deploy");
        let pre_hook = self.bed.hook_command("warm");
        // `certherd renew` runs `certbot renew` with these arguments (the bed's directories;
        // the server and the hooks come from the lineage's renewal config).
        let q = |p: std::path::PathBuf| format!("{:?}", p.display().to_string());
        let renew_section = format!(
            "[renew]\ncertbot = [\"/usr/bin/certbot\", \"--config-dir\", {}, \"--work-dir\", {}, \"--logs-dir\", {}, \"--non-interactive\"]\n",
            q(self.bed.letsencrypt_dir(1)),
            q(self.bed.root().join("certbot/work")),
            q(self.bed.root().join("certbot/logs")),
        );
        self.configure_with(n, rtt > 0, &renew_section)?;
        for rep in 0..self.plan.renew_reps {
            eprintln!("  rep {}/{}", rep + 1, self.plan.renew_reps);
            for what in ["plain", "warm", "renew"] {
                self.bed.close_control_masters();
                self.proxy.reset_connections();
                let key = format!("renew{n}/{what}/serving");
                let poller = Poller::start(nodes.clone(), Duration::from_millis(25));
                let t0 = SystemTime::now();
                let run = match what {
                    "plain" => self.certbot_issue(&["--force-renewal"], &deploy_hook),
                    "warm" => self.certbot_issue(
                        &["--force-renewal", "--pre-hook", pre_hook.as_str()],
                        &deploy_hook,
                    ),
                    _ => self.certherd_renew(),
                };
                std::thread::sleep(Duration::from_millis(100));
                let seen = poller.stop();
                let run = match run {
                    Ok(r) => r,
                    Err(e) => {
                        self.results.fail(&key, e);
                        continue;
                    }
                };
                let new_der = fs::read_to_string(self.live_dir(1).join("cert.pem"))
                    .ok()
                    .and_then(|p| certherd::pem::first_cert_der(&p));
                let Some(new_der) = new_der else {
                    self.results
                        .fail(&key, "cannot read the new certificate".into());
                    continue;
                };
                let mut last: Option<SystemTime> = None;
                let mut missing = Vec::new();
                for (i, node_seen) in seen.iter().enumerate() {
                    match node_seen.iter().find(|(_, der)| *der == new_der) {
                        Some((t, _)) => last = Some(last.map_or(*t, |l| l.max(*t))),
                        None => missing.push(format!("node{}", i + 1)),
                    }
                }
                match last {
                    Some(last) if missing.is_empty() => {
                        let secs = last
                            .duration_since(t0)
                            .map(|d| d.as_secs_f64())
                            .unwrap_or(0.0);
                        self.results.sample(&key, secs);
                        self.results.sample(
                            &format!("renew{n}/{what}/certbot_total"),
                            run.wall.as_secs_f64(),
                        );
                    }
                    _ => self.results.fail(
                        &key,
                        format!("never saw the new certificate on {}", missing.join(", ")),
                    ),
                }
            }
        }
        self.bed.close_control_masters();
        self.proxy.set_delay(Duration::ZERO);
        Ok(())
    }

    /// `certherd renew -- --force-renewal` on node 1: certbot renew with the warm-up started
    /// concurrently.
    fn certherd_renew(&self) -> Result<Run, String> {
        let r = run(
            self.bed
                .certherd(1, &["renew", "--", "--force-renewal"])
                .env("REQUESTS_CA_BUNDLE", self.bed.ca_bundle()),
            None,
            RUN_TIMEOUT,
        )?;
        if r.ok() {
            Ok(r)
        } else {
            Err(format!("certherd renew failed: {}", r.why()))
        }
    }

    /// When certbot finished writing the renewed lineage on node 1: the newest mtime among the
    /// live links and the archive files they name.
    pub(crate) fn lineage_written(&self) -> Option<SystemTime> {
        let live = self.live_dir(1);
        let mut newest: Option<SystemTime> = None;
        for k in KINDS {
            let link = live.join(format!("{k}.pem"));
            let lm = fs::symlink_metadata(&link).ok()?;
            let fm = fs::metadata(&link).ok()?;
            for m in [lm, fm] {
                let t = UNIX_EPOCH + Duration::new(m.mtime() as u64, m.mtime_nsec() as u32);
                newest = Some(newest.map_or(t, |n| n.max(t)));
            }
        }
        newest
    }
}

/// Polls what each node serves on :443 (a fresh TLS handshake per node every few ms) and records,
/// for each node, every distinct leaf with the first time it was seen.
pub(crate) struct Poller {
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) handle: std::thread::JoinHandle<Vec<Seen>>,
}

/// One node's distinct leaf certificates (DER), each with when it was first seen.
pub(crate) type Seen = Vec<(SystemTime, Vec<u8>)>;

impl Poller {
    /// Polls every node every `every` (a fresh TLS handshake each time).
    pub(crate) fn start(nodes: Vec<String>, every: Duration) -> Poller {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return vec![Vec::new(); nodes.len()];
            };
            rt.block_on(async move {
                let mut tasks = Vec::new();
                for addr in nodes {
                    let s = s.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut seen: Seen = Vec::new();
                        while !s.load(Ordering::Relaxed) {
                            if let Ok(der) =
                                certherd::tls::served_leaf(&addr, DOMAIN, Duration::from_secs(2))
                                    .await
                            {
                                if !seen.iter().any(|(_, d)| *d == der) {
                                    seen.push((SystemTime::now(), der));
                                }
                            }
                            tokio::time::sleep(every).await;
                        }
                        seen
                    }));
                }
                let mut out = Vec::new();
                for t in tasks {
                    out.push(t.await.unwrap_or_default());
                }
                out
            })
        });
        Poller { stop, handle }
    }

    pub(crate) fn stop(self) -> Vec<Seen> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}
