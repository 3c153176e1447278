//! doctor's check that nothing root's web server reads as configuration is writable by a
//! non-root account (issue 20): `nginx -t` runs as root through sudo after every deploy, and one
//! line in an account-writable include (`ssl_certificate_key engine:/x.so:k;`, Apache's
//! `CustomLog "|cmd"`) runs that account's code as root. The scan ([`crate::webconf`]) parses
//! the files and never runs the server: running it is the attack. Each exposed file is a FAIL
//! with the exact command that moves it to a root-owned place and rewrites the lines that
//! include it — certbot's `options-ssl-nginx.conf` and `ssl-dhparams.pem` in the letsencrypt
//! dir, which the agent's account owns, are the usual ones.

use std::path::{Path, PathBuf};

use super::finding::{Finding, System, Verdict};
use crate::config::Config;
use crate::webconf::{Exposure, Role, Scan, Scanner, Server};

/// One finding per exposed file of every main config, an ok line per clean config, a warning
/// for what could not be followed.
pub fn check(config: &Config, system: &System) -> Vec<Finding> {
    let scanner = Scanner::under(system.root(), 0);
    let argvs = [
        config.reload.test.as_slice(),
        config.reload.reload.as_slice(),
    ];
    scanner
        .scan_all(&argvs)
        .iter()
        .flat_map(|scan| findings(scan, &config.reload.test))
        .collect()
}

fn findings(scan: &Scan, test: &[String]) -> Vec<Finding> {
    let server = scan.server;
    let mut out: Vec<Finding> = scan
        .exposed
        .iter()
        .map(|e| Finding {
            what: format!("{} {}", server.name(), e.file.display()),
            verdict: Verdict::Fail(
                format!(
                    "{}; {}",
                    e.describe(server),
                    match e.role {
                        Role::Loaded => "root loads what the account puts there at the next config test or reload",
                        _ => "a line in it (nginx: `ssl_certificate_key engine:…`, Apache: a piped log) runs that account's code as root at the next config test or reload",
                    }
                ),
                fix(server, &scan.main, e, test),
            ),
        })
        .collect();
    if !scan.notes.is_empty() {
        let shown: Vec<&str> = scan.notes.iter().take(5).map(String::as_str).collect();
        out.push(Finding {
            what: format!("{} {}: includes", server.name(), scan.main.display()),
            verdict: Verdict::Warn(
                format!("not all followed: {}", shown.join("; ")),
                format!(
                    "fix or remove those include lines, then run `{} -t` as root",
                    server.name()
                ),
            ),
        });
    }
    if scan.exposed.is_empty() && !scan.read.is_empty() {
        out.push(Finding {
            what: format!(
                "{} {} and the {} file(s) it includes: none writable by a non-root account",
                server.name(),
                scan.main.display(),
                scan.read.len() - 1
            ),
            verdict: Verdict::Ok,
        });
    }
    out
}

/// Where a file moves to: the directory beside the main config that Debian's package ships
/// root-owned for it (`/etc/nginx/snippets`, `/etc/apache2/conf-available`).
fn snippets(server: Server, main: &Path) -> PathBuf {
    let dir = main.parent().unwrap_or(Path::new("/"));
    dir.join(match server {
        Server::Nginx => "snippets",
        Server::Apache => "conf-available",
    })
}

/// A path a shell and a `sed s#…#…#` take as it is.
fn plain(p: &Path) -> bool {
    p.to_str().is_some_and(|s| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-+@:,".contains(&b))
    })
}

/// The exact fix for one exposed file.
fn fix(server: Server, main: &Path, e: &Exposure, test: &[String]) -> String {
    let file = e.file.display();
    let retest = match server {
        Server::Nginx if !test.is_empty() => test.join(" "),
        Server::Nginx => "nginx -t".to_owned(),
        Server::Apache => "apache2ctl configtest".to_owned(),
    };
    let root_it = |p: &Path| format!("chown root:root {0} && chmod go-w {0}", p.display());
    let literal = !e.named_by.is_empty() && e.named_by.iter().all(|r| r.literal);
    match e.role {
        Role::Included | Role::Loaded if !e.writable_dirs.is_empty() && literal => {
            let name = e
                .file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dir = snippets(server, main);
            let dest = dir.join(&name);
            let mut includers: Vec<&Path> = Vec::new();
            for r in &e.named_by {
                if !includers.contains(&r.file.as_path()) {
                    includers.push(&r.file);
                }
            }
            let check = match e.role {
                Role::Loaded => format!("check {file} first: it must be the file you expect"),
                _ => format!(
                    "read {file} first: it may already hold a line you did not write (an `engine:` key, a `load_module`, a piped log `|`)"
                ),
            };
            if plain(&e.file) && plain(&dest) && includers.iter().all(|p| plain(p)) {
                format!(
                    "{check}; then move it where only root writes and point the include lines there: install -d -o root -g root -m 0755 {0} && install -o root -g root -m 0644 {file} {0}/ && sed -i 's#{file}#{1}#' {2} && {retest}",
                    dir.display(),
                    dest.display(),
                    includers
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            } else {
                format!(
                    "{check}; then copy it to {} (install -o root -g root -m 0644) and change the lines that name it ({}) to the copy",
                    dest.display(),
                    includers
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        }
        _ if !e.writable_dirs.is_empty() => format!(
            "move {file} (and what else the server reads there) to a directory only root writes and change the include, or make the directories root's: {}",
            e.writable_dirs
                .iter()
                .map(|d| root_it(d))
                .collect::<Vec<_>>()
                .join(" && ")
        ),
        _ => format!("{}, after reading it for lines you did not write", root_it(&e.file)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webconf::Reference;

    fn exposure(file: &str, role: Role, dirs: &[&str], by: &[(&str, bool)]) -> Exposure {
        Exposure {
            file: file.into(),
            role,
            reasons: vec!["owned by certherd (uid 998)".into()],
            writable_dirs: dirs.iter().map(PathBuf::from).collect(),
            named_by: by
                .iter()
                .map(|(f, literal)| Reference {
                    file: f.into(),
                    line: 3,
                    literal: *literal,
                })
                .collect(),
        }
    }

    #[test]
    fn certbots_include_moves_to_snippets_with_the_exact_commands() {
        let test: Vec<String> = [
            "sudo",
            "-n",
            "/usr/sbin/nginx",
            "-t",
            "-q",
            "-c",
            "/etc/nginx/nginx.conf",
        ]
        .map(String::from)
        .to_vec();
        let e = exposure(
            "/etc/letsencrypt/options-ssl-nginx.conf",
            Role::Included,
            &["/etc/letsencrypt"],
            &[
                ("/etc/nginx/sites-enabled/a", true),
                ("/etc/nginx/sites-enabled/b", true),
                ("/etc/nginx/sites-enabled/a", true),
            ],
        );
        let f = fix(Server::Nginx, Path::new("/etc/nginx/nginx.conf"), &e, &test);
        assert!(f.contains(
            "install -o root -g root -m 0644 /etc/letsencrypt/options-ssl-nginx.conf /etc/nginx/snippets/ && sed -i 's#/etc/letsencrypt/options-ssl-nginx.conf#/etc/nginx/snippets/options-ssl-nginx.conf#' /etc/nginx/sites-enabled/a /etc/nginx/sites-enabled/b && sudo -n /usr/sbin/nginx -t -q -c /etc/nginx/nginx.conf"
        ), "{f}");
        let e = exposure(
            "/etc/letsencrypt/options-ssl-apache.conf",
            Role::Included,
            &["/etc/letsencrypt"],
            &[("/etc/apache2/sites-enabled/x-le-ssl.conf", true)],
        );
        assert!(fix(Server::Apache, Path::new("/etc/apache2/apache2.conf"), &e, &[]).contains("/etc/apache2/conf-available/ && sed -i 's#/etc/letsencrypt/options-ssl-apache.conf#/etc/apache2/conf-available/options-ssl-apache.conf#' /etc/apache2/sites-enabled/x-le-ssl.conf && apache2ctl configtest"));
    }

    #[test]
    fn other_exposures_get_root_ownership_or_a_move() {
        let e = exposure("/etc/nginx/nginx.conf", Role::Main, &[], &[]);
        assert!(
            fix(Server::Nginx, Path::new("/etc/nginx/nginx.conf"), &e, &[]).starts_with(
                "chown root:root /etc/nginx/nginx.conf && chmod go-w /etc/nginx/nginx.conf"
            )
        );
        let e = exposure(
            "/srv/conf/a.conf",
            Role::Included,
            &["/srv/conf"],
            &[("/etc/nginx/nginx.conf", false)],
        );
        let f = fix(Server::Nginx, Path::new("/etc/nginx/nginx.conf"), &e, &[]);
        assert!(
            f.contains("chown root:root /srv/conf && chmod go-w /srv/conf"),
            "{f}"
        );
        let e = exposure(
            "/srv/my conf/a.conf",
            Role::Included,
            &["/srv/my conf"],
            &[("/etc/nginx/nginx.conf", true)],
        );
        assert!(
            fix(Server::Nginx, Path::new("/etc/nginx/nginx.conf"), &e, &[])
                .contains("copy it to /etc/nginx/snippets/a.conf")
        );
    }
}
