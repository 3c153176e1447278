//! Typed edits of a node's certherd.toml: parse it with the `toml` crate, change one value by its
//! dotted key, write it back.
//!
//! Why not `str::replace`: a replacement silently depends on how the bed happens to format the
//! file (spacing, key order, which key comes first), and a key the bed does not write yet cannot
//! be "replaced" at all. A typed edit names the key the product reads (`ssh.connect_timeout`,
//! `renew.primary`, `peers[1].optional`), creates missing tables, and fails loudly naming the key
//! when the path cannot exist (an index past the end, a value where a table is needed).
//!
//! Keys: segments separated by `.`, each a bare key optionally followed by one `[i]` — an index
//! into an array, **0-based** (`peers[0]` is the first `[[peers]]` table, `reload.test[2]` the
//! third word of the test command). Comments in the file are not kept (the bed writes only one).
//!
//! ```no_run
//! # fn f(bed: &certherd_testbed::Bed) -> Result<(), certherd_testbed::ConfigEditError> {
//! bed.config(2)
//!     .set("ssh.connect_timeout", "1s")?
//!     .set("peers[1].optional", true)?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use toml::{Table, Value};

/// Why a typed config edit failed: each names the file and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigEditError {
    #[error("{path}: cannot read or write: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not TOML: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: cannot serialise the edited config: {source}")]
    Serialise {
        path: PathBuf,
        #[source]
        source: toml::ser::Error,
    },
    #[error("{path}: key {key:?}: {problem}")]
    Key {
        path: PathBuf,
        key: String,
        problem: String,
    },
}

/// One node's (or any) certherd.toml, edited through its parsed form.
#[derive(Clone, Debug)]
pub struct ConfigFile {
    path: PathBuf,
}

/// One segment of a dotted key: a table key, then optionally an array index.
struct Segment<'a> {
    name: &'a str,
    index: Option<usize>,
}

impl ConfigFile {
    /// The config file at `path` (nothing is read until an edit).
    pub fn at(path: impl Into<PathBuf>) -> ConfigFile {
        ConfigFile { path: path.into() }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file, parsed.
    pub fn table(&self) -> Result<Table, ConfigEditError> {
        let text = std::fs::read_to_string(&self.path).map_err(|source| ConfigEditError::Io {
            path: self.path.clone(),
            source,
        })?;
        text.parse::<Table>()
            .map_err(|source| ConfigEditError::Parse {
                path: self.path.clone(),
                source,
            })
    }

    /// Writes `table` as the whole file.
    pub fn write_table(&self, table: &Table) -> Result<(), ConfigEditError> {
        let text = toml::to_string(table).map_err(|source| ConfigEditError::Serialise {
            path: self.path.clone(),
            source,
        })?;
        std::fs::write(&self.path, text).map_err(|source| ConfigEditError::Io {
            path: self.path.clone(),
            source,
        })
    }

    /// The value at `key`, if the file has one.
    pub fn get(&self, key: &str) -> Result<Option<Value>, ConfigEditError> {
        let table = self.table()?;
        let segments = self.parse_key(key)?;
        let mut here: Option<&Value> = None;
        let mut current = &table;
        for (i, seg) in segments.iter().enumerate() {
            let Some(v) = current.get(seg.name) else {
                return Ok(None);
            };
            let v = match seg.index {
                Some(ix) => match v.as_array().and_then(|a| a.get(ix)) {
                    Some(v) => v,
                    None => return Ok(None),
                },
                None => v,
            };
            if i + 1 == segments.len() {
                here = Some(v);
            } else {
                match v.as_table() {
                    Some(t) => current = t,
                    None => return Ok(None),
                }
            }
        }
        Ok(here.cloned())
    }

    /// Sets `key` to `value`, creating missing tables on the way; returns `self` to chain edits.
    pub fn set(&self, key: &str, value: impl Into<Value>) -> Result<&Self, ConfigEditError> {
        let value = value.into();
        self.edit(key, |slot| {
            *slot = Some(value);
            Ok(())
        })?;
        Ok(self)
    }

    /// Removes `key` (a no-op when it is not there); returns `self` to chain edits.
    pub fn remove(&self, key: &str) -> Result<&Self, ConfigEditError> {
        self.edit(key, |slot| {
            *slot = None;
            Ok(())
        })?;
        Ok(self)
    }

    /// Changes the value at `key` in place with `change` (`None`: the key is absent or to be
    /// removed); the file is written only when `change` succeeds.
    pub fn update(
        &self,
        key: &str,
        change: impl FnOnce(&mut Option<Value>) -> Result<(), String>,
    ) -> Result<&Self, ConfigEditError> {
        self.edit(key, change)?;
        Ok(self)
    }

    fn edit(
        &self,
        key: &str,
        change: impl FnOnce(&mut Option<Value>) -> Result<(), String>,
    ) -> Result<(), ConfigEditError> {
        let mut table = self.table()?;
        let segments = self.parse_key(key)?;
        let (last, parents) = segments.split_last().expect("parse_key returns a segment");
        let mut current = &mut table;
        for seg in parents {
            let entry = current
                .entry(seg.name.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            let entry = match seg.index {
                Some(ix) => {
                    let len = entry.as_array().map(Vec::len);
                    entry
                        .as_array_mut()
                        .and_then(|a| a.get_mut(ix))
                        .ok_or_else(|| self.key_error(key, missing_index(seg, ix, len)))?
                }
                None => entry,
            };
            current = entry
                .as_table_mut()
                .ok_or_else(|| self.key_error(key, format!("{:?} is not a table", seg.name)))?;
        }
        match last.index {
            None => {
                let mut slot = current.remove(last.name);
                change(&mut slot).map_err(|p| self.key_error(key, p))?;
                if let Some(v) = slot {
                    current.insert(last.name.to_owned(), v);
                }
            }
            Some(ix) => {
                let array = current.get_mut(last.name).and_then(Value::as_array_mut);
                let len = array.as_ref().map(|a| a.len());
                let array = array
                    .filter(|a| ix < a.len())
                    .ok_or_else(|| self.key_error(key, missing_index(last, ix, len)))?;
                let mut slot = Some(array.remove(ix));
                change(&mut slot).map_err(|p| self.key_error(key, p))?;
                if let Some(v) = slot {
                    array.insert(ix, v);
                }
            }
        }
        self.write_table(&table)
    }

    fn parse_key<'k>(&self, key: &'k str) -> Result<Vec<Segment<'k>>, ConfigEditError> {
        let bad = |why: &str| self.key_error(key, why.to_owned());
        if key.is_empty() {
            return Err(bad("expected a dotted key such as ssh.connect_timeout"));
        }
        key.split('.')
            .map(|part| {
                let (name, index) = match part.split_once('[') {
                    None => (part, None),
                    Some((name, rest)) => {
                        let ix = rest
                            .strip_suffix(']')
                            .and_then(|n| n.parse::<usize>().ok())
                            .ok_or_else(|| bad("expected NAME[INDEX] with a number"))?;
                        (name, Some(ix))
                    }
                };
                let bare = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !bare {
                    return Err(bad("expected bare TOML keys (letters, digits, _ and -)"));
                }
                Ok(Segment { name, index })
            })
            .collect()
    }

    fn key_error(&self, key: &str, problem: String) -> ConfigEditError {
        ConfigEditError::Key {
            path: self.path.clone(),
            key: key.to_owned(),
            problem,
        }
    }
}

fn missing_index(seg: &Segment<'_>, ix: usize, len: Option<usize>) -> String {
    match len {
        Some(len) => format!(
            "{:?} has {len} element(s), index {ix} is past the end (indexes are 0-based)",
            seg.name
        ),
        None => format!("{:?} is not an array", seg.name),
    }
}

impl crate::Bed {
    /// Node `node`'s certherd.toml, for typed edits (see [`ConfigFile`]).
    pub fn config(&self, node: usize) -> ConfigFile {
        ConfigFile::at(self.config_path(node))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempdir::Dir, ConfigFile) {
        let dir = tempdir::Dir::new();
        let path = dir.0.join("certherd.toml");
        std::fs::write(&path, text).unwrap();
        (dir, ConfigFile::at(path))
    }

    /// A throwaway directory removed on drop (the testbed has no tempfile dependency).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "certherd-config-edit-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    const CONFIG: &str = "name = \"node1\"\n\n[ssh]\nconnect_timeout = \"5s\"\n\n[reload]\ntest = [\"sudo\", \"-n\", \"/usr/sbin/nginx\"]\n\n[[peers]]\nname = \"node2\"\n\n[[peers]]\nname = \"node3\"\n";

    #[test]
    fn sets_nested_keys_indexes_and_new_tables() {
        let (_d, c) = file(CONFIG);
        c.set("ssh.connect_timeout", "1s")
            .unwrap()
            .set("peers[1].optional", true)
            .unwrap()
            .set("renew.primary", "node1")
            .unwrap()
            .set("reload.test[2]", "/nonexistent")
            .unwrap()
            .set("mode", "stateless")
            .unwrap();
        let t = c.table().unwrap();
        assert_eq!(t["ssh"]["connect_timeout"].as_str(), Some("1s"));
        assert_eq!(t["peers"][1]["optional"].as_bool(), Some(true));
        assert_eq!(t["peers"][0].get("optional"), None);
        assert_eq!(t["peers"][1]["name"].as_str(), Some("node3"));
        assert_eq!(t["renew"]["primary"].as_str(), Some("node1"));
        assert_eq!(t["reload"]["test"][2].as_str(), Some("/nonexistent"));
        assert_eq!(t["reload"]["test"][0].as_str(), Some("sudo"));
        assert_eq!(t["mode"].as_str(), Some("stateless"));
        assert_eq!(
            c.get("peers[1].optional").unwrap(),
            Some(Value::Boolean(true))
        );
        c.remove("peers[1].optional").unwrap();
        assert_eq!(c.get("peers[1].optional").unwrap(), None);
    }

    #[test]
    fn impossible_keys_are_named_and_change_nothing() {
        let (_d, c) = file(CONFIG);
        for (key, want) in [
            ("peers[2].optional", "past the end"),
            ("name.sub", "not a table"),
            ("ssh[0].x", "not an array"),
            ("ssh..x", "bare TOML keys"),
            ("peers[x]", "NAME[INDEX]"),
            ("", "dotted key"),
        ] {
            let e = c.set(key, 1).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains(want), "{key}: {e}");
        }
        assert_eq!(std::fs::read_to_string(c.path()).unwrap(), CONFIG);
    }
}
