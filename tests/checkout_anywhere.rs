//! A checkout anywhere, root's 0700 home included (issue 24): the README's demo runs from a
//! clone under a directory only root can enter, and `certherd issue` run from such a place
//! refuses up front, naming the binary and the account, before it sends anything anywhere.
//!
//! Before the fix the demo failed there with certbot's "Unable to find manual-auth-hook command
//! /root/certherd/target/release/certherd in the PATH" (certbot runs the hooks as the agent's
//! account) and every agent with "Permission denied".
//!
//! Proves no numbered guarantee of docs/GUARANTEES.md (listed there under "Not a guarantee, but
//! tested").

mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use certherd_testbed::demo::{self, DemoOptions};

/// A clone of this repository at `<parent>/certherd`, `<parent>` mode 0700 (as `/root` is), with
/// the certherd binary built into its `target/release/` as `scripts/demo.sh` builds it there.
/// Removed on drop.
struct PrivateCheckout {
    parent: PathBuf,
    bin: PathBuf,
}

impl PrivateCheckout {
    fn new(tag: &str) -> PrivateCheckout {
        let parent =
            std::env::temp_dir().join(format!("certherd-private-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        std::fs::create_dir(&parent).unwrap();
        std::fs::set_permissions(&parent, std::fs::Permissions::from_mode(0o700)).unwrap();
        let checkout = parent.join("certherd");
        let mut clone = Command::new("git");
        clone
            .args(["clone", "--quiet", "--no-hardlinks"])
            .arg(env!("CARGO_MANIFEST_DIR"))
            .arg(&checkout);
        exec(clone).run();
        let bin = checkout.join("target/release/certherd");
        std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
        std::fs::copy(certherd_bin(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        PrivateCheckout { parent, bin }
    }
}

impl Drop for PrivateCheckout {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.parent);
    }
}

/// Whether a process of `account` may execute `path` (`test -x` as that account).
fn account_can_run(account: &str, path: &Path) -> bool {
    Command::new("/usr/sbin/runuser")
        .args(["-u", account, "--", "test", "-x"])
        .arg(path)
        .status()
        .expect("run runuser")
        .success()
}

#[test]
fn the_demo_runs_from_a_checkout_under_a_0700_directory() {
    let checkout = PrivateCheckout::new("demo");
    let ok = demo::run(DemoOptions {
        nodes: 3,
        certherd: checkout.bin.clone(),
        keep: false,
        phases_before: vec![],
    })
    .unwrap_or_else(|e| {
        panic!(
            "the demo could not run from {}: {e}",
            checkout.bin.display()
        )
    });
    assert!(
        ok,
        "the demo failed from {} (its output is above)",
        checkout.bin.display()
    );
}

#[test]
fn issue_from_a_binary_the_account_cannot_reach_refuses_up_front() {
    let checkout = PrivateCheckout::new("issue");
    let bed = bed(2, false);
    let account = bed.agent_user().to_owned();
    // The premise: the account cannot run the private binary, and can run the bed's.
    assert!(!account_can_run(&account, &checkout.bin));
    assert!(account_can_run(&account, bed.certherd_bin()));

    // Run as root, as an operator would: certherd becomes the letsencrypt dir's owner, then
    // finds that certbot (as that account) could never run its hooks.
    let mut issue = Command::new(&checkout.bin);
    issue
        .arg("--config")
        .arg(bed.config_path(1))
        .args(["issue", "-d", "site.test"]);
    let ran = bed.node(1).command(issue).expect_status(2).run();
    let all = ran.stderr();
    let errors: Vec<&str> = all.lines().filter(|l| l.contains("error:")).collect();
    ran.ensure(errors.len() == 1, "one error line on stderr");
    let err = errors[0];
    for part in [
        &format!("{account} (uid "),
        &format!("cannot run {}", checkout.bin.display()),
        "install the package",
    ] {
        ran.ensure(
            err.contains(part),
            format!("{part:?} in the error line {err:?}"),
        );
    }
    // Nothing was sent: the pre-flight's self-check never asked node 2 for a token.
    let log = std::fs::read_to_string(bed.access_log(2)).unwrap_or_default();
    assert!(
        !log.contains("/.well-known/acme-challenge/"),
        "node 2 was asked for a token:\n{log}"
    );
    // And certbot never ran: no renewal config, no live dir.
    assert!(!bed.letsencrypt_dir(1).join("live/site.test").exists());
}
