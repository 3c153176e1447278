//! What root's web server reads as configuration, and which of it a non-root account could
//! change. `nginx -t` runs as root through sudo after every deploy; a line an account slipped
//! into any file it includes (`ssl_certificate_key engine:/x.so:k;`, Apache's
//! `CustomLog "|cmd"`) runs that account's code as root. So, WITHOUT running the server
//! (parsing the config is what runs the attack), this starts at the main config, follows
//! `include` (nginx) and `Include`/`IncludeOptional` (Apache) with their globs, and reports each
//! file it reads — and each file root loads as code or key material by name (`load_module`,
//! `LoadModule`, `ssl_dhparam`), each directory a glob lists — that a non-root account may
//! write: not root's, group or world writable, or under such a directory.
//!
//! Bounded: at most [`Limits`] files, depth and bytes; each file is read once (a cycle ends
//! there). Paths are looked up under a root (`/` on a node; a directory in tests), and shown as
//! the server names them.

pub mod apache;
pub mod glob;
pub mod nginx;
pub mod place;

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use place::Places;

/// One directive: its name (Apache's lower-cased), its arguments, the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// `include`, `includeoptional`, …
    pub name: String,
    /// Unquoted arguments.
    pub args: Vec<String>,
    /// 1-based line.
    pub line: usize,
}

/// The web servers whose configs are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// nginx: `include`, relative to the main config's directory.
    Nginx,
    /// Apache httpd: `Include`/`IncludeOptional`, relative to `ServerRoot`.
    Apache,
}

impl Server {
    /// Its name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Server::Nginx => "nginx",
            Server::Apache => "apache",
        }
    }

    fn default_main(self) -> &'static str {
        match self {
            Server::Nginx => "/etc/nginx/nginx.conf",
            Server::Apache => "/etc/apache2/apache2.conf",
        }
    }

    /// Debian's compiled-in `ServerRoot` (Apache) or prefix for `load_module` (nginx).
    fn default_base(self) -> &'static str {
        match self {
            Server::Nginx => "/usr/share/nginx",
            Server::Apache => "/etc/apache2",
        }
    }

    /// The server a program name (`/usr/sbin/nginx`, `apache2ctl`) runs, if any.
    fn of_program(arg: &str) -> Option<Server> {
        match Path::new(arg).file_name()?.to_str()? {
            "nginx" => Some(Server::Nginx),
            "apache2" | "apache2ctl" | "apachectl" | "httpd" => Some(Server::Apache),
            _ => None,
        }
    }
}

/// How far a scan goes. A real config is far below every limit; a hostile or broken one (a
/// glob over a huge directory, a symlink loop) stops there, with a note.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Include depth.
    pub depth: usize,
    /// Files read in one scan.
    pub files: usize,
    /// Paths one glob may expand to.
    pub matches: usize,
    /// Bytes read of one file.
    pub bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: 16,
            files: 2000,
            matches: 1000,
            bytes: 4 << 20,
        }
    }
}

/// What root reads a path as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The main config.
    Main,
    /// An included config file.
    Included,
    /// A file named by a directive that root loads (`load_module`, `ssl_dhparam`, …).
    Loaded,
    /// A directory an include's glob lists, or where a missing include would be read from.
    Listed,
}

/// Where a path is named: the file and line of the directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The config file that names it.
    pub file: PathBuf,
    /// Its line.
    pub line: usize,
    /// Named by exactly this path (no glob): rewriting that line moves the include.
    pub literal: bool,
}

/// One path root reads that a non-root account may change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exposure {
    /// The path as the server names it.
    pub file: PathBuf,
    /// How root reads it.
    pub role: Role,
    /// Each way it may be changed: `owned by certherd (uid 998)`, `/etc/letsencrypt: owned by …`.
    pub reasons: Vec<String>,
    /// The directories above it (as shown) a non-root account may write: moving the file out
    /// is the fix. Empty when only the file itself is the problem.
    pub writable_dirs: Vec<PathBuf>,
    /// Every directive that names it.
    pub named_by: Vec<Reference>,
}

/// The result of one scan from one main config.
#[derive(Debug, Clone)]
pub struct Scan {
    /// Which server.
    pub server: Server,
    /// Its main config, as named.
    pub main: PathBuf,
    /// Every config file read, in order.
    pub read: Vec<PathBuf>,
    /// What a non-root account may change.
    pub exposed: Vec<Exposure>,
    /// What could not be followed (missing, unreadable, a limit): not checked, said so.
    pub notes: Vec<String>,
}

/// Where files are looked up, and who counts as root.
#[derive(Debug, Clone)]
pub struct Scanner {
    root: PathBuf,
    trusted_uid: u32,
    limits: Limits,
}

impl Scanner {
    /// A real node: `/`, root (uid 0).
    pub fn system() -> Scanner {
        Scanner::under("/", 0)
    }

    /// Paths under `root` instead of `/`, and `trusted_uid` as root (tests).
    pub fn under(root: impl Into<PathBuf>, trusted_uid: u32) -> Scanner {
        Scanner {
            root: root.into(),
            trusted_uid,
            limits: Limits::default(),
        }
    }

    /// The same scanner with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Scanner {
        self.limits = limits;
        self
    }

    fn real(&self, logical: &Path) -> PathBuf {
        self.root.join(logical.strip_prefix("/").unwrap_or(logical))
    }

    fn shown(&self, real: &Path) -> PathBuf {
        if self.root == Path::new("/") {
            return real.to_owned();
        }
        match real.strip_prefix(&self.root) {
            Ok(rest) => Path::new("/").join(rest),
            Err(_) => real.to_owned(),
        }
    }

    /// The main configs root's server reads on this node: the `-c FILE` (nginx) or `-f FILE`
    /// (Apache, with `-d SERVERROOT`) of the `[reload]` commands that run one, else its
    /// default; and the default of a server no command names, where it is installed.
    pub fn mains(&self, argvs: &[&[String]]) -> Vec<(Server, PathBuf, PathBuf)> {
        let mut out: Vec<(Server, PathBuf, PathBuf)> = Vec::new();
        let mut named = Vec::new();
        for argv in argvs {
            let Some((at, server)) = argv
                .iter()
                .enumerate()
                .find_map(|(i, a)| Some((i, Server::of_program(a)?)))
            else {
                continue;
            };
            named.push(server);
            let value = |flag: &str| {
                argv[at + 1..]
                    .windows(2)
                    .find(|w| w[0] == flag)
                    .map(|w| PathBuf::from(&w[1]))
            };
            let (main, base) = match server {
                Server::Nginx => {
                    let main = value("-c").unwrap_or_else(|| server.default_main().into());
                    (main, server.default_base().into())
                }
                Server::Apache => {
                    let base = value("-d").unwrap_or_else(|| server.default_base().into());
                    let main =
                        value("-f").map_or_else(|| server.default_main().into(), |f| base.join(f));
                    (main, base)
                }
            };
            if !out.iter().any(|(s, m, _)| *s == server && *m == main) {
                out.push((server, main, base));
            }
        }
        for server in [Server::Nginx, Server::Apache] {
            let main = PathBuf::from(server.default_main());
            if !named.contains(&server) && self.real(&main).exists() {
                out.push((server, main, server.default_base().into()));
            }
        }
        out
    }

    /// Scans every main config of [`Scanner::mains`].
    pub fn scan_all(&self, argvs: &[&[String]]) -> Vec<Scan> {
        self.mains(argvs)
            .into_iter()
            .map(|(server, main, base)| self.scan(server, &main, &base))
            .collect()
    }

    /// Follows one server's config from `main`; `base` is Apache's `ServerRoot` (nginx:
    /// `load_module`'s prefix; its includes resolve against the main config's directory).
    pub fn scan(&self, server: Server, main: &Path, base: &Path) -> Scan {
        let mut walk = Walk {
            s: self,
            places: Places::new(self.trusted_uid, &self.root),
            visited: HashSet::new(),
            server,
            base: base.to_owned(),
            conf_dir: main.parent().unwrap_or(Path::new("/")).to_owned(),
            scan: Scan {
                server,
                main: main.to_owned(),
                read: Vec::new(),
                exposed: Vec::new(),
                notes: Vec::new(),
            },
        };
        walk.visit(main, 0, None, false);
        walk.scan
    }
}

/// One scan in progress.
struct Walk<'a> {
    s: &'a Scanner,
    places: Places,
    /// Canonical real paths already read.
    visited: HashSet<PathBuf>,
    server: Server,
    /// Apache's ServerRoot (changed by a `ServerRoot` directive); nginx's module prefix.
    base: PathBuf,
    /// nginx's conf prefix: relative includes resolve against it.
    conf_dir: PathBuf,
    scan: Scan,
}

impl Walk<'_> {
    /// Records what may change `file` (as `role`, named by `by`); true when it exists.
    fn place(&mut self, file: &Path, role: Role, by: Option<&Reference>, creates: bool) {
        let real = self.s.real(file);
        let found = self.places.check(&real, creates);
        if found.is_empty() {
            return;
        }
        let at = match self.scan.exposed.iter().position(|e| e.file == file) {
            Some(at) => at,
            None => {
                let reasons = found
                    .iter()
                    .map(|w| {
                        if w.is_dir {
                            format!("{}: {}", self.s.shown(&w.path).display(), w.why)
                        } else {
                            w.why.clone()
                        }
                    })
                    .collect();
                self.scan.exposed.push(Exposure {
                    file: file.to_owned(),
                    role,
                    reasons,
                    writable_dirs: found
                        .iter()
                        .filter(|w| w.is_dir && w.path != real)
                        .map(|w| self.s.shown(&w.path))
                        .collect(),
                    named_by: Vec::new(),
                });
                self.scan.exposed.len() - 1
            }
        };
        if let Some(r) = by {
            let named = &mut self.scan.exposed[at].named_by;
            if !named.contains(r) {
                named.push(r.clone());
            }
        }
    }

    fn note(&mut self, text: String) {
        if self.scan.notes.len() < 50 {
            self.scan.notes.push(text);
        }
    }

    fn visit(&mut self, file: &Path, depth: usize, by: Option<Reference>, optional: bool) {
        let role = if by.is_some() {
            Role::Included
        } else {
            Role::Main
        };
        let real = self.s.real(file);
        let canonical = match std::fs::canonicalize(&real) {
            Ok(c) => c,
            Err(e) => {
                // Read once it exists: whoever may create it there may write it.
                self.place(file, Role::Listed, by.as_ref(), true);
                if !optional {
                    let from = by.map_or(String::new(), |r| {
                        format!(" (named in {}:{})", r.file.display(), r.line)
                    });
                    self.note(format!("{}{from}: {e}", file.display()));
                }
                return;
            }
        };
        self.place(file, role, by.as_ref(), false);
        if canonical.is_dir() {
            if self.server == Server::Apache {
                // Apache reads every file of an included directory (and its subdirectories).
                let pattern = file.join("*");
                self.include_glob(&pattern, depth, by.as_ref());
            } else {
                self.note(format!("{} is a directory", file.display()));
            }
            return;
        }
        if !self.visited.insert(canonical) {
            return; // read already (included twice, or a cycle)
        }
        if depth > self.s.limits.depth || self.scan.read.len() >= self.s.limits.files {
            self.note(format!(
                "{}: not followed (more than {} levels or {} files of includes)",
                file.display(),
                self.s.limits.depth,
                self.s.limits.files
            ));
            return;
        }
        let mut bytes = Vec::new();
        let read = std::fs::File::open(&real)
            .and_then(|f| f.take(self.s.limits.bytes + 1).read_to_end(&mut bytes));
        if let Err(e) = read {
            self.note(format!("{}: cannot read it: {e}", file.display()));
            return;
        }
        if bytes.len() as u64 > self.s.limits.bytes {
            self.note(format!(
                "{}: larger than {} bytes: not followed",
                file.display(),
                self.s.limits.bytes
            ));
            return;
        }
        self.scan.read.push(file.to_owned());
        let text = String::from_utf8_lossy(&bytes);
        let directives = match self.server {
            Server::Nginx => nginx::directives(&text),
            Server::Apache => apache::directives(&text),
        };
        for d in directives {
            let at = |literal| Reference {
                file: file.to_owned(),
                line: d.line,
                literal,
            };
            match (self.server, d.name.as_str(), d.args.as_slice()) {
                (Server::Nginx, "include", [path])
                | (Server::Apache, "include" | "includeoptional", [path]) => {
                    let optional = d.name == "includeoptional";
                    let path = self.resolve(path);
                    if glob::is_glob(&path.to_string_lossy()) {
                        self.include_glob(&path, depth, Some(&at(false)));
                    } else {
                        self.visit(&path, depth + 1, Some(at(true)), optional);
                    }
                }
                (Server::Apache, "serverroot", [dir]) => self.base = PathBuf::from(dir),
                (Server::Nginx, "load_module", [path])
                | (Server::Apache, "loadmodule", [_, path]) => {
                    let path = self.base.join(path);
                    self.place(&path, Role::Loaded, Some(&at(true)), false);
                }
                (Server::Nginx, "ssl_dhparam", [path]) => {
                    let path = self.resolve(path);
                    self.place(&path, Role::Loaded, Some(&at(true)), false);
                }
                _ => {}
            }
        }
    }

    /// An include's path: absolute as written, else under nginx's conf dir or Apache's
    /// ServerRoot.
    fn resolve(&self, path: &str) -> PathBuf {
        match self.server {
            Server::Nginx => self.conf_dir.join(path),
            Server::Apache => self.base.join(path),
        }
    }

    fn include_glob(&mut self, pattern: &Path, depth: usize, by: Option<&Reference>) {
        let s = self.s;
        let e = glob::expand(pattern, &|p| s.real(p), self.s.limits.matches);
        for dir in &e.listed {
            // Whoever may add a file there adds a config file.
            self.place(dir, Role::Listed, by, true);
        }
        if e.truncated {
            self.note(format!(
                "{}: more than {} matches: the rest not followed",
                pattern.display(),
                self.s.limits.matches
            ));
        }
        for m in e.matches {
            self.visit(&m, depth + 1, by.cloned(), true);
        }
    }
}

impl Exposure {
    /// One line for a report: what root reads, where it is named, and who may change it.
    pub fn describe(&self, server: Server) -> String {
        let what = match self.role {
            Role::Main => "its main config",
            Role::Included => "as configuration",
            Role::Loaded => "as a module or key material",
            Role::Listed => "as configuration whatever appears at",
        };
        let named: Vec<String> = self
            .named_by
            .iter()
            .take(5)
            .map(|r| format!("{}:{}", r.file.display(), r.line))
            .collect();
        let named = match (named.len(), self.named_by.len()) {
            (0, _) => String::new(),
            (n, total) if total > n => {
                format!(" (named in {} and {} more)", named.join(", "), total - n)
            }
            _ => format!(" (named in {})", named.join(", ")),
        };
        format!(
            "root's {} reads {what} {}{named}, which a non-root account may change: {}",
            server.name(),
            self.file.display(),
            self.reasons.join("; ")
        )
    }
}

/// Every exposure of this node's web server configs (`/`, root): the main configs of the
/// `[reload]` commands, else the installed defaults.
pub fn exposed_here(argvs: &[&[String]]) -> Vec<(Server, Exposure)> {
    Scanner::system()
        .scan_all(argvs)
        .into_iter()
        .flat_map(|scan| {
            let server = scan.server;
            scan.exposed.into_iter().map(move |e| (server, e))
        })
        .collect()
}

#[cfg(test)]
mod tests;
