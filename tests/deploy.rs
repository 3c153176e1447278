//! Flow 2 end to end: certbot's deploy hook brings each new certificate to every node.
//!
//! Proves Guarantees 2, 3 and 4 of docs/GUARANTEES.md (the list there names each test). The kill
//! tests of Guarantee 6 are in tests/crash.rs (named crash points, not delays).

mod common;
use common::influx::{Influx, Webhook};
use common::*;
use std::os::unix::fs::PermissionsExt;

/// certbot's forced renewal on the primary (its deploy hook deploys), asserted to succeed.
fn renew(bed: &Bed) -> Ran {
    bed.node(1)
        .certbot(["renew", "--force-renewal", "--no-random-sleep-on-renew"])
        .run()
}

fn mode(path: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// A renewal reaches every node: each serves the new serial (checked with openssl s_client,
/// independently of certherd) and each peer's layout matches the primary's.
#[test]
fn renewal_reaches_every_node_with_certbots_layout() {
    let bed = issued_bed();
    let first = current_serial(&bed, "site.test");
    for n in 1..=3 {
        assert_eq!(
            served_serial(&bed, n, "site.test"),
            first,
            "node {n} after issuance"
        );
    }

    renew(&bed);

    let second = current_serial(&bed, "site.test");
    assert_ne!(first, second, "renewal made a new certificate");
    for n in 1..=3 {
        assert_eq!(
            served_serial(&bed, n, "site.test"),
            second,
            "node {n} after renewal"
        );
        assert_eq!(
            live_links(&bed, n, "site.test"),
            live_links(&bed, 1, "site.test"),
            "node {n} links"
        );
    }
    assert_eq!(
        live_links(&bed, 2, "site.test")[0],
        "../../archive/site.test/cert2.pem"
    );
    for n in 2..=3 {
        let le = bed.letsencrypt_dir(n);
        assert_eq!(mode(&le.join("archive")), 0o700);
        assert_eq!(mode(&le.join("live")), 0o700);
        for v in 1..=2 {
            assert_eq!(
                mode(&le.join(format!("archive/site.test/privkey{v}.pem"))),
                0o600,
                "node {n} privkey{v}"
            );
            let want = std::fs::read(
                bed.letsencrypt_dir(1)
                    .join(format!("archive/site.test/fullchain{v}.pem")),
            )
            .unwrap();
            assert_eq!(
                std::fs::read(le.join(format!("archive/site.test/fullchain{v}.pem"))).unwrap(),
                want
            );
        }
    }

    // Re-running deploy is a no-op success.
    bed.node(1)
        .certherd(["deploy", "--lineage", "site.test"])
        .stdout_has(["unchanged"])
        .run();
}

/// Guarantee 2: a node whose config test fails keeps its previous certificate and links; the
/// others move on; deploy fails naming the node and the test's message; the alert reaches a real
/// InfluxDB and a webhook.
#[test]
fn broken_config_on_one_node_rolls_back_and_alerts() {
    let bed = issued_bed();
    let influx = Influx::start(
        &bed.root().join("influx"),
        &format!("127.0.{}.250", bed.index()),
        "certherd",
    );
    let hook = Webhook::start("127.0.0.1");
    let alert = format!(
        "[alert]\nwebhook = [\"{}\"]\ninflux = \"{}\"\n",
        hook.url,
        influx.write_url("certherd")
    );
    bed.write_config(1, &[PeerSpec::new(2), PeerSpec::new(3)], &alert)
        .unwrap();
    let old = current_serial(&bed, "site.test");
    let links_before = live_links(&bed, 3, "site.test");
    // Break node 3's nginx config (the running nginx keeps its old config).
    let acme = bed.node_dir(3).join("nginx/acme.conf");
    let good = std::fs::read_to_string(&acme).unwrap();
    std::fs::write(&acme, format!("{good}\nthis_is_not_a_directive on;\n")).unwrap();

    renew(&bed);
    bed.node(1)
        .certherd(["deploy", "--lineage", "site.test"])
        .expect_status(1)
        .stderr_has(["node3", "this_is_not_a_directive"])
        .run();

    let new = current_serial(&bed, "site.test");
    assert_eq!(served_serial(&bed, 1, "site.test"), new);
    assert_eq!(served_serial(&bed, 2, "site.test"), new);
    assert_eq!(
        served_serial(&bed, 3, "site.test"),
        old,
        "node 3 must keep serving its previous certificate"
    );
    assert_eq!(
        live_links(&bed, 3, "site.test"),
        links_before,
        "node 3's links restored exactly"
    );

    let bodies = hook.bodies();
    assert!(!bodies.is_empty(), "webhook received nothing");
    let alert: serde_json::Value = serde_json::from_str(bodies.last().unwrap()).unwrap();
    assert_eq!(alert["ok"], false);
    assert!(alert["text"].as_str().unwrap().contains("node3"), "{alert}");
    let rows = influx.query(
        "certherd",
        "SELECT ok, version FROM certherd_deploy WHERE node = 'node3'",
    );
    let values = &rows["results"][0]["series"][0]["values"];
    assert!(
        values
            .as_array()
            .is_some_and(|v| v.iter().any(|row| row[1] == false)),
        "influx rows: {rows}"
    );
    std::fs::write(&acme, good).unwrap();
}

/// Guarantee 3: a peer that is down does not stop the others; `sync` catches it up later, and a
/// second `sync` changes nothing.
#[test]
fn down_peer_is_caught_up_by_sync() {
    let bed = issued_bed();
    bed.stop_sshd(2);
    // The CA validates through node 3 only; node 2 is down for the whole renewal.
    bed.dns("site.test", &[3]).unwrap();
    renew(&bed);
    let new = current_serial(&bed, "site.test");
    assert_eq!(served_serial(&bed, 3, "site.test"), new);
    assert_ne!(served_serial(&bed, 2, "site.test"), new);
    bed.node(1)
        .certherd(["deploy", "--lineage", "site.test"])
        .expect_status(1)
        .stderr_has(["node2"])
        .run();

    bed.start_sshd(2).unwrap();
    let synced = bed.node(1).certherd(["sync"]).run();
    assert_eq!(served_serial(&bed, 2, "site.test"), new, "{synced}");
    assert_eq!(
        live_links(&bed, 2, "site.test"),
        live_links(&bed, 1, "site.test")
    );

    let before = snapshot(&bed);
    let again = bed.node(1).certherd(["sync"]).run();
    again.ensure(
        again.stdout().matches("unchanged").count() == 3,
        "3 nodes unchanged",
    );
    assert_eq!(snapshot(&bed), before, "a second sync changed files");
}

/// Guarantee 4: the private key never appears in any process's argv or environment during a
/// deploy, nor in certherd's output on the success path or on a failing node's error path. The
/// /proc watcher fails when it cannot read a process of the bed (only one that exited between
/// listing and reading is skipped) and must have seen an agent at work.
#[test]
fn private_key_never_in_argv_env_or_output() {
    let bed = issued_bed();
    renew(&bed);
    let key =
        std::fs::read_to_string(bed.letsencrypt_dir(1).join("live/site.test/privkey.pem")).unwrap();
    let needle: String = key.lines().nth(1).expect("PEM body line").to_owned();
    // Node 3's config test takes a second, so the watcher surely reads the agent at work.
    // (The README's test line, through sudo, after a one-second sleep.)
    set_test_line(
        &bed,
        3,
        &format!(
            "test = [\"sh\", \"-c\", \"sleep 1; exec sudo -n /usr/sbin/nginx -t -q -c {}\"]",
            bed.nginx_conf(3).display()
        ),
    );
    for failing in [false, true] {
        if failing {
            // Node 3's config test fails: its install is rolled back and the error travels back.
            set_test_line(&bed, 3, "test = [\"sh\", \"-c\", \"sleep 1; exit 1\"]");
        }
        // Make node 3 need the install again so the key travels during the watch.
        let _ = std::fs::remove_file(bed.letsencrypt_dir(3).join("live/site.test/cert.pem"));
        let ours = [
            bed.root().display().to_string(),
            bed.certherd_bin().display().to_string(),
        ];
        // The key in certherd's output fails the run, on the success and the error path.
        let sync = bed
            .node(1)
            .certherd(["-v", "sync"])
            .stdout_lacks([needle.as_str()])
            .stderr_lacks([needle.as_str()]);
        let sync = if failing {
            sync.expect_status(1).stderr_has(["node3"])
        } else {
            sync
        };
        let (_, watch) = watch_proc(&needle, &ours, || sync.run());
        assert!(watch.scans > 0);
        assert!(watch.saw_agent, "the watcher never saw an agent at work");
        assert!(
            watch.unreadable.is_empty(),
            "the watcher could not read {:?}",
            watch.unreadable
        );
        assert!(
            watch.seen.is_empty(),
            "private key visible in {:?}",
            watch.seen
        );
        if !failing {
            assert_eq!(
                served_serial(&bed, 3, "site.test"),
                current_serial(&bed, "site.test")
            );
        }
    }
}

/// What a /proc watch found.
struct Watch {
    scans: usize,
    seen: Vec<String>,
    unreadable: Vec<String>,
    saw_agent: bool,
}

/// Runs `f` while another thread reads every process's cmdline and environ in a loop, looking
/// for `needle`. A process of this bed (its cmdline names the bed's directory or the certherd
/// binary: certherd, ssh, sshd, the agent, the config test) must be readable: an error other than
/// "it just exited" is recorded as unreadable. Other processes (another test's, a sandbox's init)
/// are searched when readable.
fn watch_proc<T>(needle: &str, ours: &[String], f: impl FnOnce() -> T) -> (T, Watch) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (stop2, needle, ours) = (stop.clone(), needle.to_owned(), ours.to_vec());
    let me = std::process::id().to_string();
    let gone = |e: &std::io::Error| {
        e.kind() == std::io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ESRCH)
    };
    let watcher = std::thread::spawn(move || {
        let mut w = Watch {
            scans: 0,
            seen: Vec::new(),
            unreadable: Vec::new(),
            saw_agent: false,
        };
        while !stop2.load(Ordering::Relaxed) {
            w.scans += 1;
            for entry in std::fs::read_dir("/proc").unwrap().flatten() {
                let pid = entry.file_name().to_string_lossy().into_owned();
                if pid.parse::<u32>().is_err() || pid == me {
                    continue;
                }
                let cmdline = match std::fs::read(entry.path().join("cmdline")) {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(e) if gone(&e) => continue,
                    Err(e) => {
                        w.unreadable.push(format!("/proc/{pid}/cmdline: {e}"));
                        continue;
                    }
                };
                let is_ours = ours.iter().any(|o| cmdline.contains(o.as_str()));
                if cmdline.contains(&needle) {
                    w.seen.push(format!("/proc/{pid}/cmdline"));
                }
                if is_ours && cmdline.contains("agent\0--config") {
                    w.saw_agent = true;
                }
                match std::fs::read(entry.path().join("environ")) {
                    Ok(bytes) => {
                        if String::from_utf8_lossy(&bytes).contains(&needle) {
                            w.seen.push(format!("/proc/{pid}/environ"));
                        }
                    }
                    Err(e) if gone(&e) => {}
                    Err(e) if is_ours => w.unreadable.push(format!("/proc/{pid}/environ: {e}")),
                    Err(_) => {}
                }
            }
        }
        w
    });
    let result = f();
    stop.store(true, Ordering::Relaxed);
    (result, watcher.join().unwrap())
}

/// Replaces node `n`'s `[reload] test = [...]` line, asserting there was one.
fn set_test_line(bed: &Bed, n: usize, line: &str) {
    let path = bed.config_path(n);
    let text = std::fs::read_to_string(&path).unwrap();
    let old = text
        .lines()
        .find(|l| l.starts_with("test = ["))
        .unwrap_or_else(|| panic!("no `test = [` line in {}", path.display()))
        .to_owned();
    std::fs::write(&path, text.replacen(&old, line, 1)).unwrap();
}
