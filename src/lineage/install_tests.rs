//! Tests of the single install (`super`): real openssl pairs, real files, real commands.

use super::*;
pub(in crate::lineage) use crate::scratch::scratch;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::pem::PairError;

fn argv(s: &[&str]) -> Vec<String> {
    s.iter().map(|a| a.to_string()).collect()
}

/// A real version made by openssl (P-256, self-signed): install verifies what it writes.
pub(in crate::lineage) fn real_files(tag: &str) -> LineageFiles {
    let (cert, privkey) = crate::pem::testing::pair(
        &format!("files-{tag}"),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"],
    );
    LineageFiles {
        chain: cert.clone(),
        fullchain: format!("{cert}{cert}"),
        cert,
        privkey,
        privkey_link: None,
    }
}

pub(in crate::lineage) fn commands(test: &[&str], reload: &[&str]) -> Commands {
    Commands {
        test: argv(test),
        reload: argv(reload),
        timeout: Duration::from_secs(5),
    }
}

/// Every path below `root` (sorted), to compare before and after.
pub(in crate::lineage) fn tree(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            out.push(e.path());
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

pub(in crate::lineage) fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn an_unfinished_install_is_finished_not_skipped() {
    let root = scratch("unfinished");
    let layout = Layout::new(&root);
    let lineage = LineageName::parse("example.com").unwrap();
    let files = real_files("unfinished");
    let failed = layout.install(&lineage, 1, &files, &commands(&["true"], &["false"]));
    assert!(
        matches!(failed, Err(InstallError::ReloadFailed(_))),
        "{failed:?}"
    );
    assert!(layout.live_dir(&lineage).join(PENDING).exists());
    let again = layout
        .install(&lineage, 1, &files, &commands(&["true"], &["true"]))
        .unwrap();
    assert!(again.changed, "the reload was not retried");
    assert!(!layout.live_dir(&lineage).join(PENDING).exists());
    let noop = layout
        .install(&lineage, 1, &files, &commands(&["true"], &["false"]))
        .unwrap();
    assert!(!noop.changed);
    fs::remove_dir_all(&root).unwrap();
}

/// Issue 9: refused and rolled-back installs leave nothing they created, on a fresh node and
/// next to an installed version.
#[test]
fn refused_or_rolled_back_installs_leave_nothing() {
    let root = scratch("leftover");
    let layout = Layout::new(&root);
    let lineage = LineageName::parse("example.com").unwrap();
    let good = real_files("leftover-a");
    let other = real_files("leftover-b");
    let mismatched = LineageFiles {
        privkey: other.privkey.clone(),
        ..good.clone()
    };
    let ok = commands(&["true"], &["true"]);
    for round in 0..2 {
        let before = tree(&root);
        for v in 2..6 {
            let r = layout.install(&lineage, v, &mismatched, &ok);
            assert!(
                matches!(r, Err(InstallError::Unverified(PairError::KeyMismatch))),
                "{r:?}"
            );
            let r = layout.install(&lineage, v, &other, &commands(&["false"], &["true"]));
            assert!(matches!(r, Err(InstallError::TestFailed { .. })), "{r:?}");
        }
        assert_eq!(tree(&root), before, "round {round}: leftovers");
        layout.install(&lineage, 1, &good, &ok).unwrap();
    }
    assert_eq!(layout.current_version(&lineage).unwrap(), 1);
    fs::remove_dir_all(&root).unwrap();
}

/// Issue 9: a key left 0644 with the same content, and the older key a reuse link names, are
/// 0600 after the install.
#[test]
fn keys_are_0600_after_every_install() {
    let root = scratch("keymode");
    let layout = Layout::new(&root);
    let lineage = LineageName::parse("example.com").unwrap();
    let files = real_files("keymode");
    let ok = commands(&["true"], &["true"]);
    layout.install(&lineage, 1, &files, &ok).unwrap();
    let key1 = layout.archive_dir(&lineage).join("privkey1.pem");
    fs::set_permissions(&key1, fs::Permissions::from_mode(0o644)).unwrap();
    let noop = layout.install(&lineage, 1, &files, &ok).unwrap();
    assert!(!noop.changed);
    assert_eq!(mode(&key1), 0o600, "equal content, no-op install");
    fs::set_permissions(&key1, fs::Permissions::from_mode(0o644)).unwrap();
    let reuse = LineageFiles {
        privkey_link: Some(1),
        ..files.clone()
    };
    layout.install(&lineage, 2, &reuse, &ok).unwrap();
    let key2 = layout.archive_dir(&lineage).join("privkey2.pem");
    assert_eq!(fs::read_link(&key2).unwrap(), PathBuf::from("privkey1.pem"));
    assert_eq!(mode(&key1), 0o600, "the file a reuse link names");
    fs::remove_dir_all(&root).unwrap();
}

/// Issue 9: planted symlinks at live/<lineage> and at the lock file are refused, naming the
/// path, and nothing is written through them.
#[test]
fn planted_symlinks_are_refused() {
    let root = scratch("planted");
    let decoy = scratch("planted-decoy");
    let layout = Layout::new(&root);
    let lineage = LineageName::parse("example.com").unwrap();
    let files = real_files("planted");
    let ok = commands(&["true"], &["true"]);
    fs::create_dir_all(root.join("live")).unwrap();
    std::os::unix::fs::symlink(&decoy, layout.live_dir(&lineage)).unwrap();
    let err = layout
        .install(&lineage, 1, &files, &ok)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("live/example.com") && err.contains("symlink"),
        "{err}"
    );
    fs::remove_file(layout.live_dir(&lineage)).unwrap();
    fs::create_dir_all(layout.archive_dir(&lineage)).unwrap();
    std::os::unix::fs::symlink(
        decoy.join("lock"),
        layout.archive_dir(&lineage).join(".certherd.lock"),
    )
    .unwrap();
    let err = layout
        .install(&lineage, 1, &files, &ok)
        .unwrap_err()
        .to_string();
    assert!(err.contains(".certherd.lock"), "{err}");
    assert_eq!(
        tree(&decoy),
        Vec::<PathBuf>::new(),
        "written through a planted link"
    );
    fs::remove_dir_all(&root).unwrap();
    fs::remove_dir_all(&decoy).unwrap();
}

/// Issue 19: two installs of one lineage at once, the first failing its config test: its
/// clean-up runs under the lock, and the second, which waited, installs whole.
#[test]
fn a_failed_install_never_cleans_up_under_the_next() {
    let root = scratch("two-installs");
    let layout = Layout::new(&root);
    let lineage = LineageName::parse("example.com").unwrap();
    let files = real_files("two-installs");
    let flag = root.join("tested-once");
    // Fails the first time, after a pause long enough for the second install to queue.
    let test = format!(
        "if [ -e {f} ]; then exit 0; fi; touch {f}; sleep 0.5; exit 1",
        f = flag.display()
    );
    let flaky = commands(&["/bin/sh", "-c", &test], &["true"]);
    std::thread::scope(|s| {
        let first = s.spawn(|| layout.install(&lineage, 1, &files, &flaky));
        assert!(
            (0..200).any(|_| {
                std::thread::sleep(Duration::from_millis(10));
                flag.exists()
            }),
            "the first install never ran its test"
        );
        let second = s.spawn(|| layout.install(&lineage, 1, &files, &flaky));
        let first = first.join().unwrap();
        assert!(
            matches!(first, Err(InstallError::TestFailed { .. })),
            "{first:?}"
        );
        let second = second.join().unwrap().expect("the second install");
        assert!(second.changed);
    });
    assert_eq!(layout.current_version(&lineage).unwrap(), 1);
    assert!(layout.read_version(&lineage, 1).unwrap() == files);
    assert!(layout.archive_dir(&lineage).join(".certherd.lock").exists());
    assert!(!layout.live_dir(&lineage).join(PENDING).exists());
    fs::remove_dir_all(&root).unwrap();
}

/// Issue 19: a staged file or a temp file a killed agent left never blocks an install.
#[test]
fn leftovers_of_a_killed_install_never_block_the_next() {
    let root = scratch("leftover-temps");
    let layout = Layout::new(&root);
    let lineage = LineageName::parse("example.com").unwrap();
    let files = real_files("leftover-temps");
    let archive = layout.archive_dir(&lineage);
    let live = layout.live_dir(&lineage);
    fs::create_dir_all(&archive).unwrap();
    fs::create_dir_all(&live).unwrap();
    for kind in KINDS {
        let f = archive.join(format!("{kind}1.pem"));
        fs::write(super::super::stage::staged_name(&f), "half").unwrap();
    }
    fs::write(temp_name(&live.join(PENDING)), "half").unwrap();
    fs::write(temp_name(&live.join("README")), "half").unwrap();
    // A killed agent's temps carry its PID, not ours: a symlink mid-swap, a file mid-write.
    std::os::unix::fs::symlink(
        "../../archive/x/chain9.pem",
        live.join(".chain.pem.certherd-tmp-1"),
    )
    .unwrap();
    fs::write(archive.join(".cert1.pem.certherd-tmp-1"), "half").unwrap();
    layout
        .install(&lineage, 1, &files, &commands(&["true"], &["true"]))
        .unwrap();
    assert!(layout.read_version(&lineage, 1).unwrap() == files);
    for dir in [&live, &archive] {
        let left: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("certherd-tmp") || n.contains("certherd-staged"))
            .collect();
        assert!(left.is_empty(), "{}: {left:?}", dir.display());
    }
    fs::remove_dir_all(&root).unwrap();
}
