//! The scan over config trees written under a temporary root (this process's uid standing for
//! root): nested and relative includes, globs, comments and quotes, cycles, missing includes,
//! Apache's ServerRoot and directories, and what makes a file exposed.

use super::*;
use std::os::unix::fs::PermissionsExt;

/// A temporary root; removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let root =
            std::env::temp_dir().join(format!("certherd-webconf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        chmod(&root, 0o755);
        Tree(root)
    }

    /// Writes `text` at the logical path `at` (0644, directories 0755).
    fn file(&self, at: &str, text: &str) -> &Tree {
        let p = self.0.join(at.trim_start_matches('/'));
        let mut dir = p.parent().unwrap().to_owned();
        std::fs::create_dir_all(&dir).unwrap();
        while dir.starts_with(&self.0) && dir != self.0 {
            chmod(&dir, 0o755);
            dir.pop();
        }
        std::fs::write(&p, text).unwrap();
        chmod(&p, 0o644);
        self
    }

    fn chmod(&self, at: &str, mode: u32) {
        chmod(&self.0.join(at.trim_start_matches('/')), mode);
    }

    fn scanner(&self) -> Scanner {
        Scanner::under(&self.0, nix::unistd::geteuid().as_raw())
    }

    fn nginx(&self) -> Scan {
        self.scanner().scan(
            Server::Nginx,
            Path::new("/etc/nginx/nginx.conf"),
            Path::new("/usr/share/nginx"),
        )
    }

    fn apache(&self) -> Scan {
        self.scanner().scan(
            Server::Apache,
            Path::new("/etc/apache2/apache2.conf"),
            Path::new("/etc/apache2"),
        )
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn paths(v: &[PathBuf]) -> Vec<&str> {
    v.iter().map(|p| p.to_str().unwrap()).collect()
}

/// Debian's nginx layout with certbot's include in a site: every file is found (relative
/// includes against the conf dir, globs in name order, quoted and commented lines as nginx
/// reads them), and nothing is exposed while root owns it all.
#[test]
fn nested_relative_glob_quoted_and_commented_includes_are_followed() {
    let t = Tree::new("nested");
    t.file(
        "/etc/nginx/nginx.conf",
        "user www-data;\ninclude /etc/nginx/modules-enabled/*.conf;\n\
         events { worker_connections 768; }\n\
         http {\n  include mime.types; # include /etc/nginx/commented.conf;\n\
         \x20 # include /etc/nginx/also-commented.conf;\n\
         \x20 include \"conf.d/*.conf\";\n  include 'sites-enabled/*';\n}\n",
    )
    .file("/etc/nginx/mime.types", "types { text/html html; }\n")
    .file("/etc/nginx/modules-enabled/50-mod.conf", "load_module /usr/lib/nginx/modules/m.so;\n")
    .file("/usr/lib/nginx/modules/m.so", "")
    .file("/etc/nginx/conf.d/b.conf", "include snippets/s.conf;\n")
    .file("/etc/nginx/conf.d/a.conf", "")
    .file("/etc/nginx/conf.d/.hidden.conf", "include /etc/nginx/never.conf;\n")
    .file("/etc/nginx/snippets/s.conf", "")
    .file(
        "/etc/nginx/sites-enabled/default",
        "server {\n  listen 443 ssl;\n  include /etc/letsencrypt/options-ssl-nginx.conf;\n  ssl_dhparam /etc/letsencrypt/ssl-dhparams.pem;\n}\n",
    )
    .file("/etc/letsencrypt/options-ssl-nginx.conf", "ssl_session_cache shared:le_nginx_SSL:10m;\n")
    .file("/etc/letsencrypt/ssl-dhparams.pem", "");
    let scan = t.nginx();
    assert_eq!(
        paths(&scan.read),
        [
            "/etc/nginx/nginx.conf",
            "/etc/nginx/modules-enabled/50-mod.conf",
            "/etc/nginx/mime.types",
            "/etc/nginx/conf.d/a.conf",
            "/etc/nginx/conf.d/b.conf",
            "/etc/nginx/snippets/s.conf",
            "/etc/nginx/sites-enabled/default",
            "/etc/letsencrypt/options-ssl-nginx.conf",
        ]
    );
    assert_eq!(scan.exposed, [], "{:?}", scan.exposed);
    assert_eq!(scan.notes, Vec::<String>::new());
}

/// After the checklist's `chown -R certherd: /etc/letsencrypt` (here: the directory writable by
/// every account): certbot's include and its dhparam file are named, with the line that names
/// each, and moving them to a root-owned place clears it.
#[test]
fn a_file_in_an_account_writable_directory_is_exposed_with_its_includers() {
    let t = Tree::new("exposed");
    let site = "server {\n  include /etc/letsencrypt/options-ssl-nginx.conf;\n  ssl_dhparam /etc/letsencrypt/ssl-dhparams.pem;\n}\n";
    t.file(
        "/etc/nginx/nginx.conf",
        "http { include sites-enabled/*; }\n",
    )
    .file("/etc/nginx/sites-enabled/a", site)
    .file("/etc/nginx/sites-enabled/b", site)
    .file("/etc/letsencrypt/options-ssl-nginx.conf", "")
    .file("/etc/letsencrypt/ssl-dhparams.pem", "");
    t.chmod("/etc/letsencrypt", 0o777);
    let scan = t.nginx();
    let files: Vec<_> = scan
        .exposed
        .iter()
        .map(|e| e.file.to_str().unwrap())
        .collect();
    assert_eq!(
        files,
        [
            "/etc/letsencrypt/options-ssl-nginx.conf",
            "/etc/letsencrypt/ssl-dhparams.pem"
        ]
    );
    let e = &scan.exposed[0];
    assert_eq!(e.role, Role::Included);
    assert_eq!(e.writable_dirs, [PathBuf::from("/etc/letsencrypt")]);
    assert_eq!(
        e.describe(Server::Nginx),
        "root's nginx reads as configuration /etc/letsencrypt/options-ssl-nginx.conf (named in /etc/nginx/sites-enabled/a:2, /etc/nginx/sites-enabled/b:2), which a non-root account may change: /etc/letsencrypt: writable by every account (mode 0777)"
    );
    assert_eq!(
        e.reasons,
        ["/etc/letsencrypt: writable by every account (mode 0777)"]
    );
    let by: Vec<_> = e
        .named_by
        .iter()
        .map(|r| (r.file.to_str().unwrap(), r.line, r.literal))
        .collect();
    assert_eq!(
        by,
        [
            ("/etc/nginx/sites-enabled/a", 2, true),
            ("/etc/nginx/sites-enabled/b", 2, true)
        ]
    );
    assert_eq!(scan.exposed[1].role, Role::Loaded);

    // The file itself writable by its group, in a good directory.
    t.chmod("/etc/letsencrypt", 0o755);
    t.chmod("/etc/nginx/sites-enabled/b", 0o664);
    let scan = t.nginx();
    assert_eq!(scan.exposed.len(), 1, "{:?}", scan.exposed);
    let e = &scan.exposed[0];
    assert_eq!(e.file, Path::new("/etc/nginx/sites-enabled/b"));
    assert!(e.writable_dirs.is_empty() && e.reasons[0].starts_with("writable by group"));
    assert!(!e.named_by[0].literal, "named by a glob");

    // The main config itself, and a glob's directory anyone may add files to.
    t.chmod("/etc/nginx/sites-enabled/b", 0o644);
    t.chmod("/etc/nginx/sites-enabled", 0o1777);
    let scan = t.nginx();
    let e = &scan.exposed[0];
    assert_eq!(
        (e.file.to_str().unwrap(), e.role),
        ("/etc/nginx/sites-enabled", Role::Listed)
    );
    t.chmod("/etc/nginx/sites-enabled", 0o755);
    t.chmod("/etc/nginx/nginx.conf", 0o666);
    let scan = t.nginx();
    assert_eq!(scan.exposed[0].role, Role::Main);
    assert!(scan.exposed[0].named_by.is_empty());
}

/// A symlink in a root-owned directory whose target is in a writable one is exposed (Debian's
/// sites-enabled links into sites-available).
#[test]
fn a_links_target_counts() {
    let t = Tree::new("link");
    t.file("/etc/nginx/nginx.conf", "include sites-enabled/*;\n")
        .file("/srv/open/site", "");
    t.chmod("/srv/open", 0o777);
    std::fs::create_dir_all(t.0.join("etc/nginx/sites-enabled")).unwrap();
    std::os::unix::fs::symlink(
        "../../../srv/open/site",
        t.0.join("etc/nginx/sites-enabled/site"),
    )
    .unwrap();
    let scan = t.nginx();
    assert_eq!(scan.exposed.len(), 1, "{:?}", scan.exposed);
    assert_eq!(
        scan.exposed[0].file,
        Path::new("/etc/nginx/sites-enabled/site")
    );
    assert!(scan.exposed[0].reasons[0].starts_with("/srv/open: writable by every account"));
}

/// Includes that loop end (each file is read once); a deep chain stops at the depth limit with
/// a note rather than running on.
#[test]
fn cycles_end_and_depth_is_bounded() {
    let t = Tree::new("cycle");
    t.file("/etc/nginx/nginx.conf", "include a.conf;\n")
        .file("/etc/nginx/a.conf", "include b.conf;\n")
        .file(
            "/etc/nginx/b.conf",
            "include a.conf; include nginx.conf; include b.conf;\n",
        );
    let scan = t.nginx();
    assert_eq!(
        paths(&scan.read),
        [
            "/etc/nginx/nginx.conf",
            "/etc/nginx/a.conf",
            "/etc/nginx/b.conf"
        ]
    );
    let limited = t
        .scanner()
        .with_limits(Limits {
            depth: 1,
            ..Limits::default()
        })
        .scan(
            Server::Nginx,
            Path::new("/etc/nginx/nginx.conf"),
            Path::new("/"),
        );
    assert_eq!(limited.read.len(), 2);
    assert!(
        limited.notes[0].contains("not followed"),
        "{:?}",
        limited.notes
    );
}

/// A missing include: nginx's (and Apache's `Include`) is noted, Apache's `IncludeOptional`
/// is not; a glob that matches nothing is no note either. A missing include in a writable
/// directory is exposed: the account can create it.
#[test]
fn missing_includes_optional_or_not() {
    let t = Tree::new("missing");
    t.file(
        "/etc/nginx/nginx.conf",
        "include /etc/nginx/gone.conf;\ninclude /etc/nginx/none/*.conf;\n",
    );
    let scan = t.nginx();
    assert_eq!(scan.notes.len(), 1, "{:?}", scan.notes);
    assert!(scan.notes[0].starts_with("/etc/nginx/gone.conf (named in /etc/nginx/nginx.conf:1)"));
    t.file(
        "/etc/apache2/apache2.conf",
        "IncludeOptional gone.conf\nIncludeOptional /open/*.conf\nInclude also-gone.conf\n",
    );
    std::fs::create_dir_all(t.0.join("open")).unwrap();
    t.chmod("/open", 0o777);
    let scan = t.apache();
    assert_eq!(scan.notes.len(), 1, "{:?}", scan.notes);
    assert!(scan.notes[0].starts_with("/etc/apache2/also-gone.conf"));
    assert_eq!(scan.exposed.len(), 1, "{:?}", scan.exposed);
    assert_eq!(
        (scan.exposed[0].file.to_str().unwrap(), scan.exposed[0].role),
        ("/open", Role::Listed)
    );
}

/// Debian's apache2.conf shape: relative to ServerRoot (changed by the directive), `Include`
/// of a directory reads its files, and certbot's `options-ssl-apache.conf` in an account's
/// directory — where a piped `CustomLog` would run as root — is exposed.
#[test]
fn apache_server_root_directories_and_options_ssl_apache() {
    let t = Tree::new("apache");
    t.file(
        "/etc/apache2/apache2.conf",
        "# ServerRoot \"/nowhere\"\nServerRoot \"/srv/httpd\"\nInclude ports.conf\n\
         IncludeOptional mods-enabled/*.load\nInclude conf.d\n\
         <IfModule ssl_module>\n  IncludeOptional \"sites-enabled/*.conf\"\n</IfModule>\n",
    )
    .file("/srv/httpd/ports.conf", "Listen 80\n")
    .file(
        "/srv/httpd/mods-enabled/ssl.load",
        "LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so\n",
    )
    .file("/usr/lib/apache2/modules/mod_ssl.so", "")
    .file("/srv/httpd/conf.d/x.conf", "")
    .file("/srv/httpd/conf.d/sub/y.conf", "")
    .file(
        "/srv/httpd/sites-enabled/site-le-ssl.conf",
        "<VirtualHost *:443>\nInclude /etc/letsencrypt/options-ssl-apache.conf\n</VirtualHost>\n",
    )
    .file(
        "/etc/letsencrypt/options-ssl-apache.conf",
        "CustomLog \"|/bin/sh -c id\" combined\n",
    );
    let scan = t.apache();
    assert_eq!(
        paths(&scan.read),
        [
            "/etc/apache2/apache2.conf",
            "/srv/httpd/ports.conf",
            "/srv/httpd/mods-enabled/ssl.load",
            "/srv/httpd/conf.d/sub/y.conf",
            "/srv/httpd/conf.d/x.conf",
            "/srv/httpd/sites-enabled/site-le-ssl.conf",
            "/etc/letsencrypt/options-ssl-apache.conf",
        ]
    );
    assert_eq!(scan.exposed, []);
    t.chmod("/etc/letsencrypt", 0o777);
    let scan = t.apache();
    assert_eq!(scan.exposed.len(), 1);
    assert_eq!(
        scan.exposed[0].file,
        Path::new("/etc/letsencrypt/options-ssl-apache.conf")
    );
    assert_eq!(scan.exposed[0].named_by[0].line, 2);
}

/// The main configs come from `[reload]`'s argv (`-c`, `-f`/`-d`), else the defaults that exist.
#[test]
fn main_configs_from_the_reload_argv_else_the_installed_defaults() {
    let t = Tree::new("mains");
    let argv = |s: &str| s.split(' ').map(String::from).collect::<Vec<_>>();
    let test = argv("sudo -n /usr/sbin/nginx -t -q -c /srv/n/nginx.conf");
    let reload = argv("sudo -n /usr/sbin/nginx -s reload -c /srv/n/nginx.conf");
    let got = t.scanner().mains(&[&test, &reload]);
    assert_eq!(
        got,
        [(
            Server::Nginx,
            "/srv/n/nginx.conf".into(),
            "/usr/share/nginx".into()
        )]
    );
    t.file("/etc/apache2/apache2.conf", "")
        .file("/etc/nginx/nginx.conf", "");
    let got = t.scanner().mains(&[&test]);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[1].1, Path::new("/etc/apache2/apache2.conf"));
    let apache = argv("sudo -n /usr/sbin/apache2ctl -d /srv/a -f conf/httpd.conf -t");
    let got = t.scanner().mains(&[&apache]);
    assert_eq!(
        got[0],
        (
            Server::Apache,
            "/srv/a/conf/httpd.conf".into(),
            "/srv/a".into()
        )
    );
    assert_eq!(got[1].1, Path::new("/etc/nginx/nginx.conf"));
    let systemctl = argv("sudo -n /usr/bin/systemctl reload nginx");
    assert_eq!(
        t.scanner().mains(&[&systemctl])[0].1,
        Path::new("/etc/nginx/nginx.conf")
    );
}
