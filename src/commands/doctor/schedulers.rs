//! Every scheduler that runs certbot itself, as root, on this node: Debian's `certbot.timer`, the
//! snap's `snap.certbot.renew.timer` (the install the certbot project recommends), and cron
//! lines that run certbot (`/etc/cron.d/*`, `/etc/crontab`, root's crontab). Each renews on its
//! own schedule, as root, over the agent's files, and on a standby or an old primary renews where
//! it must not (split versions). Each one found is its own finding naming the file, with its fix.
//!
//! Files are looked up under doctor's [`System`] root (`/` on a node, a directory in tests).

use std::path::{Path, PathBuf};

use super::finding::{Finding, System, Verdict};
use crate::config::Config;

/// The timers that run `certbot renew`, each with its fix.
const TIMERS: [(&str, &str); 2] = [
    (
        "certbot.timer",
        "systemctl disable --now certbot.timer (certherd-renew.timer renews where [renew] says)",
    ),
    (
        "snap.certbot.renew.timer",
        "snap stop --disable certbot.renew (or systemctl disable --now snap.certbot.renew.timer; certherd-renew.timer renews where [renew] says)",
    ),
];
/// Where systemd finds unit files and their `timers.target.wants/` enablement links.
const UNIT_DIRS: [&str; 3] = [
    "/etc/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];
/// Cron files read at most per directory (`/etc/cron.d` holds a handful).
const MAX_CRON_FILES: usize = 1_000;

/// One scheduler found: what it is and the fix.
struct Found {
    what: String,
    fix: String,
}

/// A finding per scheduler found: FAIL where renewal configs live (or on a standby), else WARN
/// (it does nothing until one arrives); one `ok` when there is none; a WARN for a place doctor
/// could not read (it never says OK about what it did not see).
pub fn findings(config: &Config, system: &System) -> Vec<Finding> {
    let mut unreadable = Vec::new();
    let mut found = timers(system);
    found.extend(cron(system, &mut unreadable));
    let renewal = config.letsencrypt_dir.join("renewal");
    let confs = std::fs::read_dir(&renewal)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".conf"))
                .count()
        })
        .unwrap_or(0);
    let mut out: Vec<Finding> = found
        .into_iter()
        .map(|Found { what, fix }| {
            let verdict = if confs > 0 || config.standby {
                Verdict::Fail(
                    format!(
                        "this node holds {confs} renewal config(s) in {}: certbot renews here as root on its own schedule, besides certherd renew and whatever [renew] says",
                        renewal.display()
                    ),
                    fix,
                )
            } else {
                Verdict::Warn(
                    "no renewal config here yet, but it would renew on its own, as root, once one arrives (a standby, a primary)".into(),
                    fix,
                )
            };
            Finding { what, verdict }
        })
        .collect();
    for (path, e) in unreadable {
        out.push(Finding {
            what: format!("certbot lines in {}", path.display()),
            verdict: Verdict::Warn(
                format!("cannot read it as this account: {e}"),
                format!(
                    "as root: grep -n certbot {} (and remove any line that runs certbot)",
                    path.display()
                ),
            ),
        });
    }
    if out.is_empty() {
        out.push(Finding {
            what: "certbot's own schedulers (certbot.timer, snap.certbot.renew.timer, cron): none active".into(),
            verdict: Verdict::Ok,
        });
    }
    out
}

/// Each timer enabled: a `timers.target.wants/` link to it in any unit directory, and not
/// masked (its unit in /etc linked to /dev/null).
fn timers(system: &System) -> Vec<Found> {
    let mut out = Vec::new();
    for (name, fix) in TIMERS {
        let masked = std::fs::read_link(system.path(&format!("/etc/systemd/system/{name}")))
            .is_ok_and(|t| t == Path::new("/dev/null"));
        let link = UNIT_DIRS
            .iter()
            .map(|d| system.path(&format!("{d}/timers.target.wants/{name}")))
            .find(|l| std::fs::symlink_metadata(l).is_ok());
        if let (false, Some(link)) = (masked, link) {
            out.push(Found {
                what: format!("{name} is enabled ({})", link.display()),
                fix: fix.to_owned(),
            });
        }
    }
    out
}

/// Each cron file with a line that runs certbot. A line guarded by `! -d /run/systemd/system`
/// (Debian's `/etc/cron.d/certbot`) does nothing while systemd runs.
fn cron(system: &System, unreadable: &mut Vec<(PathBuf, std::io::Error)>) -> Vec<Found> {
    let systemd = system.path("/run/systemd/system").is_dir();
    let mut files: Vec<(PathBuf, String)> = Vec::new();
    let cron_d = system.path("/etc/cron.d");
    let mut names: Vec<PathBuf> = std::fs::read_dir(&cron_d)
        .into_iter()
        .flatten()
        .flatten()
        .take(MAX_CRON_FILES)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    for p in names {
        let fix = if p.file_name().is_some_and(|n| n == "certbot") {
            format!(
                "rm {} and uncomment the entry of /etc/cron.d/certherd (`certherd renew`)",
                p.display()
            )
        } else {
            format!(
                "remove that line from {} (certherd-renew.timer or /etc/cron.d/certherd renews)",
                p.display()
            )
        };
        files.push((p, fix));
    }
    let crontab = system.path("/etc/crontab");
    files.push((
        crontab.clone(),
        format!("remove that line from {}", crontab.display()),
    ));
    files.push((
        system.path("/var/spool/cron/crontabs/root"),
        "crontab -e -u root, and remove that line".into(),
    ));
    let mut out = Vec::new();
    for (path, fix) in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                unreadable.push((path, e));
                continue;
            }
        };
        if let Some(line) = text.lines().find(|l| runs_certbot(l, systemd)) {
            out.push(Found {
                what: format!("{} runs certbot: `{}`", path.display(), line.trim()),
                fix,
            });
        }
    }
    out
}

/// A cron line (not a comment, not a `NAME=value` setting) with a command word `certbot` or
/// `…/certbot`; one guarded by `! -d /run/systemd/system` does not count while systemd runs.
fn runs_certbot(line: &str, systemd: bool) -> bool {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') {
        return false;
    }
    if l.split_whitespace().next().is_some_and(|t| t.contains('=')) {
        return false;
    }
    if systemd && l.contains("/run/systemd/system") {
        return false;
    }
    l.split(|c: char| c.is_whitespace() || ";&|()'\"`".contains(c))
        .any(|w| w == "certbot" || w.ends_with("/certbot"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(le: &Path, standby: bool) -> Config {
        let text = format!(
            "letsencrypt_dir = {:?}\nstandby = {standby}\n",
            le.display().to_string()
        );
        Config::parse(&text, Path::new("t.toml")).unwrap()
    }

    fn scratch(name: &str) -> crate::scratch::Scratch {
        let root = crate::scratch::scratch(&format!("sched-{name}"));
        std::fs::create_dir_all(root.join("le/renewal")).unwrap();
        root
    }

    fn fails(f: &[Finding]) -> Vec<&str> {
        f.iter()
            .filter(|f| matches!(f.verdict, Verdict::Fail(..)))
            .map(|f| f.what.as_str())
            .collect()
    }

    /// Debian's timer's link, or its cron entry where systemd is absent: a FAIL on a node with
    /// renewal configs (or a standby), a WARN without; removing it clears the finding.
    #[test]
    fn debians_timer_and_cron_entry() {
        let root = scratch("debian");
        let le = root.join("le");
        let system = System::under(&root);
        let wants = root.join("etc/systemd/system/timers.target.wants");
        std::fs::create_dir_all(&wants).unwrap();
        let link = wants.join("certbot.timer");
        std::os::unix::fs::symlink("/lib/systemd/system/certbot.timer", &link).unwrap();

        let f = findings(&config(&le, false), &system);
        assert!(matches!(f[0].verdict, Verdict::Warn(..)), "{f:?}");
        let f = findings(&config(&le, true), &system);
        assert!(
            matches!(&f[0].verdict, Verdict::Fail(_, fix) if fix.starts_with("systemctl disable --now certbot.timer")),
            "{f:?}"
        );
        std::fs::write(le.join("renewal/site.test.conf"), "").unwrap();
        assert_eq!(fails(&findings(&config(&le, false), &system)).len(), 1);
        std::fs::remove_file(&link).unwrap();
        let f = findings(&config(&le, false), &system);
        assert!(
            matches!(
                &f[..],
                [Finding {
                    verdict: Verdict::Ok,
                    ..
                }]
            ),
            "{f:?}"
        );

        // No systemd: Debian's cron entry is what renews.
        std::fs::create_dir_all(root.join("etc/cron.d")).unwrap();
        std::fs::write(
            root.join("etc/cron.d/certbot"),
            "# comment\nSHELL=/bin/sh\n0 */12 * * * root test -x /usr/bin/certbot -a \\! -d /run/systemd/system && certbot -q renew\n",
        )
        .unwrap();
        let f = findings(&config(&le, false), &system);
        assert!(
            matches!(&f[0].verdict, Verdict::Fail(_, fix) if fix.contains("/etc/cron.d/certherd")),
            "{f:?}"
        );
        // With systemd running, the cron entry does nothing (its own test says so).
        std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
        assert!(fails(&findings(&config(&le, false), &system)).is_empty());
        let _ = std::fs::remove_dir_all(&root);
    }

    /// The snap's timer (unit file and wants link), a line in /etc/crontab and one in root's
    /// crontab: each its own FAIL naming its file; a masked timer and certherd's own cron entry
    /// are none of them.
    #[test]
    fn the_snap_timer_and_crontab_lines_are_found_each() {
        let root = scratch("snap");
        let le = root.join("le");
        std::fs::write(le.join("renewal/site.test.conf"), "").unwrap();
        let system = System::under(&root);
        let units = root.join("etc/systemd/system");
        std::fs::create_dir_all(units.join("timers.target.wants")).unwrap();
        std::fs::write(units.join("snap.certbot.renew.timer"), "[Timer]\n").unwrap();
        std::os::unix::fs::symlink(
            "/etc/systemd/system/snap.certbot.renew.timer",
            units.join("timers.target.wants/snap.certbot.renew.timer"),
        )
        .unwrap();
        std::fs::create_dir_all(root.join("etc/cron.d")).unwrap();
        std::fs::write(
            root.join("etc/cron.d/certherd"),
            "# not certbot's\n#0 */12 * * * root certherd -q renew\n0 3 * * * root certherd -q renew\n",
        )
        .unwrap();
        std::fs::write(
            root.join("etc/crontab"),
            "SHELL=/bin/sh\n17 * * * * root cd / && run-parts --report /etc/cron.hourly\n30 2 * * 1 root /snap/bin/certbot renew --quiet\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join("var/spool/cron/crontabs")).unwrap();
        std::fs::write(
            root.join("var/spool/cron/crontabs/root"),
            "# m h dom mon dow command\n0 0 * * * certbot renew -q\n",
        )
        .unwrap();
        let f = findings(&config(&le, false), &system);
        let failed = fails(&f);
        assert_eq!(failed.len(), 3, "{f:?}");
        assert!(
            failed[0].contains("snap.certbot.renew.timer is enabled"),
            "{f:?}"
        );
        assert!(failed[1].contains("etc/crontab runs certbot"), "{f:?}");
        assert!(failed[2].contains("crontabs/root runs certbot"), "{f:?}");

        // Masked: the snap's timer does not run.
        std::fs::remove_file(units.join("snap.certbot.renew.timer")).unwrap();
        std::os::unix::fs::symlink("/dev/null", units.join("snap.certbot.renew.timer")).unwrap();
        assert_eq!(fails(&findings(&config(&le, false), &system)).len(), 2);
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn certbot_lines_are_told_from_others() {
        for (line, systemd, want) in [
            ("0 0 * * * root certbot renew", false, true),
            ("0 0 * * * /usr/bin/certbot -q renew", false, true),
            ("@daily root (sleep 10; certbot renew)", false, true),
            ("# 0 0 * * * certbot renew", false, false),
            ("MAILTO=certbot@example.org", false, false),
            ("0 0 * * * root certherd -q renew", false, false),
            ("0 0 * * * root test -x /usr/bin/certbot -a \\! -d /run/systemd/system && certbot -q renew", true, false),
            ("0 0 * * * root test -x /usr/bin/certbot -a \\! -d /run/systemd/system && certbot -q renew", false, true),
        ] {
            assert_eq!(runs_certbot(line, systemd), want, "{line} (systemd {systemd})");
        }
    }
}
