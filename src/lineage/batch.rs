//! The agent's batch (issue 19): many lineages of one push staged one by one, then switched
//! together under ONE config test and ONE reload, instead of a test and a reload per lineage.
//!
//! [`Layout::stage`] does what an install does before its links move ([`Layout::prepare`]:
//! verified files under their version names, the pending marker recording the links to go back
//! to) and keeps the lineage's lock for the rest of the session, so no other install of that
//! lineage runs between its stage and its commit. [`commit`] switches every staged lineage,
//! tests once, reloads once. When the test fails every lineage goes back first — the node then
//! serves exactly what it served — and the ones that break the test are found by halving
//! (bounded by [`MAX_TESTS`]); the others go in with one more test and one reload.
//!
//! A kill at any point leaves each lineage old or new with its pending marker on disk; the next
//! stage of it (the next `sync`) sees the marker and finishes or undoes it.

use super::install::{Created, Prepared};
use super::{InstallError, Layout, OnSplitBrain};
use crate::exec::{Commands, ExecError};
use crate::lockfile::Lock;
use crate::names::LineageName;
use crate::wire::{Installed, LineageFiles};

/// Most lineages one session may hold staged: 1,000 lineages (the fleet size certherd is built
/// for) go to a node in one commit, one config test and one reload. Each staged lineage holds
/// its lineage lock (an open file) until the commit, so a process may stage this many only with
/// a file limit to match: see [`staging_limit`]. Also bounded by the answer line: a `committed`
/// answer for this many lineages stays inside the primary's response limit (the agent shortens
/// each message to fit).
pub const MAX_STAGED: usize = 1024;

/// What a session could hold staged before agents announced their own limit in `hello`: a
/// primary assumes it of an agent that does not say, and a process whose file limit cannot be
/// raised keeps to it (1024 open files, the usual soft limit, leave room for it).
pub const LEGACY_MAX_STAGED: usize = 256;

/// Open files a process keeps for everything but staged locks: standard streams, the log, SSH
/// sessions and the bounded served checks of a primary (up to 512 at once), a child's pipes.
const FILES_BESIDE_STAGED: u64 = 1024;

/// How many lineages this process may hold staged (or locked at once): raises its soft limit of
/// open files toward the hard one, as far as [`MAX_STAGED`] needs and no further, and leaves
/// [`FILES_BESIDE_STAGED`] for the rest. Where the limit cannot be raised (a hard limit of
/// 1024), [`LEGACY_MAX_STAGED`], which such a limit has always held.
pub fn staging_limit() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let wanted = MAX_STAGED as u64 + FILES_BESIDE_STAGED;
    let soft = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < wanted && hard > soft => {
            let raised = wanted.min(hard);
            match setrlimit(Resource::RLIMIT_NOFILE, raised, hard) {
                Ok(()) => raised,
                Err(_) => soft,
            }
        }
        Ok((soft, _)) => soft,
        Err(_) => 0,
    };
    limit_for(soft)
}

/// The staging limit a soft file limit of `soft` allows (see [`staging_limit`]).
fn limit_for(soft: u64) -> usize {
    let beside = soft.saturating_sub(FILES_BESIDE_STAGED);
    (beside.min(MAX_STAGED as u64) as usize).max(LEGACY_MAX_STAGED)
}

/// Most config tests one commit runs to find the lineages that break the test: one bad lineage
/// among [`MAX_STAGED`] takes about 2 × log2(1024) = 20. Past it, every lineage still suspected
/// is reported as failing.
pub const MAX_TESTS: usize = 40;

/// A lineage staged in this session: prepared up to its links, its lock held.
#[derive(Debug)]
pub struct Staged {
    lineage: LineageName,
    prepared: Prepared,
    made: Created,
    _lock: Lock,
}

impl Staged {
    /// The lineage.
    pub fn lineage(&self) -> &LineageName {
        &self.lineage
    }

    /// The node was already fully on this version: its commit changes nothing.
    pub fn current(&self) -> bool {
        self.prepared.current
    }
}

/// One lineage's result of a commit.
pub type Outcome = (LineageName, std::result::Result<Installed, InstallError>);

impl Layout {
    /// Verifies and writes `version` of `lineage` like an install, records it pending and keeps
    /// its lock, but switches no link and runs nothing (see the module docs). A refused or
    /// failed stage leaves nothing it created, as a refused install does.
    pub fn stage(
        &self,
        lineage: &LineageName,
        version: u32,
        files: &LineageFiles,
        on_split_brain: OnSplitBrain,
    ) -> std::result::Result<Staged, InstallError> {
        let now = Self::check_request(lineage, version, files)?;
        let mut made = Created::default();
        let lock = self.lock_lineage(lineage, &mut made)?;
        match self.prepare(lineage, version, files, (on_split_brain, now), &mut made) {
            Ok(prepared) => Ok(Staged {
                lineage: lineage.clone(),
                prepared,
                made,
                _lock: lock,
            }),
            Err(e) => {
                // Under the lock, as for an install.
                if !made.links_moved {
                    made.undo();
                }
                Err(e)
            }
        }
    }
}

/// Switches every staged lineage, runs the node's config test once and its reload once (see
/// the module docs). One outcome per lineage, in the order staged.
pub fn commit(layout: &Layout, staged: Vec<Staged>, commands: &Commands) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(staged.len());
    let mut batch = Vec::new();
    for s in staged {
        if s.prepared.current {
            out.push((s.lineage.clone(), Ok(s.prepared.installed(false))));
        } else {
            batch.push(s);
        }
    }
    if batch.is_empty() {
        return out;
    }
    let mut switched = Vec::with_capacity(batch.len());
    for (i, s) in batch.into_iter().enumerate() {
        match layout.switch_links(&s.lineage, s.prepared.version) {
            Ok(()) => switched.push(s),
            Err(e) => out.push(put_back(layout, s, e.into())),
        }
        if i == 0 {
            crate::crashpoint!("batch-after-first-switch");
        }
    }
    crate::crashpoint!("batch-before-test");
    // The install's own names for the same places, so the crash walks of a single install
    // (which `sync` now runs as a batch of one) stop here too.
    crate::crashpoint!("before-test");
    let good = match commands.test() {
        Ok(()) => switched,
        Err(output) => {
            let mut back = Vec::with_capacity(switched.len());
            for s in switched {
                match restore(layout, &s) {
                    Ok(()) => back.push(s),
                    Err(e) => out.push(failed(s, e.into(), false)),
                }
            }
            // Is it the batch at all? With every lineage back, the node's own config must pass.
            if let Err(broken) = commands.test() {
                // Newest first: the first lineage may have made archive/ and live/ themselves.
                out.extend(
                    back.into_iter()
                        .rev()
                        .map(|s| failed(s, InstallError::ConfigBroken(broken.clone()), true)),
                );
                return out;
            }
            let mut good = Vec::new();
            let mut bad = Vec::new();
            let mut budget = MAX_TESTS;
            search(
                layout,
                commands,
                back,
                Some(output),
                (&mut good, &mut bad),
                &mut budget,
            );
            out.extend(bad);
            if good.is_empty() {
                return out;
            }
            // The lineages that passed together go in: tested once more as they now stand.
            if let Err(output) = commands.test() {
                for s in good.into_iter().rev() {
                    let restored = s.prepared.before;
                    let e = InstallError::TestFailed {
                        output: output.clone(),
                        restored,
                    };
                    out.push(put_back(layout, s, e));
                }
                return out;
            }
            good
        }
    };
    crate::crashpoint!("after-test");
    crate::crashpoint!("batch-before-reload");
    if let Err(e) = commands.reload() {
        // The node did not take the new config: every lineage goes back to what it serves.
        for s in good.into_iter().rev() {
            out.push(put_back(
                layout,
                s,
                InstallError::BatchReloadFailed(e.clone()),
            ));
        }
        return out;
    }
    crate::crashpoint!("after-reload");
    for s in good {
        let result = layout
            .finish(&s.lineage)
            .map(|()| s.prepared.installed(true))
            .map_err(InstallError::from);
        out.push((s.lineage.clone(), result));
    }
    out
}

/// Drops a staged lineage that will not be committed (the fleet-wide push decided against it):
/// its links put back as recorded (a stage moved none, unless it kept a split-brain version
/// aside), its marker and what its stage created removed, its lock released. Err: the links
/// could not be put back; the marker stays and the next stage finishes or undoes it.
pub fn discard(layout: &Layout, s: Staged) -> crate::Result<()> {
    let back = restore(layout, &s);
    let ok = back.is_ok();
    let _outcome = failed(s, InstallError::Refused("discarded".into()), ok);
    back
}

/// Finds, among `set` (all back on their previous links; `good` switched and passing), the
/// lineages that make the test fail: switch the set, test; if it fails, halve it and try each
/// half. `known`: the set is already known to fail, with this output. Every lineage ends in
/// `good` (switched) or `bad` (put back, with why).
fn search(
    layout: &Layout,
    commands: &Commands,
    mut set: Vec<Staged>,
    known: Option<ExecError>,
    (good, bad): (&mut Vec<Staged>, &mut Vec<Outcome>),
    budget: &mut usize,
) {
    if set.is_empty() {
        return;
    }
    let output = match known {
        Some(output) => output,
        None if *budget == 0 => {
            bad.extend(
                set.into_iter()
                    .map(|s| failed(s, InstallError::NotIsolated(MAX_TESTS), true)),
            );
            return;
        }
        None => {
            *budget -= 1;
            let mut on = Vec::with_capacity(set.len());
            for s in set {
                match layout.switch_links(&s.lineage, s.prepared.version) {
                    Ok(()) => on.push(s),
                    Err(e) => bad.push(put_back(layout, s, e.into())),
                }
            }
            match commands.test() {
                Ok(()) => {
                    good.extend(on);
                    return;
                }
                Err(output) => {
                    set = Vec::with_capacity(on.len());
                    for s in on {
                        match restore(layout, &s) {
                            Ok(()) => set.push(s),
                            Err(e) => bad.push(failed(s, e.into(), false)),
                        }
                    }
                    output
                }
            }
        }
    };
    if set.len() == 1 || *budget == 0 {
        bad.extend(set.into_iter().map(|s| test_failed(s, output.clone())));
        return;
    }
    let second = set.split_off(set.len() / 2);
    let bad_before = bad.len();
    search(layout, commands, set, None, (good, bad), budget);
    // The first half went in whole: the failure is in the second, no need to test it alone.
    let known = (bad.len() == bad_before).then_some(output);
    search(layout, commands, second, known, (good, bad), budget);
}

/// The lineage back on its previous links and marker gone (a lineage found breaking the test).
fn test_failed(s: Staged, output: ExecError) -> Outcome {
    let restored = s.prepared.before;
    failed(s, InstallError::TestFailed { output, restored }, true)
}

/// Puts a switched lineage back, then fails it with `e`.
fn put_back(layout: &Layout, s: Staged, e: InstallError) -> Outcome {
    match restore(layout, &s) {
        Ok(()) => failed(s, e, true),
        Err(again) => failed(s, again.into(), false),
    }
}

fn restore(layout: &Layout, s: &Staged) -> crate::Result<()> {
    layout.restore_links(&s.lineage, &s.prepared.previous)
}

/// The outcome of a lineage that did not go in. When its links are back (`back`: its marker
/// removed), what it created goes too, still under its lock; otherwise the marker stays and the
/// next stage (sync) finishes or undoes it.
fn failed(mut s: Staged, e: InstallError, back: bool) -> Outcome {
    if back {
        s.made.links_moved = false;
        s.made.undo();
    }
    (s.lineage.clone(), Err(e))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use super::super::install::tests::{commands, real_files, scratch, tree};
    use super::*;
    use crate::wire::LineageFiles;

    fn names(list: &[&str]) -> Vec<LineageName> {
        list.iter()
            .map(|n| LineageName::parse(n).unwrap())
            .collect()
    }

    /// A test or reload command that appends a line to `log` and then runs `then`.
    fn counted(log: &Path, then: &str) -> Vec<String> {
        vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("echo x >> {}; {then}", log.display()),
        ]
    }

    fn runs(log: &Path) -> usize {
        fs::read_to_string(log).map_or(0, |s| s.lines().count())
    }

    /// A process keeps the old 256 where its file limit cannot be raised, takes what a raised
    /// limit leaves beside its other files, and never more than [`MAX_STAGED`].
    #[test]
    fn the_staging_limit_follows_the_file_limit() {
        assert_eq!(limit_for(0), LEGACY_MAX_STAGED);
        assert_eq!(limit_for(1024), LEGACY_MAX_STAGED);
        assert_eq!(limit_for(1024 + 600), 600);
        assert_eq!(limit_for(2048), MAX_STAGED);
        assert_eq!(limit_for(1 << 20), MAX_STAGED);
        // This test process: whatever its hard limit, a limit it can live with.
        let n = staging_limit();
        assert!((LEGACY_MAX_STAGED..=MAX_STAGED).contains(&n), "{n}");
    }

    fn files_for(lineages: &[LineageName], tag: &str) -> Vec<LineageFiles> {
        lineages
            .iter()
            .map(|l| real_files(&format!("batch-{tag}-{l}")))
            .collect()
    }

    fn stage_all(layout: &Layout, lineages: &[LineageName], files: &[LineageFiles]) -> Vec<Staged> {
        lineages
            .iter()
            .zip(files)
            .map(|(l, f)| layout.stage(l, 1, f, OnSplitBrain::Refuse).unwrap())
            .collect()
    }

    /// Many lineages: one config test, one reload, every lineage on its new version.
    #[test]
    fn a_batch_tests_and_reloads_once() {
        let root = scratch("batch-once");
        let layout = Layout::new(&root);
        let (tests, reloads) = (root.join("tests.log"), root.join("reloads.log"));
        let mut cmds = commands(&["true"], &["true"]);
        cmds.test = counted(&tests, "true");
        cmds.reload = counted(&reloads, "true");
        let lineages = names(&["a.test", "b.test", "c.test", "d.test", "e.test"]);
        let files = files_for(&lineages, "once");
        let staged = stage_all(&layout, &lineages, &files);
        assert!(
            lineages.iter().all(|l| layout.current_version(l).is_err()),
            "stage moved a link"
        );
        let out = commit(&layout, staged, &cmds);
        assert_eq!(out.len(), lineages.len());
        for (l, r) in &out {
            assert!(r.as_ref().is_ok_and(|i| i.changed), "{l}: {r:?}");
            assert_eq!(layout.current_version(l).unwrap(), 1);
            assert!(!layout.live_dir(l).join(super::super::PENDING).exists());
        }
        assert_eq!((runs(&tests), runs(&reloads)), (1, 1));
        // Already there: staged as current, nothing run.
        let out = commit(&layout, stage_all(&layout, &lineages, &files), &cmds);
        assert!(out
            .iter()
            .all(|(_, r)| r.as_ref().is_ok_and(|i| !i.changed)));
        assert_eq!((runs(&tests), runs(&reloads)), (1, 1));
        fs::remove_dir_all(&root).unwrap();
    }

    /// A discarded stage leaves the tree as it was (no version, no marker, no lock held: the
    /// same lineage stages again at once), and a lineage already current stays as it is.
    #[test]
    fn a_discarded_stage_leaves_nothing() {
        let root = scratch("batch-discard");
        let layout = Layout::new(&root);
        let cmds = commands(&["true"], &["true"]);
        let lineages = names(&["a.test", "b.test"]);
        let files = files_for(&lineages, "discard");
        // b.test is on version 1 already.
        let out = commit(
            &layout,
            stage_all(&layout, &lineages[1..], &files[1..]),
            &cmds,
        );
        assert!(out.iter().all(|(_, r)| r.is_ok()), "{out:?}");
        let before = tree(&root);
        for s in stage_all(&layout, &lineages, &files) {
            discard(&layout, s).unwrap();
        }
        assert_eq!(tree(&root), before, "leftovers of a discarded stage");
        assert!(layout.current_version(&lineages[0]).is_err());
        assert_eq!(layout.current_version(&lineages[1]).unwrap(), 1);
        // The locks went with the stages: staging again does not wait.
        let out = commit(&layout, stage_all(&layout, &lineages, &files), &cmds);
        assert!(out.iter().all(|(_, r)| r.is_ok()), "{out:?}");
        assert_eq!(layout.current_version(&lineages[0]).unwrap(), 1);
        fs::remove_dir_all(&root).unwrap();
    }

    /// One lineage breaks the config test: it is named and put back, the others go in with one
    /// reload, and the number of tests stays logarithmic.
    #[test]
    fn the_lineage_that_breaks_the_test_is_found() {
        let root = scratch("batch-bad");
        let layout = Layout::new(&root);
        let (tests, reloads) = (root.join("tests.log"), root.join("reloads.log"));
        let bad = root.join("live/f.test/cert.pem");
        let mut cmds = commands(&["true"], &["true"]);
        cmds.test = counted(&tests, &format!("! [ -e {} ]", bad.display()));
        cmds.reload = counted(&reloads, "true");
        let lineages = names(&[
            "a.test", "b.test", "c.test", "d.test", "e.test", "f.test", "g.test", "h.test",
        ]);
        let files = files_for(&lineages, "bad");
        let out = commit(&layout, stage_all(&layout, &lineages, &files), &cmds);
        for (l, r) in &out {
            if l.as_str() == "f.test" {
                assert!(
                    matches!(r, Err(InstallError::TestFailed { restored: None, .. })),
                    "{r:?}"
                );
                assert!(layout.current_version(l).is_err());
                assert!(!layout.archive_dir(l).join("cert1.pem").exists());
            } else {
                assert!(r.is_ok(), "{l}: {r:?}");
                assert_eq!(layout.current_version(l).unwrap(), 1);
            }
        }
        assert_eq!(runs(&reloads), 1);
        assert!(runs(&tests) <= 2 + 2 * 3 + 1, "{} tests", runs(&tests));
        fs::remove_dir_all(&root).unwrap();
    }

    /// The node's own config is broken: every lineage back, nothing of the batch left, no
    /// reload; the same with a failing reload.
    #[test]
    fn a_broken_node_or_reload_puts_every_lineage_back() {
        let root = scratch("batch-broken");
        let layout = Layout::new(&root);
        let lineages = names(&["a.test", "b.test", "c.test"]);
        let reloads = root.join("reloads.log");
        let mut cmds = commands(&["false"], &["true"]);
        cmds.reload = counted(&reloads, "true");
        let files = files_for(&lineages, "broken");
        let before = tree(&root);
        let out = commit(&layout, stage_all(&layout, &lineages, &files), &cmds);
        assert!(
            out.iter()
                .all(|(_, r)| matches!(r, Err(InstallError::ConfigBroken(_)))),
            "{out:?}"
        );
        assert_eq!(runs(&reloads), 0);
        assert_eq!(tree(&root), before, "leftovers of a broken batch");
        let cmds = commands(&["true"], &["false"]);
        let out = commit(&layout, stage_all(&layout, &lineages, &files), &cmds);
        assert!(
            out.iter()
                .all(|(_, r)| matches!(r, Err(InstallError::BatchReloadFailed(_)))),
            "{out:?}"
        );
        assert!(lineages.iter().all(|l| layout.current_version(l).is_err()));
        fs::remove_dir_all(&root).unwrap();
    }
}
