//! The manual that ships beside the binary: shell completions and man pages, generated from the
//! clap definitions in [`crate::cli`] so that they can never disagree with `--help`.
//!
//! Neither needs a config: `main` runs these commands before it loads one, because a package
//! build (scripts/deb.sh) and a fresh install have no /etc/certherd yet.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::error::{Error, Result, EXIT_OK};

/// Runs `completions`; `None` for every command that needs a config.
pub fn run(command: &Command) -> Option<Result<i32>> {
    match command {
        Command::Completions(flags) => {
            Some(completions(flags.shell, &mut std::io::stdout().lock()).map(|()| EXIT_OK))
        }
        _ => None,
    }
}

/// Writes the completion script for `shell` (bash, zsh, fish, elvish, powershell).
pub fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<()> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "certherd", &mut buf);
    out.write_all(&buf)
        .and_then(|()| out.flush())
        .map_err(|e| Error::io("cannot write completions to", "stdout", e))
}

/// `certherd manpages DIR` (see [`crate::cli::parse`]): writes `certherd.1` and
/// `certherd-<subcommand>.1` for every subcommand into `dir` (created if missing); returns the
/// files written.
pub fn manpages(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("cannot create", dir, e))?;
    clap_mangen::generate_to(Cli::command(), dir)
        .map_err(|e| Error::io("cannot write man pages into", dir, e))?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io("cannot read", dir, e))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bash_completion_names_every_subcommand() {
        let mut out = Vec::new();
        completions(clap_complete::Shell::Bash, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for sub in ["auth", "cleanup", "deploy", "status", "completions"] {
            assert!(text.contains(sub), "{sub} missing from bash completion");
        }
        assert!(
            !text.contains("manpages"),
            "the hidden command leaks into completions"
        );
    }

    #[test]
    fn one_page_per_visible_subcommand() {
        let dir = crate::scratch::scratch("man");
        let pages = manpages(&dir).unwrap();
        let names: Vec<String> = pages
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect();
        let visible = Cli::command().get_subcommands().count();
        assert_eq!(names.len(), visible + 1, "{names:?}");
        assert!(names.contains(&"certherd.1".to_owned()));
        assert!(names.contains(&"certherd-deploy.1".to_owned()));
        assert!(!names.iter().any(|n| n.contains("manpages")));
    }
}
