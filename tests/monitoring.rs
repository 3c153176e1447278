//! `certherd status` as monitoring runs it: as an unprivileged account (Telegraf's inputs.exec
//! runs as `telegraf`), through exactly the shipped sudo line, and never OK about what it could
//! not see — a missing letsencrypt dir, no lineage at all, files it may not read — always with
//! the node and the reason on stdout, in every format, without -v (issue 11, "Why": status as an
//! unprivileged user, a missing dir reported OK, UNKNOWN without a reason).
//!
//! Proves Guarantee 9 of docs/GUARANTEES.md.

mod common;
use common::*;

use std::path::Path;
use std::process::Command;

use common::status::State;

/// A monitoring account for one bed (`certherd-mon-bB`, like the bed's agent account) and its
/// sudoers file; both removed on drop.
struct Monitor {
    name: String,
    sudoers: std::path::PathBuf,
}

impl Monitor {
    fn create(bed: &Bed) -> Monitor {
        let name = format!("certherd-mon-b{}", bed.index());
        let _ = Command::new("/usr/sbin/userdel")
            .arg("-f")
            .arg(&name)
            .output();
        let mut useradd = Command::new("timeout");
        useradd
            .args(["30", "/usr/sbin/useradd", "--system", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", &name]);
        exec(useradd).run();
        Monitor {
            sudoers: format!("/etc/sudoers.d/certherd-mon-b{}", bed.index()).into(),
            name,
        }
    }

    /// contrib/sudoers/certherd-status with only the account, the binary's path and the config
    /// (`--config`, the bed has no /etc/certherd) substituted; checked by visudo.
    fn allow_status(&self, bed: &Bed) {
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/sudoers/certherd-status"),
        )
        .unwrap();
        let line = shipped
            .lines()
            .find(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .unwrap();
        assert!(
            line.starts_with("telegraf ")
                && line.ends_with("/usr/local/bin/certherd status --format influx"),
            "{line}"
        );
        let line = line
            .replacen("telegraf ", &format!("{} ", self.name), 1)
            .replace(
                "/usr/local/bin/certherd status",
                &format!(
                    "{} --config {} status",
                    bed.certherd_bin().display(),
                    bed.config_path(1).display()
                ),
            );
        let tmp = self.sudoers.with_extension("tmp");
        std::fs::write(&tmp, format!("{line}\n")).unwrap();
        let mut visudo = Command::new("/usr/sbin/visudo");
        visudo.arg("-cqf").arg(&tmp);
        let check = exec(visudo).any_status().run();
        check.ensure(check.code() == Some(0), format!("visudo refused {line}"));
        std::os::unix::fs::chown(&tmp, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o440))
            .unwrap();
        std::fs::rename(&tmp, &self.sudoers).unwrap();
    }

    /// `argv` as the monitoring account (bounded), on node 1 of `bed`.
    fn run<'a>(&self, bed: &'a Bed, argv: &[&str]) -> Exec<'a> {
        let mut cmd = Command::new("timeout");
        cmd.args(["120", "/usr/sbin/runuser", "-u", &self.name, "--"])
            .args(argv)
            .current_dir("/");
        bed.node(1).command(cmd)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sudoers);
        let _ = Command::new("/usr/sbin/userdel")
            .arg("-f")
            .arg(&self.name)
            .output();
    }
}

/// `certherd status --format FORMAT` on node 1.
fn status<'a>(bed: &'a Bed, format: &str) -> Exec<'a> {
    bed.node(1).certherd(["status", "--format", format])
}

/// Every format says UNKNOWN (exit 3) with `reason_part` for node 1, on stdout.
fn assert_unknown_everywhere(bed: &Bed, reason_part: &str) {
    let ran = status(bed, "table").expect_status(3).run();
    let table = ran.stdout();
    ran.ensure(
        table
            .lines()
            .any(|l| l.starts_with("UNKNOWN node1: ") && l.contains(reason_part)),
        format!("an UNKNOWN node1 line with {reason_part:?}"),
    );
    ran.ensure(
        table.ends_with("certherd status UNKNOWN\n"),
        "the table ends with certherd status UNKNOWN",
    );

    let ran = status(bed, "json").expect_status(3).run();
    let report: StatusReport = ran.json();
    ran.ensure(report.state == State::Unknown, "state unknown");
    let node1 = report
        .unknown
        .iter()
        .find(|u| u.node == "node1")
        .unwrap_or_else(|| ran.fail("no unknown entry for node1"));
    ran.ensure(
        node1.reason.contains(reason_part),
        format!("node1's reason has {reason_part:?}"),
    );

    let ran = status(bed, "influx").expect_status(3).run();
    ran.ensure(
        ran.stdout()
            .lines()
            .any(|l| l.starts_with("certherd_unknown,node=node1,") && l.contains(reason_part)),
        format!("a certherd_unknown line for node1 with {reason_part:?}"),
    );

    let ran = status(bed, "prometheus").expect_status(3).run();
    ran.ensure(
        ran.stdout().lines().any(|l| {
            l.starts_with("certherd_node_unknown{node=\"node1\",")
                && l.contains(reason_part)
                && l.ends_with(" 1")
        }),
        format!("a certherd_node_unknown sample for node1 with {reason_part:?}"),
    );
}

/// A `letsencrypt_dir` that does not exist was `certherd status OK`, exit 0: now UNKNOWN (3)
/// naming node 1 and the directory, in every format.
#[test]
fn missing_letsencrypt_dir_is_unknown_with_the_reason() {
    let bed = bed(2, false);
    let dir = bed.letsencrypt_dir(1);
    let missing = dir.with_file_name("no-such-letsencrypt");
    edit_config(
        &bed,
        1,
        &format!("letsencrypt_dir = \"{}\"", dir.display()),
        &format!("letsencrypt_dir = \"{}\"", missing.display()),
    );
    assert_unknown_everywhere(&bed, &format!("{} does not exist", missing.display()));
}

/// An existing letsencrypt dir with no lineage in it is nothing to monitor: UNKNOWN (3) with
/// the reason, not an empty OK.
#[test]
fn zero_lineages_is_unknown_with_the_reason() {
    let bed = bed(2, false);
    std::fs::create_dir_all(bed.letsencrypt_dir(1).join("live")).unwrap();
    assert_unknown_everywhere(&bed, "no certificate lineage under");
}

/// As an unprivileged account, `status` cannot read certbot's 0700 live/ nor the SSH identity:
/// UNKNOWN (3) for every node, each with its reason, in JSON and in the table. Through exactly
/// the shipped sudo line (contrib/sudoers/certherd-status, as contrib/telegraf runs it) the same
/// account gets the same figures as root, and nothing else is allowed by that line.
#[test]
fn unprivileged_status_is_unknown_with_reasons_and_works_through_the_sudo_line() {
    let bed = issued_bed();
    let mon = Monitor::create(&bed);
    let bin = bed.certherd_bin().to_str().unwrap().to_owned();
    let config = bed.config_path(1).to_str().unwrap().to_owned();

    let root = status(&bed, "influx").any_status().run();
    let root_code = root.code();
    root.ensure(root_code != Some(3), "root's status is not UNKNOWN");
    let root_rows = root
        .stdout()
        .lines()
        .filter(|l| l.starts_with("certherd_status,"))
        .count();
    root.ensure(root_rows == 3, "3 certherd_status rows for root");

    // Directly, without sudo: UNKNOWN, and it says which node and why.
    let ran = mon
        .run(
            &bed,
            &[&bin, "--config", &config, "status", "--format", "json"],
        )
        .expect_status(3)
        .run();
    let report: StatusReport = ran.json();
    let reason = |node: &str| {
        report
            .unknown
            .iter()
            .find(|u| u.node == node)
            .map(|u| u.reason.clone())
            .unwrap_or_else(|| ran.fail(&format!("no reason for {node}")))
    };
    let local = reason("node1");
    ran.ensure(
        local.contains("Permission denied") && local.contains("contrib/sudoers/certherd-status"),
        format!("node1's reason names the denial and the sudo line: {local}"),
    );
    for peer in ["node2", "node3"] {
        ran.ensure(!reason(peer).is_empty(), format!("{peer} has a reason"));
    }
    mon.run(&bed, &[&bin, "--config", &config, "status"])
        .expect_status(3)
        .stdout_has(["UNKNOWN node1: ", "UNKNOWN node2: ", "UNKNOWN node3: "])
        .run();

    // Through the shipped sudo line: the same rows and exit code as root.
    mon.allow_status(&bed);
    let via_sudo = |extra: &[&str]| {
        let mut argv = vec![
            "/usr/bin/sudo",
            "-n",
            &bin,
            "--config",
            &config,
            "status",
            "--format",
            "influx",
        ];
        argv.extend(extra);
        mon.run(&bed, &argv)
    };
    let ran = via_sudo(&[])
        .any_status()
        .stdout_lacks(["certherd_unknown"])
        .run();
    ran.ensure(
        ran.code() == root_code,
        format!("root's exit status {root_code:?}"),
    );
    let rows = ran
        .stdout()
        .lines()
        .filter(|l| l.starts_with("certherd_status,"))
        .count();
    ran.ensure(rows == 3, "3 certherd_status rows");
    // The line allows that command line only.
    via_sudo(&["--warn", "1d"])
        .expect_failure()
        .stderr_has(["password is required"])
        .run();
}

/// A `status` that cannot even load its config is UNKNOWN (3) with the reason on stdout too, in
/// the format asked for: monitoring reads stdout (the JSON parses, the line names the key).
#[test]
fn status_without_a_usable_config_is_unknown_with_the_reason_on_stdout() {
    let dir = std::env::temp_dir().join(format!("certherd-mon-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("certherd.toml");
    std::fs::write(&config, "name = \"a\"\n[ssh]\nconnect_timeout = 5\n").unwrap();
    let run = |format: &str| {
        let mut cmd = Command::new(certherd_bin());
        cmd.arg("--config")
            .arg(&config)
            .args(["status", "--format", format]);
        exec(cmd).expect_status(3)
    };
    let ran = run("table")
        .stdout_has([
            format!(
                ": {}:3: ssh.connect_timeout: invalid type: integer `5`",
                config.display()
            ),
            "\nUNKNOWN ".into(),
        ])
        .run();
    ran.ensure(
        ran.stdout().starts_with("NODE"),
        "the table starts with NODE",
    );
    let ran = run("json").run();
    let report: StatusReport = ran.json();
    ran.ensure(report.state == State::Unknown, "state unknown");
    ran.ensure(
        report
            .unknown
            .first()
            .is_some_and(|u| u.reason.contains("ssh.connect_timeout")),
        "the first unknown reason names ssh.connect_timeout",
    );
    std::fs::remove_file(&config).unwrap();
    let ran = run("influx").stdout_has(["does not exist"]).run();
    ran.ensure(
        ran.stdout().starts_with("certherd_unknown,"),
        "the first line is certherd_unknown",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
