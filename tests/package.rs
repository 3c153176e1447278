//! The Debian package's surface (issue 14): `certherd --version`, `certherd completions SHELL`
//! and the man pages. With `CERTHERD_BIN` set (scripts/test.sh, after `dpkg -i` of the package
//! scripts/deb.sh built) it checks the installed files — `man -w certherd`, `man certherd`, the
//! completion files in Debian's directories — and that dpkg knows the package; without it, the
//! same checks run on the cargo-built binary and pages it writes into a temp directory (printed,
//! so a run says which it checked).
//!
//! Proves no numbered guarantee of docs/GUARANTEES.md: it keeps the package honest.

mod common;
use common::*;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn run(args: &[&str]) -> Output {
    Command::new(certherd_bin())
        .args(args)
        // no config anywhere: completions and man pages must not need one
        .env("CERTHERD_CONFIG", "/nonexistent/certherd.toml")
        .output()
        .expect("run certherd")
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("certherd-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn version_names_the_agent_protocol() {
    let out = run(&["--version"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "certherd {} (agent protocol {})\n",
            env!("CARGO_PKG_VERSION"),
            certherd::wire::PROTOCOL_VERSION
        )
    );
}

/// Each shell's script: its own marker, every subcommand, valid syntax where the shell is on
/// the machine (bash always is), and byte-for-byte the file the package installed.
#[test]
fn completions_for_bash_zsh_fish() {
    let cases = [
        (
            "bash",
            "complete -F _certherd",
            "/usr/share/bash-completion/completions/certherd",
        ),
        (
            "zsh",
            "#compdef certherd",
            "/usr/share/zsh/vendor-completions/_certherd",
        ),
        (
            "fish",
            "complete -c certherd",
            "/usr/share/fish/vendor_completions.d/certherd.fish",
        ),
    ];
    let dir = temp_dir("completions");
    for (shell, marker, installed) in cases {
        let out = run(&["completions", shell]);
        assert!(out.status.success(), "completions {shell}: {}", text(&out));
        let script = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(script.contains(marker), "{shell}: no {marker:?}:\n{script}");
        for sub in ["auth", "deploy", "sync", "status", "doctor", "completions"] {
            assert!(script.contains(sub), "{shell}: subcommand {sub} missing");
        }
        assert!(
            !script.contains("manpages"),
            "{shell}: the hidden manpages leaks"
        );
        let exe = format!("/usr/bin/{shell}");
        if Path::new(&exe).exists() {
            let file = dir.join(shell);
            std::fs::write(&file, &script).unwrap();
            let check = Command::new(&exe).arg("-n").arg(&file).output().unwrap();
            assert!(check.status.success(), "{shell} -n: {}", text(&check));
        } else {
            assert_ne!(shell, "bash", "bash is always installed");
            println!("{exe} not installed: {shell} syntax not checked");
        }
        if installed_bin().is_some() {
            let file = std::fs::read_to_string(installed)
                .unwrap_or_else(|e| panic!("the package installed no {installed}: {e}"));
            assert_eq!(
                file, script,
                "{installed} differs from `completions {shell}`"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let bad = run(&["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(stderr(&bad).contains("tcsh"), "{}", text(&bad));
}

/// `man` with its pager off, a fixed width, and `args`.
fn man(args: &[String]) -> Output {
    Command::new("man")
        .args(args)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("run man (package man-db)")
}

/// The arguments that show `page` (e.g. `certherd-deploy`): by name from the installed pages,
/// or with `-l` from `dir`.
fn page_args(dir: Option<&Path>, page: &str) -> Vec<String> {
    match dir {
        None => vec![page.to_owned()],
        Some(dir) => vec![
            "-l".to_owned(),
            dir.join(format!("{page}.1")).display().to_string(),
        ],
    }
}

/// `man certherd` and one page per subcommand; from the package when installed.
#[test]
fn man_pages_for_the_command_and_each_subcommand() {
    let subcommands = [
        "auth",
        "cleanup",
        "deploy",
        "agent",
        "issue",
        "renew",
        "sync",
        "watch",
        "status",
        "stateless",
        "doctor",
        "warm",
        "completions",
    ];
    let pages_dir = if installed_bin().is_some() {
        println!("checking the installed pages (CERTHERD_BIN is set)");
        let where_ = man(&["-w".to_owned(), "certherd".to_owned()]);
        assert!(
            where_.status.success(),
            "man -w certherd: {}",
            text(&where_)
        );
        assert_eq!(
            String::from_utf8_lossy(&where_.stdout).trim(),
            "/usr/share/man/man1/certherd.1.gz"
        );
        let status = Command::new("dpkg-query")
            .args(["-W", "-f", "${Status} ${Version}", "certherd"])
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&status.stdout).starts_with(&format!(
                "install ok installed {}",
                env!("CARGO_PKG_VERSION")
            )),
            "dpkg: {}",
            text(&status)
        );
        None
    } else {
        let dir = temp_dir("man");
        println!(
            "CERTHERD_BIN unset: checking the pages the cargo-built binary writes into {}",
            dir.display()
        );
        let out = run(&["manpages", dir.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out));
        Some(dir)
    };

    let main_page = man(&page_args(pages_dir.as_deref(), "certherd"));
    assert!(
        main_page.status.success(),
        "man certherd: {}",
        text(&main_page)
    );
    let page = String::from_utf8_lossy(&main_page.stdout);
    for needle in [
        "certherd",
        "agent protocol 1",
        "Exit codes",
        "certherd-deploy(1)",
    ] {
        assert!(
            page.contains(needle),
            "man certherd lacks {needle:?}:\n{page}"
        );
    }
    for sub in subcommands {
        let out = man(&page_args(pages_dir.as_deref(), &format!("certherd-{sub}")));
        assert!(out.status.success(), "man certherd-{sub}: {}", text(&out));
        let page = String::from_utf8_lossy(&out.stdout);
        let words = page.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains(&format!("certherd {sub}")),
            "man certherd-{sub} has no synopsis:\n{page}"
        );
    }
    if let Some(dir) = pages_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}
