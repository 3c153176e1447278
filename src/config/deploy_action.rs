//! `[[deploy]]`: a node's own per-lineage deploy actions (an extra combined PEM, its own test and
//! reload), and their checks at load, each refusal naming `deploy[i].<key>`.

use std::path::PathBuf;

use nix::unistd::{Gid, Group, Uid, User};
use serde::Deserialize;

use super::Config;
use crate::error::Result;
use crate::pattern::LineagePattern;

/// `[[deploy]]`: extra layouts and commands for the lineages its globs match. Validated at load
/// (globs, an absolute directory, the mode, known owner and group); the typed values are read
/// through [`DeployAction::globs`] and [`DeployAction::mode_bits`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployAction {
    /// Globs on lineage names (`*` for any characters); at least one.
    pub lineages: Vec<String>,
    /// Directory (absolute, must exist, never created) that receives `<lineage>.pem`:
    /// fullchain then private key, HAProxy's combined PEM.
    #[serde(default)]
    pub combined_pem: Option<PathBuf>,
    /// User that owns the combined PEM (a non-root agent can only name itself).
    #[serde(default)]
    pub owner: Option<String>,
    /// Group of the combined PEM (a non-root agent: one of its own groups).
    #[serde(default)]
    pub group: Option<String>,
    /// Octal mode of the combined PEM, e.g. `"0640"` (default `"0600"`; never readable by
    /// others: it holds the private key).
    #[serde(default)]
    pub mode: Option<String>,
    /// Test command (argv, no shell) run after the layout is written; failing, the previous
    /// combined PEM is put back.
    #[serde(default)]
    pub test: Vec<String>,
    /// Reload command (argv, no shell) run after a passing test.
    #[serde(default)]
    pub reload: Vec<String>,
}

/// Mode of a combined PEM when `mode` is not set.
pub const DEFAULT_PEM_MODE: u32 = 0o600;

impl DeployAction {
    /// The validated globs (config loading refused any bad one).
    pub fn globs(&self) -> Vec<LineagePattern> {
        self.lineages
            .iter()
            .filter_map(|g| LineagePattern::parse(g).ok())
            .collect()
    }

    /// Whether this action is for the lineage.
    pub fn applies_to(&self, lineage: &crate::names::LineageName) -> bool {
        self.globs().iter().any(|g| g.matches(lineage.as_str()))
    }

    /// The uid of `owner` on this node, looked up now (`None` when unset); the refusal names it.
    pub fn owner_uid(&self) -> std::result::Result<Option<Uid>, String> {
        account_id(self.owner.as_deref(), "a user", |n| {
            Ok(User::from_name(n)?.map(|u| u.uid))
        })
    }

    /// The gid of `group` on this node, looked up now (`None` when unset); the refusal names it.
    pub fn group_gid(&self) -> std::result::Result<Option<Gid>, String> {
        account_id(self.group.as_deref(), "a group", |n| {
            Ok(Group::from_name(n)?.map(|g| g.gid))
        })
    }

    /// The combined PEM's mode bits (`0600` when unset).
    pub fn mode_bits(&self) -> std::result::Result<u32, ModeError> {
        match &self.mode {
            None => Ok(DEFAULT_PEM_MODE),
            Some(m) => parse_pem_mode(m),
        }
    }
}

/// One lookup for `owner` and `group`: at config load and again when an action runs (accounts
/// may change while an agent runs). `what` is "a user" or "a group".
fn account_id<T>(
    name: Option<&str>,
    what: &str,
    find: impl FnOnce(&str) -> nix::Result<Option<T>>,
) -> std::result::Result<Option<T>, String> {
    let Some(name) = name else {
        return Ok(None);
    };
    match find(name) {
        Ok(Some(id)) => Ok(Some(id)),
        _ => Err(format!(
            "{} is not {what} on this node",
            crate::text::printable(name)
        )),
    }
}

/// A refused `mode`: names the value and what was expected.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{} is not a mode for a file holding a private key: expected octal like \"0600\" or \"0640\" \
     (owner can read, nothing for others, no setuid/setgid/sticky)",
    crate::text::printable(.0)
)]
pub struct ModeError(pub String);

/// `"0640"`-style octal: 3 or 4 digits, no setuid/setgid/sticky bits, nothing for others (the
/// file holds a private key), and the owner can read it.
fn parse_pem_mode(s: &str) -> std::result::Result<u32, ModeError> {
    let bits = (matches!(s.len(), 3 | 4) && s.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        .then(|| u32::from_str_radix(s, 8).ok())
        .flatten();
    match bits {
        Some(b) if b & 0o7007 == 0 && b & 0o400 != 0 => Ok(b),
        _ => Err(ModeError(s.to_owned())),
    }
}

impl Config {
    /// One `[[deploy]]` entry: each refusal names `deploy[i].<key>`.
    pub(super) fn check_deploy(&self, i: usize, action: &DeployAction) -> Result<()> {
        let key = |k: &str| format!("deploy[{i}].{k}");
        if action.lineages.is_empty() {
            return Err(self.invalid(
                &key("lineages"),
                "the list is empty: name at least one lineage or glob (\"*\" for all)".into(),
            ));
        }
        for glob in &action.lineages {
            LineagePattern::parse(glob)
                .map_err(|e| self.invalid(&key("lineages"), e.to_string()))?;
        }
        if let Some(dir) = &action.combined_pem {
            let plain = dir.is_absolute()
                && dir
                    .components()
                    .all(|c| !matches!(c, std::path::Component::ParentDir));
            if !plain {
                return Err(self.invalid(
                    &key("combined_pem"),
                    format!(
                        "{} is not an absolute directory path without `..`: expected e.g. \"/etc/haproxy/certs\"",
                        crate::text::printable(&dir.to_string_lossy())
                    ),
                ));
            }
        }
        action
            .mode_bits()
            .map_err(|m| self.invalid(&key("mode"), m.to_string()))?;
        if action.combined_pem.is_none()
            && (action.owner.is_some() || action.group.is_some() || action.mode.is_some())
        {
            return Err(self.invalid(
                &key("combined_pem"),
                "owner, group and mode are for the combined PEM: set combined_pem too".into(),
            ));
        }
        action
            .owner_uid()
            .map_err(|m| self.invalid(&key("owner"), m))?;
        action
            .group_gid()
            .map_err(|m| self.invalid(&key("group"), m))?;
        for (k, argv) in [("test", &action.test), ("reload", &action.reload)] {
            if argv.first().is_some_and(|a| a.is_empty()) {
                return Err(self.invalid(&key(k), "the program name is empty".into()));
            }
        }
        if action.combined_pem.is_none() && action.test.is_empty() && action.reload.is_empty() {
            return Err(self.invalid(
                &format!("deploy[{i}]"),
                "nothing to do: set combined_pem, test or reload".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn parse(s: &str) -> crate::error::Result<super::Config> {
        super::Config::parse(s, Path::new("/x/certherd.toml"))
    }

    #[test]
    fn deploy_actions_are_checked_naming_the_key() {
        let c = parse(
            r#"
[[deploy]]
lineages = ["example.com", "*.example.org"]
combined_pem = "/etc/haproxy/certs"
group = "root"
mode = "0640"
test = ["haproxy", "-c", "-f", "/etc/haproxy/haproxy.cfg"]
reload = ["systemctl", "reload", "haproxy"]
"#,
        )
        .unwrap();
        assert_eq!(c.deploy[0].mode_bits().unwrap(), 0o640);
        assert!(
            c.deploy[0].applies_to(&crate::names::LineageName::parse("www.example.org").unwrap())
        );
        assert!(!c.deploy[0].applies_to(&crate::names::LineageName::parse("example.net").unwrap()));
        let base = "lineages = [\"*\"]\ncombined_pem = \"/etc/haproxy/certs\"\n";
        for (extra, key) in [
            (
                "lineages = [\"Example.com\"]\ncombined_pem = \"/d\"",
                "deploy[0].lineages",
            ),
            (
                "lineages = [\"a/b\"]\ncombined_pem = \"/d\"",
                "deploy[0].lineages",
            ),
            ("lineages = []\ncombined_pem = \"/d\"", "deploy[0].lineages"),
            (
                "lineages = [\"*\"]\ncombined_pem = \"certs\"",
                "deploy[0].combined_pem",
            ),
            (
                "lineages = [\"*\"]\ncombined_pem = \"/etc/../tmp\"",
                "deploy[0].combined_pem",
            ),
            (
                "lineages = [\"*\"]\nmode = \"0600\"\ntest = [\"true\"]",
                "deploy[0].combined_pem",
            ),
            (&format!("{base}mode = \"0644\""), "deploy[0].mode"),
            (&format!("{base}mode = \"0999\""), "deploy[0].mode"),
            (&format!("{base}mode = \"4600\""), "deploy[0].mode"),
            (&format!("{base}mode = \"600 \""), "deploy[0].mode"),
            (&format!("{base}mode = \"0060\""), "deploy[0].mode"),
            (
                &format!("{base}owner = \"no-such-user-certherd\""),
                "deploy[0].owner",
            ),
            (
                &format!("{base}group = \"no-such-group-certherd\""),
                "deploy[0].group",
            ),
            (&format!("{base}test = [\"\"]"), "deploy[0].test"),
            ("lineages = [\"*\"]", "deploy[0]"),
        ] {
            let e = parse(&format!("[[deploy]]\n{extra}\n")).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::EXIT_USAGE, "{extra}");
            assert!(
                e.to_string().contains(&format!(": {key}: ")),
                "{extra}: {e}"
            );
        }
        assert!(
            parse("[[deploy]]\nlineages = [\"*\"]\nbogus = 1\ncombined_pem = \"/d\"\n").is_err()
        );
    }
}
