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
use std::process::{Command, Output};

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
        let out = Command::new("timeout")
            .args(["30", "/usr/sbin/useradd", "--system", "--no-create-home"])
            .args(["--shell", "/usr/sbin/nologin", &name])
            .output()
            .unwrap();
        assert!(out.status.success(), "useradd {name}: {}", text(&out));
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
        let check = Command::new("/usr/sbin/visudo")
            .arg("-cqf")
            .arg(&tmp)
            .output()
            .unwrap();
        assert!(check.status.success(), "visudo: {}\n{line}", text(&check));
        std::os::unix::fs::chown(&tmp, Some(0), Some(0)).unwrap();
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o440))
            .unwrap();
        std::fs::rename(&tmp, &self.sudoers).unwrap();
    }

    /// Runs `argv` as the monitoring account (bounded).
    fn run(&self, argv: &[&str]) -> Output {
        Command::new("timeout")
            .args(["120", "/usr/sbin/runuser", "-u", &self.name, "--"])
            .args(argv)
            .current_dir("/")
            .output()
            .unwrap()
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

fn status(bed: &Bed, format: &str) -> Output {
    bed.certherd(1, &["status", "--format", format])
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every format says UNKNOWN (exit 3) with `reason_part` for node 1, on stdout.
fn assert_unknown_everywhere(bed: &Bed, reason_part: &str) {
    let out = status(bed, "table");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let table = stdout(&out);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("UNKNOWN node1: ") && l.contains(reason_part)),
        "{table}"
    );
    assert!(table.ends_with("certherd status UNKNOWN\n"), "{table}");

    let out = status(bed, "json");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(report["state"], "unknown", "{report}");
    let node1 = report["unknown"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["node"] == "node1")
        .unwrap_or_else(|| panic!("no unknown entry for node1: {report}"));
    assert!(
        node1["reason"].as_str().unwrap().contains(reason_part),
        "{report}"
    );

    let out = status(bed, "influx");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let influx = stdout(&out);
    assert!(
        influx
            .lines()
            .any(|l| l.starts_with("certherd_unknown,node=node1,") && l.contains(reason_part)),
        "{influx}"
    );

    let out = status(bed, "prometheus");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let prometheus = stdout(&out);
    assert!(
        prometheus
            .lines()
            .any(|l| l.starts_with("certherd_node_unknown{node=\"node1\",")
                && l.contains(reason_part)
                && l.ends_with(" 1")),
        "{prometheus}"
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

    let root = status(&bed, "influx");
    let root_code = root.status.code();
    assert_ne!(root_code, Some(3), "root's status: {}", text(&root));
    let root_rows = stdout(&root)
        .lines()
        .filter(|l| l.starts_with("certherd_status,"))
        .count();
    assert_eq!(root_rows, 3, "{}", text(&root));

    // Directly, without sudo: UNKNOWN, and it says which node and why.
    let out = mon.run(&[&bin, "--config", &config, "status", "--format", "json"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    let unknown = report["unknown"].as_array().unwrap();
    let reason = |node: &str| {
        unknown
            .iter()
            .find(|u| u["node"] == node)
            .and_then(|u| u["reason"].as_str())
            .unwrap_or_else(|| panic!("no reason for {node}: {report}"))
            .to_owned()
    };
    let local = reason("node1");
    assert!(
        local.contains("Permission denied") && local.contains("contrib/sudoers/certherd-status"),
        "{local}"
    );
    for peer in ["node2", "node3"] {
        assert!(!reason(peer).is_empty());
    }
    let out = mon.run(&[&bin, "--config", &config, "status"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let table = stdout(&out);
    for node in ["node1", "node2", "node3"] {
        assert!(table.contains(&format!("UNKNOWN {node}: ")), "{table}");
    }

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
        mon.run(&argv)
    };
    let out = via_sudo(&[]);
    assert_eq!(out.status.code(), root_code, "{}", text(&out));
    let lines = stdout(&out);
    assert_eq!(
        lines
            .lines()
            .filter(|l| l.starts_with("certherd_status,"))
            .count(),
        3,
        "{lines}"
    );
    assert!(!lines.contains("certherd_unknown"), "{lines}");
    // The line allows that command line only.
    let out = via_sudo(&["--warn", "1d"]);
    assert!(
        !out.status.success() && stderr(&out).contains("password is required"),
        "sudo allowed another command line: {}",
        text(&out)
    );
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
        Command::new(certherd_bin())
            .arg("--config")
            .arg(&config)
            .args(["status", "--format", format])
            .output()
            .unwrap()
    };
    let out = run("table");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let table = stdout(&out);
    assert!(
        table.contains(&format!(
            ": {}:3: ssh.connect_timeout: invalid type: integer `5`",
            config.display()
        )) && table.starts_with("NODE")
            && table.contains("\nUNKNOWN "),
        "{table}"
    );
    let out = run("json");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status JSON");
    assert_eq!(report["state"], "unknown");
    assert!(
        report["unknown"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("ssh.connect_timeout"),
        "{report}"
    );
    std::fs::remove_file(&config).unwrap();
    let out = run("influx");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stdout(&out).starts_with("certherd_unknown,") && stdout(&out).contains("does not exist"),
        "{}",
        text(&out)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
