//! The e2e tests' one way to run a command and check it (in the spirit of the `just` runner's
//! `Test` builder and cargo's `Execs`): say what the run must show, then `.run()`.
//!
//! ```ignore
//! bed.node(1)
//!     .certherd(["deploy", "--lineage", "site.test"])
//!     .expect_status(1)
//!     .stderr_has(["node3", "refused"])
//!     .run();
//! let report: StatusReport = bed.node(1).certherd(["status", "--format", "json"]).run().json();
//! ```
//!
//! A run that does not meet its expectations panics with the whole transcript: the command, the
//! exit status and what was expected, stdout, stderr, and the end of every log of the node it
//! ran on (its sshd's, which carries the agent's refusals, and its nginx's). A test that checks
//! more afterwards asserts against [`Ran`], whose `Display` is that same transcript, so no
//! assertion prints less than the whole story. Without an `expect_*` call a run must exit 0.

use std::ffi::OsStr;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use certherd_testbed::Bed;

/// How many lines of each node log a transcript shows.
const LOG_LINES: usize = 15;

/// Node `n` of a bed: where a command runs and whose logs a failure shows.
pub struct Node<'a> {
    bed: &'a Bed,
    n: usize,
}

/// `bed.node(n)` (and `cluster.node(n)`, through its `Deref` to the bed).
pub trait Nodes {
    /// Node `n` (1-based, as everywhere on the bed).
    fn node(&self, n: usize) -> Node<'_>;
}

impl Nodes for Bed {
    fn node(&self, n: usize) -> Node<'_> {
        assert!(
            (1..=self.nodes()).contains(&n),
            "node {n}: expected 1..={}",
            self.nodes()
        );
        Node { bed: self, n }
    }
}

impl<'a> Node<'a> {
    /// `certherd --config <node's config> ARGS…` (the bed's binary).
    pub fn certherd<I, S>(&self, args: I) -> Exec<'a>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<S> = args.into_iter().collect();
        let strs: Vec<String> = args
            .iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        let refs: Vec<&str> = strs.iter().map(String::as_str).collect();
        self.command(self.bed.certherd(self.n, &refs))
    }

    /// Any other command, with this node's logs in its transcript.
    pub fn command(&self, cmd: Command) -> Exec<'a> {
        self.exec(Job::Command(cmd))
    }

    /// `certbot ARGS… <the bed's common args>` as the bed runs it (node 1 only: certbot runs on
    /// the primary, as the agent's account, killed after the bed's certbot timeout).
    pub fn certbot<I: IntoIterator<Item = S>, S: Into<String>>(&self, args: I) -> Exec<'a> {
        assert_eq!(self.n, 1, "certbot runs on node 1 of the bed");
        self.exec(Job::Certbot(args.into_iter().map(Into::into).collect()))
    }

    /// `certherd auth` with certbot's environment for one challenge.
    pub fn auth(&self, domain: &str, token: &str, validation: &str) -> Exec<'a> {
        self.certherd(["auth"])
            .env("CERTBOT_DOMAIN", domain)
            .env("CERTBOT_TOKEN", token)
            .env("CERTBOT_VALIDATION", validation)
    }

    /// `certherd cleanup` with certbot's environment for one challenge.
    pub fn cleanup(&self, domain: &str, token: &str) -> Exec<'a> {
        self.certherd(["cleanup"])
            .env("CERTBOT_DOMAIN", domain)
            .env("CERTBOT_TOKEN", token)
    }

    /// certbot `certonly` with certherd's auth and cleanup hooks for `domains` (node 1).
    pub fn certbot_certonly(&self, domains: &[&str]) -> Exec<'a> {
        self.certonly(None, domains)
    }

    /// `certbot renew --force-renewal --no-random-sleep-on-renew EXTRA…` (node 1): a renewal now,
    /// of every lineage or of the ones `extra` names (`--cert-name`).
    pub fn certbot_renew<I: IntoIterator<Item = S>, S: Into<String>>(&self, extra: I) -> Exec<'a> {
        let mut args: Vec<String> = ["renew", "--force-renewal", "--no-random-sleep-on-renew"]
            .map(String::from)
            .to_vec();
        args.extend(extra.into_iter().map(Into::into));
        self.certbot(args)
    }

    /// `certherd issue --certbot <the bed's certbot> -d D… -- <the bed's certbot args>` with the
    /// bed's CA trusted (node 1): issuance the way a user starts it.
    pub fn certherd_issue(&self, domains: &[&str]) -> Exec<'a> {
        let mut args = vec![
            "issue".to_owned(),
            "--certbot".to_owned(),
            certherd_testbed::certbot_program().display().to_string(),
        ];
        for d in domains {
            args.extend(["-d".to_owned(), d.to_string()]);
        }
        args.push("--".into());
        self.certherd(args)
            .args(self.bed.certbot_common_args())
            .env("REQUESTS_CA_BUNDLE", self.bed.ca_bundle())
    }

    /// [`Node::certbot_certonly`] with certherd's deploy hook too.
    pub fn certbot_certonly_with_deploy(&self, domains: &[&str]) -> Exec<'a> {
        self.certonly(Some(&self.bed.hook_command("deploy")), domains)
    }

    fn certonly(&self, deploy_hook: Option<&str>, domains: &[&str]) -> Exec<'a> {
        let mut args = self.bed.certonly_args(deploy_hook);
        for d in domains {
            args.push("-d".into());
            args.push(d.to_string());
        }
        self.certbot(args)
    }

    fn exec(&self, job: Job) -> Exec<'a> {
        Exec {
            on: Some((self.bed, self.n)),
            job,
            stdin: None,
            status: Status::Code(0),
            checks: Vec::new(),
        }
    }
}

/// A command outside any bed (no node logs in its transcript), e.g. certherd with a config in
/// a scratch directory.
pub fn exec(cmd: Command) -> Exec<'static> {
    Exec {
        on: None,
        job: Job::Command(cmd),
        stdin: None,
        status: Status::Code(0),
        checks: Vec::new(),
    }
}

/// What an [`Exec`] runs.
enum Job {
    Command(Command),
    /// `Bed::certbot` with these arguments (it bounds certbot's time itself).
    Certbot(Vec<String>),
}

/// What the exit status must be.
#[derive(Debug, Clone, Copy)]
enum Status {
    Code(i32),
    /// Any exit that is not 0 (and not a signal).
    Failure,
    /// Whatever it is: the test asserts on the output.
    Any,
}

/// Which stream an expectation reads.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Stdout,
    Stderr,
}

/// One expectation on a stream.
#[derive(Debug, Clone)]
enum Check {
    Has(Stream, String),
    Lacks(Stream, String),
    Is(Stream, String),
}

/// A command with its expectations, not run yet.
#[must_use = "an Exec does nothing until .run()"]
pub struct Exec<'a> {
    /// The bed and node it runs on (whose logs a transcript shows); none for a command outside
    /// any bed (a config in a scratch dir).
    on: Option<(&'a Bed, usize)>,
    job: Job,
    stdin: Option<Vec<u8>>,
    status: Status,
    checks: Vec<Check>,
}

impl<'a> Exec<'a> {
    /// Sets an environment variable of the run (e.g. certbot's `CERTBOT_DOMAIN`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.command_mut().env(key, value);
        self
    }

    /// Appends arguments to the command line.
    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Self {
        self.command_mut().args(args);
        self
    }

    /// Removes an environment variable from the run.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.command_mut().env_remove(key);
        self
    }

    fn command_mut(&mut self) -> &mut Command {
        match &mut self.job {
            Job::Command(cmd) => cmd,
            Job::Certbot(_) => panic!("a certbot run takes the bed's environment, no other"),
        }
    }

    /// Feeds `input` on stdin (otherwise stdin is empty).
    pub fn stdin(mut self, input: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(input.into());
        self
    }

    /// The run must exit with `code`.
    pub fn expect_status(mut self, code: i32) -> Self {
        self.status = Status::Code(code);
        self
    }

    /// The run must exit non-zero (not killed by a signal).
    pub fn expect_failure(mut self) -> Self {
        self.status = Status::Failure;
        self
    }

    /// Any exit status will do: the test reads [`Ran::code`] itself.
    pub fn any_status(mut self) -> Self {
        self.status = Status::Any;
        self
    }

    /// stdout must contain every one of `words`.
    pub fn stdout_has<I: IntoIterator<Item = S>, S: Into<String>>(mut self, words: I) -> Self {
        let words = words
            .into_iter()
            .map(|w| Check::Has(Stream::Stdout, w.into()));
        self.checks.extend(words);
        self
    }

    /// stdout must contain none of `words`.
    pub fn stdout_lacks<I: IntoIterator<Item = S>, S: Into<String>>(mut self, words: I) -> Self {
        let words = words
            .into_iter()
            .map(|w| Check::Lacks(Stream::Stdout, w.into()));
        self.checks.extend(words);
        self
    }

    /// stdout must be exactly `text`.
    pub fn stdout_is(mut self, text: impl Into<String>) -> Self {
        self.checks.push(Check::Is(Stream::Stdout, text.into()));
        self
    }

    /// stderr must contain every one of `words`.
    pub fn stderr_has<I: IntoIterator<Item = S>, S: Into<String>>(mut self, words: I) -> Self {
        let words = words
            .into_iter()
            .map(|w| Check::Has(Stream::Stderr, w.into()));
        self.checks.extend(words);
        self
    }

    /// stderr must contain none of `words`.
    pub fn stderr_lacks<I: IntoIterator<Item = S>, S: Into<String>>(mut self, words: I) -> Self {
        let words = words
            .into_iter()
            .map(|w| Check::Lacks(Stream::Stderr, w.into()));
        self.checks.extend(words);
        self
    }

    /// stderr must be exactly `text`.
    pub fn stderr_is(mut self, text: impl Into<String>) -> Self {
        self.checks.push(Check::Is(Stream::Stderr, text.into()));
        self
    }

    /// Runs the command to its end and checks every expectation; panics with the transcript
    /// naming each one that was not met.
    #[track_caller]
    pub fn run(mut self) -> Ran {
        let (shown, output) = match self.job {
            Job::Command(ref mut cmd) => {
                let shown = command_line(cmd);
                let output = run_command(cmd, self.stdin.take(), &shown);
                (shown, output)
            }
            Job::Certbot(ref args) => {
                assert!(self.stdin.is_none(), "certbot runs with no stdin");
                let (bed, _) = self.on.expect("a certbot run is on a bed");
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                let shown = format!("certbot {} <the bed's common args>", refs.join(" "));
                (shown, bed.certbot(&refs))
            }
        };
        self.judge(shown, output)
    }

    /// Checks `output` (of the command `shown`) against every expectation: the end of
    /// [`Exec::run`] and [`Exec::run_within`].
    #[track_caller]
    fn judge(&self, shown: String, output: Output) -> Ran {
        let ran = Ran {
            shown,
            logs: self
                .on
                .map(|(bed, n)| node_logs(bed, n))
                .unwrap_or_default(),
            node: self.on.map(|(_, n)| n),
            output,
        };
        let mut unmet = Vec::new();
        match (self.status, ran.output.status.code()) {
            (Status::Any, _) => {}
            (Status::Code(want), got) if got != Some(want) => {
                unmet.push(format!("exit status {got:?}, expected {want}"))
            }
            (Status::Failure, None | Some(0)) => unmet.push(format!(
                "exit status {:?}, expected a failure (non-zero)",
                ran.output.status.code()
            )),
            _ => {}
        }
        for check in &self.checks {
            let (stream, ok, what) = match check {
                Check::Has(s, w) => (
                    *s,
                    ran.stream(*s).contains(w.as_str()),
                    format!("has {w:?}"),
                ),
                Check::Lacks(s, w) => (
                    *s,
                    !ran.stream(*s).contains(w.as_str()),
                    format!("lacks {w:?}"),
                ),
                Check::Is(s, w) => (*s, ran.stream(*s) == *w, format!("is exactly {w:?}")),
            };
            if !ok {
                unmet.push(format!("expected {} {what}", stream_name(stream)));
            }
        }
        if !unmet.is_empty() {
            ran.fail(&unmet.join("\n"));
        }
        ran
    }
}

/// Runs `cmd` to its end with `stdin` (or nothing) on its stdin, collecting stdout and stderr.
fn run_command(cmd: &mut Command, stdin: Option<Vec<u8>>, shown: &str) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    // Written from a thread: a command that answers before it has read all of its input would
    // otherwise fill its stdout pipe while this side still writes.
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("stdin was piped");
        // A command may exit without reading all of its input; what it did is what the
        // expectations check, so a closed pipe here is not the test's failure.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        })
    });
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("wait for {shown}: {e}"));
    if let Some(w) = writer {
        w.join().expect("the stdin writer does not panic");
    }
    output
}

/// A finished run: its output, and the transcript every failure about it prints.
pub struct Ran {
    shown: String,
    node: Option<usize>,
    logs: String,
    pub output: Output,
}

impl Ran {
    /// The exit code (`None` when a signal ended it).
    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    /// stdout as text (lossy).
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// stderr as text (lossy).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    /// stdout then stderr, as one text (for a line that may be on either).
    pub fn both(&self) -> String {
        format!("{}\n{}", self.stdout(), self.stderr())
    }

    fn stream(&self, s: Stream) -> String {
        match s {
            Stream::Stdout => self.stdout(),
            Stream::Stderr => self.stderr(),
        }
    }

    /// stdout parsed as JSON into `T` (typed rows: `StatusReport`, `Deployment`, …); panics
    /// with the transcript when it is not that.
    #[track_caller]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        match serde_json::from_slice(&self.output.stdout) {
            Ok(value) => value,
            Err(e) => self.fail(&format!(
                "stdout is not the JSON of a {} ({e})",
                std::any::type_name::<T>()
            )),
        }
    }

    /// Panics with `why` and the whole transcript.
    #[track_caller]
    pub fn fail(&self, why: &str) -> ! {
        panic!("{why}\n{self}")
    }

    /// Panics with `why` and the transcript unless `ok`.
    #[track_caller]
    pub fn ensure(&self, ok: bool, why: impl fmt::Display) -> &Self {
        if !ok {
            self.fail(&why.to_string());
        }
        self
    }
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.node {
            Some(n) => writeln!(f, "--- command (node {n}): {}", self.shown)?,
            None => writeln!(f, "--- command: {}", self.shown)?,
        }
        writeln!(f, "--- exit status: {:?}", self.output.status.code())?;
        writeln!(f, "--- stdout\n{}", self.stdout())?;
        writeln!(f, "--- stderr\n{}", self.stderr())?;
        write!(f, "{}", self.logs)
    }
}

fn stream_name(s: Stream) -> &'static str {
    match s {
        Stream::Stdout => "stdout",
        Stream::Stderr => "stderr",
    }
}

/// The command as a shell line (arguments with blanks or quotes shown quoted).
fn command_line(cmd: &Command) -> String {
    let mut line: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), quoted(v?))))
        .collect();
    line.push(quoted(cmd.get_program()));
    line.extend(cmd.get_args().map(quoted));
    line.join(" ")
}

fn quoted(s: &OsStr) -> String {
    let s = s.to_string_lossy();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@%+".contains(c))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The last [`LOG_LINES`] lines of every `*.log` in node `n`'s directory and one level below
/// (its sshd's and its nginx's), read when the run ended.
fn node_logs(bed: &Bed, n: usize) -> String {
    let mut logs = Vec::new();
    collect_logs(&bed.node_dir(n), 2, &mut logs);
    logs.sort();
    let mut out = String::new();
    for path in logs {
        let Ok(content) = std::fs::read(&path) else {
            continue;
        };
        let content = String::from_utf8_lossy(&content);
        let lines: Vec<&str> = content.lines().collect();
        if lines.is_empty() {
            continue;
        }
        let tail = &lines[lines.len().saturating_sub(LOG_LINES)..];
        out.push_str(&format!(
            "--- node {n} {} (last {} of {} lines)\n",
            path.display(),
            tail.len(),
            lines.len()
        ));
        for l in tail {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn collect_logs(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() && depth > 1 => collect_logs(&path, depth - 1, out),
            Ok(t) if t.is_file() && path.extension() == Some(OsStr::new("log")) => out.push(path),
            _ => {}
        }
    }
}

impl Exec<'_> {
    /// [`Exec::run`] with a time limit: after `limit` the command and everything it started are
    /// killed (the bed's watchdog, `run_measured`), and the transcript says so. For a command
    /// that may hang (certbot with hooks, a setup block), where a hang must fail the test rather
    /// than stall the run.
    #[track_caller]
    pub fn run_within(mut self, limit: Duration) -> Ran {
        let stdin = self.stdin.take();
        let Job::Command(ref mut cmd) = self.job else {
            panic!("a certbot run is bounded by the bed already: use .run()")
        };
        let mut shown = command_line(cmd);
        let measured = certherd_testbed::run_measured(cmd, stdin.as_deref(), limit, &mut || {})
            .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
        if measured.timed_out {
            shown.push_str(&format!("   [killed: still running after {limit:?}]"));
        }
        self.judge(shown, measured.output)
    }
}

impl Ran {
    /// The transcript of a command a test started itself on node `n` of `bed` (a background
    /// run it may kill by PID, e.g. `Cluster::spawn_deploy`), once `output` is in.
    pub fn of_output(bed: &Bed, n: usize, cmd: &Command, output: Output) -> Ran {
        Ran {
            shown: command_line(cmd),
            node: Some(n),
            logs: node_logs(bed, n),
            output,
        }
    }
}
