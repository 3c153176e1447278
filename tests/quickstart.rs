//! The production checklist (docs/SETUP.md), executed: the shell blocks marked
//! `<!-- quickstart: ROLE -->` in docs/SETUP.md are read from the file (never re-typed here) and run
//! with `/bin/sh -e` on fresh nodes of a namespaced bed (each node its own network namespace,
//! as each web server is its own machine: node I's block runs inside it with `ip netns exec`),
//! with only names, addresses and paths substituted (`web1`/192.0.2.11 → node 1 at its
//! 198.18.B.1, `/etc/...` → under the node's own directory, the account `certherd` → one of this
//! bed's own, since accounts are global to the machine). The contrib files the checklist installs
//! get the same substitutions. The primary scans its peers' host keys over the bridge by exactly
//! the `host` its config names, and the peers accept its key only `from=` its own address. Then
//! `certherd issue` and `certherd renew` run through the result (real certbot, pebble), and every
//! node must serve the certificate over TLS on its own address: an edit of docs/SETUP.md that breaks the
//! set-up breaks this test.
//!
//! The bed has no systemd: `systemctl` and `sshd` are small shims that log what they were asked
//! (and SIGHUP the node's own sshd for `reload ssh`; `sshd -t` checks the node's own config).
//!
//! Proves Guarantees 1 and 7 of docs/GUARANTEES.md (the list there names each test): issuance
//! through peers set up exactly as documented, each agent under its own non-root account with
//! only the documented sudo rights.

mod common;
use common::*;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The production checklist (docs/SETUP.md, moved out of the README).
const SETUP: &str = include_str!("../docs/SETUP.md");

/// The shell block right after `<!-- quickstart: ROLE -->`.
fn block(role: &str) -> String {
    let marker = format!("<!-- quickstart: {role} -->");
    let at = SETUP
        .find(&marker)
        .unwrap_or_else(|| panic!("docs/SETUP.md has no {marker}"));
    let rest = &SETUP[at + marker.len()..];
    let start = rest
        .find("```sh\n")
        .expect("a ```sh block after the marker")
        + 6;
    let end = rest[start..].find("\n```").expect("the block's end") + start;
    rest[start..end].to_owned()
}

/// Everything the test created outside the bed's directory; removed on drop (also on panic).
struct Globals {
    account: String,
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Globals {
    /// Removes what a run with the same bed index left when it was killed before its Drop.
    fn clean(self) -> Globals {
        self.remove();
        self
    }

    fn remove(&self) {
        for f in &self.files {
            let _ = std::fs::remove_file(f);
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir_all(d);
        }
        let _ = std::fs::remove_dir("/etc/ssh/certherd-bed"); // only when no other bed uses it
        let _ = Command::new("/usr/sbin/userdel")
            .arg("-f")
            .arg(&self.account)
            .output();
    }
}

impl Drop for Globals {
    fn drop(&mut self) {
        self.remove();
    }
}

/// One node's substitutions: the checklist's names, addresses and paths → this bed's.
struct Node {
    n: usize,
    /// Stands for `/` of a production machine (except the global files below).
    root: PathBuf,
    /// The directory the checklist runs from (the built binary, contrib/, the primary's key).
    work: PathBuf,
    pairs: Vec<(String, String)>,
}

impl Node {
    fn new(bed: &Bed, n: usize, account: &str, role_web: &[(usize, &str)]) -> Node {
        let root = bed.node_dir(n).join("prod");
        let work = bed.node_dir(n).join("checkout");
        let b = bed.index();
        let p = |rel: &str| root.join(rel).to_string_lossy().into_owned();
        let mut pairs: Vec<(String, String)> = vec![
            // the account: only where the checklist names it, never in paths or commands
            ("certherd:certherd".into(), format!("{account}:{account}")),
            (
                "-o certherd -g certherd".into(),
                format!("-o {account} -g {account}"),
            ),
            ("/bin/sh certherd".into(), format!("/bin/sh {account}")),
            ("-p '*' certherd".into(), format!("-p '*' {account}")),
            (
                "user = \"certherd\"".into(),
                format!("user = \"{account}\""),
            ),
            (
                "Match User certherd".into(),
                format!("Match User {account}"),
            ),
            ("certherd ALL=".into(), format!("{account} ALL=")),
            // global files sudo and sshd must find: their own names for this bed and node
            (
                "/etc/sudoers.d/certherd".into(),
                format!("/etc/sudoers.d/certherd-q{b}-{n}"),
            ),
            (
                "/etc/ssh/authorized_keys/certherd".into(),
                format!("/etc/ssh/certherd-bed/q{b}-{n}/{account}"),
            ),
            (
                "/etc/ssh/authorized_keys".into(),
                format!("/etc/ssh/certherd-bed/q{b}-{n}"),
            ),
            // paths under the node's own directory
            (
                "/usr/local/bin/certherd".into(),
                p("usr/local/bin/certherd"),
            ),
            ("/etc/letsencrypt".into(), p("etc/letsencrypt")),
            ("/var/lib/certherd".into(), p("var/lib/certherd")),
            ("/var/lib/letsencrypt".into(), p("var/lib/letsencrypt")),
            ("/var/log/letsencrypt".into(), p("var/log/letsencrypt")),
            ("/etc/certherd".into(), p("etc/certherd")),
            (
                "/etc/ssh/sshd_config.d".into(),
                bed.sshd_conf_d(n).to_string_lossy().into_owned(),
            ),
            ("/etc/systemd/system".into(), p("etc/systemd/system")),
            (
                "/etc/nginx/nginx.conf".into(),
                bed.nginx_conf(n).to_string_lossy().into_owned(),
            ),
            // the rest of nginx's directory: the node's own (its snippets/ the checklist makes)
            (
                "/etc/nginx".into(),
                bed.nginx_conf(n)
                    .parent()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            ),
            ("/etc/apache2".into(), p("etc/apache2")),
        ];
        for (node, web) in role_web {
            pairs.push((format!("192.0.2.1{}", &web[3..]), bed.ip(*node).to_string()));
            pairs.push((web.to_string(), format!("node{node}")));
        }
        Node {
            n,
            root,
            work,
            pairs,
        }
    }

    fn subst(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for (from, to) in &self.pairs {
            out = out.replace(from, to);
        }
        out
    }

    /// The checkout the commands run from: `certherd` (the built binary) and the contrib
    /// files the checklist installs, substituted like the commands.
    fn prepare(&self, bed: &Bed) {
        for d in [
            "usr/local/bin",
            "etc/systemd/system",
            "var/lib",
            "var/log",
            "etc/ssh",
        ] {
            std::fs::create_dir_all(self.root.join(d)).unwrap();
        }
        std::fs::create_dir_all(bed.sshd_conf_d(self.n)).unwrap();
        for rel in [
            "sudoers/certherd",
            "ssh/sshd-certherd.conf",
            "systemd/certherd-renew.service",
            "systemd/certherd-renew.timer",
        ] {
            let src = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("contrib")
                .join(rel);
            let dst = self.work.join("contrib").join(rel);
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::write(&dst, self.subst(&std::fs::read_to_string(src).unwrap())).unwrap();
        }
        std::os::unix::fs::symlink(bed.certherd_bin(), self.work.join("certherd")).unwrap();
        // Debian's certbot package (and its timer) only on the primary: the every-node block
        // must also run on nodes without certbot.
        let units = self.root.join("lib/systemd/system");
        std::fs::create_dir_all(&units).unwrap();
        if self.n == 1 {
            std::fs::write(units.join("certbot.timer"), "[Timer]\n").unwrap();
        }
    }

    /// Runs one checklist block here; panics with its transcript when it fails.
    fn run(&self, bed: &Bed, shims: &Path, role: &str) -> Ran {
        self.run_script(bed, shims, role, &block(role))
    }

    /// Runs `script` (substituted) with `/bin/sh -ec` inside this node's namespace.
    fn run_script(&self, bed: &Bed, shims: &Path, role: &str, script: &str) -> Ran {
        let script = self.subst(script);
        let path = format!(
            "{}:{}:/usr/sbin:/usr/bin:/sbin:/bin",
            self.root.join("usr/local/bin").display(),
            shims.display()
        );
        let mut sh = bed.command_on(self.n, "/bin/sh");
        sh.arg("-ec")
            .arg(&script)
            .current_dir(&self.work)
            .env("PATH", path)
            .env("CERTHERD_CONFIG", self.config())
            .env("QS_LOG", self.root.join("systemctl.log"))
            .env("QS_UNITS", self.root.join("lib/systemd/system"))
            .env("QS_SSHD_PID", bed.sshd_pid_file(self.n))
            .env("QS_SSHD_CONF", bed.sshd_conf(self.n));
        let ran = bed
            .node(self.n)
            .command(sh)
            .any_status()
            .run_within(Duration::from_secs(120));
        ran.ensure(
            ran.code() == Some(0),
            format!(
                "docs/SETUP.md block `{role}` succeeds on node {}:\n--- script\n{script}",
                self.n
            ),
        );
        ran
    }

    fn config(&self) -> PathBuf {
        self.root.join("etc/certherd/certherd.toml")
    }

    fn letsencrypt(&self) -> PathBuf {
        self.root.join("etc/letsencrypt")
    }

    fn webroot(&self) -> PathBuf {
        self.root.join("var/lib/certherd/webroot")
    }
}

/// `systemctl` and `sshd` for a bed without systemd: log every call; `reload ssh` re-reads the
/// node's sshd config (SIGHUP), `sshd -t` tests the node's own config; `cat` and `disable` of a
/// unit the node does not have (none in `$QS_UNITS`) fail as systemd's do.
fn shims(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let write = |name: &str, body: &str| {
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    write(
        "systemctl",
        "echo \"systemctl $*\" >> \"$QS_LOG\"\n\
         case \"$*\" in\n  \"reload ssh\") kill -HUP \"$(cat \"$QS_SSHD_PID\")\" ;;\n  \
           \"cat \"*|\"disable \"*) for unit; do :; done\n    \
           [ -e \"$QS_UNITS/$unit\" ] || { echo \"No files found for $unit.\" >&2; exit 1; } ;;\nesac",
    );
    write(
        "sshd",
        "echo \"sshd $*\" >> \"$QS_LOG\"\n\
         [ \"$*\" = \"-t\" ] || { echo \"shim: only sshd -t\" >&2; exit 2; }\n\
         exec /usr/sbin/sshd -t -f \"$QS_SSHD_CONF\"",
    );
}

/// Points the node's nginx at the checklist's webroot and adds a TLS server for `lineage` from
/// the checklist's letsencrypt dir (once the certificate is there).
fn nginx_for(bed: &Bed, node: &Node, lineage: Option<&str>) {
    let conf = bed.nginx_conf(node.n);
    let text = std::fs::read_to_string(&conf).unwrap();
    let old = bed.webroot(node.n).to_string_lossy().into_owned();
    std::fs::write(&conf, text.replace(&old, &node.webroot().to_string_lossy())).unwrap();
    if let Some(l) = lineage {
        let live = node.letsencrypt().join("live").join(l);
        std::fs::write(
            bed.nginx_tls_conf(node.n),
            format!(
                "server {{\n  listen {ip}:443 ssl;\n  server_name _;\n  ssl_certificate {l}/fullchain.pem;\n  ssl_certificate_key {l}/privkey.pem;\n}}\n",
                ip = bed.ip(node.n),
                l = live.display()
            ),
        )
        .unwrap();
    }
    bed.reload_nginx(node.n).unwrap();
}

fn certbot_args(bed: &Bed, primary: &Node) -> Vec<String> {
    let s = |p: PathBuf| p.to_string_lossy().into_owned();
    vec![
        "--server".into(),
        bed.pebble_url(),
        "--config-dir".into(),
        s(primary.letsencrypt()),
        // the checklist's own directories (the account owns them; certbot runs as it)
        "--work-dir".into(),
        s(primary.root.join("var/lib/letsencrypt")),
        "--logs-dir".into(),
        s(primary.root.join("var/log/letsencrypt")),
        "--non-interactive".into(),
        "--agree-tos".into(),
        "--register-unsafely-without-email".into(),
    ]
}

/// The installed certherd on `node`, run in its namespace as root (as the timer would run it;
/// certherd itself becomes the letsencrypt dir's owner).
fn certherd_as_documented(bed: &Bed, node: &Node, args: &[&str], extra: &[String]) -> Command {
    let mut cmd = bed.command_on(node.n, node.root.join("usr/local/bin/certherd"));
    cmd.args(args)
        .args(extra)
        .env("CERTHERD_CONFIG", node.config())
        .env(
            "PATH",
            format!(
                "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                node.root.join("usr/local/bin").display()
            ),
        );
    cmd
}

#[test]
fn readme_checklist_sets_up_nodes_that_issue_and_renew() {
    let bed = Bed::start(BedOptions {
        nodes: 3,
        ca: true,
        certherd: certherd_bin().into(),
        netns: true,
    })
    .unwrap_or_else(|e| panic!("namespaced test bed did not start: {e}"));
    let b = bed.index();
    let account = format!("certherd-q{b}");
    let mut globals = Globals {
        account: account.clone(),
        files: (1..=3)
            .map(|n| PathBuf::from(format!("/etc/sudoers.d/certherd-q{b}-{n}")))
            .collect(),
        dirs: (1..=3)
            .map(|n| PathBuf::from(format!("/etc/ssh/certherd-bed/q{b}-{n}")))
            .collect(),
    }
    .clean();
    let shim_dir = bed.root().join("shims");
    shims(&shim_dir);
    let web = [(1, "web1"), (2, "web2"), (3, "web3")];
    let nodes: Vec<Node> = (1..=3)
        .map(|n| {
            // A peer's block is written for web2: on node 3 it stands for node 3.
            let map: Vec<(usize, &str)> = if n == 1 {
                web.to_vec()
            } else {
                vec![(1, "web1"), (n, "web2")]
            };
            Node::new(&bed, n, &account, &map)
        })
        .collect();

    // 1. Every node: the first run creates the account, the others find it (one machine's
    // account per node in production; here they share one, as nodes share this machine).
    // Node 2 already had certificates: certbot left root-owned 0700 `archive/` and `live/`
    // (the checklist's `chown -R` is what lets the agent install there).
    for dir in ["archive/old.test", "live/old.test"] {
        let d = nodes[1].letsencrypt().join(dir);
        std::fs::create_dir_all(&d).unwrap();
        let parent = d.parent().unwrap();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    // Node 1's nginx was set up by `certbot --nginx`: its TLS options file in the letsencrypt
    // dir (root's, as certbot left it), included by the node's config. The checklist moves it
    // to a root-owned copy before the account gets the letsencrypt dir (issue 20).
    let options = nodes[0].letsencrypt().join("options-ssl-nginx.conf");
    std::fs::create_dir_all(nodes[0].letsencrypt()).unwrap();
    std::fs::write(&options, CERTBOT_OPTIONS).unwrap();
    std::fs::write(
        bed.nginx_tls_conf(1),
        format!("include {};\n", options.display()),
    )
    .unwrap();
    for node in &nodes {
        node.prepare(&bed);
        let mut script = block("every-node");
        if node.n > 1 {
            // useradd would fail on the second node of one machine: the account exists.
            let without: String = script
                .lines()
                .filter(|l| !l.starts_with("useradd "))
                .map(|l| format!("{l}\n"))
                .collect();
            assert_ne!(without, script, "the checklist creates the account");
            script = without;
        }
        node.run_script(&bed, &shim_dir, "every-node", &script);
        nginx_for(&bed, node, None);
    }
    assert_options_moved(&bed, &nodes[0], &options);
    // certherd, as the account, keeps its ssh control sockets in /run/certherd-<uid> (made by
    // root at the switch), else /tmp/certherd-<uid>: removed with the account.
    let agent = nix::unistd::User::from_name(&account).unwrap().unwrap();
    for dir in ["/run/certherd", "/tmp/certherd"] {
        globals
            .dirs
            .push(PathBuf::from(format!("{dir}-{}", agent.uid)));
    }
    // 2. The primary, 3. every peer (with the primary's public key copied over).
    nodes[0].run(&bed, &shim_dir, "primary");
    assert_scanned_by_configured_host(&bed, &nodes[0]);
    let public = nodes[0].root.join("etc/certherd/id_ed25519.pub");
    for node in &nodes[1..] {
        std::fs::copy(&public, node.work.join("id_ed25519.pub")).unwrap();
        node.run(&bed, &shim_dir, "peer");
        // The key works only from the primary's own address (the bridge carries no other).
        let keys =
            std::fs::read_to_string(format!("/etc/ssh/certherd-bed/q{b}-{}/{account}", node.n))
                .unwrap();
        assert!(
            keys.starts_with(&format!("restrict,from=\"{}\",", bed.ip(1))),
            "node {}: {keys}",
            node.n
        );
    }
    // The bed's only addition to the documented config: certbot's ACME server and directories.
    let cfg = std::fs::read_to_string(nodes[0].config()).unwrap();
    let certbot = format!(
        "primary = \"node1\"\ncertbot = [\"/usr/bin/certbot\", {}]\n",
        certbot_args(&bed, &nodes[0])
            .iter()
            .filter(|a| !a.starts_with("--agree") && !a.starts_with("--register"))
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    std::fs::write(
        nodes[0].config(),
        cfg.replacen("primary = \"node1\"\n", &certbot, 1),
    )
    .unwrap();
    // 5. Last: sync (nothing yet) and doctor.
    let ran = nodes[0].run(&bed, &shim_dir, "primary-last");
    ran.ensure(
        !ran.both().contains("FAIL"),
        "no FAIL in the block's output",
    );

    for node in &nodes {
        // certbot.timer disabled where it exists (node 1), and the block went on where not.
        let log = std::fs::read_to_string(node.root.join("systemctl.log")).unwrap();
        assert_eq!(
            log.contains("systemctl disable --now certbot.timer"),
            node.n == 1,
            "node {}: {log}",
            node.n
        );
        assert!(
            log.contains("systemctl cat snap.certbot.renew.timer"),
            "node {}: {log}",
            node.n
        );
        let le = std::fs::metadata(node.letsencrypt()).unwrap();
        let agent = nix::unistd::User::from_name(&account).unwrap().unwrap();
        assert_eq!(
            le.uid(),
            agent.uid.as_raw(),
            "the account owns the letsencrypt dir"
        );
    }

    // Issue through the set-up, with DNS pointing only at the peers.
    bed.dns("site.test", &[2, 3]).unwrap();
    let extra: Vec<String> = certbot_args(&bed, &nodes[0]);
    let mut extra_args = vec!["--".to_string()];
    extra_args.extend(extra);
    bed.node(1)
        .command(certherd_as_documented(
            &bed,
            &nodes[0],
            &["issue", "-d", "site.test"],
            &extra_args,
        ))
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .run();
    for node in &nodes {
        let live = node.letsencrypt().join("live/site.test/cert.pem");
        assert!(live.exists(), "node {} has the certificate", node.n);
        nginx_for(&bed, node, Some("site.test"));
    }
    assert_every_node_serves(&bed, &nodes, "after issue");
    for node in &nodes[1..] {
        let key =
            std::fs::canonicalize(node.letsencrypt().join("live/site.test/privkey.pem")).unwrap();
        let agent = nix::unistd::User::from_name(&account).unwrap().unwrap();
        assert_eq!(
            std::fs::metadata(&key).unwrap().uid(),
            agent.uid.as_raw(),
            "node {}: installed by the agent's account",
            node.n
        );
    }

    // Renew where [renew] says: a peer's timer does nothing, the primary's renews, and the new
    // version reaches every node.
    bed.node(2)
        .command(certherd_as_documented(&bed, &nodes[1], &["renew"], &[]))
        .stderr_has(["not the primary"])
        .run();
    // Renew where [renew] says: the new version reaches and is served by every node.
    bed.node(1)
        .command(certherd_as_documented(
            &bed,
            &nodes[0],
            &["renew", "--", "--force-renewal"],
            &[],
        ))
        .env("REQUESTS_CA_BUNDLE", bed.ca_bundle())
        .run();
    bed.node(1)
        .command(certherd_as_documented(&bed, &nodes[0], &["status"], &[]))
        .expect_status(0)
        .run();
    for node in &nodes {
        let link = std::fs::read_link(node.letsencrypt().join("live/site.test/cert.pem")).unwrap();
        assert_eq!(
            link,
            Path::new("../../archive/site.test/cert2.pem"),
            "node {}",
            node.n
        );
    }
    // Served by every node after the deploy's own `[reload]` (sudo nginx -s reload): the test
    // reloads nothing itself after the renewal.
    assert_every_node_serves(&bed, &nodes, "after renew");
}

/// What `certbot --nginx` writes as `options-ssl-nginx.conf` (its settings that are valid at
/// `http` level, where the bed includes it).
const CERTBOT_OPTIONS: &str = "ssl_session_timeout 1440m;\nssl_session_tickets off;\nssl_protocols TLSv1.2 TLSv1.3;\nssl_prefer_server_ciphers off;\n";

/// After the every-node block: node 1's config includes a root-owned copy of certbot's options
/// file in nginx's own `snippets/`, never the one in the letsencrypt dir the account now owns.
fn assert_options_moved(bed: &Bed, node: &Node, options: &Path) {
    let tls = std::fs::read_to_string(bed.nginx_tls_conf(node.n)).unwrap();
    let copy = bed
        .nginx_conf(node.n)
        .parent()
        .unwrap()
        .join("snippets/options-ssl-nginx.conf");
    assert_eq!(
        tls,
        format!("include {};\n", copy.display()),
        "the checklist did not point the include at the root-owned copy"
    );
    assert!(!tls.contains(&options.to_string_lossy().into_owned()));
    let meta = std::fs::metadata(&copy).unwrap();
    assert_eq!(
        (meta.uid(), meta.mode() & 0o7777),
        (0, 0o644),
        "{}",
        copy.display()
    );
    assert_eq!(std::fs::read_to_string(&copy).unwrap(), CERTBOT_OPTIONS);
}

/// The known_hosts the primary's block wrote holds one line per configured peer, under exactly
/// the `host` of its `[[peers]]` entry, with that node's own host key (the bed's record of it).
fn assert_scanned_by_configured_host(bed: &Bed, primary: &Node) {
    let scanned = std::fs::read_to_string(primary.root.join("etc/certherd/known_hosts")).unwrap();
    let config = std::fs::read_to_string(primary.config()).unwrap();
    let hosts: Vec<&str> = config
        .lines()
        .filter_map(|l| l.strip_prefix("host = \""))
        .map(|h| h.trim_end_matches('"'))
        .collect();
    let peers: Vec<String> = (2..=bed.nodes()).map(|n| bed.ip(n).to_string()).collect();
    assert_eq!(
        hosts, peers,
        "the config's peers are the nodes' own addresses"
    );
    let bed_keys = std::fs::read_to_string(bed.known_hosts()).unwrap();
    let entries: Vec<(String, String)> = scanned
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut w = l.split_whitespace();
            let host = w.next().unwrap_or("").to_owned();
            let key: Vec<&str> = w.take(2).collect();
            (host, key.join(" "))
        })
        .collect();
    let mut scanned_hosts: Vec<&str> = entries.iter().map(|(h, _)| h.as_str()).collect();
    scanned_hosts.sort_unstable();
    assert_eq!(scanned_hosts, hosts, "known_hosts: {scanned}");
    for (host, key) in &entries {
        let expected = format!("{host} {key}");
        assert!(
            bed_keys.lines().any(|l| l == expected),
            "known_hosts has another key for {host} than the node's own: {scanned}"
        );
    }
}

/// Every node serves the certificate its own `live/site.test` names, over TLS on its own
/// address (read with `openssl s_client` from outside the nodes, across the bridge). nginx
/// reloads asynchronously (old workers finish first): bounded wait.
fn assert_every_node_serves(bed: &Bed, nodes: &[Node], context: &str) {
    for node in nodes {
        let want = file_serial(&node.letsencrypt().join("live/site.test/cert.pem"));
        assert!(
            !want.is_empty(),
            "node {}: no certificate ({context})",
            node.n
        );
        let served = wait_served(
            bed,
            node.n..=node.n,
            "site.test",
            &want,
            Duration::from_secs(10),
        );
        let got = if served {
            want.clone()
        } else {
            served_serial(bed, node.n, "site.test")
        };
        assert!(
            served,
            "node {} at {} serves {got:?}, its live/ names {want} ({context})",
            node.n,
            bed.ip(node.n)
        );
    }
}

/// The non-comment, non-empty lines of a text, trimmed.
fn meaningful(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

fn contrib(rel: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("contrib")
            .join(rel),
    )
    .unwrap()
}

/// One recipe: SECURITY.md shows the shipped sshd block, authorized_keys line and sudoers line
/// verbatim, and its `[reload]` is docs/SETUP.md's; its checklist installs those very files
/// and writes the same key line. (Issue 11 found three different sshd recipes.)
#[test]
fn one_recipe_in_readme_security_md_and_contrib() {
    let security = include_str!("../SECURITY.md");
    let sshd = meaningful(&contrib("ssh/sshd-certherd.conf"));
    let at = security
        .find(&sshd[0])
        .expect("SECURITY.md shows the Match block");
    let shown: Vec<String> = meaningful(&security[at..])
        .into_iter()
        .take(sshd.len())
        .collect();
    assert_eq!(
        shown, sshd,
        "SECURITY.md's sshd block differs from contrib/ssh"
    );

    let key_line = &meaningful(&contrib("ssh/authorized_keys.example"))[0];
    let options = key_line.split(" ssh-ed25519 ").next().unwrap();
    assert!(
        security.contains(options),
        "SECURITY.md's authorized_keys line differs from contrib/ssh: {options}"
    );
    let peer = block("peer");
    assert!(
        peer.contains(&options.replace('"', "\\\"")),
        "docs/SETUP.md's peer block writes another key line than contrib/ssh:\n{peer}"
    );

    let sudoers = &meaningful(&contrib("sudoers/certherd"))[0];
    assert!(
        security.contains(sudoers.as_str()),
        "SECURITY.md's sudoers line differs from contrib/sudoers: {sudoers}"
    );
    let every = block("every-node");
    for file in ["contrib/sudoers/certherd", "contrib/ssh/sshd-certherd.conf"] {
        assert!(
            every.contains(file),
            "the checklist does not install {file}"
        );
    }

    let reload = |text: &str| -> Vec<String> {
        let at = text.find("\n[reload]").expect("a [reload] section") + 1;
        meaningful(&text[at..])
            .into_iter()
            .skip(1)
            .take(2)
            .collect()
    };
    assert_eq!(
        reload(security),
        reload(SETUP),
        "SECURITY.md's [reload] differs from docs/SETUP.md's"
    );
    for cmd in reload(SETUP) {
        // ["sudo", "-n", "/usr/sbin/nginx", "-t", ...] -> "/usr/sbin/nginx -t ..."
        let argv: Vec<&str> = cmd
            .split('[')
            .nth(1)
            .unwrap()
            .trim_end_matches(']')
            .split(", ")
            .map(|a| a.trim_matches('"'))
            .collect();
        assert_eq!(&argv[..2], ["sudo", "-n"], "{cmd}");
        assert!(
            sudoers.contains(&argv[2..].join(" ")),
            "[reload] `{cmd}` is not a command the sudoers line allows"
        );
    }
}
