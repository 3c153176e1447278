//! Root never runs certbot over files the agent's account can write.
//!
//! The agent's account owns the letsencrypt dir on every node (it installs there as a peer), so
//! a compromised agent could plant a `renewal-hooks/deploy/` script or a `renew_hook` in
//! `renewal/<lineage>.conf`. If root ran the next `certbot renew` there, those would run as root.
//! Here the account plants both (each writes `id -u` to a file), root runs `certherd renew` as the
//! timer does, and the files must say the account's uid, never 0: certherd became the letsencrypt
//! dir's owner before it started certbot. Issuance (`certherd issue` started as root) goes the
//! same way, so everything certbot wrote is the account's.
//!
//! Proves Guarantee 11 of docs/GUARANTEES.md (an agent bug never becomes root), and Guarantee 8's
//! premise: certbot's files on a primary stay writable by the agent's account.

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

/// Node 1's `[renew]`: the primary, with the bed's certbot directories.
fn renew_section(bed: &Bed) -> String {
    format!(
        "[renew]\nprimary = \"node1\"\ncertbot = {:?}\n",
        bed.renew_certbot_argv(1)
    )
}

/// Runs a shell script as the agent's account (what a compromised agent could do), must succeed.
fn as_agent(bed: &Bed, script: &str) {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]);
    bed.as_agent(&mut cmd);
    bed.node(1).command(cmd).expect_status(0).run();
}

fn uid_in(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| {
            panic!(
                "{} was not written (the hook did not run): {e}",
                path.display()
            )
        })
        .trim()
        .to_owned()
}

#[test]
fn planted_certbot_hooks_run_as_the_agent_never_as_root() {
    // One node: no SSH in the way, so without the drop the whole flow would work as root (and
    // the hooks below would say 0).
    let bed = bed(1, true);
    let (agent_uid, _) = bed.agent_uid_gid();
    bed.dns("site.test", &[1]).unwrap();
    bed.write_config(1, &[], &renew_section(&bed)).unwrap();
    let le = bed.letsencrypt_dir(1);

    // Issued by root through `certherd issue`.
    let issued = bed
        .node(1)
        .certherd_issue(&["site.test"])
        .expect_status(0)
        .run();

    // The compromised agent plants a directory hook and a renew_hook, each writing `id -u`.
    let proof = bed.root().join("proof");
    std::fs::create_dir(&proof).unwrap();
    bed.chown_to_agent(&proof).unwrap();
    let dir_hook = proof.join("dir-hook");
    let renew_hook = proof.join("renew-hook");
    let hooks = le.join("renewal-hooks/deploy");
    as_agent(
        &bed,
        &format!(
            "mkdir -p {h} && printf '#!/bin/sh\\nid -u > {o}\\n' > {h}/x.sh && chmod 0755 {h}/x.sh",
            h = hooks.display(),
            o = dir_hook.display()
        ),
    );
    let conf = le.join("renewal/site.test.conf");
    as_agent(
        &bed,
        &format!(
            "sed -i '/^renew_hook/d' {c} && sed -i 's|^\\[renewalparams\\]|[renewalparams]\\nrenew_hook = id -u > {o}|' {c}",
            c = conf.display(),
            o = renew_hook.display()
        ),
    );
    let text_conf = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text_conf.contains(&format!("renew_hook = id -u > {}", renew_hook.display())),
        "{text_conf}"
    );

    // Root runs the timer's command, a forced renewal.
    let renewed = bed
        .node(1)
        .certherd(["renew", "--", "--force-renewal"])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .expect_status(0)
        .run();
    for hook in [&dir_hook, &renew_hook] {
        renewed.ensure(
            uid_in(hook) == agent_uid.to_string(),
            format!(
                "{} ran as uid {} (0 is root: an agent bug became root)",
                hook.display(),
                uid_in(hook)
            ),
        );
    }
    // certbot ran as the account both times, so its tree is the account's (a root-owned file
    // there would mean root ran certbot over the tree), and one line said so.
    issued.ensure(
        issued
            .stderr()
            .contains(&format!("running as {}", bed.agent_user())),
        "one line says certherd left root",
    );
    for rel in [
        "renewal/site.test.conf",
        "archive/site.test",
        "live/site.test",
        "accounts",
    ] {
        let uid = std::fs::symlink_metadata(le.join(rel)).unwrap().uid();
        assert_eq!(uid, agent_uid, "{rel} belongs to the account");
    }
    assert_eq!(
        live_links(&bed, 1, "site.test")[0],
        "../../archive/site.test/cert2.pem",
        "the renewal happened"
    );
    assert_eq!(
        std::fs::metadata(le.join("archive/site.test/cert2.pem"))
            .unwrap()
            .uid(),
        agent_uid,
        "certbot wrote the renewal as the account"
    );
}

/// A letsencrypt dir that root owns (one node, nothing an agent writes): certherd stays root, as
/// before, and `doctor` warns that certbot runs as root there.
#[test]
fn root_owned_letsencrypt_dir_stays_root_and_doctor_warns() {
    let bed = bed(1, false);
    std::os::unix::fs::chown(bed.letsencrypt_dir(1), Some(0), Some(0)).unwrap();
    let ran = bed.node(1).certherd(["doctor"]).any_status().run();
    let all = ran.both();
    ran.ensure(
        all.contains("WARN") && all.contains("belongs to root, so certbot runs as root here"),
        "doctor warns that certbot runs as root here",
    );
    ran.ensure(!all.contains("running as"), "no drop for a root-owned dir");
}

/// Guarantee 11. The top level of the letsencrypt dir root's again (a config-management run or
/// a restore chowned it back), `renewal-hooks/deploy/` still the account's, holding a script the
/// account planted that records `id -u`: root's `certherd renew` looks at the whole tree, not
/// only its top, so it becomes the account (naming the hook directory as what it owns) and the
/// hook never records 0. As the account it cannot take its lock in root's top level, so the
/// renewal stops there, exit 1 naming the lock (before, root renewed and the hook recorded 0).
#[test]
fn an_account_owned_hook_dir_under_a_root_owned_top_never_runs_as_root() {
    let bed = bed(1, true);
    let (agent_uid, _) = bed.agent_uid_gid();
    bed.dns("site.test", &[1]).unwrap();
    bed.write_config(1, &[], &renew_section(&bed)).unwrap();
    let le = bed.letsencrypt_dir(1);
    bed.node(1)
        .certherd(["issue", "-d", "site.test", "--"])
        .args(bed.certbot_common_args())
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .expect_status(0)
        .run();

    let proof = bed.root().join("proof");
    std::fs::create_dir(&proof).unwrap();
    bed.chown_to_agent(&proof).unwrap();
    let record = proof.join("deploy-hook");
    let hooks = le.join("renewal-hooks/deploy");
    as_agent(
        &bed,
        &format!(
            "mkdir -p {h} && printf '#!/bin/sh\\nid -u >> {o}\\n' > {h}/x.sh && chmod 0755 {h}/x.sh",
            h = hooks.display(),
            o = record.display()
        ),
    );
    std::os::unix::fs::chown(&le, Some(0), Some(0)).unwrap();
    assert_eq!(std::fs::metadata(&hooks).unwrap().uid(), agent_uid);

    // Its exit status is checked below, after what matters most: the hook never ran as root.
    let ran = bed
        .node(1)
        .certherd(["renew", "--", "--force-renewal"])
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .any_status()
        .run();
    let recorded = std::fs::read_to_string(&record).unwrap_or_default();
    ran.ensure(
        !recorded.lines().any(|l| l.trim() == "0"),
        format!("the account's hook ran as root:\n{recorded}"),
    );
    let said = ran.stderr();
    ran.ensure(
        said.contains(&format!(
            "running as {} (uid {agent_uid}, gid {}), the owner of {}",
            bed.agent_user(),
            bed.agent_uid_gid().1,
            le.join("renewal").display()
        )) || said.contains(&format!("the owner of {}", hooks.display())),
        "one line says it runs as the account, the owner of the renewal or hook dir",
    );
    ran.ensure(ran.code() == Some(1), "exit status 1");
    ran.ensure(
        said.contains("Permission denied"),
        "stderr says Permission denied",
    );
    assert!(recorded.is_empty(), "the hook ran: {recorded}");
}
