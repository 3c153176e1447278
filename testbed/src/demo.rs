//! The demo (`certherd-bed demo`, `scripts/demo.sh`): a 3-node bed with a pebble CA,
//! `site.test` pointed at nodes 2 and 3 only, a certificate issued with certbot on node 1
//! through certherd's hooks, deployed to every node, renewed through the deploy hook, and the
//! time each phase took. A library function so that a test can run the very same demo from a
//! checkout somewhere else (tests/checkout_anywhere.rs).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{Bed, BedOptions};

const DOMAIN: &str = "site.test";

/// What the demo runs.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Number of nodes (at least 3).
    pub nodes: usize,
    /// The certherd binary (the bed runs a copy when the agent's account cannot reach it).
    pub certherd: PathBuf,
    /// Keep the bed running after the demo, until Enter or ctrl-c.
    pub keep: bool,
    /// Phases timed before the demo started (scripts/demo.sh: packages, build), shown first.
    pub phases_before: Vec<(String, Duration)>,
}

/// The wall time of each phase, in order.
#[derive(Default)]
struct Phases(Vec<(String, Duration)>);

impl Phases {
    /// Runs `f` as the phase `name`, timed.
    fn time<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.0.push((name.to_owned(), t.elapsed()));
        out
    }

    fn print(&self) {
        println!("== time per phase");
        for (name, d) in &self.0 {
            println!("   {name:<10} {:>8.1} s", d.as_secs_f64());
        }
        let total: Duration = self.0.iter().map(|(_, d)| *d).sum();
        println!("   {:<10} {:>8.1} s", "total", total.as_secs_f64());
    }
}

/// Runs the demo; `Ok(true)` when every step did what it should.
pub fn run(opts: DemoOptions) -> Result<bool, String> {
    let DemoOptions {
        nodes,
        certherd,
        keep,
        phases_before,
    } = opts;
    if nodes < 3 {
        return Err("--nodes must be at least 3".into());
    }
    if !certherd.is_file() {
        return Err(format!(
            "certherd binary not found at {} (build it: cargo build -p certherd)",
            certherd.display()
        ));
    }
    let mut phases = Phases(phases_before);
    println!("== starting a {nodes}-node bed with a pebble CA");
    let bed = phases.time("cluster", || {
        Bed::start(BedOptions {
            nodes,
            ca: true,
            certherd: certherd.clone(),
            ..Default::default()
        })
    })?;
    println!("   bed {} at {}", bed.index(), bed.root().display());
    if bed.certherd_bin() != certherd {
        println!(
            "   {} is out of reach of the agent's account (a directory above it is closed): the bed runs its copy {}",
            certherd.display(),
            bed.certherd_bin().display()
        );
    }
    for i in 1..=nodes {
        println!("   node{i}: {}  (sshd :22, nginx :80)", bed.ip(i));
    }
    println!("   CA:    {}", bed.pebble_url());

    let dns_nodes: Vec<usize> = (2..=nodes).collect();
    bed.dns(DOMAIN, &dns_nodes)?;
    let dns_ips: Vec<String> = dns_nodes.iter().map(|&i| bed.ip(i).to_string()).collect();
    println!(
        "== DNS: {DOMAIN} -> {} (node 1, where certbot runs, is NOT in DNS)",
        dns_ips.join(", ")
    );

    let auth = bed.hook_command("auth");
    let cleanup = bed.hook_command("cleanup");
    println!("== certbot certonly on node1 with hooks:\n   auth:    {auth}\n   cleanup: {cleanup}");
    let mut args = bed.certonly_args(None);
    args.extend(["-d".into(), DOMAIN.into()]);
    let out = phases.time("issuance", || {
        bed.certbot(&args.iter().map(String::as_str).collect::<Vec<_>>())
    });
    let certbot_ok = out.status.success();
    println!("   certbot exited with {}", out.status);
    if !certbot_ok {
        println!("   --- certbot stdout ---");
        print_tail(&String::from_utf8_lossy(&out.stdout), 30);
        println!("   --- certbot stderr ---");
        print_tail(&String::from_utf8_lossy(&out.stderr), 40);
    }
    print_challenge_hits(&bed, nodes, &dns_nodes);

    let live = bed.letsencrypt_dir(1).join("live").join(DOMAIN);
    let files = ["cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"];
    let have: Vec<bool> = files.iter().map(|f| live.join(f).exists()).collect();
    let cert_ok = have.iter().all(|&b| b);
    println!("== certificate in {}", live.display());
    for (f, h) in files.iter().zip(&have) {
        println!("   {:<14} {}", f, if *h { "present" } else { "MISSING" });
    }

    let ok = certbot_ok && cert_ok && deploy_renew_status(&bed, &mut phases)?;
    phases.print();
    println!("== {}", if ok { "demo OK" } else { "demo FAILED" });

    if keep {
        println!();
        println!("Bed kept running at {}", bed.root().display());
        println!(
            "  ssh to node 2's agent: ssh {} {}",
            bed.ssh_args().join(" "),
            bed.ip(2)
        );
        println!(
            "  node configs:          {}/node<i>/certherd.toml",
            bed.root().display()
        );
        println!(
            "  certbot env:           REQUESTS_CA_BUNDLE={}",
            bed.ca_bundle().display()
        );
        println!("Press Enter (or ctrl-c) to stop it.");
        wait_enter_or_signal();
        println!("stopping the bed...");
    }
    drop(bed);
    Ok(ok)
}

/// Which nodes answered the CA's requests for the token (their nginx access logs).
fn print_challenge_hits(bed: &Bed, nodes: usize, dns_nodes: &[usize]) {
    println!("== who served /.well-known/acme-challenge/ (nginx access logs)");
    println!(
        "   {:<6} {:<14} {:>8}  by user agent",
        "node", "ip", "requests"
    );
    for i in 1..=nodes {
        let (total, by_ua) = challenge_hits(&bed.access_log(i));
        let uas: Vec<String> = by_ua.iter().map(|(ua, n)| format!("{n}× {ua}")).collect();
        let role = if i == 1 {
            " (certbot)"
        } else if dns_nodes.contains(&i) {
            " (in DNS)"
        } else {
            ""
        };
        println!(
            "   node{:<2} {:<14} {:>8}  {}{}",
            i,
            bed.ip(i).to_string(),
            total,
            if uas.is_empty() {
                "-".to_string()
            } else {
                uas.join(", ")
            },
            role
        );
    }
}

/// Flow 2 and 3 on the same bed: every node gets a TLS server for site.test, `certherd deploy`
/// brings the certificate to the peers, a forced renewal reaches every node through the deploy
/// hook, and `certherd status` shows what each node serves.
fn deploy_renew_status(bed: &Bed, phases: &mut Phases) -> Result<bool, String> {
    bed.enable_tls(DOMAIN)?;
    let certherd = bed.certherd_bin();
    let certherd_cmd = |args: &[&str]| {
        let mut cmd = std::process::Command::new(certherd);
        cmd.arg("--config").arg(bed.config_path(1)).args(args);
        cmd
    };
    println!(
        "== certherd deploy --lineage {DOMAIN} (every node gets a TLS server using live/{DOMAIN})"
    );
    let out = phases
        .time("deploy", || {
            certherd_cmd(&["deploy", "--lineage", DOMAIN]).output()
        })
        .map_err(|e| e.to_string())?;
    print_tail(&String::from_utf8_lossy(&out.stdout), 20);
    print_tail(&String::from_utf8_lossy(&out.stderr), 20);
    let deployed = out.status.success();

    let deploy_hook = format!(
        "{} --config {} deploy",
        certherd.display(),
        bed.config_path(1).display()
    );
    println!("== certbot renew --force-renewal --deploy-hook '{deploy_hook}'");
    let out = phases.time("renewal", || {
        bed.certbot(&[
            "renew",
            "--force-renewal",
            "--no-random-sleep-on-renew",
            "--deploy-hook",
            &deploy_hook,
        ])
    });
    println!("   certbot exited with {}", out.status);
    let renewed = out.status.success();

    println!("== certherd status");
    let out = certherd_cmd(&["status"])
        .output()
        .map_err(|e| e.to_string())?;
    print_tail(&String::from_utf8_lossy(&out.stdout), 20);
    Ok(deployed && renewed && out.status.success())
}

/// (total, [(user agent, count)]) of requests for challenge paths in an nginx combined log.
fn challenge_hits(log: &Path) -> (usize, Vec<(String, usize)>) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut by: Vec<(String, usize)> = Vec::new();
    let mut total = 0;
    for line in text
        .lines()
        .filter(|l| l.contains("/.well-known/acme-challenge/"))
    {
        total += 1;
        // combined: ... "request" status bytes "referer" "user agent"
        let ua = line
            .rsplit('"')
            .nth(1)
            .map(|s| s.split('/').next().unwrap_or(s).trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "?".into());
        match by.iter_mut().find(|(u, _)| *u == ua) {
            Some((_, n)) => *n += 1,
            None => by.push((ua, 1)),
        }
    }
    (total, by)
}

fn print_tail(text: &str, n: usize) {
    let lines: Vec<&str> = text.lines().collect();
    for l in &lines[lines.len().saturating_sub(n)..] {
        println!("   | {l}");
    }
}

static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: nix::libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

/// Blocks until a line (or EOF) on stdin, SIGINT or SIGTERM. The bed's daemons share our process
/// group, so a terminal ctrl-c reaches them too; `Drop` then just reaps them and cleans up.
fn wait_enter_or_signal() {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let act = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        let _ = sigaction(Signal::SIGINT, &act);
        let _ = sigaction(Signal::SIGTERM, &act);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = tx.send(());
    });
    loop {
        if SIGNALLED.load(Ordering::SeqCst) {
            return;
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}
