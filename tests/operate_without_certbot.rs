//! Flow 3 without a real certbot: `renew`'s rules (primary only, never twice at once, following
//! the VIP) with a stand-in certbot, and `doctor`'s diagnoses. Apart from tests/operate.rs, whose
//! tests run certbot and so run a second time with certbot 5 (scripts/test.sh's certbot5 pass):
//! these would only repeat themselves there.
//!
//! Proves Guarantees 8 and 9 of docs/GUARANTEES.md (the list there names each test; each test
//! below names its own).

mod common;
use common::fault::{self, Fault};
use common::*;

fn fake_certbot(bed: &Bed) -> (std::path::PathBuf, std::path::PathBuf) {
    // certherd runs certbot as the letsencrypt dir's owner (the agent's account): its log
    // goes where that account may write.
    let dir = bed.root().join("fake-certbot");
    std::fs::create_dir(&dir).unwrap();
    bed.chown_to_agent(&dir).unwrap();
    let log = dir.join("fake-certbot.log");
    let script = bed.root().join("fake-certbot.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"start $$ $*\" >> {log}\nsleep 1\necho \"end $$\" >> {log}\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (script, log)
}

/// Guarantee 8. renew runs certbot only on the primary, never twice at once, and follows the VIP.
#[test]
fn renew_runs_only_where_primary_and_never_twice_at_once() {
    let bed = bed(2, false);
    let (script, log) = fake_certbot(&bed);
    for n in 1..=2 {
        bed.config(n)
            .remove("peers")
            .unwrap()
            .set("renew.primary", "node1")
            .unwrap()
            .set("renew.certbot", vec![script.to_str().unwrap()])
            .unwrap();
    }
    bed.node(2)
        .certherd(["renew"])
        .stderr_has(["not the primary"])
        .run();
    assert!(!log.exists(), "node 2 ran certbot");

    // Two at once: both exit 0, certbot runs once, the other says why it did nothing.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| bed.node(1).certherd(["renew"]).run());
        let b = s.spawn(|| bed.node(1).certherd(["renew"]).run());
        (a.join().unwrap(), b.join().unwrap())
    });
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        lines.matches("start").count(),
        1,
        "certbot ran twice: {lines}"
    );
    assert!(
        lines.contains("renew --no-random-sleep-on-renew"),
        "{lines}"
    );
    assert!(
        format!("{}{}", a.stderr(), b.stderr()).contains("another certherd renew is running"),
        "{a}\n{b}"
    );

    // VIP: whoever holds the address renews.
    let vip = format!("127.0.{}.200", bed.index());
    std::fs::remove_file(&log).unwrap();
    bed.config(1)
        .remove("renew.primary")
        .unwrap()
        .set("renew.vip", vip.as_str())
        .unwrap();
    bed.node(1)
        .certherd(["renew"])
        .stderr_has(["not on a local interface"])
        .run();
    assert!(!log.exists());
    let _vip = fault::on(&bed, Fault::LoopbackAddress(vip));
    bed.node(1).certherd(["renew"]).run();
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap()
            .matches("start")
            .count(),
        1
    );
}

/// Guarantee 9. doctor names the node and the cause for a node without the acme location (404) and one
/// whose port 80 is closed.
#[test]
fn doctor_explains_404_and_closed_port() {
    let bed = bed(3, false);
    std::fs::write(
        bed.node_dir(2).join("nginx/acme.conf"),
        "location / { return 404; }\n",
    )
    .unwrap();
    reload_nginx(&bed, 2);
    bed.stop_nginx(3);

    let ran = bed
        .node(1)
        .certherd(["doctor", "-d", "site.test"])
        .expect_status(1)
        .stdout_has([
            "ok    node1: serves tokens for site.test",
            "ok    node2: ssh and agent",
        ])
        .run();
    let report = ran.stdout();
    let line = |node: &str| {
        report
            .lines()
            .skip_while(|l| !l.contains(&format!("FAIL  {node}: token")))
            .take(2)
            .collect::<Vec<_>>()
            .join("\n")
    };
    ran.ensure(
        line("node2").contains("404") && line("node2").contains("acme location"),
        "node2's line names the 404 and the acme location",
    );
    ran.ensure(
        line("node3").contains("port closed"),
        "node3's line says port closed",
    );
    assert!(
        token_files(&bed).is_empty(),
        "doctor left tokens: {:?}",
        token_files(&bed)
    );
}
