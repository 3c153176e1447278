//! The bed runs every peer's agent the way the README's checklist sets up production: its own
//! non-root account, whose sudo rights are exactly the two command lines of
//! `contrib/sudoers/certherd` (nginx's config test and reload), and which can edit neither its
//! config nor the root-owned authorized_keys that pins the primary's key to the agent.
//!
//! Proves Guarantee 7 of docs/GUARANTEES.md (the list there names each test).

mod common;
use common::*;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

/// `cmd…` as the bed's agent account on node 2 (no password, no tty: `sudo -n` never prompts).
fn as_agent<'a>(bed: &'a Bed, cmd: &[&str]) -> Exec<'a> {
    let mut runuser = Command::new("/usr/sbin/runuser");
    runuser
        .args(["-u", bed.agent_user(), "--"])
        .args(cmd)
        .current_dir("/");
    bed.node(2).command(runuser)
}

#[test]
fn agent_account_may_run_exactly_the_documented_sudo_lines() {
    let bed = bed(2, false);
    let conf = bed.nginx_conf(2).to_string_lossy().into_owned();
    let uid = bed.agent_uid_gid().0;

    // The agent's own session: a token written through sshd's forced command is the account's.
    bed.node(1)
        .auth("site.test", "tok1", "tok1.thumbprint")
        .run();
    let token = bed.webroot(2).join(".well-known/acme-challenge/tok1");
    assert_eq!(
        std::fs::metadata(&token).unwrap().uid(),
        uid,
        "written by the account"
    );

    // Allowed: exactly the README's [reload] commands.
    for line in bed.reload_section(2).unwrap().lines().skip(1) {
        let argv: Vec<String> = line
            .split_once('=')
            .map(|(_, v)| v.trim())
            .and_then(|v| v.strip_prefix('[')?.strip_suffix(']').map(str::to_owned))
            .unwrap()
            .split(", ")
            .map(|a| a.trim_matches('"').to_owned())
            .collect();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        as_agent(&bed, &argv).run();
    }
    // Refused: anything else, including the same program with other arguments.
    for argv in [
        vec!["sudo", "-n", "/bin/sh", "-c", "id"],
        vec!["sudo", "-n", "/usr/sbin/nginx", "-t", "-c", &conf],
        vec!["sudo", "-n", "/usr/sbin/nginx", "-s", "stop", "-c", &conf],
        vec![
            "sudo",
            "-n",
            "/usr/sbin/nginx",
            "-t",
            "-q",
            "-c",
            &conf,
            "-g",
            "user root;",
        ],
        vec!["sudo", "-n", "-u", "root", "/usr/bin/id"],
    ] {
        let ran = as_agent(&bed, &argv).any_status().run();
        ran.ensure(
            !ran.output.status.success(),
            format!("{argv:?} was allowed"),
        );
        ran.ensure(
            ran.stderr().contains("password is required") || ran.stderr().contains("not allowed"),
            format!("{argv:?}: sudo refused it"),
        );
    }
    // Its config and the authorized_keys line are root's, not the account's to change.
    for path in [
        bed.config_path(2),
        bed.node_dir(2).join("sshd/authorized_keys"),
    ] {
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(
            (meta.uid(), meta.mode() & 0o022),
            (0, 0),
            "{}",
            path.display()
        );
        let ran = as_agent(
            &bed,
            &["sh", "-c", &format!("echo x >> '{}'", path.display())],
        )
        .any_status()
        .run();
        ran.ensure(
            !ran.output.status.success(),
            format!("{} writable by the agent", path.display()),
        );
    }
}
