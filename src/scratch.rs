//! Scratch directories for the unit tests, one helper for the crate: each is a fresh directory
//! under the system's temp dir, removed when the test drops it — also when the test panics, so
//! a failed run leaves nothing behind for the next one to trip over.

use std::ops::Deref;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A fresh directory, removed on drop; it derefs to its path.
#[derive(Debug)]
pub struct Scratch(tempfile::TempDir);

/// A fresh, empty directory named after `tag` (for a look while the test runs), mode 0755 like
/// a directory made by hand (tests that drop privileges or check modes rely on it).
pub fn scratch(tag: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("certherd-{tag}-"))
        .tempdir()
        .expect("a scratch directory under the temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod 0755 the scratch directory");
    Scratch(dir)
}

impl Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl From<&Scratch> for PathBuf {
    fn from(s: &Scratch) -> PathBuf {
        s.0.path().to_path_buf()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_dir_is_removed_even_when_its_test_panics() {
        let path = std::panic::catch_unwind(|| {
            let dir = scratch("panics");
            std::fs::write(dir.join("file"), "x").unwrap();
            let path = dir.to_path_buf();
            std::panic::panic_any(path);
        })
        .unwrap_err()
        .downcast::<std::path::PathBuf>()
        .unwrap();
        assert!(!path.exists(), "{} survived the panic", path.display());
    }
}
