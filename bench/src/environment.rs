//! The machine and the run, for the report's first table: CPU, memory, kernel, OS, the versions
//! of what is measured, the commit.
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

// ---------------------------------------------------------------------------------------------
// The machine.

pub(crate) struct Environment {
    pub(crate) cpu: String,
    pub(crate) cores: usize,
    pub(crate) mem: String,
    pub(crate) kernel: String,
    pub(crate) os: String,
    pub(crate) versions: Vec<(String, String)>,
    pub(crate) load_start: String,
    pub(crate) commit: String,
}

impl Environment {
    pub(crate) fn capture(certherd: &Path) -> Environment {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("?")
            .trim()
            .to_owned();
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let mem = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("MemTotal"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or("?".into(), |kb| format!("{:.1} GiB", kb as f64 / 1048576.0));
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned();
        let os = fs::read_to_string("/etc/os-release")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .unwrap_or("?")
            .trim_matches('"')
            .to_owned();
        let version = |prog: &str, args: &[&str]| -> String {
            Command::new(prog)
                .args(args)
                .stdin(Stdio::null())
                .output()
                .map(|o| {
                    let s = format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    );
                    s.lines().next().unwrap_or("").trim().to_owned()
                })
                .unwrap_or_else(|_| "?".into())
        };
        let versions = vec![
            (
                "certherd".into(),
                version(&certherd.to_string_lossy(), &["--version"]),
            ),
            ("OpenSSH".into(), version("/usr/bin/ssh", &["-V"])),
            ("nginx".into(), version("/usr/sbin/nginx", &["-v"])),
            (
                "certbot".into(),
                version("/usr/bin/certbot", &["--version"]),
            ),
            ("rsync".into(), version("/usr/bin/rsync", &["--version"])),
        ];
        let repo = env!("CARGO_MANIFEST_DIR");
        let head = version("git", &["-C", repo, "rev-parse", "--short", "HEAD"]);
        let dirty = Command::new("git")
            .args(["-C", repo, "status", "--porcelain", "--untracked-files=no"])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        Environment {
            cpu,
            cores,
            mem,
            kernel,
            os,
            versions,
            load_start: loadavg(),
            commit: format!(
                "{head}{}",
                if dirty {
                    " (+ uncommitted changes)"
                } else {
                    ""
                }
            ),
        }
    }
}

pub(crate) fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
