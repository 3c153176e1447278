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
use std::process::Command;

/// `certherd ARGS` outside any bed, not run yet.
fn run(args: &[&str]) -> Exec<'static> {
    let mut cmd = Command::new(certherd_bin());
    cmd.args(args)
        // no config anywhere: completions and man pages must not need one
        .env("CERTHERD_CONFIG", "/nonexistent/certherd.toml");
    exec(cmd)
}

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("certherd-{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn version_names_the_agent_protocol() {
    run(&["--version"])
        .expect_status(0)
        .stdout_is(format!(
            "certherd {} (agent protocol {})\n",
            env!("CARGO_PKG_VERSION"),
            certherd::wire::PROTOCOL_VERSION
        ))
        .run();
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
        // Every subcommand is there; the hidden manpages does not leak.
        let ran = run(&["completions", shell])
            .expect_status(0)
            .stdout_has([marker])
            .stdout_has(["auth", "deploy", "sync", "status", "doctor", "completions"])
            .stdout_lacks(["manpages"])
            .run();
        let script = ran.stdout();
        let exe = format!("/usr/bin/{shell}");
        if Path::new(&exe).exists() {
            let file = dir.join(shell);
            std::fs::write(&file, &script).unwrap();
            let mut check = Command::new(&exe);
            check.arg("-n").arg(&file);
            exec(check).expect_status(0).run();
        } else {
            assert_ne!(shell, "bash", "bash is always installed");
            println!("{exe} not installed: {shell} syntax not checked");
        }
        if installed_bin().is_some() {
            let file = std::fs::read_to_string(installed)
                .unwrap_or_else(|e| panic!("the package installed no {installed}: {e}"));
            ran.ensure(
                file == script,
                format!("{installed} differs from `completions {shell}`"),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    run(&["completions", "tcsh"])
        .expect_status(2)
        .stderr_has(["tcsh"])
        .run();
}

/// `man` (package man-db) with its pager off, a fixed width, and `args`, not run yet.
fn man(args: &[String]) -> Exec<'static> {
    let mut cmd = Command::new("man");
    cmd.args(args).env("MANPAGER", "cat").env("MANWIDTH", "100");
    exec(cmd)
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
        let where_ = man(&["-w".to_owned(), "certherd".to_owned()])
            .expect_status(0)
            .run();
        where_.ensure(
            where_.stdout().trim() == "/usr/share/man/man1/certherd.1.gz",
            "man -w finds the package's page",
        );
        let mut query = Command::new("dpkg-query");
        query.args(["-W", "-f", "${Status} ${Version}", "certherd"]);
        let status = exec(query).any_status().run();
        status.ensure(
            status.stdout().starts_with(&format!(
                "install ok installed {}",
                env!("CARGO_PKG_VERSION")
            )),
            "dpkg knows the package, installed, this version",
        );
        None
    } else {
        let dir = temp_dir("man");
        println!(
            "CERTHERD_BIN unset: checking the pages the cargo-built binary writes into {}",
            dir.display()
        );
        run(&["manpages", dir.to_str().unwrap()])
            .expect_status(0)
            .run();
        Some(dir)
    };

    man(&page_args(pages_dir.as_deref(), "certherd"))
        .expect_status(0)
        .stdout_has([
            "certherd",
            "agent protocol 1",
            "Exit codes",
            "certherd-deploy(1)",
        ])
        .run();
    for sub in subcommands {
        let ran = man(&page_args(pages_dir.as_deref(), &format!("certherd-{sub}")))
            .expect_status(0)
            .run();
        let words = ran
            .stdout()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        ran.ensure(
            words.contains(&format!("certherd {sub}")),
            format!("man certherd-{sub} has no synopsis"),
        );
    }
    if let Some(dir) = pages_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}
