//! Issue 20's engine attack, end to end: root never reads as configuration a file the agent's
//! account can write. `certbot --nginx` puts `include /etc/letsencrypt/options-ssl-nginx.conf;`
//! in every TLS server block, and the checklist (docs/SETUP.md) gives the account all of
//! `/etc/letsencrypt`. One line the account appends there,
//! `ssl_certificate_key engine:/path/x.so:x;`, makes root's `nginx -t` (the `[reload]` test,
//! through sudo, after every deploy) load `x.so` as root.
//!
//! Here the library is real (`cc -shared -fPIC`; its constructor appends `getuid()` to a record
//! file), nginx, sudo, certbot and pebble are the Debian packages, and the account is the bed's.
//! `certherd doctor` FAILs naming the file before anything runs it (the record stays empty);
//! `status` is CRITICAL naming it; `deploy` warns. The attack is then shown to be real (root's
//! `nginx -t` through the account's sudo line records uid 0). After the checklist's move
//! (its own lines, read from docs/SETUP.md: a root-owned copy in nginx's `snippets/`, the include
//! rewritten), the account appends the line again, doctor is clean, deploys run their `nginx -t`
//! and reload, and the record never shows uid 0. Last, a peer's own exposure reaches the
//! primary's `status` through its agent's answer, and the peer's doctor's fix, run exactly as
//! printed, clears it.
//!
//! A second test does the same for Apache (Debian's apache2 package and its own config tree):
//! `options-ssl-apache.conf` with a piped `CustomLog` the account added runs the account's
//! program as root when Apache starts, until the checklist's move.
//!
//! Proves Guarantee 11 of docs/GUARANTEES.md (an agent bug never becomes root).

mod common;
use common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `certbot --nginx` writes as `options-ssl-nginx.conf` (abridged).
const CERTBOT_OPTIONS: &str = "ssl_session_timeout 1440m;\nssl_session_tickets off;\nssl_protocols TLSv1.2 TLSv1.3;\nssl_prefer_server_ciphers off;\n";

/// The production checklist (docs/SETUP.md, moved out of the README).
const SETUP: &str = include_str!("../docs/SETUP.md");

/// The every-node checklist block's lines that move certbot's options files (from its
/// `if [ -d /etc/nginx ]` up to the line before the `chown -R` comment), with the bed's paths.
fn checklist_move(le: &Path, nginx_dir: &Path, apache_dir: &Path) -> String {
    let marker = "<!-- quickstart: every-node -->";
    let block = &SETUP[SETUP.find(marker).expect("the every-node block")..];
    let block = &block[..block.find("\n```\n").expect("its end")];
    let start = block
        .find("if [ -d /etc/nginx ]")
        .expect("the checklist moves certbot's nginx options");
    let end = block[start..]
        .find("# what certbot made here before")
        .expect("the move comes before the chown")
        + start;
    block[start..end]
        .replace("/etc/letsencrypt", &le.to_string_lossy())
        .replace("/etc/nginx", &nginx_dir.to_string_lossy())
        .replace("/etc/apache2", &apache_dir.to_string_lossy())
}

/// A shell script as the agent's account (what a compromised agent could do), not run yet.
fn as_agent<'a>(bed: &'a Bed, script: &str) -> Exec<'a> {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]);
    bed.as_agent(&mut cmd);
    bed.node(1).command(cmd)
}

/// `/bin/sh -ec SCRIPT` as root, outside the bed (the admin's hand).
fn shell(script: &str) -> Exec<'static> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-ec").arg(script);
    exec(cmd)
}

/// Builds the account's library: its constructor appends the uid it runs as to `record`.
fn build_library(dir: &Path, record: &Path) -> PathBuf {
    let src = dir.join("x.c");
    std::fs::write(
        &src,
        format!(
            "#include <stdio.h>\n#include <unistd.h>\n\
             __attribute__((constructor)) static void record(void) {{\n\
             \x20 FILE *f = fopen(\"{}\", \"a\");\n\
             \x20 if (f) {{ fprintf(f, \"%u\\n\", (unsigned) getuid()); fclose(f); }}\n}}\n",
            record.display()
        ),
    )
    .unwrap();
    let lib = dir.join("x.so");
    let mut cc = Command::new("cc");
    cc.args(["-shared", "-fPIC", "-o"]).arg(&lib).arg(&src);
    exec(cc).expect_status(0).run();
    lib
}

/// The uids the library recorded, one per load.
fn recorded(record: &Path) -> Vec<String> {
    std::fs::read_to_string(record)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The `FAIL` line naming `what`, and its fix line.
fn failure<'a>(report: &'a str, what: &str) -> Option<(&'a str, &'a str)> {
    let lines: Vec<&str> = report.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.starts_with("FAIL  ") && l.contains(what))?;
    let fix = lines.get(i + 1)?.trim_start().strip_prefix("fix: ")?;
    Some((lines[i], fix))
}

#[test]
fn an_account_writable_nginx_include_is_named_before_root_reads_it_and_the_checklist_move_ends_it()
{
    let bed = bed(2, true);
    bed.dns("site.test", &[2]).unwrap();
    enable_tls(&bed, "site.test");
    bed.node(1)
        .certbot_certonly_with_deploy(&["site.test"])
        .expect_status(0)
        .run();
    let le = bed.letsencrypt_dir(1);
    let conf = bed.nginx_conf(1);
    let nginx_dir = conf.parent().unwrap().to_owned();
    let tls = bed.nginx_tls_conf(1);

    // certbot --nginx's state after the checklist's `chown -R`: its options file in the
    // letsencrypt dir, the account's, included in node 1's TLS server block.
    let options = le.join("options-ssl-nginx.conf");
    std::fs::write(&options, CERTBOT_OPTIONS).unwrap();
    bed.chown_to_agent(&options).unwrap();
    let server = std::fs::read_to_string(&tls).unwrap();
    let included = server.replacen(
        "  location /",
        &format!("  include {};\n  location /", options.display()),
        1,
    );
    assert_ne!(included, server, "the bed's TLS server block changed shape");
    std::fs::write(&tls, &included).unwrap();
    reload_nginx(&bed, 1);

    // The account's library, and a record only the library writes to (world-writable).
    let record_dir = bed.root().join("record");
    std::fs::create_dir(&record_dir).unwrap();
    std::fs::set_permissions(&record_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let record = record_dir.join("uids");
    let lib = build_library(&record_dir, &record);
    bed.chown_to_agent(&lib).unwrap();

    // The account appends the engine key (and a certificate for it to pair with).
    let cert = le.join("live/site.test/fullchain.pem");
    // The account could append.
    as_agent(
        &bed,
        &format!(
            "printf 'ssl_certificate {};\\nssl_certificate_key engine:{}:x;\\n' >> {}",
            cert.display(),
            lib.display(),
            options.display()
        ),
    )
    .expect_status(0)
    .run();

    // doctor names the file, with the move as the fix, and runs nothing that reads it.
    let ran = bed.node(1).certherd(["doctor"]).expect_status(1).run();
    let report = ran.both();
    let (line, fix) = failure(&report, &format!("nginx {}", options.display()))
        .unwrap_or_else(|| ran.fail(&format!("doctor does not name {}", options.display())));
    ran.ensure(
        line.contains(bed.agent_user()),
        format!("names the owner: {line}"),
    );
    ran.ensure(
        fix.contains(&format!(
            "install -d -o root -g root -m 0755 {s} && install -o root -g root -m 0644 {o} {s}/ && sed -i 's#{o}#{s}/options-ssl-nginx.conf#' {t}",
            s = nginx_dir.join("snippets").display(),
            o = options.display(),
            t = tls.display()
        )),
        format!("the fix is the move: {fix}"),
    );
    assert_eq!(
        recorded(&record),
        Vec::<String>::new(),
        "doctor ran the library"
    );

    // status: CRITICAL (2) with the file named, in JSON; still nothing ran it.
    let options_name = options.to_string_lossy().into_owned();
    let ran = bed
        .node(1)
        .certherd(["status", "--format", "json"])
        .expect_status(2)
        .run();
    let report: StatusReport = ran.json();
    ran.ensure(
        report
            .exposed
            .iter()
            .any(|x| x.file == options_name && x.server == "nginx"),
        format!("{options_name} is exposed, by nginx"),
    );
    let ran = bed
        .node(1)
        .certherd(["status", "--format", "nagios"])
        .expect_status(2)
        .stdout_has([options_name.as_str()])
        .run();
    ran.ensure(
        ran.stdout().starts_with("CERTHERD CRITICAL"),
        "nagios says CERTHERD CRITICAL first",
    );
    assert_eq!(
        recorded(&record),
        Vec::<String>::new(),
        "status ran the library"
    );

    // The attack is real: root's config test, through the account's own sudo line (what the
    // agent runs after an install), loads the library as root.
    let mut sudo = Command::new("sudo");
    sudo.args(["-n", "/usr/sbin/nginx", "-t", "-q", "-c"])
        .arg(&conf);
    bed.as_agent(&mut sudo);
    let ran = bed.node(1).command(sudo).any_status().run();
    ran.ensure(
        recorded(&record).contains(&"0".to_owned()),
        "the engine line did not load the library as root: the test proves nothing",
    );
    // deploy warns on every run while it holds (whatever its exit).
    bed.node(1)
        .certherd(["deploy", "--lineage", "site.test"])
        .any_status()
        .stderr_has(["warning", options_name.as_str()])
        .run();

    // The admin restores certbot's content (doctor's fix says to read it first) and runs the
    // checklist's move; then the record starts over.
    std::fs::write(&options, CERTBOT_OPTIONS).unwrap();
    let script = checklist_move(&le, &nginx_dir, &bed.root().join("no-apache2"));
    // The checklist's move.
    shell(&script).expect_status(0).run();
    let copy = nginx_dir.join("snippets/options-ssl-nginx.conf");
    let moved = std::fs::read_to_string(&tls).unwrap();
    assert!(
        moved.contains(&format!("include {};", copy.display())) && !moved.contains(&options_name),
        "{moved}"
    );
    let meta = std::fs::metadata(&copy).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o644));
    std::fs::remove_file(&record).unwrap();

    // The account appends the engine key again where it can; the copy it cannot touch.
    let append = |file: &Path| {
        as_agent(
            &bed,
            &format!(
                "printf 'ssl_certificate {};\\nssl_certificate_key engine:{}:x;\\n' >> {}",
                cert.display(),
                lib.display(),
                file.display()
            ),
        )
    };
    append(&options).expect_status(0).run();
    // The account cannot write the root-owned copy.
    append(&copy).expect_failure().run();

    let ran = bed.node(1).certherd(["doctor"]).any_status().run();
    let report = ran.both();
    ran.ensure(
        failure(&report, "options-ssl-nginx.conf").is_none(),
        "doctor still fails after the move",
    );
    ran.ensure(
        report.lines().any(|l| {
            l.starts_with("ok    nginx ")
                && l.contains(&conf.to_string_lossy().into_owned())
                && l.contains("none writable by a non-root account")
        }),
        "doctor's nginx line is ok: none writable",
    );
    let (ran, report) = status_report(&bed);
    ran.ensure(report.exposed.is_empty(), "nothing exposed after the move");

    // Deploys run root's `nginx -t` and reload (node 1's own, through sudo) and succeed: the
    // config root reads is the fixed one, and the library never runs as root.
    for _ in 0..2 {
        bed.node(1)
            .certherd(["deploy", "--lineage", "site.test"])
            .expect_status(0)
            .stderr_lacks(["options-ssl-nginx.conf"])
            .run();
    }
    bed.node(1).certherd(["sync"]).expect_status(0).run();
    assert!(
        !recorded(&record).contains(&"0".to_owned()),
        "root loaded the account's library after the move: {:?}",
        recorded(&record)
    );

    // A peer's own exposure reaches the primary's status through its agent's answer.
    let options2 = bed.letsencrypt_dir(2).join("options-ssl-nginx.conf");
    std::fs::write(&options2, CERTBOT_OPTIONS).unwrap();
    bed.chown_to_agent(&options2).unwrap();
    let tls2 = bed.nginx_tls_conf(2);
    let server2 = std::fs::read_to_string(&tls2).unwrap();
    std::fs::write(
        &tls2,
        server2.replacen(
            "  location /",
            &format!("  include {};\n  location /", options2.display()),
            1,
        ),
    )
    .unwrap();
    let ran = bed
        .node(1)
        .certherd(["status", "--format", "json"])
        .expect_status(2)
        .run();
    let report: StatusReport = ran.json();
    let options2_name = options2.to_string_lossy().into_owned();
    ran.ensure(
        report.exposed.len() == 1
            && report.exposed[0].node == "node2"
            && report.exposed[0].file == options2_name,
        format!("exactly node2's {options2_name} is exposed"),
    );

    // doctor's fix, run exactly as node 2's doctor prints it, ends that too.
    let ran = bed.node(2).certherd(["doctor"]).any_status().run();
    let report = ran.both();
    let (_, fix) = failure(&report, &format!("nginx {}", options2.display()))
        .unwrap_or_else(|| ran.fail("node 2's doctor does not name it"));
    let command = fix
        .split("point the include lines there: ")
        .nth(1)
        .unwrap_or_else(|| ran.fail(&format!("no command in the fix: {fix}")));
    // doctor's fix works as printed.
    shell(command).expect_status(0).run();
    let (ran, report) = status_report(&bed);
    ran.ensure(report.exposed.is_empty(), "nothing exposed after the fix");
    ran.ensure(
        ran.code() != Some(2),
        "status is not CRITICAL after the fix",
    );
}

/// What the bed's Apache includes as certbot's `options-ssl-apache.conf`: the real file is
/// mod_ssl settings, which need a certificate this Apache has no use for; the include is what
/// matters.
const CERTBOT_APACHE_OPTIONS: &str =
    "# certbot's options-ssl-apache.conf (its mod_ssl lines left out)\nServerSignature Off\n";

/// Debian's apache2 package's own config tree, copied (root's) into `dir` as a ServerRoot,
/// listening only on `ip:8081`; started and stopped as root by its PID file (never by name).
struct Apache {
    dir: PathBuf,
}

impl Apache {
    fn debian(dir: &Path, ip: std::net::Ipv4Addr) -> Apache {
        let mut cp = Command::new("cp");
        cp.args(["-a", "/etc/apache2"]).arg(dir);
        let ran = exec(cp).any_status().run();
        ran.ensure(
            ran.code() == Some(0),
            "Debian's apache2 package is not installed (scripts/setup-debian.sh)",
        );
        std::fs::remove_file(dir.join("sites-enabled/000-default.conf")).unwrap();
        std::fs::write(dir.join("ports.conf"), format!("Listen {ip}:8081\n")).unwrap();
        for d in ["run", "lock", "log"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        Apache {
            dir: dir.to_owned(),
        }
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("run/apache2.pid")
    }

    /// `apache2 -k start` as root (what `systemctl start apache2` does), waiting for its PID file.
    fn start(&self) {
        let d = &self.dir;
        let mut start = Command::new("/usr/sbin/apache2");
        start
            .arg("-d")
            .arg(d)
            .arg("-f")
            .arg(d.join("apache2.conf"))
            .args(["-k", "start"])
            .env("APACHE_RUN_USER", "www-data")
            .env("APACHE_RUN_GROUP", "www-data")
            .env("APACHE_PID_FILE", self.pid_file())
            .env("APACHE_RUN_DIR", d.join("run"))
            .env("APACHE_LOCK_DIR", d.join("lock"))
            .env("APACHE_LOG_DIR", d.join("log"));
        exec(start).expect_status(0).run();
        assert!(
            wait_until(std::time::Duration::from_secs(10), || self.pid().is_some()),
            "apache2 wrote no PID file"
        );
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.pid_file())
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// SIGTERM to the PID it wrote (its children, the piped loggers among them, go with it);
    /// bounded wait.
    fn stop(&self) {
        if let Some(pid) = self.pid() {
            let pid = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            wait_until(std::time::Duration::from_secs(10), || {
                nix::sys::signal::kill(pid, None).is_err()
            });
            let _ = std::fs::remove_file(self.pid_file());
        }
    }
}

impl Drop for Apache {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Apache: Debian's own config tree with a site shaped the way `certbot --apache` writes it
/// (`Include /etc/letsencrypt/options-ssl-apache.conf` in the TLS virtual host), the options
/// file in the account's letsencrypt dir, and a piped `CustomLog` the account added (a script
/// of its own that records its uid). doctor FAILs naming the file from the `[reload]` command's
/// `-d`/`-f`, without running Apache; Apache started as root runs the logger as root (the
/// attack is real); after the checklist's move (its Apache lines) doctor is clean and Apache,
/// started again, never runs the account's logger as root.
#[test]
fn an_account_writable_apache_include_is_named_and_the_checklist_move_ends_it() {
    let bed = bed(1, false);
    let le = bed.letsencrypt_dir(1);
    let dir = bed.root().join("apache2");
    let apache = Apache::debian(&dir, bed.ip(1));
    let site = dir.join("sites-enabled/site-le-ssl.conf");
    let options = le.join("options-ssl-apache.conf");
    std::fs::write(
        &site,
        format!(
            "<VirtualHost {}:8081>\n  ServerName site.test\n  Include {}\n</VirtualHost>\n",
            bed.ip(1),
            options.display()
        ),
    )
    .unwrap();
    std::fs::write(&options, CERTBOT_APACHE_OPTIONS).unwrap();
    bed.chown_to_agent(&options).unwrap();

    // The account's logger records the uid it runs as, then reads the log until Apache stops.
    let record_dir = bed.root().join("record");
    std::fs::create_dir(&record_dir).unwrap();
    std::fs::set_permissions(&record_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let record = record_dir.join("uids");
    let logger = record_dir.join("logger.sh");
    std::fs::write(
        &logger,
        format!(
            "#!/bin/sh\nid -u >> {}\nexec cat > /dev/null\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&logger, std::fs::Permissions::from_mode(0o755)).unwrap();
    bed.chown_to_agent(&logger).unwrap();
    let append = |file: &Path| {
        as_agent(
            &bed,
            &format!(
                "echo 'CustomLog \"|{}\" combined' >> {}",
                logger.display(),
                file.display()
            ),
        )
    };
    append(&options).expect_status(0).run();

    let reload = format!(
        "[reload]\ntest = [\"sudo\", \"-n\", \"/usr/sbin/apache2ctl\", \"-d\", \"{d}\", \"-f\", \"{d}/apache2.conf\", \"-t\"]\nreload = [\"true\"]\n",
        d = dir.display()
    );
    let config = bed.config_path(1);
    let text_before = std::fs::read_to_string(&config).unwrap();
    let at = text_before.find("[reload]").expect("a [reload] section");
    let end = text_before[at..]
        .find("\n\n")
        .map_or(text_before.len(), |e| at + e + 1);
    std::fs::write(
        &config,
        format!("{}{reload}{}", &text_before[..at], &text_before[end..]),
    )
    .unwrap();

    // doctor names the file, with the move as the fix, and runs nothing.
    let ran = bed.node(1).certherd(["doctor"]).expect_status(1).run();
    let report = ran.both();
    let (line, fix) = failure(&report, &format!("apache {}", options.display()))
        .unwrap_or_else(|| ran.fail(&format!("doctor does not name {}", options.display())));
    ran.ensure(
        line.contains(bed.agent_user()),
        format!("names the owner: {line}"),
    );
    ran.ensure(
        fix.contains(&format!(
            "install -d -o root -g root -m 0755 {c} && install -o root -g root -m 0644 {o} {c}/ && sed -i 's#{o}#{c}/options-ssl-apache.conf#' {s}",
            c = dir.join("conf-available").display(),
            o = options.display(),
            s = site.display()
        )),
        format!("the fix is the move: {fix}"),
    );
    assert_eq!(
        recorded(&record),
        Vec::<String>::new(),
        "doctor ran the logger"
    );

    // The attack is real: Apache started as root runs the account's logger as root.
    apache.start();
    let root_ran = wait_until(std::time::Duration::from_secs(10), || {
        recorded(&record).contains(&"0".to_owned())
    });
    apache.stop();
    assert!(
        root_ran,
        "the piped log did not run as root ({:?}): the test proves nothing",
        recorded(&record)
    );

    // The admin restores certbot's content (doctor's fix says to read it first), then runs the
    // checklist's move; the account adds its logger again where it still can.
    std::fs::write(&options, CERTBOT_APACHE_OPTIONS).unwrap();
    let script = checklist_move(&le, &bed.root().join("no-nginx"), &dir);
    // The checklist's move.
    shell(&script).expect_status(0).run();
    let copy = dir.join("conf-available/options-ssl-apache.conf");
    assert!(std::fs::read_to_string(&site)
        .unwrap()
        .contains(&format!("Include {}", copy.display())));
    assert_eq!(std::fs::metadata(&copy).unwrap().uid(), 0);
    std::fs::remove_file(&record).unwrap();
    append(&options).expect_status(0).run();
    // The account cannot write the root-owned copy.
    append(&copy).expect_failure().run();

    let ran = bed.node(1).certherd(["doctor"]).any_status().run();
    let report = ran.both();
    ran.ensure(
        failure(&report, "options-ssl-apache.conf").is_none(),
        "doctor still fails after the move",
    );
    let main = dir.join("apache2.conf").to_string_lossy().into_owned();
    ran.ensure(
        report.lines().any(|l| {
            l.starts_with("ok    apache ")
                && l.contains(&main)
                && l.contains("none writable by a non-root account")
        }),
        "doctor's apache line is ok: none writable",
    );
    // Apache as root again, serving (so its config, loggers included, was read): no root logger.
    apache.start();
    let answered = wait_until(std::time::Duration::from_secs(10), || {
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
            .arg(format!("http://{}:8081/", bed.ip(1)))
            .output()
            .is_ok_and(|o| o.stdout.len() == 3 && o.stdout != b"000")
    });
    apache.stop();
    assert!(answered, "Apache did not answer after the move");
    assert!(
        !recorded(&record).contains(&"0".to_owned()),
        "root ran the account's logger after the move: {:?}",
        recorded(&record)
    );
}
