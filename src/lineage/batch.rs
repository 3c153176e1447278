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

/// Most lineages one session may hold staged: each holds its lineage lock (an open file) until
/// the commit, and the agent's file limit is typically 1024. The primary commits in chunks of
/// this size, so a node reloads once per this many lineages.
pub const MAX_STAGED: usize = 256;

/// Most config tests one commit runs to find the lineages that break the test: one bad lineage
/// among [`MAX_STAGED`] takes about 2 × log2(256) = 16. Past it, every lineage still suspected
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
                out.extend(
                    back.into_iter()
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
                for s in good {
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
    crate::crashpoint!("batch-before-reload");
    if let Err(e) = commands.reload() {
        // The node did not take the new config: every lineage goes back to what it serves.
        for s in good {
            out.push(put_back(layout, s, InstallError::BatchReloadFailed(e.clone())));
        }
        return out;
    }
    for s in good {
        let result = layout
            .finish(&s.lineage)
            .map(|()| s.prepared.installed(true))
            .map_err(InstallError::from);
        out.push((s.lineage.clone(), result));
    }
    out
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
