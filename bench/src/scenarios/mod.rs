//! The scenarios: one bed (N_max + 1 nodes and pebble), a delay proxy in front of every peer,
//! one certificate lineage; node 1 is the primary and its config is rewritten for each N. Each
//! scenario module times certherd and its baselines side by side and verifies every run.

mod anatomy;
mod auth;
mod deploy;
mod kex;
mod renewal;

pub(crate) use kex::kex_variants;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use certherd_testbed::delay::DelayProxy;
use certherd_testbed::{Bed, BedOptions, PeerAddrs, PeerSpec};

use crate::measure::{Results, Run, BED_ROOT};
use crate::plan::{Plan, DOMAIN, LINEAGE};

/// `[ssh] connect_timeout` in the benchmark's configs (see [`Bench::configure_with`]).
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Bench {
    pub(crate) plan: Plan,
    pub(crate) results: Results,
    pub(crate) plain_key: PathBuf,
    pub(crate) certherd: PathBuf,
    pub(crate) token_counter: usize,
    // Drop order: proxies before the bed.
    pub(crate) proxy: DelayProxy,
    pub(crate) bed: Bed,
}

impl Bench {
    pub(crate) fn start(certherd: &Path, max_n: usize, plan: Plan) -> Result<Bench, String> {
        eprintln!(
            "certherd-bench: starting a bed with {} nodes and pebble",
            max_n + 1
        );
        let t = Instant::now();
        let bed = Bed::start(BedOptions {
            nodes: max_n + 1,
            ca: true,
            certherd: certherd.to_owned(),
            ..Default::default()
        })?;
        let _ = BED_ROOT.set(bed.root().to_string_lossy().into_owned());
        let plain_key = bed.enable_plain_login()?;
        let mut pairs = Vec::new();
        for i in 2..=max_n + 1 {
            for port in [22, 80, 443] {
                pairs.push((sa(front_ip(&bed, i), port), sa(bed.ip(i), port)));
            }
            bed.add_known_host(i, sa(front_ip(&bed, i), 22))?;
        }
        let proxy = DelayProxy::start(&pairs, Duration::ZERO)?;
        eprintln!(
            "  bed {} up at {} with {} delay proxies in {:.1?}",
            bed.index(),
            bed.root().display(),
            pairs.len(),
            t.elapsed()
        );
        let mut results = Results::default();
        results.notes.push(format!(
            "node 1's configs set `[ssh] connect_timeout = \"{}s\"`: with the default 5 s (`ssh -M` bounded at 10 s) a cold fan-out to 100 peers on this loaded 2-core machine timed out on some peers in a trial run (32 post-quantum key exchanges at once); the baselines' ssh get the same `ConnectTimeout`.",
            CONNECT_TIMEOUT.as_secs()
        ));
        results.notes.push(format!(
            "The bed ({} nodes: one sshd and one nginx each, pebble and challtestsrv) and {} delay proxy listeners started in {:.1?}.",
            max_n + 1,
            pairs.len(),
            t.elapsed()
        ));
        Ok(Bench {
            plan,
            results,
            plain_key,
            // The bed's path: a copy it made when the agent's account cannot reach `certherd`.
            certherd: bed.certherd_bin().to_owned(),

            token_counter: 0,
            proxy,
            bed,
        })
    }

    pub(crate) fn run_all(&mut self) -> Result<(), String> {
        self.issue()?;
        if self.plan.runs("anatomy") {
            self.anatomy();
        }
        if self.plan.runs("startup") {
            self.startup();
        }
        if self.plan.runs("kex") {
            self.kex()?;
        }
        if self.plan.runs("auth") {
            for &rtt in &self.rtts() {
                for n in self.plan.peers.clone() {
                    self.auth(n, rtt)?;
                }
            }
            self.proxy.set_delay(Duration::ZERO);
        }
        if self.plan.runs("renewal") {
            self.renewal()?;
            self.renewal_warm()?;
        }
        if self.plan.runs("deploy") {
            if self.archive_versions().len() < 2 {
                // deploy alternates between two versions: make a second one (untimed).
                self.configure(self.small(), false)?;
                self.certbot_issue(&["--force-renewal"], &self.bed.hook_command("deploy"))?;
            }
            for n in self.plan.peers.clone() {
                self.deploy(n)?;
            }
        }
        Ok(())
    }

    // --- set-up ---------------------------------------------------------------------------

    /// The round trips measured: 0 ms (direct) and the plan's RTT (through the proxies).
    pub(crate) fn rtts(&self) -> Vec<u32> {
        if self.plan.rtt_ms > 0.0 {
            vec![0, self.plan.rtt_ms.round() as u32]
        } else {
            vec![0]
        }
    }

    pub(crate) fn addrs(&self, node: usize, via_proxy: bool) -> PeerAddrs {
        let ip = if via_proxy {
            front_ip(&self.bed, node)
        } else {
            self.bed.ip(node)
        };
        PeerAddrs {
            ssh: sa(ip, 22),
            http: sa(ip, 80),
            https: sa(ip, 443),
        }
    }

    /// Peers for issuance and the renewal measurement: 2 (3 nodes), fewer on a smaller bed.
    pub(crate) fn small(&self) -> usize {
        (self.bed.nodes() - 1).min(2)
    }

    /// Node 1's config: peers 2..=n+1, reached directly or through the delay proxies.
    pub(crate) fn configure(&self, n: usize, via_proxy: bool) -> Result<(), String> {
        self.configure_with(n, via_proxy, "")
    }

    /// [`Bench::configure`] with `extra` sections, and `[ssh] connect_timeout` raised to
    /// [`CONNECT_TIMEOUT`]: the bed's 5 s (the product's default) bounds `ssh -M` at 10 s, and
    /// on a loaded 2-core machine a cold fan-out to 100 peers (32 post-quantum key exchanges at
    /// once) takes longer than that for some peers. The baselines have no timeout at all; a
    /// timing run must not fail on one.
    pub(crate) fn configure_with(
        &self,
        n: usize,
        via_proxy: bool,
        extra: &str,
    ) -> Result<(), String> {
        let peers: Vec<(PeerSpec, PeerAddrs)> = (2..=n + 1)
            .map(|i| (PeerSpec::new(i), self.addrs(i, via_proxy)))
            .collect();
        self.bed.write_config_addrs(1, &peers, extra)?;
        self.edit_ssh_section(
            "connect_timeout = \"5s\"\n",
            &format!("connect_timeout = \"{}s\"\n", CONNECT_TIMEOUT.as_secs()),
        )
    }

    /// Replaces `from` with `to` in node 1's config, which must contain it.
    pub(crate) fn edit_ssh_section(&self, from: &str, to: &str) -> Result<(), String> {
        let path = self.bed.config_path(1);
        let text =
            fs::read_to_string(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
        if !text.contains(from) {
            return Err(format!("{}: no {from:?}", path.display()));
        }
        fs::write(&path, text.replacen(from, to, 1))
            .map_err(|e| format!("write {}: {e}", path.display()))
    }

    pub(crate) fn certbot_issue(&self, extra: &[&str], deploy_hook: &str) -> Result<Run, String> {
        let args = self.bed.certonly_args(Some(deploy_hook));
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend(["-d", DOMAIN]);
        args.extend_from_slice(extra);
        let t = Instant::now();
        let load0 = crate::measure::load1();
        let out = self.bed.certbot(&args);
        let run = Run {
            load: (load0, crate::measure::load1()),
            wall: t.elapsed(),
            code: out.status.code(),
            rss_kib: 0,
            cpu_s: 0.0,
            busy_s: 0.0,
            bed_s: 0.0,
            self_s: 0.0,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if run.ok() {
            Ok(run)
        } else {
            Err(format!(
                "certbot failed: {}\n{}",
                run.why(),
                tail(&run.stdout, 10)
            ))
        }
    }

    /// Issues site.test once (DNS: node 2 only) with certherd's hooks; every node gets an nginx
    /// TLS server on `live/site.test/` (`Bed::enable_tls`).
    pub(crate) fn issue(&mut self) -> Result<(), String> {
        eprintln!("== issuing {DOMAIN} with certbot and certherd's hooks");
        self.bed.dns(DOMAIN, &[2])?;
        self.bed.enable_tls(LINEAGE)?;
        self.configure(self.small(), false)?;
        let run = self.certbot_issue(&[], &self.bed.hook_command("deploy"))?;
        eprintln!("  issued in {:.1?}", run.wall);
        Ok(())
    }

    // --- anatomy: where one connection's time goes ----------------------------------------
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.bed.close_control_masters();
    }
}

/// `127.1.B.i`: where node i's delay proxy listens. A second loopback block (all of 127/8
/// reaches `lo` on Linux) mirrors the bed's own `127.0.B.i`, so the proxies never run out of
/// addresses (`127.0.B.(100+i)` did above 98 peers) and bed B's proxies cannot meet another
/// bed's, which owns a different B.
pub(crate) fn front_ip(bed: &Bed, node: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 1, bed.index(), node as u8)
}

pub(crate) fn sa(ip: Ipv4Addr, port: u16) -> SocketAddr {
    SocketAddr::V4(SocketAddrV4::new(ip, port))
}

pub(crate) fn read_stamp(path: &Path) -> Option<SystemTime> {
    let ns: u64 = fs::read_to_string(path).ok()?.trim().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(ns))
}

pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
